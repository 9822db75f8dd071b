"""Leasing devices across processes (xdist workers, concurrent CI jobs on one box).

One lock file per device in a shared directory, locked with `fcntl.flock` on an open file
descriptor: the kernel drops the lock when the holder exits, even by SIGKILL, so there is
nothing stale to clean up. (A child made with a bare `fork()` shares the descriptor and
keeps the lock alive; `subprocess` children do not, since these descriptors are not
inheritable.)

A lease is all-or-nothing: locks are only ever tried without blocking, and a set that
cannot be completed is let go at once before backing off, so two processes that each want
2 of 3 devices never deadlock: one gets its pair, the other waits.

Every lease also holds a box-wide lock: shared normally, exclusive for a measurement that
must have the machine to itself. A writer-preference gate (`box.intent`) keeps a stream of
shared leases from starving an exclusive one.

Quiet time (`Leaser.quiet`) is the lighter rule the plugin applies to every measurement: a
measurement holds `quiet.lock` exclusively, an engine start-up (the heaviest thing a
neighbour does: compiling, loading weights, profiling memory) holds it shared. So while one
process on the box measures, no other starts an engine or measures; start-ups may overlap
each other. Devices are leased before, never while, quiet is held, so a start-up that waits
for devices cannot block a measurement that holds them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import socket
import stat
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pytest_mgpu.hardware.errors import HardwareError
from pytest_mgpu.hardware.select import ranked_sets, visible_devices
from pytest_mgpu.hardware.topology import LinkClass, Topology

_BACKOFF_START_S = 0.01
_BACKOFF_MAX_S = 0.25


class LeaseError(HardwareError, ValueError):
    """The request can never be met on this machine (too many devices, impossible constraints)."""


class LeaseTimeout(HardwareError, TimeoutError):
    """The devices exist but others held them for the whole timeout; the message names the holders."""


class LockDirError(HardwareError, ValueError):
    """The lock directory is not ours alone (another owner, writable by others, a symlink)."""


def default_lock_dir() -> Path:
    """`$TMPDIR/pytest-mgpu-locks-<uid>`: shared by every pytest process of this user on this box.

    The name is predictable, so `ensure_private_dir` checks it before any lock file is opened.
    """
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"pytest-mgpu-locks-{os.getuid()}"


def ensure_private_dir(path: Path) -> None:
    """Create `path` 0700, or accept an existing one only if it is a real directory of ours that
    nobody else may write; raise LockDirError saying what was found and what to do otherwise.

    In a shared /tmp anyone can create our predictable directory first and plant symlinks in it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    fix = ("Remove it if it is a stale one of yours, or pass --mgpu-lock-dir DIR (a directory of yours, "
           "mode 0700) to lease through another one.")
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise LockDirError(f"the lock directory {path} is {kind}; expected a directory owned by uid {os.getuid()}. "
                           + fix)
    if st.st_uid != os.getuid():
        raise LockDirError(f"the lock directory {path} is owned by uid {st.st_uid} "
                           f"(mode {stat.S_IMODE(st.st_mode):04o}); "
                           f"expected one owned by this user (uid {os.getuid()}): another user could plant "
                           "symlinks or hold locks there. " + fix)
    if st.st_mode & 0o022:
        raise LockDirError(f"the lock directory {path} has mode {stat.S_IMODE(st.st_mode):04o} (writable by others); "
                           f"expected 0700: anyone could plant files there. Run `chmod 700 {path}`, or pass "
                           "--mgpu-lock-dir DIR.")


def _current_test() -> str:
    test = os.environ.get("PYTEST_CURRENT_TEST", "")
    return test.rsplit(" (", 1)[0] if test else " ".join(sys.argv[:3])


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


