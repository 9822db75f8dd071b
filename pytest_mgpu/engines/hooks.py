"""Engine-pool hooks: the pool is created on first use and always stopped at session end.

Session-fixture finalizers run on a normal end and on Ctrl-C; `pytest_sessionfinish` and an
`atexit` handler are backstops so that no engine outlives the pytest process.
"""

from __future__ import annotations

import atexit
from pathlib import Path

import pytest

from pytest_mgpu.engines.pool import DeviceLease, EnginePool, EngineTiming
from pytest_mgpu.session import MgpuSession, get_session

POOL = "engine_pool"
TIMINGS = "engine_timings"  # list[EngineTiming], kept after the pool is gone, for the summary and reports
EVENTS = "engine_events"


def get_pool(session: MgpuSession, log_dir: Path) -> EnginePool:
    pool = session.services.get(POOL)
    if pool is None:
        from pytest_mgpu.hardware.leasing import Leaser, default_lock_dir

        leaser = Leaser(session.settings.lock_dir or default_lock_dir(), session.topology)

        def acquire(n: int, prefer: tuple[int, ...] | None, timeout_s: float) -> DeviceLease:
            return leaser.acquire(n, prefer=prefer, timeout_s=timeout_s)

        pool = EnginePool(session.topology, acquire, log_dir, session.settings.start_timeout)
        session.services[POOL] = pool
        atexit.register(pool.stop_all)
    assert isinstance(pool, EnginePool)
    return pool


def stop_pool(session: MgpuSession) -> None:
    pool = session.services.pop(POOL, None)
    if pool is None:
        return
    atexit.unregister(pool.stop_all)
    try:
        pool.stop_all()
    finally:
        session.services.setdefault(TIMINGS, []).extend(pool.timings)
        session.services.setdefault(EVENTS, []).extend(pool.events)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_pool(get_session(session.config))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    timings: list[EngineTiming] = get_session(terminalreporter.config).services.get(TIMINGS, [])
    if not timings:
        return
    terminalreporter.write_sep("-", "pytest-mgpu engines")
    for t in timings:
        stop = f"{t.stop_s:.1f} s" if t.stop_s is not None else "-"
        drain = f", GPU memory idle after {t.drain_s:.1f} s" if t.drain_s is not None else ""
        terminalreporter.write_line(f"{t.label}: started in {t.startup_s:.1f} s, stopped in {stop}{drain}")
