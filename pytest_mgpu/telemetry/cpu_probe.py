"""Telemetry of CPU core groups from `/proc`: the CPU-mode stand-in for NVML.

The vLLM CPU build pins each rank's threads to its core group, so "the engine works on this
device" means "an engine thread pinned to these cores burns CPU". `/proc/stat` alone cannot
tell: on a 2-core box the load generator and the engine's HTTP server run on the idle rank's
core too. So busy time is counted from the engine's own threads (`/proc/<pid>/task/*/stat`),
and `/proc/stat` is kept beside it as the whole-system view.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_mgpu.hardware.topology import Device
from pytest_mgpu.telemetry import DeviceTelemetry, Telemetry
from pytest_mgpu.telemetry.procfs import (
    PROC,
    ProcessInfo,
    ThreadTime,
    core_busy_s,
    online_cpus,
    process_info,
    session_pids,
    thread_times,
)


@dataclass(frozen=True)
class CpuSnapshot:
    t_s: float
    threads: tuple[ThreadTime, ...]  # every thread of the engine's processes
    core_busy_s: dict[int, float]  # cumulative, every process
    processes: tuple[ProcessInfo, ...]


class CpuProbe:
    kind = "cpu"

    def __init__(self, devices: Sequence[Device], engine_sid: int, root: Path = PROC,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.devices = tuple(devices)
        self.engine_sid = engine_sid
        self.root = root
        self._clock = clock

    def open(self) -> None:
        if not session_pids(self.engine_sid, self.root):
            raise RuntimeError(f"no live process in the engine's session {self.engine_sid} under {self.root}")

    def read(self) -> CpuSnapshot:
        pids = session_pids(self.engine_sid, self.root)
        infos = tuple(p for p in (process_info(pid, self.root) for pid in pids) if p is not None)
        return CpuSnapshot(self._clock(), tuple(thread_times(pids, self.root)), core_busy_s(self.root), infos)

    def close(self) -> None:
        pass

    def summarize(self, snapshots: Sequence[CpuSnapshot], window_s: float, notes: tuple[str, ...]) -> Telemetry:
        return summarize_cpu(self.devices, snapshots, window_s, notes, online_cpus(self.root))


def _owner(allowed: tuple[int, ...], devices: Sequence[Device]) -> int | None:
    """The device a thread is pinned to (its allowed CPUs inside one core group), else None."""
    if not allowed:
        return None
    for pos, device in enumerate(devices):
        if set(allowed) <= set(device.cpus):
            return pos
    return None


def summarize_cpu(devices: Sequence[Device], snapshots: Sequence[CpuSnapshot], window_s: float,
                  notes: tuple[str, ...] = (), cpus_online: tuple[int, ...] = ()) -> Telemetry:
    """Per core group: CPU time of engine threads pinned there (first to last sight of each thread)."""
    first: dict[int, ThreadTime] = {}
    last: dict[int, ThreadTime] = {}
    for snap in snapshots:
        for t in snap.threads:
            first.setdefault(t.tid, t)
            last[t.tid] = t
    engine_s = [0.0] * len(devices)
    present = [False] * len(devices)
    unpinned_s = 0.0
    for tid, end in last.items():
        used = max(end.cpu_s - first[tid].cpu_s, 0.0)
        owner = _owner(end.cpus_allowed, devices)
        if owner is None:
            unpinned_s += used
        else:
            engine_s[owner] += used
            present[owner] = True
    start_busy, end_busy = snapshots[0].core_busy_s, snapshots[-1].core_busy_s
    out = []
    for pos, device in enumerate(devices):
        core_s = window_s * max(len(device.cpus), 1)
        system = [end_busy[c] - start_busy[c] for c in device.cpus if c in start_busy and c in end_busy]
        out.append(DeviceTelemetry(
            index=device.index,
            busy=min(engine_s[pos] / core_s, 1.0) if core_s > 0 else None,
            engine_present=present[pos],
            system_busy=min(sum(system) / core_s, 1.0) if system and core_s > 0 else None,
            samples=len(snapshots),
        ))
    processes = snapshots[-1].processes or snapshots[0].processes
    return Telemetry("cpu", window_s, tuple(out), processes, cpus_online, unpinned_s, notes)