class _LockFile:
    """An open lock file; closing the descriptor releases whatever lock it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:  # never through a symlink: a planted `cpu0.lock -> victim` would be written and truncated
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise LockDirError(f"the lock file {path} is a symlink (to {os.readlink(path)!r}); expected a plain "
                               f"file. Someone planted it: remove it and check who can write {path.parent}.") from None
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            raise LockDirError(f"the lock file {path} is not a regular file; expected one. Remove it.")

    def try_lock(self, exclusive: bool) -> bool:
        return _try_flock(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)

    def write(self, info: Mapping[str, Any]) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, (json.dumps(dict(info), sort_keys=True) + "\n").encode(), 0)

    def close(self, *, clear: bool = False) -> None:
        if self.fd < 0:
            return
        if clear:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
        os.close(self.fd)
        self.fd = -1


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            text = os.read(fd, 1 << 16).decode(errors="replace")
        finally:
            os.close(fd)
        data = json.loads(text or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "an unknown holder"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('test') or 'no test id'}) since {since}"


class _Held:
    """Something held until `release()`, or the end of a `with` block, or process exit."""

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Lease(_Held):
    """Devices held by this process until `release()` (or the end of a `with` block, or process exit)."""

    def __init__(self, devices: tuple[int, ...], locks: list[_LockFile], box: _LockFile, exclusive: bool) -> None:
        self.devices = devices
        self.exclusive = exclusive
        self._locks = locks
        self._box = box

    @property
    def released(self) -> bool:
        return self._box.fd < 0

    @property
    def fds(self) -> tuple[int, ...]:
        """The open lock descriptors: a process that inherits them holds the lease as long as it lives."""
        return tuple(lock.fd for lock in (*self._locks, self._box) if lock.fd >= 0)

    def release(self) -> None:
        """Give the devices back; a second call does nothing."""
        for lock in self._locks:
            lock.close(clear=True)
        self._box.close(clear=self.exclusive)

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"Lease(devices={self.devices}, exclusive={self.exclusive}, {state})"


class QuietHold(_Held):
    """The box's quiet lock, held until `release()` (or the end of a `with` block, or process exit)."""

    def __init__(self, lock: _LockFile, measuring: bool, waited_s: float) -> None:
        self.measuring = measuring
        self.waited_s = waited_s
        self._lock = lock

    def release(self) -> None:
        self._lock.close(clear=self.measuring)


