"""Leasing across real processes: distinct devices, SIGKILL frees locks, no deadlock, exclusive mode, quiet time."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_mgpu.hardware.leasing import LeaseError, Leaser, LeaseTimeout, LockDirError, default_lock_dir
from pytest_mgpu.hardware.snapshot import write_snapshot
from pytest_mgpu.hardware.topology import Device, LinkClass, Topology

WORKER = Path(__file__).with_name("lease_worker.py")


def _box(n: int) -> Topology:
    devices = tuple(Device(index=i, kind="cuda", name="NVIDIA L4", uuid=f"GPU-test-{i}", numa_node=0) for i in range(n))
    links = tuple(tuple(LinkClass.SELF if i == j else LinkClass.NODE for j in range(n)) for i in range(n))
    return Topology(kind="cuda", devices=devices, links=links)


@pytest.fixture
def box_file(tmp_path: Path) -> Any:
    def make(n: int) -> Path:
        path = tmp_path / f"box{n}.json"
        write_snapshot(_box(n), path)
        return path
    return make


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    return tmp_path / "locks"


class Worker:
    def __init__(self, *args: object, hold_stdin: bool = False) -> None:
        argv = [sys.executable, str(WORKER), *map(str, args)] + (["--hold-stdin"] if hold_stdin else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def event(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"worker {self.proc.pid} exited with {self.proc.wait()} before reporting"
        data: dict[str, Any] = json.loads(line)
        return data

    def finish(self, timeout_s: float = 30) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        assert self.proc.wait(timeout=timeout_s) == 0
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def test_two_processes_each_get_a_different_device(box_file: Any, lock_dir: Path, workers: list[Worker]) -> None:
    path = box_file(2)
    workers += [Worker(lock_dir, path, 1, hold_stdin=True) for _ in range(2)]
    got = [w.event() for w in workers]
    assert [e["event"] for e in got] == ["acquired", "acquired"]
    assert sorted(d for e in got for d in e["devices"]) == [0, 1]
    for w in workers:
        w.finish()


def test_sigkilled_holder_frees_its_devices_within_a_second(box_file: Any, lock_dir: Path,
                                                             workers: list[Worker]) -> None:
    path = box_file(2)
    holder = Worker(lock_dir, path, 2, hold_stdin=True)
    workers.append(holder)
    assert holder.event()["devices"] == [0, 1]
    leaser = Leaser(lock_dir, _box(2))
    with pytest.raises(LeaseTimeout) as info:
        leaser.acquire(1, timeout_s=0)
    message = str(info.value)
    assert f"pid {holder.proc.pid}" in message
    assert f"lease_worker {holder.proc.pid}" in message
    assert "device 0 (GPU-test-0) is held by" in message
    assert "device 1 (GPU-test-1) is held by" in message
    os.kill(holder.proc.pid, signal.SIGKILL)
    holder.proc.wait()
    start = time.monotonic()
    with leaser.acquire(2, timeout_s=5) as lease:
        assert lease.devices == (0, 1)
    assert time.monotonic() - start < 1.0


def test_two_of_three_never_deadlocks(box_file: Any, lock_dir: Path, workers: list[Worker]) -> None:
    """Any two pairs of 3 devices share one, so leases must take turns; all must finish."""
    path = box_file(3)
    workers += [Worker(lock_dir, path, 2, "--hold-s", 0.15, "--rounds", 3, "--timeout-s", 30) for _ in range(3)]
    events = [e for w in workers for e in w.finish(timeout_s=60)]
    assert [e["event"] for e in events] == ["acquired", "released"] * 9
    spans = sorted((a["t"], r["t"]) for a, r in zip(events[::2], events[1::2], strict=True))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.005, "two leases of overlapping device pairs were held at the same time"


def test_prefer_and_best_first(lock_dir: Path) -> None:
    leaser = Leaser(lock_dir, _box(3))
    with leaser.acquire(1, prefer=(2,)) as a:
        assert a.devices == (2,)
        with leaser.acquire(1, prefer=(2,), timeout_s=0) as b:
            assert b.devices == (0,)  # the preferred one is busy: the best free one instead


def test_impossible_requests_fail_at_once(lock_dir: Path) -> None:
    leaser = Leaser(lock_dir, _box(2))
    start = time.monotonic()
    with pytest.raises(LeaseError, match=r"cannot lease 3 devices: this process may use 2x NVIDIA L4"):
        leaser.acquire(3, timeout_s=60)
    with pytest.raises(LeaseError, match=r"2 devices linked by NVLINK or better"):
        leaser.acquire(2, min_link=LinkClass.NVLINK, timeout_s=60)
    assert time.monotonic() - start < 1


def test_cuda_visible_devices_restricts_the_candidates(lock_dir: Path) -> None:
    live = dataclasses.replace(_box(3), source="nvml")
    leaser = Leaser(lock_dir, live, environ={"CUDA_VISIBLE_DEVICES": "GPU-test-2,1"})
    with leaser.acquire(1) as a, leaser.acquire(1, timeout_s=0) as b:
        assert {a.devices, b.devices} == {(1,), (2,)}
        with pytest.raises(LeaseTimeout):
            leaser.acquire(1, timeout_s=0)
    with pytest.raises(LeaseError, match=r"restricted by CUDA_VISIBLE_DEVICES"):
        leaser.acquire(3)


def test_exclusive_keeps_everyone_else_out(lock_dir: Path, box_file: Any) -> None:
    leaser = Leaser(lock_dir, _box(2))
    other = Leaser(lock_dir, _box(2))
    exclusive = leaser.acquire(1, exclusive=True, holder="bench of record")
    with pytest.raises(LeaseTimeout, match=r"held exclusively by pid \d+ .*\(bench of record\)"):
        other.acquire(1, timeout_s=0.2)
    exclusive.release()
    shared = other.acquire(1)
    assert shared.devices == (0,)
    with pytest.raises(LeaseTimeout):  # exclusive waits for the shared holders to finish
        leaser.acquire(1, exclusive=True, timeout_s=0.2)
    shared.release()
    busy = other.acquire(2)
    queued = subprocess.Popen([sys.executable, str(WORKER), lock_dir, box_file(2), "1", "--exclusive",
                               "--timeout-s", "2"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # the exclusive worker now holds the gate, waiting for `busy`
    with pytest.raises(LeaseTimeout, match="An exclusive lease is queued"):
        Leaser(lock_dir, _box(3)).acquire(1, timeout_s=0.1)  # a free device, but the queue comes first
    busy.release()
    assert json.loads(queued.communicate(timeout=10)[0].splitlines()[0])["event"] == "acquired"
    with leaser.acquire(2, exclusive=True, timeout_s=1) as lease:
        assert lease.devices == (0, 1)


def test_release_is_idempotent_and_clears_the_holder(lock_dir: Path) -> None:
    leaser = Leaser(lock_dir, _box(1))
    lease = leaser.acquire(1, holder="tests/test_x.py::test_y")
    info = json.loads(leaser.lock_path(0).read_text())
    assert (info["test"], info["pid"], info["devices"]) == ("tests/test_x.py::test_y", os.getpid(), [0])
    assert leaser.holders() == {0: info}  # flock is per open file: even this process cannot take it twice
    lease.release()
    lease.release()
    assert leaser.lock_path(0).read_text() == ""
    assert leaser.holders() == {}
    assert "released" in repr(lease)


def test_default_lock_dir_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert default_lock_dir() == tmp_path / f"pytest-mgpu-locks-{os.getuid()}"


def test_a_measurement_keeps_engine_start_ups_and_other_measurements_out(
        lock_dir: Path, box_file: Any, workers: list[Worker]) -> None:
    measuring = Worker(lock_dir, box_file(1), 0, "--quiet", "measure", hold_stdin=True)
    workers.append(measuring)
    assert measuring.event()["event"] == "acquired"
    here = Leaser(lock_dir, _box(1))
    holder = rf"a measurement holds it: pid {measuring.proc.pid} on .* \(lease_worker {measuring.proc.pid}\)"
    with pytest.raises(LeaseTimeout, match=r"waited 0.2 s for the machine to be quiet enough to start an engine; "
                                           + holder):
        here.quiet(measuring=False, timeout_s=0.2)
    with pytest.raises(LeaseTimeout, match=r"quiet enough to measure; " + holder + r".*--mgpu-lock-dir"):
        here.quiet(measuring=True, timeout_s=0.2)
    with here.acquire(1, timeout_s=0):  # devices themselves stay leasable: only start-ups wait
        pass
    measuring.proc.send_signal(signal.SIGKILL)
    measuring.proc.wait()
    t0 = time.monotonic()
    with here.quiet(measuring=True, timeout_s=5) as hold:
        assert hold.waited_s < 1.0 and time.monotonic() - t0 < 1.0  # a killed measurer frees the box at once


def test_start_ups_overlap_but_a_queued_measurement_goes_first(
        lock_dir: Path, box_file: Any, workers: list[Worker]) -> None:
    here = Leaser(lock_dir, _box(1))
    starting = here.quiet(measuring=False, timeout_s=0)
    other_start = Worker(lock_dir, box_file(1), 0, "--quiet", "start", "--timeout-s", "1")
    assert other_start.event()["event"] == "acquired"  # start-ups share the box
    assert other_start.finish()[-1]["event"] == "released"
    queued = Worker(lock_dir, box_file(1), 0, "--quiet", "measure", "--timeout-s", "10", hold_stdin=True)
    workers.append(queued)
    time.sleep(0.5)  # the measurement now holds the intent, waiting for our start-up
    with pytest.raises(LeaseTimeout, match="another measurement is queued"):
        Leaser(lock_dir, _box(1)).quiet(measuring=False, timeout_s=0.2)
    assert queued.proc.poll() is None
    starting.release()
    assert queued.event()["event"] == "acquired"
    released = queued.finish()[-1]
    with here.quiet(measuring=False, timeout_s=5):
        pass
    assert released["event"] == "released"


def test_default_lock_dir_is_created_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    Leaser(default_lock_dir(), _box(1)).acquire(1, timeout_s=0).release()
    st = os.lstat(default_lock_dir())
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, os.getuid())
    assert stat.S_IMODE(os.lstat(Leaser(default_lock_dir(), _box(1)).lock_path(0)).st_mode) == 0o600


def test_a_planted_symlink_lock_leaves_its_victim_untouched(lock_dir: Path, tmp_path: Path) -> None:
    leaser = Leaser(lock_dir, _box(1))
    lock_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    leaser.lock_path(0).symlink_to(victim)
    with pytest.raises(LockDirError, match=r"GPU-test-0\.lock is a symlink .*victim.*remove it"):
        leaser.acquire(1, timeout_s=0)
    assert victim.read_text() == "precious\n"
    leaser.lock_path(0).unlink()
    leaser.acquire(1, timeout_s=0).release()  # nothing was left held by the failed try


def test_a_lock_dir_writable_by_others_is_refused(lock_dir: Path) -> None:
    lock_dir.mkdir()
    os.chmod(lock_dir, 0o777)
    with pytest.raises(LockDirError, match=rf"{lock_dir} has mode 0777 .*expected 0700.*--mgpu-lock-dir"):
        Leaser(lock_dir, _box(1)).acquire(1, timeout_s=0)
    with pytest.raises(LockDirError, match="mode 0777"):
        Leaser(lock_dir, _box(1)).quiet(measuring=True, timeout_s=0)
    assert list(lock_dir.iterdir()) == []  # refused before any file was created


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory to another user (os.chown)")
def test_a_lock_dir_of_another_user_is_refused(lock_dir: Path) -> None:
    lock_dir.mkdir(mode=0o700)
    os.chown(lock_dir, 65534, 65534)
    with pytest.raises(LockDirError, match=rf"{lock_dir} is owned by uid 65534 .*--mgpu-lock-dir"):
        Leaser(lock_dir, _box(1)).acquire(1, timeout_s=0)


def test_a_symlinked_lock_dir_is_refused(lock_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    lock_dir.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LockDirError, match=rf"{lock_dir} is a symlink"):
        Leaser(lock_dir, _box(1)).acquire(1, timeout_s=0)
