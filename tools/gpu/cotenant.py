"""A co-tenant on the GPU: bf16 matmuls for a fraction of wall time, to slow an engine by a few percent.

The gate's GPU evidence needs a known, modest slowdown that is not the engine's fault, the way a
neighbour's job on a shared GPU looks. Runs until killed (or --seconds), printing its achieved duty.
usage: python3 tools/gpu/cotenant.py --duty 0.05 [--size 4096] [--seconds 0]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duty", type=float, default=0.05, help="fraction of wall time the GPU runs our kernels")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: until killed)")
    a = p.parse_args()
    import torch

    x = torch.randn(a.size, a.size, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(a.size, a.size, device="cuda", dtype=torch.bfloat16)
    busy = idle = 0.0
    start = time.perf_counter()
    while not a.seconds or time.perf_counter() - start < a.seconds:
        t0 = time.perf_counter()
        for _ in range(4):
            x @ y
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        busy += t1 - t0
        pause = (t1 - t0) * (1 - a.duty) / a.duty
        time.sleep(pause)
        idle += pause
        if busy + idle > 10:
            print(f"cotenant duty {busy / (busy + idle):.3f}", flush=True)
            busy = idle = 0.0


if __name__ == "__main__":
    main()
