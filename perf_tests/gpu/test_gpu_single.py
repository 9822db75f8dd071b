"""The plugin on one real GPU (issue 7): vLLM's CUDA build at TP=1, three concurrencies, gated.

Run by tools/gpu/run_gpu.sh with --mgpu-device cuda, the Llama-3.1-8B-shaped dummy model and
--load-format dummy. Every measurement is checked against the baseline of this host's
fingerprint; telemetry, roofline (MBU) and findings come with each result.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mgpu import Workload

CONCURRENCIES = (1, 16, 64)


def workload(concurrency: int) -> Workload:
    # enough prompts for 4 full waves (16 at concurrency 1), 128 in / 128 out as in the seeds
    return Workload(input_len=128, output_len=128, num_prompts=max(16, 4 * concurrency),
                    max_concurrency=concurrency)


@pytest.mark.mgpu_gpus(1)
@pytest.mark.parametrize("concurrency", CONCURRENCIES)
def test_tp1_concurrency(mgpu_engine, mgpu_bench, mgpu_baseline, concurrency: int) -> None:
    server = mgpu_engine(tp=1)
    result = mgpu_bench(server, workload(concurrency))
    print(f"\nGPU c={concurrency}: " + ", ".join(
        f"{k}={result.metrics[k]:.4g}" for k in (
            "output_throughput_per_gpu", "median_ttft_ms", "median_tpot_ms", "p99_tpot_ms",
            "mbu", "tokens_per_joule") if k in result.metrics))
    print("findings:", [str(f) for f in result.findings] or "none")
    assert result.failed == 0
    mgpu_baseline.check(result)


@pytest.mark.mgpu_gpus(1)
@pytest.mark.parametrize("concurrency", CONCURRENCIES)
def test_vllm_client_agrees(mgpu_engine, tmp_path: Path, concurrency: int) -> None:
    """Side by side with `vllm bench serve` on the same engine (any engine: SGLang too), at each concurrency.

    vLLM's client may live in another site than the engine's (SGLang pins other transformers):
    MGPU_VLLM_CLIENT_PYTHONPATH names it.
    """
    server = mgpu_engine(tp=1)
    # more rounds and waves steady the TTFT verdict at high concurrency, where lockstep waves make each
    # round's median TTFT jump by several percent (MGPU_COMPARE_ROUNDS/WAVES/VARIANTS; defaults as before)
    rounds = os.environ.get("MGPU_COMPARE_ROUNDS", "8")  # 4 pairs of opposite orders: verdicts with an interval
    waves = int(os.environ.get("MGPU_COMPARE_WAVES", "4"))
    out = Path(os.environ.get("MGPU_RESULTS_DIR", tmp_path)) / f"compare_vllm_client_c{concurrency}.json"
    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, str(repo / "benchmarks" / "compare_vllm_client.py"), "--base-url", server.base_url,
           "--model", server.model_name, "--tokenizer", str(server.tokenizer_path or server.spec.model),
           "--rounds", rounds, "--num-prompts", str(max(16, waves * concurrency)),
           "--max-concurrency", str(concurrency), "--client-cpu", "-1",
           "--variants", os.environ.get("MGPU_COMPARE_VARIANTS", "ours,ours-text,ours-vllm-prompts"), "--out", str(out),
           *(["--vllm-no-env"] if os.environ.get("MGPU_COMPARE_NO_ENV") else [])]
    env = dict(os.environ)
    if os.environ.get("MGPU_VLLM_CLIENT_PYTHONPATH"):
        env["PYTHONPATH"] = f"{os.environ['MGPU_VLLM_CLIENT_PYTHONPATH']}:{repo}"
    timeout_s = float(os.environ.get("MGPU_COMPARE_TIMEOUT_S", "1200"))  # long runs of many rounds set their own
    log = out.with_suffix(".log")  # round by round as it runs (with --out's per-round JSON, a lost host keeps both)
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, text=True, timeout=timeout_s, env=env)
    stdout = log.read_text()
    print(stdout[-4000:])
    # exit 3: no metric disagrees, but the rounds' spread is too wide to show agreement (compare_vllm_client.judge)
    outcome = {1: "the two clients disagree beyond the limits",
               3: "unresolved: the rounds' own spread is wider than the limit (more MGPU_COMPARE_ROUNDS)"}
    what = outcome.get(proc.returncode, "the comparison failed")
    assert proc.returncode == 0, f"{what}:\n{stdout}{proc.stderr[-3000:]}"
