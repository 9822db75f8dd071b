"""The gate's second opinion: each gated metric against this series' recent runs in the history store.

The series is (fingerprint, test node id, redacted spec + workload): the same thing a pinned
baseline entry keys. Earlier runs' medians go to `noise.check_against_history`, which decides
with each metric's own measured run-to-run spread; the current run is not in the store yet
(rows are written at session end), so it never votes on itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_mgpu import metrics as _metrics
from pytest_mgpu.gate.compare import HistoryVerdict
from pytest_mgpu.gate.measured import Measured, fingerprint
from pytest_mgpu.history.state import HistoryState
from pytest_mgpu.session import MgpuSession


def get_history(session: MgpuSession) -> HistoryState:
    """The session's history state, made from --mgpu-history on first use."""
    if session.history is None:
        session.history = HistoryState.from_setting(session.settings.history, session.config.rootpath)
    return session.history


def history_verdicts(session: MgpuSession, nodeid: str, result: Measured,
                     names: Sequence[str]) -> tuple[tuple[HistoryVerdict, ...], str | None]:
    """Per metric, the comparison with recent history; or (), and why not (no store, or it failed)."""
    state = get_history(session)
    if state.url is None:
        return (), None
    store = state.store()
    if store is None:
        return (), state.error
    from pytest_mgpu.history.noise import DEFAULT_GATE, check_against_history
    from pytest_mgpu.history.rows import series_key
    from pytest_mgpu.history.store import HistoryError

    gate = DEFAULT_GATE
    key = series_key(result)
    try:
        stored = store.measurements(fingerprint=fingerprint(result), nodeid=nodeid, spec_key=key,
                                    newest=max(gate.window, gate.min_runs))
    except HistoryError as exc:
        state.error = str(exc)
        return (), state.error
    out = []
    for name in names:
        history = [s.row.summary[name] for s in stored if name in s.row.summary]
        higher = _metrics.judged(name).direction.value == "higher"
        check = check_against_history(history, result.samples(name), higher_is_better=higher, metric=name,
                                      gate=gate)
        out.append(HistoryVerdict(metric=name, enough=check.enough, runs=check.runs_used, need=gate.min_runs,
                                  center=check.center, band_rel=check.band_rel, change_rel=check.change_rel,
                                  regressed=check.enough and check.regressed, reason=check.reason))
    return tuple(out), None
