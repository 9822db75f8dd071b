"""What the CPU telemetry sampler costs the engine: the same workload with telemetry off and on, alternating.

Modes, each round in a rotated order (so drift in the engine cancels), each run with a fresh seed:
  off       no sampler
  default   the sampler `start_telemetry` uses now (CPU: /proc read at the window's two ends only;
            CUDA: NVML every 0.2 s)
  poll-0.5  CPU only, the old behaviour: every engine thread's /proc files read every 0.5 s on a
            thread in the client's process

`--device cuda --model DIR` starts vLLM on GPU 0 instead (dummy weights) and samples NVML.

Prints output throughput and median TPOT per mode, and each mode's paired ratio to `off` (the
median over rounds of the per-round ratio). Nothing is pinned: the client floats as a user's test
does; the engine stays on --engine-cpus as `compare_vllm_client.py` starts it.

    flock /tmp/mgpu-engine.lock python benchmarks/telemetry_cost.py --out perf-runs/telemetry-cost.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pytest_mgpu, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_vllm_client import engine  # type: ignore[import-not-found]

from pytest_mgpu import Workload
from pytest_mgpu.bench.runner import external_server, run_bench
from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.engines.process import EngineProcess, LaunchPlan, free_port
from pytest_mgpu.hardware.cpu import cpu_topology
from pytest_mgpu.telemetry import DEFAULT_INTERVAL_S, Sampler
from pytest_mgpu.telemetry.cpu_probe import CpuProbe

SHOWN = ("output_throughput", "median_tpot_ms", "median_ttft_ms")


def modes(device: str) -> dict[str, float | str | None]:
    if device == "cuda":
        return {"off": "off", "default": DEFAULT_INTERVAL_S["cuda"]}
    return {"off": "off", "default": DEFAULT_INTERVAL_S["cpu"], "poll-0.5": 0.5}


@contextlib.contextmanager
def gpu_engine(model: str, log_dir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    argv = (sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--load-format", "dummy",
            "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "4096")
    process = EngineProcess(LaunchPlan(argv, {"CUDA_VISIBLE_DEVICES": "0"}, f"http://127.0.0.1:{port}/health"),
                            log_dir / "engine.log")
    process.start(timeout_s=600)
    try:
        assert process.pid is not None
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.stop()


def probe(device: str, sid: int) -> Any:
    if device == "cuda":
        from pytest_mgpu.hardware import discover
        from pytest_mgpu.telemetry.nvml_probe import NvmlProbe

        return NvmlProbe(discover("cuda").devices[:1], engine_sid=sid)
    return CpuProbe(cpu_topology().devices, engine_sid=sid)


def one_run(base_url: str, sid: int, mode: str, a: argparse.Namespace, seed: int) -> dict[str, Any]:
    server = external_server(base_url, model=a.model, tokenizer=a.model)
    w = Workload(input_len=a.input_len, output_len=a.output_len, num_prompts=a.num_prompts,
                 max_concurrency=a.max_concurrency, seed=seed)
    interval = modes(a.device)[mode]
    sampler = None
    if interval != "off":
        sampler = Sampler(probe(a.device, sid), None if interval is None else float(interval)).start()
    try:
        result = run_bench(server, w)
    finally:
        telemetry = sampler.stop() if sampler is not None else None
    out = {m: float(result.metrics[m]) for m in SHOWN}
    out["samples"] = telemetry.devices[0].samples if telemetry and telemetry.devices else 0
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--num-prompts", type=int, default=48)
    p.add_argument("--max-concurrency", type=int, default=8)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--engine-cpus", default="0")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--model", default=str(TINY_MODEL), help="model directory (dummy weights are loaded)")
    p.add_argument("--seed-base", type=int, default=int(time.time()) % 1_000_000)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    names = list(modes(a.device))
    rounds: list[dict[str, dict[str, Any]]] = []
    with contextlib.ExitStack() as stack:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        base_url, sid = stack.enter_context(gpu_engine(a.model, log_dir) if a.device == "cuda"
                                            else engine(free_port(), log_dir, a.engine_cpus))
        for k in range(a.rounds):
            order = names[k % len(names):] + names[:k % len(names)]
            this = {}
            for j, mode in enumerate(order):
                this[mode] = one_run(base_url, sid, mode, a, a.seed_base + 10 * k + j)
                print(f"round {k + 1} {mode:>9}: " + "  ".join(f"{m}={this[mode][m]:.2f}" for m in SHOWN)
                      + f"  samples={this[mode]['samples']}", flush=True)
            rounds.append(this)
    print(f"\nrandom {a.input_len}/{a.output_len}, {a.num_prompts} prompts, concurrency {a.max_concurrency}, "
          f"{a.rounds} rounds; ratio = median over rounds of mode/off in the same round")
    print(f"{'mode':<10}" + "".join(f"{m:>20}" for m in SHOWN) + "".join(f"{m + '/off':>26}" for m in SHOWN[:2]))
    for mode in names:
        med = [statistics.median(r[mode][m] for r in rounds) for m in SHOWN]
        ratios = [statistics.median(r[mode][m] / r["off"][m] for r in rounds) for m in SHOWN[:2]]
        spread = [(min(r[mode][m] / r["off"][m] for r in rounds), max(r[mode][m] / r["off"][m] for r in rounds))
                  for m in SHOWN[:2]]
        print(f"{mode:<10}" + "".join(f"{v:>20.2f}" for v in med)
              + "".join(f"{x:>12.3f} [{lo:.2f}-{hi:.2f}]" for x, (lo, hi) in zip(ratios, spread, strict=True)))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "rounds": rounds}, indent=2))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
