"""The metric registry: every metric's unit, direction and gating policy, declared once.

Direction is a first-class, tested property: TensorRT-LLM's perf gate once could not fail
because TPOT was treated as higher-is-better. Everything that compares numbers (baseline
gate, `assert_better`, `assert_slo`, reports) asks this registry instead of guessing from
a name.

Gated by default: per-device output throughput and median TPOT, the two numbers a
regression gate can hold steady with three repeats. Tails (p90/p99) move with a single
slow request, so they are informational unless a test names them in `check(metrics=...)`,
and then they get a looser default tolerance.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass


class Direction(enum.Enum):
    HIGHER = "higher"  # higher is better (throughput)
    LOWER = "lower"  # lower is better (latency)
    NONE = "none"  # bookkeeping (counts, durations): never judged

    def improvement(self, before: float, after: float) -> float:
        """Relative change oriented so that positive means better (0.1 = 10% better)."""
        if before == 0 or self is Direction.NONE:
            return 0.0
        change = (after - before) / abs(before)
        return change if self is Direction.HIGHER else -change

    def satisfies(self, value: float, limit: float) -> bool:
        """Whether `value` is at least as good as `limit` (an SLO bound, or a required level)."""
        if self is Direction.HIGHER:
            return value >= limit
        if self is Direction.LOWER:
            return value <= limit
        raise ValueError("a metric without a direction cannot be held to a limit")

    @property
    def bound_word(self) -> str:
        """How a limit on such a metric reads: '>=' for throughput, '<=' for latency."""
        return {"higher": ">=", "lower": "<=", "none": "?"}[self.value]


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    direction: Direction
    gated: bool = False  # compared against the baseline by default
    tolerance: float = 0.10  # relative change tolerated before a verdict (0.10 = 10%)
    description: str = ""


class UnknownMetricError(KeyError):
    """A metric name the registry does not know (a typo in a test, usually)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    if metric.name in _REGISTRY:
        raise ValueError(f"metric {metric.name!r} registered twice")
    if not 0 < metric.tolerance < 10:
        raise ValueError(f"metric {metric.name!r}: tolerance {metric.tolerance} is not a relative change")
    _REGISTRY[metric.name] = metric
    return metric


def get(name: str) -> Metric:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownMetricError(f"unknown metric {name!r}; known metrics: {known}") from None


def judged(name: str) -> Metric:
    """The metric, insisting that it has a direction (the ones a gate or an assertion can judge)."""
    metric = get(name)
    if metric.direction is Direction.NONE:
        judgeable = ", ".join(sorted(m.name for m in _REGISTRY.values() if m.direction is not Direction.NONE))
        raise UnknownMetricError(
            f"metric {name!r} has no better direction (it is bookkeeping), so it cannot be compared; "
            f"use one of: {judgeable}"
        )
    return metric


def all_metrics() -> Iterator[Metric]:
    return iter(_REGISTRY.values())


def gated_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in _REGISTRY.values() if m.gated)


_H, _L, _N = Direction.HIGHER, Direction.LOWER, Direction.NONE

# vLLM `bench serve` names, with its definitions (TPOT = (E2EL - TTFT) / (output tokens - 1);
# ITL = gaps between streamed content chunks, pooled over requests).
for _name, _unit, _dir in (
    ("completed", "requests", _N),
    ("failed", "requests", _N),
    ("duration", "s", _N),
    ("total_input_tokens", "tokens", _N),
    ("total_output_tokens", "tokens", _N),
    ("request_throughput", "req/s", _H),
    ("output_throughput", "tok/s", _H),
    ("total_token_throughput", "tok/s", _H),
    ("request_goodput", "req/s", _H),
    ("max_concurrent_requests", "requests", _N),
    ("max_output_tokens_per_s", "tok/s", _N),  # vLLM's peak over one-second buckets
    ("output_len_mismatches", "requests", _N),  # usage.completion_tokens != tokens asked for
    ("usage_missing", "requests", _N),  # streams without a usage chunk (tokens counted from events)
):
    register(Metric(_name, _unit, _dir))

# Per-device normalisation: divided by the devices allocated to the engine, not by tp*pp,
# so an engine that leaves devices idle pays for them.
register(Metric("output_throughput_per_gpu", "tok/s/device", _H, gated=True, tolerance=0.10))
register(Metric("total_token_throughput_per_gpu", "tok/s/device", _H))
register(Metric("request_throughput_per_gpu", "req/s/device", _H))
register(Metric("n_devices", "devices", _N))

_LATENCIES = {
    "ttft": "time to first token",
    "tpot": "time per output token after the first",
    "itl": "inter-token (chunk) latency",
    "e2el": "end-to-end request latency",
}
for _lat, _desc in _LATENCIES.items():
    for _stat in ("mean", "median", "std", "p90", "p99"):
        register(
            Metric(
                f"{_stat}_{_lat}_ms",
                "ms",
                _N if _stat == "std" else _L,
                gated=(_stat == "median" and _lat == "tpot"),
                tolerance=0.10 if _stat in ("mean", "median") else 0.25,
                description=f"{_stat} {_desc}",
            )
        )

register(Metric("interactivity", "tok/s/user", _H, description="1000 / median TPOT"))
register(Metric("tokens_per_joule", "tok/J", _H))
register(Metric("mbu", "fraction", _H, description="memory-bandwidth utilisation"))
# Telemetry and roofline (filled in by pytest_mgpu.diagnose.enrich); device_busy_<n> are registered per device.
register(Metric("device_busy_min", "fraction", _N,
                description="the least busy allocated device's share of the window (idle devices: ~0)"))
register(Metric("energy_j", "J", _N, description="energy of the allocated GPUs over the measurement window (NVML)"))
register(Metric("power_w_mean", "W", _N, description="mean power of the allocated GPUs over the measurement window"))
register(Metric("tpot_floor_ms", "ms", _N, description="memory-bandwidth floor of TPOT for this model, TP/PP and GPU"))
# Engine start-up (from the pool, added by pytest_mgpu.diagnose.enrich): the start of the engine this result was
# measured on. Not gated by default (it swings with page cache and compile cache); a test gates it by name:
# `mgpu_baseline.check(result, metrics=["engine_startup_s"])` or `assert_slo(result, engine_startup_s=300)`.
register(Metric("engine_startup_s", "s", _L, tolerance=0.50,
                description="engine spawn to healthy (the same number `vllm bench sweep startup` measures)"))
register(Metric("engine_compile_cache_warm", "bool", _N,
                description="1 when vLLM loaded its torch.compile cache, 0 when it compiled afresh (from the log)"))
