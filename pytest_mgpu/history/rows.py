"""What one history row holds, built from a session record (or an imported report/baseline).

A measurement's uuid is derived from its content (series, measurement time, samples), so the same
measurement written by the plugin and later imported from its JSON report is one row, and
importing a file twice adds nothing. Specs are redacted here, before anything is stored.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_mgpu.gate.measured import Measured, config_label, fingerprint
from pytest_mgpu.gate.store import dumps, entry_from_result, entry_key, plain
from pytest_mgpu.redact import redact_args

_NAMESPACE = uuid.UUID("6f1d1b52-5d3c-4a37-9e43-7d1c0a2f9b10")
# The environment variables that name the CI run (first present wins), and the commit.
CI_RUN_ENV = ("GITHUB_RUN_ID", "CI_PIPELINE_ID", "BUILDKITE_BUILD_ID", "CIRCLE_WORKFLOW_ID", "BUILD_ID")
COMMIT_ENV = ("GITHUB_SHA", "CI_COMMIT_SHA", "BUILDKITE_COMMIT", "CIRCLE_SHA1", "GIT_COMMIT")


@dataclass(frozen=True)
class RunInfo:
    """One pytest session (or one imported file) that produced measurements."""

    uuid: str
    started_utc: str
    source: str  # "pytest" | "import"
    git_commit: str | None = None
    ci_run_id: str | None = None
    host: str | None = None
    pytest_mgpu: str | None = None
    finished_utc: str | None = None


@dataclass(frozen=True)
class MeasurementRow:
    uuid: str
    recorded_utc: str
    fingerprint: str
    nodeid: str
    spec_label: str
    spec_key: str
    spec: dict[str, Any]
    workload: dict[str, Any]
    versions: dict[str, str]
    samples: dict[str, tuple[float, ...]]
    summary: dict[str, float]
    findings: list[Any]
    verdict: dict[str, Any] | None

    @property
    def outcome(self) -> str | None:
        return None if self.verdict is None else str(self.verdict.get("outcome"))


def redacted_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The engine spec without secret values (and without env, which is private by definition)."""
    out = {k: v for k, v in spec.items() if k != "env"}
    if out.get("extra_args"):
        out["extra_args"] = list(redact_args([str(a) for a in out["extra_args"]]))
    return out


def series_key(result: Measured) -> str:
    """The series a result belongs to within (fingerprint, test): redacted spec + workload."""
    entry = entry_from_result(result)
    return entry_key(redacted_spec(entry.spec), entry.workload)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _measured_utc(date: str) -> str | None:
    """BenchResult.date (`%Y%m%d-%H%M%S`, UTC) as ISO 8601."""
    try:
        return datetime.datetime.strptime(date, "%Y%m%d-%H%M%S").replace(tzinfo=datetime.UTC).isoformat()
    except ValueError:
        return None


def row_from_result(nodeid: str, result: Measured, verdict: Mapping[str, Any] | None,
                    recorded_utc: str | None = None) -> MeasurementRow:
    entry = entry_from_result(result)
    spec = redacted_spec(entry.spec)
    when = recorded_utc or _measured_utc(str(getattr(result, "date", ""))) or utc_now()
    findings = [f.to_json() if hasattr(f, "to_json") else str(f) for f in getattr(result, "findings", ()) or ()]
    key = entry_key(spec, entry.workload)
    fp = fingerprint(result)
    identity = dumps({"fp": fp, "nodeid": nodeid, "key": key, "when": when, "samples": entry.samples})
    return MeasurementRow(
        uuid=str(uuid.uuid5(_NAMESPACE, identity)), recorded_utc=when, fingerprint=fp, nodeid=nodeid,
        spec_label=config_label(spec, getattr(result, "hardware", None)), spec_key=key, spec=spec,
        workload=entry.workload, versions=entry.versions, samples=entry.samples, summary=entry.summary,
        findings=findings,
        verdict=dict(verdict) if verdict is not None else None)


def run_info(rootdir: Path, source: str = "pytest") -> RunInfo:
    from pytest_mgpu import __version__

    return RunInfo(uuid=str(uuid.uuid4()), started_utc=utc_now(), source=source, git_commit=git_commit(rootdir),
                   ci_run_id=_first_env(CI_RUN_ENV), host=socket.gethostname(), pytest_mgpu=__version__)


def import_run(identity: str, started_utc: str) -> RunInfo:
    """The run an imported file stands for; its uuid is the file's content, so a re-import is a no-op."""
    return RunInfo(uuid=str(uuid.uuid5(_NAMESPACE, identity)), started_utc=started_utc, source="import")


def _first_env(names: Sequence[str]) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def git_commit(rootdir: Path) -> str | None:
    found = _first_env(COMMIT_ENV)
    if found:
        return found
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=rootdir, capture_output=True, text=True, timeout=5,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def to_json_text(data: Any) -> str:
    return json.dumps(plain(data), sort_keys=True, allow_nan=False)
