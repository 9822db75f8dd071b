"""Verdicts: one measurement against one stored baseline entry, metric by metric.

A metric's verdict:
- `regression`: the median moved the bad way beyond the tolerance AND the one-sided rank
  test is significant (see `stats` for why both, and the defaults);
- `noise`: beyond the tolerance the bad way, but not significant: reported, not failed;
- `improvement`: beyond the tolerance the good way (the hint says to refresh the baseline);
- `pass`: within the tolerance;
- `new`: nothing to compare with (no baseline, or no finite samples on a side).
A check's verdict is the worst of its metrics' (regression > noise > improvement > pass),
`new` when there was no baseline entry, `recorded` under --mgpu-update-baselines.

Beside the pinned baseline, each metric is also compared with the series' recent history
(`HistoryVerdict`, from `pytest_mgpu.history.gate`). Either comparison can fail the test: a
regression against the pinned baseline, or a change beyond the metric's own noise band with
enough history (`combine`). Too little history only says so.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_mgpu import metrics as _metrics
from pytest_mgpu.gate import stats
from pytest_mgpu.gate.store import Entry

UPDATE_HINT = "refresh the baseline with --mgpu-update-baselines"


class Outcome(enum.Enum):
    PASS = "pass"
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    NOISE = "noise"
    NEW = "new"
    RECORDED = "recorded"

    @property
    def failed(self) -> bool:
        return self is Outcome.REGRESSION


# Worst first: the check's outcome is the first of these that any metric has.
_SEVERITY = (Outcome.REGRESSION, Outcome.NOISE, Outcome.IMPROVEMENT, Outcome.NEW, Outcome.PASS)


@dataclass(frozen=True)
class MetricVerdict:
    metric: str
    unit: str
    direction: str  # "higher" / "lower" is better
    baseline: float | None  # median of the baseline samples
    current: float | None  # median of the new samples
    change: float | None  # raw relative change (now - baseline) / |baseline|
    tolerance: float
    p_value: float | None  # one-sided, "now is worse"; None when untestable
    outcome: Outcome
    n_baseline: int = 0
    n_current: int = 0

    @property
    def worse(self) -> bool:
        """Whether the change points the bad way (whatever its size)."""
        if self.change is None:
            return False
        return self.change < 0 if self.direction == "higher" else self.change > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "unit": self.unit,
            "direction": self.direction,
            "baseline": _num(self.baseline),
            "current": _num(self.current),
            "change": _num(self.change),
            "tolerance": self.tolerance,
            "p_value": _num(self.p_value),
            "outcome": self.outcome.value,
            "n_baseline": self.n_baseline,
            "n_current": self.n_current,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricVerdict:
        return cls(metric=str(data["metric"]), unit=str(data["unit"]), direction=str(data["direction"]),
                   baseline=_unnum(data.get("baseline")), current=_unnum(data.get("current")),
                   change=_unnum(data.get("change")), tolerance=float(data["tolerance"]),
                   p_value=_unnum(data.get("p_value")), outcome=Outcome(data["outcome"]),
                   n_baseline=int(data.get("n_baseline", 0)), n_current=int(data.get("n_current", 0)))


@dataclass(frozen=True)
class HistoryVerdict:
    """One metric against the series' recent runs (see pytest_mgpu.history.noise for the rule)."""

    metric: str
    enough: bool  # enough runs for the noise-aware rule
    runs: int  # earlier runs used
    need: int  # runs the rule needs
    center: float | None  # the recent runs' typical median
    band_rel: float | None  # the noise band, relative (0.02 = ±2%)
    change_rel: float | None  # now vs center, raw relative change
    regressed: bool  # beyond the band the bad way, with enough history
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "enough": self.enough, "runs": self.runs, "need": self.need,
                "center": _num(self.center), "band_rel": _num(self.band_rel), "change_rel": _num(self.change_rel),
                "regressed": self.regressed, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HistoryVerdict:
        return cls(metric=str(data["metric"]), enough=bool(data["enough"]), runs=int(data["runs"]),
                   need=int(data["need"]), center=_unnum(data.get("center")), band_rel=_unnum(data.get("band_rel")),
                   change_rel=_unnum(data.get("change_rel")), regressed=bool(data["regressed"]),
                   reason=str(data.get("reason", "")))