class Leaser:
    """Leases sets of devices of `topology`, coordinating through lock files in `lock_dir`."""

    def __init__(self, lock_dir: Path, topology: Topology, *, environ: Mapping[str, str] | None = None) -> None:
        self.lock_dir = Path(lock_dir)
        self.topology = topology
        self.candidates = visible_devices(topology, environ)

    def lock_path(self, index: int) -> Path:
        d = self.topology.devices[index]
        key = d.uuid or f"{d.kind}{d.index}"
        return self.lock_dir / f"{key}.lock"

    def acquire(
        self,
        n: int,
        *,
        prefer: tuple[int, ...] | None = None,
        min_link: LinkClass | None = None,
        same_numa: bool = False,
        timeout_s: float = 600,
        exclusive: bool = False,
        holder: str | None = None,
    ) -> Lease:
        """Lease n devices, the best free set first (or `prefer` when it is free and acceptable).

        Raises LeaseError at once when no set could ever qualify, LeaseTimeout when every
        qualifying set stayed busy for `timeout_s` (0 means: try once).
        """
        sets = self._sets(n, min_link, same_numa)
        if prefer is not None and tuple(sorted(prefer)) in sets:
            sets.remove(tuple(sorted(prefer)))
            sets.insert(0, tuple(sorted(prefer)))
        ensure_private_dir(self.lock_dir)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "test": holder or _current_test(),
                "exclusive": exclusive}
        deadline = time.monotonic() + max(0.0, timeout_s)
        delay = _BACKOFF_START_S
        gate: _LockFile | None = None  # exclusive only: held from the first try until the box is ours
        try:
            while True:
                box, gate = self._try_enter("box", exclusive, gate)
                if box is not None:
                    if gate is not None:
                        gate.close()
                        gate = None
                        box.write({**info, "since": time.time()})
                    try:
                        for devices in sets:
                            locks = self._lock_all(devices)
                            if locks is not None:
                                for lock in locks:
                                    lock.write({**info, "since": time.time(), "devices": list(devices)})
                                return Lease(devices, locks, box, exclusive)
                    except BaseException:  # e.g. a planted symlink: let the box go, then say so
                        box.close(clear=exclusive)
                        raise
                    box.close(clear=exclusive)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LeaseTimeout(self._timeout_message(n, sets, timeout_s, exclusive))
                time.sleep(min(remaining, delay * random.uniform(0.5, 1.5)))
                delay = min(delay * 2, _BACKOFF_MAX_S)
        finally:
            if gate is not None:
                gate.close()

    def quiet(self, *, measuring: bool, timeout_s: float = 3600, holder: str | None = None) -> QuietHold:
        """Hold the box's quiet lock: exclusively to measure, shared to start an engine.

        A waiting measurement holds `quiet.intent` so a stream of start-ups cannot starve it.
        Raises LeaseTimeout naming the holder when the box stayed busy for `timeout_s`.
        """
        ensure_private_dir(self.lock_dir)
        path = self.lock_dir / "quiet.lock"
        started = time.monotonic()
        delay = _BACKOFF_START_S
        gate: _LockFile | None = None
        try:
            while True:
                lock, gate = self._try_enter("quiet", measuring, gate)
                if lock is not None:
                    if measuring:
                        lock.write({"pid": os.getpid(), "host": socket.gethostname(),
                                    "test": holder or _current_test(), "since": time.time()})
                    return QuietHold(lock, measuring, time.monotonic() - started)
                if time.monotonic() - started >= timeout_s:
                    what = "measure" if measuring else "start an engine"
                    info = _read_holder(path)
                    busy = (f"a measurement holds it: {_describe_holder(info)}" if info
                            else "engines are starting in other processes" if measuring and gate is not None
                            else "another measurement is queued")
                    raise LeaseTimeout(
                        f"waited {timeout_s:g} s for the machine to be quiet enough to {what}; {busy}. "
                        f"Measurements on one machine take turns (lock directory {self.lock_dir}); "
                        "wait for that run, or point this one at another --mgpu-lock-dir to measure side by side."
                    )
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, _BACKOFF_MAX_S)
        finally:
            if gate is not None:
                gate.close()

    def _sets(self, n: int, min_link: LinkClass | None, same_numa: bool) -> list[tuple[int, ...]]:
        sets = ranked_sets(self.topology, n, min_link=min_link, same_numa=same_numa, among=self.candidates)
        if sets:
            return sets
        wanted = f"{n} device{'s' if n != 1 else ''}"
        if min_link is not None:
            wanted += f" linked by {min_link.label} or better"
        if same_numa:
            wanted += " on one NUMA node"
        visible = self.topology.describe(self.candidates)
        restricted = "" if len(self.candidates) == self.topology.n_devices else (
            f" (restricted by CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r})"
        )
        raise LeaseError(f"cannot lease {wanted}: this process may use {visible}{restricted}; ask for fewer "
                         "or weaker-linked devices, or run on a machine that has them")

    def _try_enter(self, name: str, exclusive: bool,
                   gate: _LockFile | None) -> tuple[_LockFile | None, _LockFile | None]:
        """One try at the writer-preference lock `<name>.lock`; returns (the lock or None, the gate).

        An exclusive entrant takes the gate `<name>.intent` on its first try and keeps it (pass it
        back in) until it is in, so shared entrants, who must pass the gate, queue behind it.
        """
        lock = _LockFile(self.lock_dir / f"{name}.lock")
        if exclusive:
            if gate is None:
                gate = _LockFile(self.lock_dir / f"{name}.intent")
                if not gate.try_lock(exclusive=True):
                    gate.close()
                    gate = None
            if gate is not None and lock.try_lock(exclusive=True):
                return lock, gate
        else:
            entry = _LockFile(self.lock_dir / f"{name}.intent")
            try:
                if entry.try_lock(exclusive=False) and lock.try_lock(exclusive=False):
                    return lock, gate
            finally:
                entry.close()
        lock.close()
        return None, gate

    def _lock_all(self, devices: tuple[int, ...]) -> list[_LockFile] | None:
        taken: list[_LockFile] = []
        for index in devices:
            try:
                lock = _LockFile(self.lock_path(index))
            except BaseException:
                for t in taken:
                    t.close()
                raise
            if not lock.try_lock(exclusive=True):
                lock.close()
                for t in taken:
                    t.close()
                return None
            taken.append(lock)
        return taken

    def holders(self) -> dict[int, dict[str, Any] | None]:
        """Who holds each busy candidate device now (a lock we cannot take), for error messages."""
        busy: dict[int, dict[str, Any] | None] = {}
        for index in self.candidates:
            path = self.lock_path(index)
            if not path.exists():
                continue
            lock = _LockFile(path)
            try:
                if not lock.try_lock(exclusive=True):
                    busy[index] = _read_holder(path)
            finally:
                lock.close()
        return busy

    def _timeout_message(self, n: int, sets: list[tuple[int, ...]], timeout_s: float, exclusive: bool) -> str:
        lines = [f"could not lease {n} device{'s' if n != 1 else ''}"
                 f"{' exclusively' if exclusive else ''} within {timeout_s:g} s "
                 f"({len(sets)} acceptable set{'s' if len(sets) != 1 else ''}, every one busy)."]
        box_path = self.lock_dir / "box.lock"
        box, gate = _LockFile(box_path), _LockFile(self.lock_dir / "box.intent")
        try:
            if not box.try_lock(exclusive=False):
                lines.append(f"The machine is held exclusively by {_describe_holder(_read_holder(box_path))}.")
            elif not exclusive and not gate.try_lock(exclusive=False):
                lines.append("An exclusive lease is queued: it waits for the current holders, and new leases wait "
                             "for it.")
        finally:
            box.close()
            gate.close()
        for index, info in sorted(self.holders().items()):
            d = self.topology.devices[index]
            lines.append(f"device {index} ({d.uuid or d.name}) is held by {_describe_holder(info)}")
        lines.append(f"Lock directory: {self.lock_dir} (locks are freed when their holder exits; "
                     "wait for those runs, or raise the timeout)")
        return "\n".join(lines)
