"""The object behind the `mgpu_baseline` fixture: record, or compare and fail with a table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from pytest_mgpu import metrics as _metrics
from pytest_mgpu.gate import compare
from pytest_mgpu.gate.compare import HistoryVerdict, MetricVerdict, Outcome, Verdict
from pytest_mgpu.gate.measured import Measured, fingerprint, label
from pytest_mgpu.gate.store import BaselineError, BaselineStore, Entry, entry_from_result, relative_test_path
from pytest_mgpu.gate.table import verdict_table
from pytest_mgpu.session import MgpuSession, Record, get_session

if TYPE_CHECKING:
    from pytest_mgpu.bench.results import BenchResult


class BaselineChecker:
    """Checks results of one test against `baselines/<fingerprint>/<test path>/<test name>.json`."""

    def __init__(self, session: MgpuSession, nodeid: str, test_path: Path, test_name: str,
                 store: BaselineStore) -> None:
        self.session = session
        self.nodeid = nodeid
        self.test_path = test_path
        self.test_name = test_name
        self.store = store

    def path_for(self, result: Measured) -> Path:
        return self.store.path_for(fingerprint(result), self.test_path, self.test_name)

    def check(
        self,
        result: Measured,
        metrics: Iterable[str] | None = None,
        tolerance: float | Mapping[str, float] | None = None,
    ) -> Verdict:
        """Compare `result` with its stored baseline; fail the test on a regression.

        `metrics` defaults to the registry's gated metrics (per-device output throughput and
        median TPOT); `tolerance` (one number, or per metric) overrides --mgpu-tolerance,
        which overrides the registry. Under --mgpu-update-baselines the result is recorded.
        """
        __tracebackhide__ = True
        settings = self.session.settings
        names = self._metric_names(result, metrics)
        tolerances = compare.resolve_tolerances(names, settings.tolerance, tolerance)
        entry = entry_from_result(result)
        path = self.path_for(result)
        shown = _display_path(path, self.session.config.rootpath)
        baseline = self.store.lookup(path, entry.key)

        def rows(against: Entry | None) -> tuple[MetricVerdict, ...]:
            empty = Entry(spec={}, workload={}, samples={}, summary={})
            return compare.compare_entries(against or empty, entry, names, tolerances)

        changes = compare.version_changes(baseline.versions, entry.versions) if baseline else ()
        history, history_error = self._history(result, names)
        history_note = (f"history: unavailable ({history_error})",) if history_error else ()
        if settings.update_baselines:
            try:
                self.store.record(path, result.hardware, entry)
            except (OSError, BaselineError) as exc:
                # the measurement is kept (JSON report, summary); only the baseline file could not be written
                message = (f"pytest-mgpu: could not write the baseline {path} under the baselines directory "
                           f"{self.store.root} ({exc}); the measurement is in the reports. Check that the "
                           "directory (--mgpu-baselines) exists or can be created and is writable.")
                self._remember(result, Verdict(Outcome.NEW, label(result), fingerprint(result), rows(baseline),
                                               shown, changes, (message,)))
                pytest.fail(message, pytrace=False)
            verdict = Verdict(Outcome.RECORDED, label(result), fingerprint(result), rows(baseline), shown,
                              changes, (f"recorded as the baseline in {shown}", *history_note), history)
            self._remember(result, verdict)
            return verdict
        if baseline is None:
            return self._missing(result, entry, rows(None), shown, history, history_note)
        measured = rows(baseline)
        pinned = compare.overall(m.outcome for m in measured)
        outcome = compare.combine(pinned, history)
        verdict = Verdict(outcome, label(result), fingerprint(result), measured, shown, changes,
                          compare.notes_for(pinned) + compare.history_notes(history) + history_note
                          + _findings_note(result), history)
        self._remember(result, verdict)
        if verdict.failed:
            pytest.fail(verdict_table(verdict), pytrace=False)
        return verdict

    def _history(self, result: Measured, names: tuple[str, ...]) -> tuple[tuple[HistoryVerdict, ...], str | None]:
        """The comparison with recent history; a store that fails is reported once, never fails the test."""
        from pytest_mgpu.history.gate import history_verdicts

        history, error = history_verdicts(self.session, self.nodeid, result, names)
        if error and not any(error in w for w in self.session.warnings):
            self.session.warnings.append(f"run history: {error}")
        return history, error

    def _metric_names(self, result: Measured, metrics: Iterable[str] | None) -> tuple[str, ...]:
        names = tuple(_metrics.gated_metrics() if metrics is None else metrics)
        if isinstance(metrics, str):
            names = (metrics,)
        for name in names:
            _metrics.judged(name)
            if name not in result.metrics:
                have = ", ".join(sorted(result.metrics))
                raise _metrics.UnknownMetricError(f"the result has no metric {name!r} to check; it has: {have}")
        if not names:
            raise ValueError("check(metrics=...) named no metrics; leave it out to check the gated ones")
        return names

    def _missing(self, result: Measured, entry: Entry, rows: tuple[MetricVerdict, ...], shown: str,
                 history: tuple[HistoryVerdict, ...], history_note: tuple[str, ...]) -> Verdict:
        __tracebackhide__ = True
        from pytest_mgpu.gate.drift import explain_missing

        policy = self.session.settings.missing_baseline
        message = (f"no baseline for {label(result)} on {fingerprint(result)} ({shown}); "
                   "record one with --mgpu-update-baselines")
        others = explain_missing(self.store, fingerprint(result), result.hardware, entry, self.test_path,
                                 self.test_name)
        if others:  # the gate is off for a test that has baselines: say it loudly, and why
            message = ("GATE OFF: " + message + ". " + " ".join(o.rstrip(".") + "." for o in others)
                       + " If this machine or configuration replaced the recorded one, re-record; "
                       "otherwise nothing here was compared (--mgpu-missing-baseline fail makes this an error).")
        outcome = compare.combine(Outcome.NEW, history)
        verdict = Verdict(outcome, label(result), fingerprint(result), rows, shown, (),
                          (message, *compare.history_notes(history), *history_note), history)
        self._remember(result, verdict)
        if verdict.failed:  # no pinned baseline, but enough history that says this run regressed
            pytest.fail(verdict_table(verdict), pytrace=False)
        if policy == "skip":
            pytest.skip(message)
        if policy == "fail":
            pytest.fail(f"pytest-mgpu: {message} (--mgpu-missing-baseline fail)", pytrace=False)
        self.session.warnings.append(f"{self.nodeid}: {message}")
        return verdict

    def _remember(self, result: Measured, verdict: Verdict) -> None:
        """Attach the verdict to the fixture layer's record of this result, or add a record."""
        from pytest_mgpu.report.xdist import spool

        for record in self.session.records:
            if record.nodeid == self.nodeid and record.result is result and record.verdict is None:
                record.verdict = verdict
                break
        else:
            # The reports read a BenchResult; any other Measured (a test's own record) is kept as it is.
            self.session.records.append(Record(self.nodeid, cast("BenchResult", result), verdict))
        spool(self.session)


