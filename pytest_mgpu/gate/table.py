"""Short aligned text tables: what a failing gate or assertion prints (no traceback)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_mgpu.gate import stats
from pytest_mgpu.gate.compare import MetricVerdict, Verdict


def number(x: float | None) -> str:
    """Enough digits to see a 1% change, no scientific notation for everyday magnitudes."""
    if x is None:
        return "-"
    if not math.isfinite(x):
        return str(x)
    ax = abs(x)
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def percent(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return "inf" if x > 0 else "-inf"
    return f"{x * 100:+.1f}%" if signed else f"{x * 100:.0f}%"


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [headers, *rows]]
    return "\n".join(lines)


def _row(m: MetricVerdict) -> list[str]:
    change = percent(m.change)
    if m.change is not None and m.change != 0:
        change += " worse" if m.worse else " better"
    p = "n/a" if m.p_value is None else f"{m.p_value:.3f}"
    return [f"{m.metric} [{m.unit}]", number(m.baseline), number(m.current), change,
            f"±{percent(m.tolerance, signed=False)}", p, m.outcome.value]


VERDICT_HEADERS = ("metric", "baseline", "now", "change", "tolerance", "p-value", "verdict")


def verdict_table(verdict: Verdict) -> str:
    """The comparison as a short table, then where the baseline is and what else changed."""
    lines = [f"pytest-mgpu: {verdict.outcome.value}: {verdict.label} on {verdict.fingerprint}",
             "vs pinned baseline:" if verdict.history else "",
             aligned(VERDICT_HEADERS, [_row(m) for m in verdict.metrics])]
    lines = [line for line in lines if line]
    if verdict.metrics:
        m = verdict.metrics[0]
        lines.append(f"samples: baseline {m.n_baseline}, now {m.n_current} (medians compared; "
                     f"regression = beyond tolerance and one-sided Mann-Whitney p <= {stats.ALPHA})")
    if verdict.baseline_path:
        lines.append(f"baseline: {verdict.baseline_path}")
    if verdict.version_changes:
        lines.append("versions changed since the baseline: " + "; ".join(verdict.version_changes))
    if verdict.history:
        lines.append(history_table(verdict))
    lines.extend(verdict.notes)
    return "\n".join(lines)


HISTORY_HEADERS = ("metric", "history", "now", "change", "band", "runs", "verdict")


def history_table(verdict: Verdict) -> str:
    """The same metrics against recent history: "vs history (n runs, band ±x%)", or how many runs are missing."""
    enough = [h for h in verdict.history if h.enough]
    short = [h for h in verdict.history if not h.enough]
    lines = []
    if enough:
        runs = max(h.runs for h in enough)
        bands = " / ".join(_band(h.band_rel) for h in enough)
        lines.append(f"vs history ({runs} runs, band {bands}):")
        table = []
        for h, m in ((h, _metric(verdict, h.metric)) for h in enough):
            now = m.current if m is not None else None
            table.append([f"{h.metric}", number(h.center), number(now), percent(h.change_rel),
                          _band(h.band_rel),
                          str(h.runs), "regression" if h.regressed else "pass"])
        lines.append(aligned(HISTORY_HEADERS, table))
    if short:
        runs, need = min(h.runs for h in short), short[0].need
        which = "" if not enough else f" for {', '.join(h.metric for h in short)}"
        lines.append(f"history: {runs} runs, need {need}{which} (until then the pinned baseline alone decides)")
    return "\n".join(lines)


def _band(band_rel: float | None) -> str:
    return f"±{band_rel * 100:.1f}%" if band_rel is not None and math.isfinite(band_rel) else "-"


def _metric(verdict: Verdict, name: str) -> MetricVerdict | None:
    return next((m for m in verdict.metrics if m.metric == name), None)
