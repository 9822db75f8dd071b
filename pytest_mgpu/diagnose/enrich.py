"""Numbers the diagnosis adds to a result: per-device busy share, energy, tokens per joule, the
TPOT floor and MBU. Added to a copy of the result (it is frozen), in the summary and in every
repeat: telemetry covers the whole measurement window, so each repeat carries the window's value;
MBU is computed per repeat from that repeat's TPOT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_mgpu import metrics as _metrics
from pytest_mgpu.diagnose.roofline import RooflineUnavailable, estimate
from pytest_mgpu.metrics import Direction, Metric

if TYPE_CHECKING:
    from pytest_mgpu.bench.results import BenchResult
    from pytest_mgpu.engines.spec import EngineServer
    from pytest_mgpu.hardware.topology import Topology
    from pytest_mgpu.telemetry import Telemetry


def _ensure(name: str, unit: str, description: str, direction: Direction = Direction.NONE) -> None:
    try:
        _metrics.get(name)
    except _metrics.UnknownMetricError:
        _metrics.register(Metric(name, unit, direction, description=description))


def busy_metric(position: int) -> str:
    """`device_busy_0` is the first device allocated to the engine (rank 0's), and so on."""
    name = f"device_busy_{position}"
    _ensure(name, "fraction", f"share of the window allocated device {position} worked for the engine")
    return name




def telemetry_metrics(telemetry: Telemetry | None) -> dict[str, float]:
    if telemetry is None:
        return {}
    out: dict[str, float] = {}
    busy = [d.busy for d in telemetry.devices]
    for pos, value in enumerate(busy):
        if value is not None:
            out[busy_metric(pos)] = round(value, 4)
    if busy and all(b is not None for b in busy):
        out["device_busy_min"] = round(min(b for b in busy if b is not None), 4)
    energy = telemetry.energy_j
    if energy is not None and telemetry.window_s > 0:
        out["energy_j"] = round(energy, 3)
        out["power_w_mean"] = round(energy / telemetry.window_s, 3)
    return out


def _with_efficiency(metrics: Mapping[str, float], extra: dict[str, float]) -> dict[str, float]:
    power = extra.get("power_w_mean")
    if power and metrics.get("output_throughput"):
        return {**extra, "tokens_per_joule": round(metrics["output_throughput"] / power, 6)}
    return extra


def _roofline(topology: Topology, server: EngineServer, metrics: Mapping[str, float],
              max_concurrency: int | None) -> dict[str, float]:
    tpot = metrics.get("median_tpot_ms")
    if not tpot:
        return {}
    try:
        roof = estimate(topology, server, metrics, max_concurrency)
    except RooflineUnavailable:
        return {}
    return {"tpot_floor_ms": round(roof.tpot_floor_ms, 6), "mbu": round(roof.mbu(tpot), 6)}


def _startup(server: EngineServer) -> dict[str, float]:
    """The engine's time to healthy (and compile-cache state), so reports and history keep them per result."""
    out = {}
    if server.startup_s is not None:
        out["engine_startup_s"] = float(server.startup_s)
    if server.compile_cache_warm is not None:
        out["engine_compile_cache_warm"] = float(server.compile_cache_warm)
    return out


def enrich(result: BenchResult, server: EngineServer, topology: Topology, telemetry: Telemetry | None) -> BenchResult:
    """A copy of `result` with telemetry and roofline metrics added (none replaced)."""
    window = telemetry_metrics(telemetry)
    concurrency = result.workload.max_concurrency

    def add(metrics: Mapping[str, float]) -> dict[str, float]:
        extra: dict[str, Any] = {**window, **_roofline(topology, server, metrics, concurrency), **_startup(server)}
        extra = _with_efficiency(metrics, extra)
        return {**metrics, **{k: v for k, v in extra.items() if k not in metrics}}

    return dataclasses.replace(result, metrics=add(result.metrics), repeats=tuple(add(r) for r in result.repeats))
