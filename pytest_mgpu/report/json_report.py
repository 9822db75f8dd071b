"""The `--mgpu-report` JSON: results, verdicts, hardware, versions and findings of the whole run."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from pytest_mgpu.report.model import Row, result_json

REPORT_SCHEMA_VERSION = 1


def build(rows: Sequence[Row], warnings: Sequence[str], exit_status: int,
          settings: dict[str, Any]) -> dict[str, Any]:
    from pytest_mgpu import __version__

    versions: dict[str, list[str]] = {}
    for r in rows:
        for name, value in r.versions.items():
            versions.setdefault(name, [])
            if value not in versions[name]:
                versions[name].append(value)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "pytest_mgpu": __version__,  # also where the package runs from a checkout, uninstalled
        "created_utc": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat(),
        "exit_status": exit_status,
        "settings": settings,
        "hardware": {r.fingerprint: r.hardware for r in rows},
        "versions": versions,
        "records": [
            {
                "nodeid": r.nodeid,
                "label": r.label,
                "fingerprint": r.fingerprint,
                "outcome": r.outcome,
                "result": result_json(r.result),
                "verdict": r.verdict.to_json() if r.verdict else None,
                "findings": [f.to_json() if hasattr(f, "to_json") else str(f) for f in r.findings],
                "notes": list(r.notes),
            }
            for r in rows
        ],
        "warnings": list(warnings),
    }
