"""Carry each xdist worker's measurements to the controller, which alone writes the reports.

Workers put plain JSON into `config.workeroutput` at session end (pytest-xdist sends it with
the `workerfinished` event); the controller reads it in `pytest_testnodedown`. Without this a
`-n 4` run would report no measurements at all.
"""

from __future__ import annotations

from typing import Any

from pytest_mgpu.session import MgpuSession, Record

KEY = "pytest_mgpu"  # in workeroutput
VERSION = 1


def worker_output(session: MgpuSession) -> dict[str, Any]:
    """This worker's records, warnings and engine timings, as JSON-able data."""
    timings = session.engine_timings
    return {
        "version": VERSION,
        "records": [{"nodeid": r.nodeid, "result": r.result.to_json(),
                     "verdict": r.verdict.to_json() if r.verdict is not None else None,
                     "notes": list(r.notes)} for r in session.records],
        "warnings": list(session.warnings),
        "timings": [{"label": t.label, "startup_s": t.startup_s, "stop_s": t.stop_s, "drain_s": t.drain_s,
                     "compile_cache_warm": t.compile_cache_warm}
                    for t in timings],
        "events": list(session.engine_events),
    }


def merge_worker_output(session: MgpuSession, data: Any, worker: str) -> None:
    """Add one worker's output to the controller's session; a malformed one becomes a warning, not a crash."""
    from pytest_mgpu.bench.results import BenchResult
    from pytest_mgpu.engines.pool import EngineTiming
    from pytest_mgpu.gate.compare import Verdict

    if not isinstance(data, dict) or data.get("version") != VERSION:
        session.warnings.append(f"xdist worker {worker} sent no pytest-mgpu results the controller can read "
                                f"(got {type(data).__name__}); its measurements are missing from the reports")
        return
    try:
        records = [Record(nodeid=r["nodeid"], result=BenchResult.from_json(r["result"]),
                          verdict=Verdict.from_json(r["verdict"]) if r.get("verdict") else None,
                          notes=[str(n) for n in r.get("notes", ())]) for r in data.get("records", ())]
        timings = [EngineTiming(**t) for t in data.get("timings", ())]
    except (KeyError, TypeError, ValueError) as exc:
        session.warnings.append(f"xdist worker {worker}: could not read its pytest-mgpu results "
                                f"({type(exc).__name__}: {exc}); its measurements are missing from the reports")
        return
    session.records.extend(records)
    session.warnings.extend(w for w in data.get("warnings", ()) if w not in session.warnings)
    session.engine_timings.extend(timings)
    session.engine_events.extend(f"[{worker}] {e}" for e in data.get("events", ()))
