"""`assert_better` and `assert_slo`: comparisons that know which way is better.

Both judge medians (the result's summary) and take the direction from the metric registry,
so `assert_better(tp2, tp1, "median_tpot_ms")` means "tp2's TPOT is lower". Failures are
short tables through `pytest.fail(..., pytrace=False)`; a metric name the registry does not
know, or one the result lacks, is an error that lists the names it does know.
"""

from __future__ import annotations

import math

import pytest

from pytest_mgpu import metrics as _metrics
from pytest_mgpu.gate.measured import Measured, label
from pytest_mgpu.gate.table import aligned, number
from pytest_mgpu.metrics import Direction


def _value(result: Measured | float, metric: str) -> float:
    if isinstance(result, (int, float)):
        return float(result)
    try:
        return float(result.metrics[metric])
    except KeyError:
        have = ", ".join(sorted(result.metrics))
        raise _metrics.UnknownMetricError(f"the result has no metric {metric!r}; it has: {have}") from None


def _describe(result: Measured | float) -> str:
    return "(a number)" if isinstance(result, (int, float)) else label(result)


def _samples(result: Measured | float, metric: str) -> str:
    if isinstance(result, (int, float)):
        return "-"
    try:
        return ", ".join(number(x) for x in result.samples(metric))
    except (KeyError, ValueError):
        return "-"


def assert_better(a: Measured | float, b: Measured | float, metric: str, by: float = 1.0) -> None:
    """Assert that `a` beats `b` on `metric` by the factor `by`.

    Higher-is-better: a >= b * by. Lower-is-better: a <= b / by. `by=1.0` means "at least as good".
    """
    __tracebackhide__ = True
    m = _metrics.judged(metric)
    if not (math.isfinite(by) and by > 0):
        raise ValueError(f"assert_better(by=...) must be a positive factor such as 1.0 or 1.2, got {by!r}")
    va, vb = _value(a, metric), _value(b, metric)
    needed = vb * by if m.direction is Direction.HIGHER else vb / by
    if m.direction.satisfies(va, needed):
        return
    ratio = "n/a" if vb == 0 else f"{va / vb:.3f}"
    rows = [["a", _describe(a), number(va), _samples(a, metric)],
            ["b", _describe(b), number(vb), _samples(b, metric)]]
    op = "x" if m.direction is Direction.HIGHER else "/"
    pytest.fail(
        f"pytest-mgpu: assert_better failed on {metric} [{m.unit}] ({m.direction.value} is better)\n"
        + aligned(("", "configuration", "median", "samples"), rows)
        + f"\nneeded: a {m.direction.bound_word} {number(needed)} (b {op} {by:g}); got a/b = {ratio}",
        pytrace=False,
    )


def assert_slo(result: Measured, **limits: float) -> None:
    """Assert service-level objectives, e.g. `assert_slo(r, p99_ttft_ms=2000, p99_tpot_ms=200)`.

    A latency limit is a ceiling, a throughput limit a floor (direction from the registry).
    """
    __tracebackhide__ = True
    if not limits:
        raise ValueError("assert_slo() needs at least one limit, e.g. assert_slo(result, p99_ttft_ms=2000)")
    checked = []
    for name, limit in limits.items():
        m = _metrics.judged(name)
        value = _value(result, name)
        checked.append((name, m, float(limit), value, m.direction.satisfies(value, float(limit))))
    if all(ok for *_, ok in checked):
        return
    rows = [[f"{name} [{m.unit}]", f"{m.direction.bound_word} {number(limit)}", number(value),
             "ok" if ok else "VIOLATED"] for name, m, limit, value, ok in checked]
    pytest.fail(f"pytest-mgpu: SLO violated by {_describe(result)}\n"
                + aligned(("metric", "limit", "now", "status"), rows), pytrace=False)
