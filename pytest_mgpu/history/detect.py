"""Change points over every series in the store, each named with what changed at that run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_mgpu import metrics as _metrics
from pytest_mgpu.gate.compare import version_changes
from pytest_mgpu.history.store import HistoryStore, Series, Stored


@dataclass(frozen=True)
class Found:
    series: Series
    metric: str
    run: int  # 1-based index in the series of the first run after the change
    before: float
    after: float
    change_rel: float
    kind: str
    at: Stored  # the first run after the change
    changed: tuple[str, ...]  # versions / commit that differ from the run before

    def to_json(self) -> dict[str, Any]:
        return {"test": self.series.nodeid, "spec": self.series.spec_label, "fingerprint": self.series.fingerprint,
                "spec_key": self.series.spec_key, "metric": self.metric, "run": self.run, "before": self.before,
                "after": self.after, "change": self.change_rel, "kind": self.kind,
                "recorded_utc": self.at.row.recorded_utc, "git_commit": self.at.git_commit,
                "ci_run_id": self.at.ci_run_id, "changed": list(self.changed)}


def detect(store: HistoryStore, metrics: Sequence[str] | None = None) -> list[Found]:
    from pytest_mgpu.history.changepoint import detect_changes

    names = tuple(metrics or _metrics.gated_metrics())
    found: list[Found] = []
    for series in store.series():
        stored = store.measurements(fingerprint=series.fingerprint, nodeid=series.nodeid, spec_key=series.spec_key)
        for name in names:
            runs = [s for s in stored if name in s.row.summary]
            higher = _metrics.judged(name).direction.value == "higher"
            for cp in detect_changes([s.row.summary[name] for s in runs], higher_is_better=higher):
                at, prev = runs[cp.index], runs[cp.index - 1] if cp.index > 0 else None
                found.append(Found(series, name, cp.index + 1, cp.before, cp.after, cp.change_rel, cp.kind, at,
                                   _changed(prev, at)))
    return found


def _changed(prev: Stored | None, at: Stored) -> tuple[str, ...]:
    if prev is None:
        return ()
    changed = list(version_changes(prev.row.versions, at.row.versions))
    if prev.git_commit != at.git_commit and at.git_commit:
        changed.append(f"commit {(prev.git_commit or '(none)')[:12]} -> {at.git_commit[:12]}")
    return tuple(changed)
