"""Engine-pool hooks: the pool is created on first use and always stopped at session end.

Session-fixture finalizers run on a normal end and on Ctrl-C; `pytest_sessionfinish` and an
`atexit` handler are backstops so that no engine outlives the pytest process.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_mgpu.engines.pool import DeviceLease, EnginePool
from pytest_mgpu.session import MgpuSession, get_session

QUIET_TIMEOUT_S = 3600.0  # another process's measurement (repeats, several configurations) may take this long

if TYPE_CHECKING:
    from pytest_mgpu.hardware.leasing import Leaser, QuietHold


def get_leaser(session: MgpuSession) -> Leaser:
    """The session's device leaser (lock files in --mgpu-lock-dir), shared by the pool and the bench."""
    if session.leaser is None:
        from pytest_mgpu.hardware.leasing import Leaser, default_lock_dir

        session.leaser = Leaser(session.settings.lock_dir or default_lock_dir(), session.topology)
    return session.leaser


def get_pool(session: MgpuSession, log_dir: Path) -> EnginePool:
    pool = session.pool
    if pool is None:
        leaser = get_leaser(session)
        timeout_s = session.settings.start_timeout

        def acquire(n: int, prefer: tuple[int, ...] | None, timeout_s: float) -> DeviceLease:
            return leaser.acquire(n, prefer=prefer, timeout_s=timeout_s)

        def quiet() -> QuietHold:
            return leaser.quiet(measuring=False, timeout_s=max(timeout_s, QUIET_TIMEOUT_S))

        from pytest_mgpu.report.progress import engine_start_progress

        pool = EnginePool(session.topology, acquire, log_dir, timeout_s, quiet=quiet, registry=session.engines,
                          on_wait=engine_start_progress(session.config),
                          node_hosts=session.settings.nodes, node_launcher=session.settings.node_launcher,
                          api_key=session.settings.api_key,
                          allow_host_override=session.settings.allow_host_override)
        session.pool = pool
        atexit.register(pool.stop_all)
    return pool


def stop_pool(session: MgpuSession) -> None:
    pool, session.pool = session.pool, None
    if pool is None:
        return
    atexit.unregister(pool.stop_all)
    try:
        pool.stop_all()
    finally:
        session.engine_timings.extend(pool.timings)
        session.engine_events.extend(pool.events)
        session.warnings.extend(pool.warnings)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_pool(get_session(session.config))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    timings = get_session(terminalreporter.config).engine_timings
    if not timings:
        return
    terminalreporter.write_sep("-", "pytest-mgpu engines")
    for t in timings:
        stop = f"{t.stop_s:.1f} s" if t.stop_s is not None else "-"
        drain = f", GPU memory idle after {t.drain_s:.1f} s" if t.drain_s is not None else ""
        cache = {True: " (compile cache warm)", False: " (compile cache cold)", None: ""}[t.compile_cache_warm]
        terminalreporter.write_line(f"{t.label}: started in {t.startup_s:.1f} s{cache}, stopped in {stop}{drain}")
