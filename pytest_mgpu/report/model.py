"""The session's measurements as plain rows: what every report (terminal, JSON, Markdown, plot) shows.

Extracting once keeps the renderers dumb: none of them reaches into a BenchResult.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pytest_mgpu.gate.compare import Outcome, Verdict
from pytest_mgpu.gate.measured import label, workload_dict
from pytest_mgpu.gate.table import number, percent
from pytest_mgpu.session import MgpuSession, Record

# The numbers every summary shows for a measurement (column title, metric).
KEY_METRICS: tuple[tuple[str, str], ...] = (
    ("tok/s/device", "output_throughput_per_gpu"),
    ("median TPOT ms", "median_tpot_ms"),
    ("p99 TTFT ms", "p99_ttft_ms"),
)


@dataclass(frozen=True)
class Row:
    nodeid: str
    label: str  # the configuration
    fingerprint: str
    hardware: dict[str, Any]
    metrics: dict[str, float]
    samples: dict[str, tuple[float, ...]]
    versions: dict[str, str]
    verdict: Verdict | None
    findings: tuple[Any, ...]  # pytest_mgpu.findings.Finding
    notes: tuple[str, ...]
    result: Any

    @property
    def outcome(self) -> str:
        return self.verdict.outcome.value if self.verdict else "measured"

    def baseline_of(self, metric: str) -> float | None:
        for m in self.verdict.metrics if self.verdict else ():
            if m.metric == metric:
                return m.baseline
        return None

    def verdict_text(self) -> str:
        """'regression (output_throughput_per_gpu -15.2%)', or just the outcome."""
        if self.verdict is None:
            return "measured"
        moved = [f"{m.metric} {percent(m.change)}" for m in self.verdict.metrics
                 if m.outcome in (Outcome.REGRESSION, Outcome.NOISE, Outcome.IMPROVEMENT)]
        text = self.outcome + (f" ({', '.join(moved)})" if moved else "")
        if self.verdict.version_changes:
            text += f" [{'; '.join(self.verdict.version_changes)}]"
        return text

    def key_numbers(self) -> list[str]:
        return [number(self.metrics.get(name)) for _, name in KEY_METRICS]


def _samples(result: Any) -> dict[str, tuple[float, ...]]:
    out: dict[str, tuple[float, ...]] = {}
    for name in getattr(result, "metrics", {}):
        try:
            out[name] = tuple(float(x) for x in result.samples(name))
        except (KeyError, ValueError, AttributeError, TypeError):
            continue
    return out


def row_of(record: Record) -> Row:
    result = record.result
    verdict = record.verdict if isinstance(record.verdict, Verdict) else None
    hardware = dict(getattr(result, "hardware", {}) or {})
    return Row(
        nodeid=record.nodeid,
        label=label(result),
        fingerprint=str(hardware.get("fingerprint", "?")),
        hardware=hardware,
        metrics={k: float(v) for k, v in getattr(result, "metrics", {}).items()},
        samples=_samples(result),
        versions={str(k): str(v) for k, v in (getattr(result, "versions", {}) or {}).items()},
        verdict=verdict,
        findings=tuple(getattr(result, "findings", ()) or ()),
        notes=tuple(record.notes),
        result=result,
    )


def rows(session: MgpuSession) -> list[Row]:
    return [row_of(r) for r in session.records]


def result_json(result: Any) -> Any:
    """The result's own serialisation (a dict, or JSON text), falling back to its parts."""
    to_json = getattr(result, "to_json", None)
    if callable(to_json):
        data = to_json()
        return json.loads(data) if isinstance(data, str) else data
    return {"metrics": dict(result.metrics), "spec": dict(result.spec),
            "workload": workload_dict(result.workload), "hardware": dict(result.hardware)}


def finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None
