"""`history import`: baseline files and `--mgpu-report` JSON reports into the store, so today's baselines seed it.

Every imported measurement keeps the content-derived uuid of `rows.row_from_result`, and each file
is one run whose uuid is the file's content: importing the same file twice adds nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_mgpu.history.rows import MeasurementRow, RunInfo, import_run, redacted_spec, row_from_result, utc_now
from pytest_mgpu.history.store import HistoryStore


class ImportError_(ValueError):
    """A file that is neither a baseline nor a report (the message says which and what was expected)."""


@dataclass(frozen=True)
class _Entry:
    """A baseline entry in the shape `row_from_result` reads (the gate's Measured protocol)."""

    metrics: dict[str, float]
    spec: dict[str, Any]
    workload: dict[str, Any]
    hardware: dict[str, Any]
    versions: dict[str, str]
    raw_samples: dict[str, tuple[float, ...]]

    def samples(self, metric: str) -> tuple[float, ...]:
        return self.raw_samples.get(metric, ())


def files_under(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.rglob("*.json")) if p.is_dir() else [p])
    return out


def import_file(store: HistoryStore, path: Path, baselines_root: Path | None = None) -> int:
    """Import one file; returns how many measurements were new."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportError_(f"{path}: cannot be read as JSON ({exc})") from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        run, rows = _report(path, data, digest)
    elif (isinstance(data, dict) and "entries" in data) or (isinstance(data, dict) and "repeats" in data):
        run, rows = _baseline(path, text, digest, baselines_root)
    else:
        raise ImportError_(f"{path}: expected a pytest-mgpu baseline (schema_version + entries) or a "
                           "--mgpu-report JSON report (records); found neither")
    return store.append(run, rows) if rows else 0


def _report(path: Path, data: dict[str, Any], digest: str) -> tuple[RunInfo, list[MeasurementRow]]:
    from pytest_mgpu.bench.results import BenchResult

    rows = []
    for i, record in enumerate(data["records"]):
        try:
            result = BenchResult.from_json(record["result"])
            rows.append(row_from_result(str(record["nodeid"]), result, record.get("verdict")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ImportError_(f"{path}: record {i} is not a measurement this pytest-mgpu reads ({exc})") from None
    return import_run(f"report:{digest}", str(data.get("created_utc") or utc_now())), rows


def _baseline(path: Path, text: str, digest: str, root: Path | None) -> tuple[RunInfo, list[MeasurementRow]]:
    from pytest_mgpu.gate.store import BaselineError, parse

    try:
        stored = parse(path, text)
    except BaselineError as exc:
        raise ImportError_(str(exc)) from None
    nodeid = nodeid_of(path, root, str(stored.hardware["fingerprint"]))
    rows = []
    for entry in stored.entries.values():
        measured = _Entry(metrics=entry.summary, spec=redacted_spec(entry.spec), workload=entry.workload,
                          hardware=stored.hardware, versions=entry.versions, raw_samples=entry.samples)
        rows.append(row_from_result(nodeid, measured, {"outcome": "recorded"}, entry.recorded_utc or None))
    started = min((r.recorded_utc for r in rows), default=utc_now())
    return import_run(f"baseline:{digest}", started), rows


def nodeid_of(path: Path, root: Path | None, fingerprint: str) -> str:
    """`baselines/<fp>/tests/perf/test_x/TestA.test_b[p.1].json` -> `tests/perf/test_x.py::TestA::test_b[p.1]`."""
    parts = path.parts
    if root is not None:
        with contextlib.suppress(ValueError):
            parts = path.resolve().relative_to(root.resolve()).parts[1:]
    else:
        from pytest_mgpu.gate.store import safe_name

        if safe_name(fingerprint) in parts:
            parts = parts[parts.index(safe_name(fingerprint)) + 1:]
    *dirs, file = parts
    name = file[:-5] if file.endswith(".json") else file
    head, bracket, params = name.partition("[")
    test = head.replace(".", "::") + bracket + params
    return ("/".join(dirs) + ".py" if dirs else "?") + "::" + test
