"""History hooks: after each test, append its measurements (and verdicts) to the store.

Appending per test means a later test in the same session (a node id repeated with
--keep-duplicates, say) is judged against the runs before it. Each process writes its own rows
(an xdist worker, or a plain run); whatever a test left unstored is appended at session end.
The controller of an xdist run writes nothing (its
records are the workers', already stored) but reads the trends for the Markdown summary. A store
that fails is a warning in the summary and the JSON report; the measurements are not lost there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator

import pytest

from pytest_mgpu.session import SESSION_KEY, MgpuSession

TREND_RUNS = 8


def _distributing(config: pytest.Config) -> bool:
    """This is the controller of an xdist run (the workers measure and write)."""
    return config.pluginmanager.get_plugin("dsession") is not None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        mgpu: MgpuSession | None = item.config.stash.get(SESSION_KEY, None)
        if mgpu is not None and any(r.nodeid == item.nodeid for r in mgpu.records) \
                and not _distributing(item.config):
            append_records(mgpu)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mgpu: MgpuSession | None = session.config.stash.get(SESSION_KEY, None)
    if mgpu is None or not mgpu.records:
        return
    try:
        if not _distributing(session.config):
            append_records(mgpu)
        if not hasattr(session.config, "workerinput"):
            read_trends(mgpu)
    finally:
        if mgpu.history is not None:
            mgpu.history.close()


def append_records(mgpu: MgpuSession) -> None:
    from pytest_mgpu.history.gate import get_history
    from pytest_mgpu.history.rows import row_from_result, run_info, utc_now
    from pytest_mgpu.history.store import HistoryError

    state = get_history(mgpu)
    if state.url is None:
        return
    store = state.store()
    if store is None:
        _warn(mgpu, f"run history: {state.error}; this run's measurements were not stored (they are in the report)")
        return
    pending = [r for r in mgpu.records if id(r) not in state.stored]
    if not pending:
        return
    if state.run is None:
        state.run = run_info(mgpu.config.rootpath)
    rows = []
    for r in pending:
        try:
            rows.append(row_from_result(r.nodeid, r.result, r.verdict.to_json() if r.verdict else None))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a test's own record of another shape
            _warn(mgpu, f"run history: {r.nodeid}: its measurement cannot be stored ({type(exc).__name__}: {exc})")
    try:
        store.append(dataclasses.replace(state.run, finished_utc=utc_now()), rows)
    except HistoryError as exc:
        state.error = str(exc)
        _warn(mgpu, f"run history: {exc}; this run's measurements were not stored (they are in the report)")
        return
    state.stored.update(id(r) for r in pending)


def read_trends(mgpu: MgpuSession) -> None:
    """The last few medians of the headline metric of each configuration measured in this run."""
    from pytest_mgpu.history.gate import get_history
    from pytest_mgpu.history.rows import row_from_result
    from pytest_mgpu.history.state import Trend
    from pytest_mgpu.history.store import HistoryError
    from pytest_mgpu.report.model import KEY_METRICS

    state = get_history(mgpu)
    store = state.store()
    if store is None:
        return
    metric = KEY_METRICS[0][1]
    seen: set[tuple[str, str, str]] = set()
    for record in mgpu.records:
        try:
            row = row_from_result(record.nodeid, record.result, None)
        except (TypeError, ValueError, KeyError, AttributeError):
            continue
        series = (row.fingerprint, row.nodeid, row.spec_key)
        if series in seen:
            continue
        seen.add(series)
        try:
            medians = store.medians(*series, metric=metric, newest=TREND_RUNS)
        except HistoryError:
            return
        if len(medians) >= 2:
            state.trends.append(Trend(row.nodeid, row.spec_label, metric, tuple(medians)))


def _warn(mgpu: MgpuSession, message: str) -> None:
    if message not in mgpu.warnings:
        mgpu.warnings.append(message)
