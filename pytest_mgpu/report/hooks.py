"""Reporting hooks: terminal summary, report files, JUnit properties, pytest-benchmark machine_info.

Only the xdist controller (or a plain run) writes files and the summary: workers have
`config.workerinput` and hand their measurements over (see `report/xdist.py`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pytest_mgpu.session import SESSION_KEY, MgpuSession

WRITTEN_KEY = pytest.StashKey[list[str]]()


def _session(config: pytest.Config) -> MgpuSession | None:
    return config.stash.get(SESSION_KEY, None)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Key numbers of this test's measurements as JUnit properties (like `record_property`)."""
    session = _session(item.config)
    if session is not None and call.when == "call":
        from pytest_mgpu.report.properties import properties_for

        item.user_properties.extend(properties_for(session, item.nodeid))
    return (yield)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mgpu = _session(session.config)
    if mgpu is None:
        return
    if _is_worker(session.config):  # the controller writes the reports; hand it our measurements
        from pytest_mgpu.report.xdist import KEY, worker_output

        session.config.workeroutput[KEY] = worker_output(mgpu)  # type: ignore[attr-defined]
        return
    from pytest_mgpu.report.write import write_reports

    session.config.stash[WRITTEN_KEY] = write_reports(mgpu, int(exitstatus))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller: a worker starts; tell it where to spool its measurements."""
    if _session(node.config) is not None:
        from pytest_mgpu.report.xdist import configure_node

        configure_node(node.config, node)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: a worker finished (or crashed); take its measurements for the reports."""
    mgpu = _session(node.config)
    if mgpu is None:
        return
    from pytest_mgpu.report.xdist import node_down

    node_down(mgpu, node, error)


def pytest_unconfigure(config: pytest.Config) -> None:
    from pytest_mgpu.report.xdist import cleanup

    cleanup(config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    mgpu = _session(config)
    if mgpu is None or _is_worker(config):
        return
    try:
        from pytest_mgpu.report.model import rows
        from pytest_mgpu.report.terminal import summary_lines

        written: list[str] = config.stash.get(WRITTEN_KEY, [])
        lines = summary_lines(rows(mgpu), mgpu.warnings, written)
    except Exception as exc:  # the summary must never turn a run into an INTERNALERROR
        lines = [f"could not build the summary: {type(exc).__name__}: {exc}"]
    if lines:
        terminalreporter.write_sep("=", "pytest-mgpu")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Add the hardware fingerprint to pytest-benchmark's machine_info, when that plugin is active."""
    mgpu = _session(config)
    if mgpu is None:
        return
    from pytest_mgpu.report.properties import session_fingerprint

    fingerprint = session_fingerprint(mgpu)
    if fingerprint is not None:
        machine_info["mgpu_fingerprint"] = fingerprint
