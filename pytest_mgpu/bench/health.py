"""Did the client keep up? Dispatch lag, event-loop lag and the client's CPU use.

A load generator that cannot keep up sets the pace itself: requests leave late, chunks sit in
the socket buffer, and the "engine" numbers measure the client. These signals catch it, and
`assess` turns them into findings instead of a silent bad number:

- "client-bound" (warning): typical timings are off or the client was away long enough to
  move throughput and medians: its core was saturated, the median loop or dispatch lag is
  large against the median TPOT, or the loop stood still for >= 5% of the run (on a 2-core
  box, vLLM's EngineCore floating onto the client's core stalled it for 4 s at a time).
- "client-jitter" (info): only the tails are suspect, so p99 ITL/TPOT may include client delay
  while medians and throughput do not. The p99 loop lag counts beyond the timer's own granularity
  (asyncio wakes a 5 ms ticker up to ~1 ms late on an idle loop: epoll rounds to whole ms), and
  must exceed both half the median TPOT and a quarter of the p99 ITL it could lengthen (a lag
  lengthens a reported gap by at most itself). Calibrated on healthy hosts: a 16-core H200 at
  concurrency 16/64 showed p99 lag 2.9-4.0 ms at TPOT ~5-6 ms, which the TPOT-only limit (2.5-3.1 ms)
  flagged although throughput and TPOT matched vLLM's client; H100 runs showed 1.1-2.5 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from pytest_mgpu.findings import Finding, Severity

LOOP_TICK_S = 0.005
STALL_FLOOR_S = 0.001  # timer granularity: loop lag below this is not the client being away


@dataclass(frozen=True)
class HealthLimits:
    """When the client, not the engine, set the pace."""

    max_cpu_util: float = 0.90  # busy fraction of the client's one core
    max_lag_vs_tpot: float = 0.25  # loop or dispatch lag / median TPOT
    min_lag_ms: float = 2.0  # lags below this never count (timer granularity)
    max_tail_lag_vs_p99_itl: float = 0.25  # client-jitter: p99 loop lag beyond the timer floor / p99 ITL
    max_stalled_fraction: float = 0.05  # share of the run the event loop stood still


@dataclass(frozen=True)
class ClientHealth:
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the client's event-loop thread
    cpu_util: float = 0.0  # cpu_s / wall_s; 1.0 = one core saturated
    dispatch_lag_p50_ms: float = 0.0  # send time - time the request was free to go
    dispatch_lag_p99_ms: float = 0.0
    dispatch_lag_max_ms: float = 0.0
    loop_lag_p50_ms: float = 0.0  # how late a 5 ms ticker woke up
    loop_lag_p99_ms: float = 0.0
    loop_lag_max_ms: float = 0.0
    queue_p99_ms: float = 0.0  # waiting for a concurrency slot (closed loop; expected)
    loop_stalled_fraction: float = 0.0  # sum of loop lag beyond 1 ms / wall: how long the client was away
    processes: float = 1.0  # client processes that drove the load (--mgpu-client-processes)

    @classmethod
    def measure(cls, wall_s: float, cpu_s: float, dispatch_lags_s: Sequence[float],
                loop_lags_s: Sequence[float], queues_s: Sequence[float]) -> ClientHealth:
        import numpy as np

        def ms(values: Sequence[float], q: float) -> float:
            return float(np.percentile(values, q)) * 1000 if len(values) else 0.0

        stalled_s = sum(max(lag - STALL_FLOOR_S, 0.0) for lag in loop_lags_s)
        return cls(wall_s, cpu_s, cpu_s / wall_s if wall_s > 0 else 0.0,
                   ms(dispatch_lags_s, 50), ms(dispatch_lags_s, 99), ms(dispatch_lags_s, 100),
                   ms(loop_lags_s, 50), ms(loop_lags_s, 99), ms(loop_lags_s, 100), ms(queues_s, 99),
                   stalled_s / wall_s if wall_s > 0 else 0.0)

    @classmethod
    def worst(cls, items: Iterable[ClientHealth]) -> ClientHealth:
        """The worst value of every field over several runs (repeats)."""
        items = list(items)
        if not items:
            return cls()
        return cls(**{f.name: max(getattr(h, f.name) for h in items) for f in fields(cls)})

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClientHealth:
        names = {f.name for f in fields(cls)}
        return cls(**{k: float(v) for k, v in data.items() if k in names})


class LoopLagMonitor:
    """A ticker task: how late the event loop runs a callback that is due now."""

    def __init__(self, tick_s: float = LOOP_TICK_S) -> None:
        self.tick_s = tick_s
        self.lags_s: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.lags_s

    async def _run(self) -> None:
        append, tick, clock = self.lags_s.append, self.tick_s, time.perf_counter
        while True:
            due = clock() + tick
            await asyncio.sleep(tick)
            append(max(clock() - due, 0.0))


def assess(health: ClientHealth, metrics: Mapping[str, float],
           limits: HealthLimits = HealthLimits()) -> tuple[Finding, ...]:
    """Findings when the client, not the engine, may have set the pace (or blurred the tails)."""
    tpot_ms = metrics.get("median_tpot_ms", 0.0)
    bound = max(limits.min_lag_ms, limits.max_lag_vs_tpot * tpot_ms)
    vs = f"limit {bound:.1f} ms"
    if tpot_ms:
        vs += f", {limits.max_lag_vs_tpot:.0%} of median TPOT {tpot_ms:.1f} ms"
    bound_reasons = []
    if health.cpu_util >= limits.max_cpu_util:
        bound_reasons.append(f"the client used {health.cpu_util:.0%} of its core")
    if health.loop_stalled_fraction >= limits.max_stalled_fraction:
        bound_reasons.append(f"its event loop stood still for {health.loop_stalled_fraction:.0%} of the run "
                             f"(longest {health.loop_lag_max_ms:.0f} ms)")
    for name, lag_ms in (("event-loop", health.loop_lag_p50_ms), ("dispatch", health.dispatch_lag_p50_ms)):
        if lag_ms > bound:
            bound_reasons.append(f"median {name} lag was {lag_ms:.1f} ms ({vs})")
    evidence = {"client": health.to_json(), "median_tpot_ms": tpot_ms}
    if bound_reasons:
        return (Finding(
            "client-bound", Severity.WARNING,
            "the load generator may have set the pace, not the engine: " + "; ".join(bound_reasons)
            + ". Give the client a core of its own (no engine process on it), lower the load, "
            "or split it over several client processes.", evidence),)
    # Only the event loop's lag can blur token timestamps (ITL, TPOT); a late dispatch delays when a
    # request starts, and its timings are taken from its actual send. (A healthy H100 run at concurrency
    # 64 had p99 dispatch lag 7-9 ms with event-loop lag under 3.3 ms and throughput equal to vLLM's client.)
    p99_itl_ms = metrics.get("p99_itl_ms", 0.0)
    tail_bound = max(limits.min_lag_ms, 2 * limits.max_lag_vs_tpot * tpot_ms,
                     limits.max_tail_lag_vs_p99_itl * p99_itl_ms)
    tail_lag_ms = health.loop_lag_p99_ms - STALL_FLOOR_S * 1000  # beyond the timer's own granularity
    tails = [f"p99 event-loop lag was {health.loop_lag_p99_ms:.1f} ms ({tail_lag_ms:.1f} ms beyond the "
             f"{STALL_FLOOR_S * 1000:g} ms timer granularity)"] if tail_lag_ms > tail_bound else []
    if tails:
        return (Finding(
            "client-jitter", Severity.INFO,
            "the client was briefly delayed at times (" + "; ".join(tails) + f"; limit {tail_bound:.1f} ms): "
            "p99 ITL and TPOT may include client delay; medians and throughput are not affected.", evidence),)
    return ()
