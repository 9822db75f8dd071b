"""Carry each xdist worker's measurements to the controller, which alone writes the reports.

Workers put plain JSON into `config.workeroutput` at session end (pytest-xdist sends it with
the `workerfinished` event); the controller reads it in `pytest_testnodedown`. Without this a
`-n 4` run would report no measurements at all.

A worker that crashes (a segfault, os._exit, the OOM killer) sends nothing at session end, so
each worker also rewrites a spool file after every measurement and verdict (atomically: a crash
mid-write leaves the previous one). The controller names the files in `workerinput`, in a
private temporary directory of its own, and reads a crashed worker's file instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pytest_mgpu.session import MgpuSession, Record

KEY = "pytest_mgpu"  # in workeroutput
SPOOL_KEY = "pytest_mgpu_spool"  # in workerinput: the path this worker rewrites after each measurement
VERSION = 1
_SPOOL_DIR = pytest.StashKey[Path]()


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


def _worker_id(node: Any) -> str:
    return str(getattr(getattr(node, "gateway", None), "id", "?"))


def configure_node(config: pytest.Config, node: Any) -> None:
    """Controller: give a starting worker the path of its spool file."""
    spool_dir = config.stash.get(_SPOOL_DIR, None)
    if spool_dir is None:
        spool_dir = Path(tempfile.mkdtemp(prefix="pytest-mgpu-spool-"))  # 0700, ours alone
        config.stash[_SPOOL_DIR] = spool_dir
    node.workerinput[SPOOL_KEY] = str(spool_dir / f"{_worker_id(node)}.json")


def spool(session: MgpuSession) -> None:
    """Worker: rewrite this worker's spool file with every record so far (no-op outside xdist)."""
    workerinput = getattr(session.config, "workerinput", None)
    path = workerinput.get(SPOOL_KEY) if isinstance(workerinput, dict) else None
    if not path:
        return
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(worker_output(session), fh)
        os.replace(tmp, target)
    except OSError as exc:  # the spool is insurance: losing it must not fail a measurement
        session.warnings.append(f"could not spool this worker's measurements to {target} ({exc})")


def node_down(session: MgpuSession, node: Any, error: Any) -> None:
    """Controller: merge a finished worker's output, or a crashed worker's spool, or say what is lost."""
    worker = _worker_id(node)
    output = getattr(node, "workeroutput", None)
    if isinstance(output, dict) and KEY in output:
        merge_worker_output(session, output[KEY], worker)
        return
    spool_path = getattr(node, "workerinput", {}).get(SPOOL_KEY)
    data: Any = None
    if spool_path:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(Path(spool_path).read_text(encoding="utf-8"))
    why = f"xdist worker {worker} crashed ({error})" if error else f"xdist worker {worker} sent no results"
    if data is None:
        session.warnings.append(f"{why}: any measurements it made are MISSING from the reports")
        return
    n = len(data.get("records", ())) if isinstance(data, dict) else 0
    session.warnings.append(f"{why}: its {n} measurement(s) made before that were recovered from its spool file; "
                            "the test it was running has no result")
    merge_worker_output(session, data, worker)


def cleanup(config: pytest.Config) -> None:
    spool_dir = config.stash.get(_SPOOL_DIR, None)
    if spool_dir is not None:
        shutil.rmtree(spool_dir, ignore_errors=True)