def _findings_note(result: Measured) -> tuple[str, ...]:
    """A measurement with findings (a client that could not keep up, idle devices) may not describe the engine."""
    codes = sorted({str(getattr(f, "code", f)) for f in getattr(result, "findings", ()) or ()})
    if not codes:
        return ()
    return (f"the measurement has findings ({', '.join(codes)}): read them in the pytest-mgpu summary "
            "before trusting the numbers",)


def _display_path(path: Path, rootdir: Path) -> str:
    try:
        return str(path.resolve().relative_to(rootdir.resolve()))
    except ValueError:
        return str(path)


def test_name_of(nodeid: str) -> str:
    """`tests/perf/test_tp.py::TestX::test_y[a]` -> `TestX.test_y[a]` (the file is the directory)."""
    parts = nodeid.split("::")
    return ".".join(parts[1:]) or parts[0]


def make_baseline_checker(request: pytest.FixtureRequest) -> BaselineChecker:
    session = get_session(request.config)
    rootdir = request.config.rootpath
    root = session.settings.baselines
    root = root if root.is_absolute() else rootdir / root
    node = request.node
    lock_dir = session.settings.lock_dir
    return BaselineChecker(
        session=session,
        nodeid=node.nodeid,
        test_path=relative_test_path(node.path, rootdir),
        test_name=test_name_of(node.nodeid),
        store=BaselineStore(root, lock_dir and lock_dir / "baselines"),
    )
