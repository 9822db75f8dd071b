"""Hardware hooks: the markers, their verdicts, and the report header. Registered by plugin.py.

The topology is discovered lazily (`session.topology`): for the header, or at the end of
collection when a collected test carries an mgpu marker; never at import or in addoption.
"""

from __future__ import annotations

import pytest

from pytest_mgpu.hardware.errors import HardwareError
from pytest_mgpu.hardware.markers import (
    APPROVED_DEVICES_KEY,
    MARKER_HELP,
    REQUIREMENT_KEY,
    VERDICT_KEY,
    MarkerError,
    MgpuTopologyWarning,
    Requirement,
    judge,
    judge_nodes,
    nodes_required,
    requirement_of,
)
from pytest_mgpu.hardware.topology import Topology
from pytest_mgpu.session import MgpuSession, get_session


def _topology(session: MgpuSession) -> Topology:
    try:
        return session.topology
    except HardwareError as exc:
        raise pytest.UsageError(f"pytest-mgpu: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKER_HELP:
        config.addinivalue_line("markers", line)


def pytest_report_header(config: pytest.Config) -> list[str]:
    from pytest_mgpu.hardware.fingerprint import fingerprint
    from pytest_mgpu.hardware.leasing import default_lock_dir
    from pytest_mgpu.hardware.select import visible_devices

    session = get_session(config)
    topology = _topology(session)
    visible = visible_devices(topology)
    devices = topology.describe() if topology.n_devices else "no devices"
    lines = [f"mgpu: {topology.kind} devices from {topology.source}: {devices}"]
    if len(visible) != topology.n_devices:
        lines.append(f"mgpu: CUDA_VISIBLE_DEVICES leaves {topology.describe(visible)}")
    if topology.n_devices > 1:
        n = topology.n_devices
        pairs: dict[str, int] = {}
        for i in range(n):
            for j in range(i + 1, n):
                pairs[topology.link_label(i, j)] = pairs.get(topology.link_label(i, j), 0) + 1
        numa = sorted({str(d.numa_node) for d in topology.devices})
        lines.append("mgpu: links " + ", ".join(f"{k} x{v}" for k, v in pairs.items())
                     + f"; NUMA node{'s' if len(numa) > 1 else ''} {', '.join(numa)}")
    if "why_cpu" in topology.extra and config.get_verbosity() > 0:
        lines.append(f"mgpu: CPU mode because {topology.extra['why_cpu']}")
    lock_dir = session.settings.lock_dir or default_lock_dir()
    lines.append(f"mgpu: fingerprint {fingerprint(topology).dirname}; lock dir {lock_dir}")
    return lines


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every mgpu marker (all problems at once), then judge the tests that will run."""
    from pytest_mgpu.hardware.select import visible_devices

    requirements: list[tuple[pytest.Item, Requirement]] = []
    node_needs: list[tuple[pytest.Item, int]] = []  # mgpu_nodes(n)
    problems: list[str] = []
    for item in items:
        try:
            req = requirement_of(item)
            n_nodes = nodes_required(item)
        except MarkerError as exc:
            problems.append(str(exc))
            continue
        if req is not None:
            requirements.append((item, req))
        if n_nodes is not None:
            node_needs.append((item, n_nodes))
    if problems:
        raise pytest.UsageError("pytest-mgpu: bad marker arguments:\n  " + "\n  ".join(problems))
    if config.option.collectonly:
        return
    if node_needs:
        _judge_nodes(get_session(config), node_needs)
    if not requirements:
        return
    topology = _topology(get_session(config))
    among = visible_devices(topology)
    for item, req in requirements:
        verdict = judge(topology, req, among)
        item.stash[REQUIREMENT_KEY] = req
        item.stash[VERDICT_KEY] = verdict
        if verdict.devices is not None:
            item.stash[APPROVED_DEVICES_KEY] = verdict.devices
        if verdict.action == "skip":
            item.add_marker(pytest.mark.skip(reason=verdict.reason))
        elif verdict.action == "xfail":
            item.add_marker(pytest.mark.xfail(reason=verdict.reason, strict=False))


def _judge_nodes(session: MgpuSession, needs: list[tuple[pytest.Item, int]]) -> None:
    s = session.settings
    n_devices = _topology(session).n_devices
    for item, n in needs:
        reason = judge_nodes(n, s.nodes, s.node_launcher, n_devices)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item: pytest.Item) -> None:
    verdict = item.stash.get(VERDICT_KEY, None)
    if verdict is not None and verdict.action == "warn":
        get_session(item.config).warnings.append(f"{item.nodeid}: {verdict.reason}")
        item.warn(MgpuTopologyWarning(verdict.reason))
