"""The engine pool's policies, on real process trees (tests/engines/fake_engine.py), not vLLM.

Reuse of an identical spec, replacement of a dead engine, LRU stop of an idle engine whose
devices are needed, retry on a port taken between choosing and binding, and stop_all.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mgpu.engines.launchers import LaunchRequest
from pytest_mgpu.engines.pool import EnginePool
from pytest_mgpu.engines.process import EngineStartError, LaunchPlan, free_port, session_members
from pytest_mgpu.engines.registry import EngineRegistry
from pytest_mgpu.engines.spec import EngineSpec
from pytest_mgpu.hardware.cpu import cpu_topology

FAKE = str(Path(__file__).with_name("fake_engine.py"))


class _Lease:
    fds: tuple[int, ...] = ()  # no lock files: nothing for the watchdog to hold

    def __init__(self, held: set[int], devices: tuple[int, ...]) -> None:
        self._held, self.devices = held, devices

    def release(self) -> None:
        self._held.difference_update(self.devices)


class _Devices:
    """In-process device accounting, standing in for the cross-process leaser (tested in tests/hardware)."""

    def __init__(self, n: int) -> None:
        self.n, self.held = n, set[int]()

    def acquire(self, n: int, prefer: tuple[int, ...] | None, timeout_s: float) -> _Lease:
        free = [i for i in range(self.n) if i not in self.held]
        if len(free) < n:
            raise TimeoutError(f"{n} devices wanted, free: {free}")
        self.held.update(free[:n])
        return _Lease(self.held, tuple(free[:n]))


def _fake_plan(req: LaunchRequest) -> LaunchPlan:
    return LaunchPlan(argv=(sys.executable, FAKE, str(req.port), "ok"), env={},
                      health_url=f"http://{req.host}:{req.port}/health")


def _registry() -> EngineRegistry:
    registry = EngineRegistry()
    registry.add("fake", "cpu", _fake_plan)
    return registry


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[EnginePool]:
    topo = cpu_topology(cpus=[0, 1], numa={0: 0, 1: 0})
    devices = _Devices(topo.n_devices)
    p = EnginePool(topo, devices.acquire, tmp_path, start_timeout_s=30, registry=_registry())
    yield p
    p.stop_all()
    assert devices.held == set()


def _spec(tp: int = 1, n: int = 1, model: str = "m") -> EngineSpec:
    return EngineSpec("fake", model, tp=tp, n_devices=n, device_kind="cpu")


def test_identical_spec_is_reused_and_different_one_is_not(pool: EnginePool) -> None:
    a = pool.get(_spec())
    assert pool.get(_spec()).pid == a.pid
    b = pool.get(_spec(model="other"))  # device 1 is free: both run
    assert b.pid != a.pid and set(a.devices).isdisjoint(b.devices)
    assert len(pool.servers) == 2


def test_needing_held_devices_stops_the_least_recently_used(pool: EnginePool) -> None:
    a = pool.get(_spec(model="a"))
    b = pool.get(_spec(model="b"))
    pool.get(_spec(model="a"))  # a is now the most recently used
    both = pool.get(_spec(tp=2, n=2))
    assert both.n_devices == 2
    assert session_members(a.pid or 0) == [] and session_members(b.pid or 0) == []
    assert [s.spec.model for s in pool.servers] == ["m"]
    assert sum("stopped" in e for e in pool.events) == 2


def test_dead_engine_is_replaced(pool: EnginePool) -> None:
    a = pool.get(_spec())
    os.killpg(a.pid or 0, signal.SIGKILL)
    b = pool.get(_spec())
    assert b.pid != a.pid
    assert any("found dead" in e for e in pool.events)


def test_port_taken_before_bind_is_retried(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy, free_port()])
        p = EnginePool(cpu_topology(cpus=[0], numa={0: 0}), _Devices(1).acquire, tmp_path, 30,
                       pick_port=lambda: next(ports), registry=_registry())
        try:
            server = p.get(_spec())
            assert not server.base_url.endswith(f":{busy}")
            assert any("was taken" in e for e in p.events)
        finally:
            p.stop_all()


def test_port_always_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = EnginePool(cpu_topology(cpus=[0], numa={0: 0}), _Devices(1).acquire, tmp_path, 30,
                       pick_port=lambda: port, registry=_registry())
        with pytest.raises(EngineStartError, match="Address already in use"):
            p.get(_spec())
        assert p.servers == ()


def test_more_devices_than_the_machine_has(pool: EnginePool) -> None:
    with pytest.raises(EngineStartError, match=r"needs 4 devices; this machine has 2 .*mgpu_gpus\(4\)"):
        pool.get(_spec(tp=4, n=4))


def test_no_engine_starts_while_a_neighbour_measures(tmp_path: Path) -> None:
    from pytest_mgpu.hardware.leasing import Leaser, LeaseTimeout

    topo = cpu_topology(cpus=[0, 1], numa={0: 0, 1: 0})
    devices = _Devices(topo.n_devices)
    ours, neighbour = Leaser(tmp_path / "locks", topo), Leaser(tmp_path / "locks", topo)
    p = EnginePool(topo, devices.acquire, tmp_path, start_timeout_s=30,
                   quiet=lambda: ours.quiet(measuring=False, timeout_s=0.2), registry=_registry())
    try:
        with neighbour.quiet(measuring=True, holder="neighbour::test_bench"):
            with pytest.raises(LeaseTimeout, match=r"quiet enough to start an engine.*neighbour::test_bench"):
                p.get(_spec())
            assert devices.held == set()  # the lease taken for the refused start-up was given back
        server = p.get(_spec())
        with neighbour.quiet(measuring=True, timeout_s=0):  # started: the quiet lock is not held any more
            assert p.get(_spec()) is server  # reuse starts nothing, so it does not wait
    finally:
        p.stop_all()
