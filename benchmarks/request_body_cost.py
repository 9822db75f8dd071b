"""What the fields of our request body cost the engine: `min_tokens` on top of `ignore_eos`, alternating.

vLLM's own client (`vllm bench serve`) pins the output length with `ignore_eos` and `max_tokens`
only. Ours also sent `min_tokens` = `max_tokens`, which turns on vLLM's min-tokens logits
processor for every request on every decode step. On the 2-core CPU box our median TPOT read 3-4%
above vLLM's client at concurrency 8 on the same engine; this measures that one field.

Modes, each round in a rotated order, each run with a fresh seed, the same engine throughout:
  ignore_eos   `max_tokens` + `ignore_eos` (what vLLM's client sends)
  min_tokens   the same plus `min_tokens` = `max_tokens` (what we sent before)

Prints output throughput and median TPOT per mode and the paired ratio min_tokens / ignore_eos.

    flock /tmp/mgpu-engine.lock python benchmarks/request_body_cost.py --out perf-runs/request-body-cost.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pytest_mgpu, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_vllm_client import engine  # type: ignore[import-not-found]

from pytest_mgpu import Workload
from pytest_mgpu.bench import endpoints
from pytest_mgpu.bench.runner import external_server, run_bench
from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.engines.process import free_port

SHOWN = ("output_throughput", "median_tpot_ms", "median_ttft_ms")
DEFAULT = endpoints.ENDPOINTS["completions"]


def _ignore_eos_only(model: str, s: Any) -> dict[str, Any]:
    return {k: v for k, v in DEFAULT.body(model, s).items() if k != "min_tokens"}


def _with_min_tokens(model: str, s: Any) -> dict[str, Any]:
    return {**_ignore_eos_only(model, s), "min_tokens": s.output_len}


MODES = {"ignore_eos": dataclasses.replace(DEFAULT, body=_ignore_eos_only),
         "min_tokens": dataclasses.replace(DEFAULT, body=_with_min_tokens)}


def one_run(base_url: str, mode: str, a: argparse.Namespace, seed: int) -> dict[str, float]:
    endpoints.ENDPOINTS["completions"] = MODES[mode]
    try:
        server = external_server(base_url, model=str(TINY_MODEL), tokenizer=str(TINY_MODEL))
        w = Workload(input_len=a.input_len, output_len=a.output_len, num_prompts=a.num_prompts,
                     max_concurrency=a.max_concurrency, seed=seed)
        result = run_bench(server, w)
    finally:
        endpoints.ENDPOINTS["completions"] = DEFAULT
    assert result.metrics["output_len_mismatches"] == 0, f"{mode}: output lengths were not exact"
    return {m: float(result.metrics[m]) for m in SHOWN}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--num-prompts", type=int, default=256)
    p.add_argument("--max-concurrency", type=int, default=8)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--engine-cpus", default="0")
    p.add_argument("--seed-base", type=int, default=int(time.time()) % 1_000_000)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    names = list(MODES)
    rounds: list[dict[str, dict[str, float]]] = []
    with contextlib.ExitStack() as stack:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        base_url, _ = stack.enter_context(engine(free_port(), log_dir, a.engine_cpus))
        for k in range(a.rounds):
            this = {}
            for j, mode in enumerate(names if k % 2 == 0 else names[::-1]):
                this[mode] = one_run(base_url, mode, a, a.seed_base + 10 * k + j)
                print(f"round {k + 1} {mode:>10}: " + "  ".join(f"{m}={this[mode][m]:.2f}" for m in SHOWN),
                      flush=True)
            rounds.append(this)
    print(f"\nrandom {a.input_len}/{a.output_len}, {a.num_prompts} prompts, concurrency {a.max_concurrency}, "
          f"{a.rounds} rounds; ratio = median over rounds of min_tokens/ignore_eos in the same round")
    for m in SHOWN:
        per = [r["min_tokens"][m] / r["ignore_eos"][m] for r in rounds]
        print(f"{m:<20} ignore_eos {statistics.median(r['ignore_eos'][m] for r in rounds):9.2f}  "
              f"min_tokens {statistics.median(r['min_tokens'][m] for r in rounds):9.2f}  "
              f"ratio {statistics.median(per):.3f} [{min(per):.3f}-{max(per):.3f}]")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "rounds": rounds}, indent=2))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
