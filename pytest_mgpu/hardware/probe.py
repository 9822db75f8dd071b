"""Measured links: NCCL all-reduce bus bandwidth per GPU pair (what NVML cannot tell).

NVML reports what the links are; ACS, IOMMU settings or driver policy decide what they
deliver. Each pair runs in two spawned processes with torch.distributed (spawned, so the
caller never initialises CUDA). Bus bandwidth follows nccl-tests: algbw * 2(n-1)/n, which
for a pair equals the algorithm bandwidth.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import socket
import time
from dataclasses import dataclass
from typing import Any

from pytest_mgpu.hardware.errors import HardwareError
from pytest_mgpu.hardware.topology import Topology

DEFAULT_SIZE_BYTES = 256 * 2**20
DEFAULT_ITERATIONS = 20


@dataclass(frozen=True)
class PairBandwidth:
    a: int
    b: int
    link: str  # the link class NVML reports for the pair, e.g. NV18 or SYS
    busbw_bytes_per_s: float
    size_bytes: int
    iterations: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def cannot_probe(topology: Topology) -> str | None:
    """Why the probe cannot run here, or None when it can."""
    if topology.kind != "cuda":
        return f"this machine has no CUDA GPU ({topology.extra.get('why_cpu', 'CPU mode')})"
    if topology.source != "nvml":
        return f"the topology comes from {topology.source}, not from this machine's GPUs"
    if topology.n_devices < 2:
        return f"it needs at least 2 GPUs; found {topology.describe()}"
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        return "PyTorch is not installed (pip install torch)"
    if not torch.cuda.is_available():
        return "this PyTorch cannot use CUDA (a CPU-only build?)"
    if not dist.is_available() or not dist.is_nccl_available():
        return "this PyTorch has no NCCL backend"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _worker(rank: int, port: int, visible: str | None, size_bytes: int, iterations: int, backend: str,
            results: Any) -> None:
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
    import torch
    import torch.distributed as dist

    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        x = torch.zeros(size_bytes // 4, dtype=torch.float32, device=device)
        for _ in range(3):
            dist.all_reduce(x)
        sync()
        dist.barrier()
        start = time.perf_counter()
        for _ in range(iterations):
            dist.all_reduce(x)
        sync()
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64, device=device)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        if rank == 0:
            results.put(float(elapsed.item()))
    finally:
        dist.destroy_process_group()


def measure_pair(
    topology: Topology,
    a: int,
    b: int,
    *,
    size_bytes: int = DEFAULT_SIZE_BYTES,
    iterations: int = DEFAULT_ITERATIONS,
    backend: str = "nccl",
    timeout_s: float = 120.0,
) -> PairBandwidth:
    """All-reduce bus bandwidth between devices a and b (`backend="gloo"` runs on CPU, for tests)."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    visible = None
    if backend == "nccl":
        visible = ",".join(topology.devices[i].uuid or str(i) for i in (a, b))
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(rank, port, visible, size_bytes, iterations, backend, results))
             for rank in range(2)]
    for p in procs:
        p.start()
    try:
        elapsed = results.get(timeout=timeout_s)
    except queue.Empty:
        codes = [p.exitcode for p in procs]
        raise HardwareError(
            f"the all-reduce probe of devices {a} and {b} gave no result within {timeout_s:g} s "
            f"(worker exit codes {codes}); run with NCCL_DEBUG=INFO to see why"
        ) from None
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    busbw = size_bytes * iterations / elapsed  # algbw; * 2(n-1)/n == 1 for n == 2
    return PairBandwidth(a, b, topology.link_label(a, b), busbw, size_bytes, iterations)


def probe_pairs(topology: Topology, **kwargs: Any) -> list[PairBandwidth]:
    """Every pair of devices, one after the other (concurrent pairs would share links)."""
    return [measure_pair(topology, a, b, **kwargs) for a, b in itertools.combinations(range(topology.n_devices), 2)]