@dataclass(frozen=True)
class Verdict:
    """What `mgpu_baseline.check` concluded for one result."""

    outcome: Outcome
    label: str  # the configuration, e.g. "vllm tp=2 pp=1 devices=2"
    fingerprint: str
    metrics: tuple[MetricVerdict, ...] = ()
    baseline_path: str | None = None
    version_changes: tuple[str, ...] = ()  # "vllm 0.31.0 -> 0.32.0"
    notes: tuple[str, ...] = field(default=())
    history: tuple[HistoryVerdict, ...] = ()  # the same metrics against recent history

    @property
    def failed(self) -> bool:
        return self.outcome.failed

    @property
    def history_regressed(self) -> tuple[HistoryVerdict, ...]:
        return tuple(h for h in self.history if h.regressed)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "label": self.label,
            "fingerprint": self.fingerprint,
            "metrics": [m.to_json() for m in self.metrics],
            "baseline_path": self.baseline_path,
            "version_changes": list(self.version_changes),
            "notes": list(self.notes),
            "history": [h.to_json() for h in self.history],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """The inverse of `to_json` (xdist workers send their verdicts to the controller this way)."""
        return cls(outcome=Outcome(data["outcome"]), label=str(data["label"]), fingerprint=str(data["fingerprint"]),
                   metrics=tuple(MetricVerdict.from_json(m) for m in data.get("metrics", ())),
                   baseline_path=data.get("baseline_path"),
                   version_changes=tuple(data.get("version_changes", ())), notes=tuple(data.get("notes", ())),
                   history=tuple(HistoryVerdict.from_json(h) for h in data.get("history", ())))


def _unnum(x: Any) -> float | None:
    return None if x is None else float(x)  # float("inf") / float("nan") read back what _num wrote


def _num(x: float | None) -> float | str | None:
    if x is None or math.isfinite(x):
        return x
    return repr(x)


def resolve_tolerances(
    names: Iterable[str], option: float | None, override: float | Mapping[str, float] | None
) -> dict[str, float]:
    """Per metric: `check(tolerance=)` beats `--mgpu-tolerance` beats the registry default."""
    result: dict[str, float] = {}
    for name in names:
        tol = _metrics.get(name).tolerance if option is None else option
        if isinstance(override, Mapping):
            tol = override.get(name, tol)
        elif override is not None:
            tol = override
        if not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"tolerance for {name} must be a relative change >= 0 (0.1 = 10%), got {tol!r}")
        result[name] = float(tol)
    return result


def judge_metric(
    name: str,
    baseline: tuple[float, ...] | None,
    current: tuple[float, ...],
    tolerance: float,
    alpha: float = stats.ALPHA,
) -> MetricVerdict:
    metric = _metrics.judged(name)
    base, now = stats.finite(baseline or ()), stats.finite(current)

    def verdict(before: float | None, after: float | None, rel: float | None, p: float | None,
                outcome: Outcome) -> MetricVerdict:
        return MetricVerdict(name, metric.unit, metric.direction.value, before, after, rel, tolerance, p,
                             outcome, len(base), len(now))

    if not base or not now:
        return verdict(stats.median(base) if base else None, stats.median(now) if now else None,
                       None, None, Outcome.NEW)
    moved = stats.change(base, now, metric.direction)
    if moved.improvement < -tolerance:
        outcome = Outcome.REGRESSION if stats.significant(moved.p_worse, alpha) else Outcome.NOISE
    elif moved.improvement > tolerance:
        outcome = Outcome.IMPROVEMENT
    else:
        outcome = Outcome.PASS
    return verdict(moved.baseline_median, moved.current_median, moved.relative, moved.p_worse, outcome)


def overall(outcomes: Iterable[Outcome]) -> Outcome:
    seen = set(outcomes)
    return next((o for o in _SEVERITY if o in seen), Outcome.PASS)


def version_changes(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[str, ...]:
    """Engine/library versions that differ between the baseline and now (shown, never keyed)."""
    changed = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            changed.append(f"{name} {old or '(none)'} -> {new or '(none)'}")
    return tuple(changed)


def compare_entries(
    baseline: Entry,
    current: Entry,
    names: Iterable[str],
    tolerances: Mapping[str, float],
    alpha: float = stats.ALPHA,
) -> tuple[MetricVerdict, ...]:
    return tuple(
        judge_metric(n, baseline.samples.get(n), current.samples.get(n, ()), tolerances[n], alpha) for n in names
    )


def notes_for(outcome: Outcome) -> tuple[str, ...]:
    if outcome is Outcome.IMPROVEMENT:
        return (f"faster than the baseline beyond tolerance: {UPDATE_HINT}",)
    if outcome is Outcome.NOISE:
        return ("moved beyond tolerance the bad way, but the samples overlap (not significant): "
                "re-run, or raise --mgpu-repeats",)
    return ()


def combine(pinned: Outcome, history: Iterable[HistoryVerdict]) -> Outcome:
    """The check's outcome: the pinned one, made a regression when history (with enough runs) says so."""
    if pinned is not Outcome.RECORDED and any(h.regressed for h in history):
        return Outcome.REGRESSION
    return pinned


def history_notes(history: Iterable[HistoryVerdict]) -> tuple[str, ...]:
    regressed = [h for h in history if h.regressed]
    if not regressed:
        return ()
    moved = ", ".join(f"{h.metric} {_pct(h.change_rel)} (band ±{_pct(h.band_rel, signed=False)}, {h.runs} runs)"
                      for h in regressed)
    return (f"regressed vs history: {moved}; if the change is intended, it becomes the new normal after "
            "a few runs (or prune the series with `python -m pytest_mgpu history prune`)",)


def _pct(x: float | None, signed: bool = True) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x * 100:+.1f}%" if signed else f"{x * 100:.1f}%"
