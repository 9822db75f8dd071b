"""What `/proc` says about an engine's processes: who they are, where they may run, how busy they are.

Every reader takes the `/proc` root as an argument, so tests replay a recorded tree instead of
the live one. A process that exits between listing and reading simply drops out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_mgpu.hardware.cpu import parse_cpulist

PROC = Path("/proc")
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcessInfo:
    """One engine process: its name and the CPUs it may run on (`Cpus_allowed_list`)."""

    pid: int
    name: str
    cpus_allowed: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "name": self.name, "cpus_allowed": list(self.cpus_allowed)}


@dataclass(frozen=True)
class ThreadTime:
    """A thread's cumulative CPU time and where it may run."""

    pid: int
    tid: int
    cpu_s: float  # utime + stime
    cpus_allowed: tuple[int, ...]


def _stat_fields(text: str) -> list[str]:
    """Fields of a `stat` line after the parenthesised command (which may hold spaces): state is [0]."""
    return text.rpartition(")")[2].split()


def _status_value(text: str, key: str) -> str | None:
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return value.strip()
    return None


def session_pids(sid: int, root: Path = PROC) -> tuple[int, ...]:
    """Live processes of session `sid`: an engine started in its own session and every child it made."""
    pids = []
    for entry in _numeric(root):
        try:
            fields = _stat_fields((root / entry / "stat").read_text())
        except OSError:
            continue
        if len(fields) > 3 and fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return tuple(sorted(pids))


def process_info(pid: int, root: Path = PROC) -> ProcessInfo | None:
    try:
        status = (root / str(pid) / "status").read_text()
    except OSError:
        return None
    allowed = _status_value(status, "Cpus_allowed_list")
    return ProcessInfo(pid, _status_value(status, "Name") or "?",
                       tuple(parse_cpulist(allowed)) if allowed else ())


def thread_times(pids: Iterable[int], root: Path = PROC, ticks_per_s: float = CLOCK_TICKS_PER_S) -> list[ThreadTime]:
    """Every thread of `pids`, with its CPU time and allowed CPUs."""
    out = []
    for pid in pids:
        task = root / str(pid) / "task"
        for tid in _numeric(task):
            try:
                fields = _stat_fields((task / tid / "stat").read_text())
                status = (task / tid / "status").read_text()
            except OSError:
                continue
            # after the command: state(0) ... utime(11) stime(12), i.e. fields 14 and 15 of proc(5)
            cpu_s = (int(fields[11]) + int(fields[12])) / ticks_per_s
            allowed = _status_value(status, "Cpus_allowed_list")
            out.append(ThreadTime(pid, int(tid), cpu_s, tuple(parse_cpulist(allowed)) if allowed else ()))
    return out


def core_busy_s(root: Path = PROC, ticks_per_s: float = CLOCK_TICKS_PER_S) -> dict[int, float]:
    """Cumulative busy seconds per core from `/proc/stat` (everything but idle and iowait), every process."""
    busy: dict[int, float] = {}
    try:
        text = (root / "stat").read_text()
    except OSError:
        return busy
    for line in text.splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
        busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / ticks_per_s
    return busy


@dataclass(frozen=True)
class HostLoad:
    """Cumulative CPU seconds the rest of the machine has used: take two and subtract.

    A measurement is only as good as its box: a neighbour's job or a hypervisor stealing cores
    slows an unchanged engine as much as a regression does (on the 2-core CPU box one minute of
    it slowed three unchanged runs by 10-20%). Reading this before and after a run says whether
    something else ran meanwhile.
    """

    others_cpu_s: float  # processes outside the excluded sessions (those that exit meanwhile are lost)
    steal_s: float  # time the hypervisor gave this machine's CPUs to someone else (/proc/stat, all CPUs)


def host_load(exclude_sessions: Iterable[int], root: Path = PROC,
              ticks_per_s: float = CLOCK_TICKS_PER_S, exclude_pids: Iterable[int] = ()) -> HostLoad:
    """CPU time so far of every live process outside `exclude_sessions` (and not in `exclude_pids`),
    and the machine's steal time."""
    excluded = set(exclude_sessions)
    skipped = {str(pid) for pid in exclude_pids}
    others = 0
    for entry in _numeric(root):
        if entry in skipped:
            continue
        try:
            fields = _stat_fields((root / entry / "stat").read_text())
        except OSError:
            continue
        if len(fields) > 12 and int(fields[3]) not in excluded:
            others += int(fields[11]) + int(fields[12])
    steal = 0
    try:
        for line in (root / "stat").read_text().splitlines():
            name, *values = line.split()
            if name == "cpu" and len(values) > 7:
                steal = int(values[7])
                break
    except OSError:
        pass
    return HostLoad(others / ticks_per_s, steal / ticks_per_s)


def online_cpus(root: Path = PROC) -> tuple[int, ...]:
    """CPUs this machine has online (from `/proc/stat`), the set an unpinned process may use."""
    return tuple(sorted(core_busy_s(root)))


def _numeric(directory: Path) -> Iterator[str]:
    try:
        entries = os.listdir(directory)
    except OSError:
        return iter(())
    return (e for e in entries if e.isdigit())
