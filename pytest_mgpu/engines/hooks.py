"""Engine-pool hooks: the pool is created on first use and always stopped at session end.

Session-fixture finalizers run on a normal end and on Ctrl-C; `pytest_sessionfinish` and an
`atexit` handler are backstops so that no engine outlives the pytest process.
"""

from __future__ import annotations

import atexit
from pathlib import Path

import pytest

from pytest_mgpu.engines.pool import DeviceLease, EnginePool
from pytest_mgpu.session import MgpuSession, get_session

POOL = "engine_pool"


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
    if pool is not None:
        atexit.unregister(pool.stop_all)
        pool.stop_all()


def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_pool(get_session(session.config))
