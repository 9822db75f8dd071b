"""Why no baseline matched: the fail-open gate said loudly.

A new fingerprint (a driver-visible change, another host in the runner pool) or changed engine
args means no stored baseline matches, and under the default `warn` policy the gate is silently
off. When baselines for this test exist under other fingerprints, or under this fingerprint for
other configurations, the message names them and the facts or fields that differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_mgpu.gate.store import BaselineError, BaselineStore, Entry, safe_name

# result.hardware keys that are not hardware facts (derived from them, or per engine)
_NOT_FACTS = frozenset({"fingerprint", "label", "digest", "devices_used"})
_MAX_SHOWN = 5


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fact_changes(stored: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """`key: stored -> now` for every hardware fact that differs."""
    keys = sorted((set(stored) | set(now)) - _NOT_FACTS)
    return [f"{k}: {_short(stored.get(k))} -> {_short(now.get(k))}" for k in keys if stored.get(k) != now.get(k)]


def field_changes(stored: Entry, now: Entry) -> list[str]:
    """The spec and workload fields in which a stored entry differs from this measurement."""
    out = []
    for part, a, b in (("spec", stored.spec, now.spec), ("workload", stored.workload, now.workload)):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{part}.{k}: {_short(a.get(k))} -> {_short(b.get(k))}")
    return out


def explain_missing(store: BaselineStore, fingerprint: str, hardware: Mapping[str, Any], entry: Entry,
                    test_path: Path, test_name: str) -> list[str]:
    """Sentences on what baselines this test does have (empty when it has none at all: a new test)."""
    name = f"{safe_name(test_name)}.json"
    here = safe_name(fingerprint)
    lines: list[str] = []
    try:
        homes = sorted(d for d in store.root.iterdir() if d.is_dir())
    except OSError:
        return []
    for home in homes:
        path = home / test_path / name
        if not path.is_file():
            continue
        try:
            stored = store.load(path)
        except BaselineError as exc:
            lines.append(f"{path} exists but cannot be read: {exc}")
            continue
        if stored is None:
            continue
        if home.name == here:
            nearest = min(stored.entries.values(), key=lambda e: len(field_changes(e, entry)), default=None)
            if nearest is not None:
                diff = "; ".join(field_changes(nearest, entry)[:_MAX_SHOWN])
                lines.append(f"this hardware has {len(stored.entries)} baseline(s) for this test in {path}, but "
                             f"for another configuration (nearest differs in {diff})")
            continue
        diff = "; ".join(fact_changes(stored.hardware, hardware)[:_MAX_SHOWN]) or "no stored fact differs"
        lines.append(f"baselines exist for hardware {stored.hardware.get('fingerprint', home.name)} "
                     f"({path}); this machine differs in {diff}")
    return lines
