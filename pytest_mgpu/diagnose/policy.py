"""Which findings fail a test instead of only flagging it (`--mgpu-fail-on`).

Parsing happens at configure time, so a misspelt code is a usage error before any engine
starts, not a silent no-op after an hour of measuring.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pytest_mgpu.findings import Finding


def known_codes() -> dict[str, str]:
    from pytest_mgpu.diagnose import CODES  # importing the package registers every detector

    return dict(CODES)


def parse_fail_on(value: str) -> tuple[str, ...]:
    """'idle-devices,throttled' -> ('idle-devices', 'throttled'); 'none' or '' -> (); 'all' -> every code."""
    text = value.strip().lower()
    if text in ("", "none"):
        return ()
    codes = known_codes()
    if text == "all":
        return tuple(sorted(codes))
    wanted = tuple(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))
    unknown = [c for c in wanted if c not in codes]
    if unknown:
        raise ValueError(f"unknown finding code(s) {', '.join(unknown)}; expected a comma-separated list of "
                         f"{', '.join(sorted(codes))}, or 'none', or 'all'")
    return wanted


def failing(findings: Iterable[Finding], fail_on: Iterable[str]) -> list[Finding]:
    codes = set(fail_on)
    return [f for f in findings if f.code in codes]


def failure_message(findings: list[Finding], label: str) -> str:
    """The text of `pytest.fail`: every failing finding with its message and evidence."""
    lines = [f"pytest-mgpu: {len(findings)} finding(s) named in --mgpu-fail-on for {label}:"]
    for f in findings:
        lines.append(f"  [{f.code}] ({f.severity.value}) {f.message}")
        if f.evidence:
            lines.append("    evidence: " + json.dumps(f.evidence, sort_keys=True, default=str))
    return "\n".join(lines)
