"""JUnit properties and the session's fingerprint, for CI systems that read neither our JSON nor Markdown."""

from __future__ import annotations

from pytest_mgpu.report.model import KEY_METRICS, finite_or_none, row_of
from pytest_mgpu.session import MgpuSession


def properties_for(session: MgpuSession, nodeid: str) -> list[tuple[str, object]]:
    """`mgpu_<metric>` per key metric plus `mgpu_verdict` and `mgpu_config`; suffixed `_<i>` when a test
    measured several configurations."""
    mine = [row_of(r) for r in session.records if r.nodeid == nodeid]
    props: list[tuple[str, object]] = []
    for i, row in enumerate(mine):
        suffix = f"_{i}" if len(mine) > 1 else ""
        props.append((f"mgpu_config{suffix}", row.label))
        props.append((f"mgpu_fingerprint{suffix}", row.fingerprint))
        for _, metric in KEY_METRICS:
            value = finite_or_none(row.metrics.get(metric))
            if value is not None:
                props.append((f"mgpu_{metric}{suffix}", round(value, 4)))
        props.append((f"mgpu_verdict{suffix}", row.outcome))
    return props


def session_fingerprint(session: MgpuSession) -> str | None:
    """The fingerprint of this run's measurements, else of this machine (when the hardware package can tell)."""
    for record in session.records:
        hardware = getattr(record.result, "hardware", None) or {}
        if "fingerprint" in hardware:
            return str(hardware["fingerprint"])
    try:
        from pytest_mgpu.hardware.fingerprint import fingerprint

        return str(fingerprint(session.topology).dirname)
    except Exception:  # no hardware fingerprint available: leave machine_info alone
        return None
