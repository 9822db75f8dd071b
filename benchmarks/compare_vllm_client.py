"""Our load generator against vLLM's own `vllm bench serve` client: same engine, same workload.

Alternates the two clients (vLLM first on even rounds, ours first on odd ones, so drift in the
engine cancels), each round with a fresh seed for both (no prefix-cache replays), and prints
both tools' numbers and the ratios. Agreement: output throughput and median TPOT within 5%,
median TTFT within 10% (medians over the rounds).

It starts vLLM's CPU build on the bundled tiny model (engine bound to core 0, both clients
pinned to core 1) unless --base-url names a running server. Run it under the engine lock:

    flock /tmp/mgpu-engine.lock python benchmarks/compare_vllm_client.py --out reports/compare.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pytest_mgpu, installed or not

from pytest_mgpu import Workload
from pytest_mgpu.bench.runner import external_server, run_bench
from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.engines.process import EngineProcess, LaunchPlan, free_port

COMPARED = (  # metric, allowed relative difference of the medians
    ("output_throughput", 0.05),
    ("median_tpot_ms", 0.05),
    ("median_ttft_ms", 0.10),
)
SHOWN = ("output_throughput", "median_tpot_ms", "median_ttft_ms", "median_itl_ms", "median_e2el_ms",
         "p99_tpot_ms", "p99_ttft_ms", "request_throughput", "duration", "completed", "failed")


@contextlib.contextmanager
def engine(port: int, log_dir: Path) -> Iterator[str]:
    """vLLM's CPU build on the tiny model, with the flags tested on these machines."""
    argv = (sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(TINY_MODEL),
            "--load-format", "dummy", "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16",
            "--max-model-len", "2048")
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0"}
    process = EngineProcess(LaunchPlan(argv, env, f"http://127.0.0.1:{port}/health"), log_dir / "engine.log")
    t0 = time.monotonic()
    process.start(timeout_s=600)
    print(f"engine up in {time.monotonic() - t0:.0f} s (log {process.log_path})", flush=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def run_vllm_client(base_url: str, model: str, tokenizer: str, a: argparse.Namespace, seed: int) -> dict[str, Any]:
    from vllm.benchmarks.serve import add_cli_args, main_async
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    args = parser.parse_args([
        "--base-url", base_url, "--model", model, "--tokenizer", tokenizer, "--dataset-name", "random",
        "--random-input-len", str(a.input_len), "--random-output-len", str(a.output_len),
        "--num-prompts", str(a.num_prompts), "--max-concurrency", str(a.max_concurrency),
        "--num-warmups", str(a.max_concurrency), "--seed", str(seed), "--ignore-eos", "--disable-tqdm",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "90,99",
    ])
    with contextlib.redirect_stdout(io.StringIO()):  # its console table; we print our own
        result: dict[str, Any] = asyncio.run(main_async(args))
    return result


def run_ours(base_url: str, model: str, tokenizer: str, a: argparse.Namespace, seed: int) -> dict[str, Any]:
    server = external_server(base_url, model=model, tokenizer=tokenizer)
    w = Workload(input_len=a.input_len, output_len=a.output_len, num_prompts=a.num_prompts,
                 max_concurrency=a.max_concurrency, seed=seed)
    result = run_bench(server, w)
    return {**result.metrics, "client": result.client.to_json(), "findings": [str(f) for f in result.findings]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", help="a running vLLM server (default: start one)")
    p.add_argument("--model", default=str(TINY_MODEL), help="served model name (and tokenizer directory)")
    p.add_argument("--tokenizer", help="tokenizer directory when --model is a served name (default: --model)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed-base", type=int, default=int(time.time()) % 1_000_000,
                   help="round k uses seed base+k for both clients (default: fresh, so no prompt is in the prefix "
                        "cache of an engine that served earlier runs)")
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--max-concurrency", type=int, default=16)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--client-cpu", type=int, default=1, help="pin both clients to this CPU (-1: no pinning)")
    p.add_argument("--out", type=Path, help="write every number as JSON here")
    a = p.parse_args()
    if a.client_cpu >= 0:
        os.sched_setaffinity(0, {a.client_cpu})
    with contextlib.ExitStack() as stack:
        base_url = a.base_url or stack.enter_context(
            engine(free_port(), Path(stack.enter_context(tempfile.TemporaryDirectory()))))
        rounds: list[dict[str, dict[str, Any]]] = []
        for k in range(a.rounds):
            order = (("vllm", run_vllm_client), ("ours", run_ours))
            this: dict[str, dict[str, Any]] = {}
            for name, fn in order if k % 2 == 0 else order[::-1]:
                this[name] = fn(base_url, a.model, a.tokenizer or a.model, a, seed=a.seed_base + k)
                print(f"round {k + 1} {name:>4}: " + "  ".join(f"{m}={this[name][m]:.2f}" for m in SHOWN[:3]),
                      flush=True)
            rounds.append(this)
    return report(rounds, a)


def report(rounds: list[dict[str, dict[str, Any]]], a: argparse.Namespace) -> int:
    print(f"\nrandom {a.input_len}/{a.output_len}, {a.num_prompts} prompts, max concurrency {a.max_concurrency}, "
          f"{len(rounds)} alternating rounds (medians over rounds)")
    print(f"{'metric':<22}{'vllm bench serve':>18}{'pytest-mgpu':>14}{'ours/vllm':>11}  verdict")
    failures = 0
    limits = dict(COMPARED)
    for metric in SHOWN:
        theirs = statistics.median(float(r["vllm"][metric]) for r in rounds)
        ours = statistics.median(float(r["ours"][metric]) for r in rounds)
        ratio = ours / theirs if theirs else float("nan")
        verdict = ""
        if metric in limits:
            ok = abs(ratio - 1) <= limits[metric]
            failures += not ok
            verdict = f"{'agree' if ok else 'DISAGREE'} (limit {limits[metric]:.0%})"
        print(f"{metric:<22}{theirs:>18.2f}{ours:>14.2f}{ratio:>11.3f}  {verdict}")
    for k, r in enumerate(rounds):
        c = r["ours"]["client"]
        print(f"round {k + 1}: our client cpu {c['cpu_util']:.0%}, p99 loop lag {c['loop_lag_p99_ms']:.2f} ms, "
              f"p99 dispatch lag {c['dispatch_lag_p99_ms']:.2f} ms; findings: {r['ours']['findings'] or 'none'}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        keep = [{tool: {k: v for k, v in res.items() if isinstance(v, int | float | str | dict | list)
                        and k not in ("input_lens", "output_lens", "ttfts", "itls", "start_times", "errors",
                                      "generated_texts", "latencies", "queue_times")}
                 for tool, res in r.items()} for r in rounds]
        a.out.write_text(json.dumps({"args": vars(a) | {"out": str(a.out)}, "rounds": keep}, indent=2, default=str))
        print(f"wrote {a.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
