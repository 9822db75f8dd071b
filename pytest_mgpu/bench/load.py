"""Load shapes: when each request leaves, and how many may be in flight.

Open loop: arrival gaps ~ Gamma(shape=burstiness, scale=1/(rate*burstiness)), accumulated and
then rescaled so the last arrival is at exactly num_prompts / rate (vLLM's normalisation: the
raw sum is 1-2% off, which moves throughput from seed to seed). Closed loop: at most
`max_concurrency` requests in flight. Both may be combined.

Concurrency slots are a FIFO queue of the times slots were freed, rather than a semaphore, so
each record knows when it was free to go: the gap to its send time is the client's own lag.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from pytest_mgpu.bench.client import stream_request
from pytest_mgpu.bench.health import ClientHealth, LoopLagMonitor
from pytest_mgpu.bench.records import RequestRecord


def arrival_offsets_s(n: int, request_rate: float, burstiness: float, seed: int) -> list[float]:
    """Send times (seconds after the start) of n requests, as vLLM's `get_request` plans them."""
    if math.isinf(request_rate):
        return [0.0] * n
    import numpy as np

    if math.isinf(burstiness):
        gaps = np.full(n, 1.0 / request_rate)
    else:
        rng = np.random.default_rng(seed)
        gaps = rng.gamma(shape=burstiness, scale=1.0 / (request_rate * burstiness), size=n)
    offsets = np.cumsum(gaps)
    if offsets[-1] > 0:
        offsets *= (n / request_rate) / offsets[-1]
    return [float(x) for x in offsets]


@dataclass(frozen=True)
class Prepared:
    """A request ready to go: the body is encoded before the clock starts."""

    body: bytes
    prompt_len: int
    output_len: int
    request_id: str


@dataclass(frozen=True)
class RunRecords:
    records: tuple[RequestRecord, ...]
    duration_s: float  # first dispatch to last response, as vLLM measures it
    health: ClientHealth


async def drive(session: aiohttp.ClientSession, url: str, requests: Sequence[Prepared],
                offsets_s: Sequence[float], max_concurrency: int | None, timeout_s: float,
                on_done: Callable[[], object] | None = None, start_s: float | None = None) -> RunRecords:
    """Send every request on its schedule, within the concurrency cap, and gather the records.

    `on_done()` runs as each request finishes (progress display; it must be quick).
    `start_s` (a `time.perf_counter` reading, system-wide on Linux) lets several client processes
    share one schedule; None starts now.
    """
    clock = time.perf_counter
    monitor = LoopLagMonitor()
    monitor.start()
    cpu0 = time.thread_time()
    start = clock() if start_s is None else start_s
    slots: asyncio.Queue[float] | None = None
    if max_concurrency is not None:
        slots = asyncio.Queue()
        for _ in range(max_concurrency):
            slots.put_nowait(start)

    async def one(i: int, req: Prepared, scheduled: float) -> RequestRecord:
        ready = scheduled
        if slots is not None:
            ready = max(scheduled, await slots.get())
        try:
            return await stream_request(session, url, req.body, index=i, scheduled_s=scheduled, ready_s=ready,
                                        prompt_len=req.prompt_len, output_len=req.output_len,
                                        timeout_s=timeout_s, request_id=req.request_id)
        finally:
            if slots is not None:
                slots.put_nowait(clock())
            if on_done is not None:
                on_done()

    tasks = []
    for i, (req, offset) in enumerate(zip(requests, offsets_s, strict=True)):
        scheduled = start + offset
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, req, scheduled)))
    records = tuple(await asyncio.gather(*tasks))
    duration = clock() - start
    cpu = time.thread_time() - cpu0
    lags = await monitor.stop()
    health = ClientHealth.measure(duration, cpu, [r.dispatch_lag_s for r in records], lags,
                                  [r.queue_s for r in records])
    return RunRecords(records, duration, health)


# --- several client processes -------------------------------------------------------------


def shares(n: int, processes: int, max_concurrency: int | None) -> list[tuple[list[int], int | None]]:
    """Request indices and concurrency cap of each process: request i goes to process i % processes,
    the cap is split as evenly as it goes (a process with no slot gets no requests)."""
    if max_concurrency is not None:
        processes = min(processes, max_concurrency)
    out = []
    for k in range(processes):
        cap = None if max_concurrency is None else max_concurrency // processes + (k < max_concurrency % processes)
        out.append((list(range(k, n, processes)), cap))
    return out


def _worker(url: str, requests: Sequence[Prepared], offsets_s: Sequence[float], max_concurrency: int | None,
            timeout_s: float, barrier: Any, start: Any, results: Any, k: int) -> None:
    from pytest_mgpu.bench.client import make_session

    async def run() -> RunRecords:
        async with make_session(max_concurrency) as session:
            barrier.wait()  # every process is up with its session ...
            barrier.wait()  # ... and the parent has set the shared start
            return await drive(session, url, requests, offsets_s, max_concurrency, timeout_s,
                               start_s=start.value)

    try:
        results.put((k, asyncio.run(run()), ""))
    except BaseException as exc:  # reported, never lost in a child
        results.put((k, None, f"{type(exc).__name__}: {exc}"))


def drive_processes(url: str, requests: Sequence[Prepared], offsets_s: Sequence[float],
                    max_concurrency: int | None, timeout_s: float, processes: int) -> RunRecords:
    """`drive` over several processes, each with its own event loop, session and share of the load.

    One schedule for all (a shared start on the system-wide clock), so the merged records are what
    one process would have recorded, without one event loop's lag in every timestamp. Health is
    the worst process's (each measures its own core).
    """
    import dataclasses
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads and a loop
    parts = shares(len(requests), processes, max_concurrency)
    barrier = ctx.Barrier(len(parts) + 1)
    start = ctx.Value("d", 0.0)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, name=f"mgpu-client-{k}", daemon=True,
                         args=(url, [requests[i] for i in idx], [offsets_s[i] for i in idx], cap, timeout_s,
                               barrier, start, results, k))
             for k, (idx, cap) in enumerate(parts)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)  # every process is up
        start.value = time.perf_counter() + 0.01
        barrier.wait(timeout=120)
        got = [results.get(timeout=timeout_s * max(len(requests), 1) + 120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    errors = [e for _, _, e in got if e]
    if errors:
        raise RuntimeError(f"a client process failed: {errors[0]}")
    records: list[RequestRecord] = []
    runs = {k: run for k, run, _ in got}
    for k, (idx, _) in enumerate(parts):
        run = runs[k]
        assert run is not None
        records += [dataclasses.replace(r, index=idx[r.index]) for r in run.records]
    records.sort(key=lambda r: r.index)
    return RunRecords(tuple(records), max(run.duration_s for run in runs.values() if run is not None),
                      dataclasses.replace(ClientHealth.worst(run.health for run in runs.values() if run is not None),
                                          processes=float(len(parts))))
