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
                on_done: Callable[[], object] | None = None) -> RunRecords:
    """Send every request on its schedule, within the concurrency cap, and gather the records.

    `on_done()` runs as each request finishes (progress display; it must be quick).
    """
    clock = time.perf_counter
    monitor = LoopLagMonitor()
    monitor.start()
    cpu0 = time.thread_time()
    start = clock()
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
