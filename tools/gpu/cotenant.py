"""A co-tenant on the GPU: bf16 matmuls for a fraction of the GPU's time, to slow an engine by a few percent.

The gate's GPU evidence needs a known, modest slowdown that is not the engine's fault, the way a
neighbour's job on a shared GPU looks. Runs until killed (or --seconds), printing what it did.

The pause after each burst comes from the burst's time measured alone at start-up (start it while
the engine is idle), not from each burst's wall time. The first version paced by wall time, which
includes waiting for the engine's time slice: under load its bursts looked long, its pauses grew,
and its real share of the GPU fell far below the duty asked for (on an H200: duty 0.05 slowed vLLM by
nothing measurable, 0.3 by 13-16%, 0.5 by 27-40%; gpu-runs/2026-12-02-h200-round3).
usage: python3 tools/gpu/cotenant.py --duty 0.05 [--size 4096] [--seconds 0]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duty", type=float, default=0.05, help="fraction of the GPU's time our kernels take")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: until killed)")
    a = p.parse_args()
    if not 0 < a.duty <= 1:
        p.error(f"--duty: expected a fraction in (0, 1], got {a.duty}")
    import torch

    x = torch.randn(a.size, a.size, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(a.size, a.size, device="cuda", dtype=torch.bfloat16)

    def burst() -> float:
        t0 = time.perf_counter()
        for _ in range(4):
            x @ y
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(5):  # warm-up: cuBLAS heuristics, clocks
        burst()
    alone = sorted(burst() for _ in range(21))[10]  # median burst, GPU otherwise idle
    pause = alone * (1 - a.duty) / a.duty
    print(f"cotenant: burst alone {alone * 1e3:.2f} ms, pause {pause * 1e3:.2f} ms (duty {a.duty})", flush=True)
    start = time.perf_counter()
    bursts, waited = 0, 0.0
    while not a.seconds or time.perf_counter() - start < a.seconds:
        waited += burst() - alone  # time our bursts spent queued behind the engine
        bursts += 1
        time.sleep(pause)
        if bursts % max(1, int(10 / (alone + pause))) == 0:
            print(f"cotenant: {bursts} bursts, mean queueing {waited / bursts * 1e3:.2f} ms per burst", flush=True)


if __name__ == "__main__":
    main()
