"""Our numbers in pytest-benchmark's JSON format, so `pytest-benchmark compare FILE` can read them.

pytest-benchmark only understands "time, lower is better", so each repeat is stored as
GPU-seconds per output token (= devices allocated x wall seconds / output tokens, i.e.
1 / per-device output throughput): the per-device throughput the gate watches, in a form
where a slower engine, or one that leaves allocated devices idle, shows as a bigger time
(research note A1.6/A1.7). TPOT, TTFT and the verdict go in `extra_info`.
"""

from __future__ import annotations

import datetime
import platform
import statistics
from collections.abc import Sequence
from typing import Any

from pytest_mgpu.report.model import KEY_METRICS, Row, finite_or_none

UNIT = "GPU-seconds per output token"
_SOURCE_METRIC = "output_throughput_per_gpu"


def _quartile(data: list[float], upper: bool) -> float:
    """pytest-benchmark's quartiles: Wikipedia method 3 for odd counts, method 2 for even."""
    n = len(data)
    if n == 1:
        return data[0]
    if n % 2 == 0:
        return statistics.median(data[n // 2:] if upper else data[: n // 2])
    k, q = n // 4, n % 4
    if upper and q == 1:
        return 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
    if upper:
        return 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]
    return 0.25 * data[k - 1] + 0.75 * data[k] if q == 1 else 0.75 * data[k] + 0.25 * data[k + 1]


def stats_of(data: Sequence[float]) -> dict[str, Any]:
    values = sorted(data)
    mean = statistics.mean(values)
    stddev = statistics.stdev(values) if len(values) > 1 else 0.0
    q1, q3 = _quartile(values, False), _quartile(values, True)
    iqr = q3 - q1
    lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_out = sum(1 for v in values if v < lo or v > hi)
    sd_out = sum(1 for v in values if v < mean - stddev or v > mean + stddev)
    total = sum(values)
    return {
        "min": values[0], "max": values[-1], "mean": mean, "stddev": stddev, "rounds": len(values),
        "median": statistics.median(values), "iqr": iqr, "q1": q1, "q3": q3,
        "iqr_outliers": iqr_out, "stddev_outliers": sd_out, "outliers": f"{sd_out};{iqr_out}",
        "ld15iqr": next(v for v in values if v >= lo), "hd15iqr": [v for v in values if v <= hi][-1],
        "ops": len(values) / total if total else 0.0, "total": total, "iterations": 1, "data": list(data),
    }


def _benchmark(row: Row) -> dict[str, Any] | None:
    per_gpu = row.samples.get(_SOURCE_METRIC) or ((row.metrics[_SOURCE_METRIC],) if _SOURCE_METRIC in row.metrics
                                                  else ())
    data = [1.0 / x for x in per_gpu if finite_or_none(x) and x > 0]
    if not data:
        return None
    spec = getattr(row.result, "spec", {}) or {}
    name = row.nodeid.split("::", 1)[-1]
    return {
        "group": row.fingerprint,
        "name": f"{name}[{row.label}]",
        "fullname": f"{row.nodeid}[{row.label}]",
        "params": {k: spec.get(k) for k in ("engine", "tp", "pp", "n_devices") if k in spec},
        "param": row.label,
        "extra_info": {
            "unit": UNIT,
            "mgpu_fingerprint": row.fingerprint,
            "mgpu_verdict": row.outcome,
            **{name: finite_or_none(row.metrics.get(name)) for _, name in KEY_METRICS},
        },
        "options": {"disable_gc": False, "timer": f"pytest_mgpu ({UNIT})", "min_rounds": len(data),
                    "max_time": 0.0, "min_time": 0.0, "warmup": False},
        "stats": stats_of(data),
    }


def export(rows: Sequence[Row]) -> dict[str, Any]:
    try:
        from importlib.metadata import version

        bench_version = version("pytest-benchmark")
    except Exception:
        bench_version = "5.1.0"
    fingerprints = sorted({r.fingerprint for r in rows})
    return {
        "machine_info": {
            "node": platform.node(), "machine": platform.machine(), "processor": platform.processor(),
            "system": platform.system(), "release": platform.release(),
            "python_implementation": platform.python_implementation(),
            "python_version": platform.python_version(),
            "mgpu_fingerprint": fingerprints[0] if len(fingerprints) == 1 else fingerprints,
            "mgpu_hardware": {r.fingerprint: r.hardware for r in rows},
        },
        "commit_info": {},
        "benchmarks": [b for b in (_benchmark(r) for r in rows) if b is not None],
        "datetime": datetime.datetime.now(datetime.UTC).isoformat(),
        "version": bench_version,
    }
