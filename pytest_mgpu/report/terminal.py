"""The `pytest-mgpu` section of the terminal summary: every measurement, its key numbers and verdict."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_mgpu.gate.table import aligned
from pytest_mgpu.report.model import KEY_METRICS, Row


def summary_lines(rows: Sequence[Row], warnings: Sequence[str], written: Sequence[str]) -> list[str]:
    if not rows and not warnings:
        return []
    lines: list[str] = []
    hardware = {r.fingerprint: r.hardware.get("label", "") for r in rows}
    for fp, text in sorted(hardware.items()):
        lines.append(f"hardware: {fp}" + (f" ({text})" if text else ""))
    if rows:
        headers = ("test", "configuration", *(title for title, _ in KEY_METRICS), "verdict")
        table = [[r.nodeid, r.label, *r.key_numbers(), r.verdict_text()] for r in rows]
        lines.extend(aligned(headers, table).splitlines())
    findings = [(r.nodeid, f) for r in rows for f in r.findings]
    if findings:
        lines.append("findings:")
        lines.extend(f"  {nodeid}: {finding}" for nodeid, finding in findings)
    notes = [(r.nodeid, n) for r in rows for n in (r.verdict.notes if r.verdict else ())
             if r.verdict and r.verdict.outcome.value in ("improvement", "noise", "recorded")]
    notes += [(r.nodeid, n) for r in rows for n in r.notes]
    if notes:
        lines.append("notes:")
        lines.extend(f"  {nodeid}: {note}" for nodeid, note in notes)
    if warnings:
        lines.append("warnings:")
        lines.extend(f"  {w}" for w in warnings)
    if written:
        lines.append("reports: " + ", ".join(written))
    return lines
