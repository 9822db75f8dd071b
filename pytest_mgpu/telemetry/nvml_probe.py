"""Telemetry of GPUs through NVML: power, clocks, memory, utilization, clock-event reasons, energy,
PCIe link state and the compute processes on each GPU, sampled while the load runs.

pynvml is imported when the probe opens (never at import time), NVML is shut down exactly once
per init, and a query the GPU does not support reads as None ("unknown"). Recordings
(`python -m pytest_mgpu.telemetry.nvml_probe --seconds 10 --out rec.json`) hold the same
snapshots, so detectors are tested on what a real GPU said.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pytest_mgpu.hardware.nvml import NvmlReader
from pytest_mgpu.hardware.topology import Device
from pytest_mgpu.telemetry import DeviceTelemetry, Telemetry
from pytest_mgpu.telemetry.procfs import PROC, ProcessInfo, online_cpus, process_info, session_pids

# nvmlClocksEventReason* bits (nvidia-ml-py); idle and application-clock settings are not throttling
CLOCK_EVENT_REASONS = {
    0x1: "GpuIdle", 0x2: "ApplicationsClocksSetting", 0x4: "SwPowerCap", 0x8: "HwSlowdown",
    0x10: "SyncBoost", 0x20: "SwThermalSlowdown", 0x40: "HwThermalSlowdown", 0x80: "HwPowerBrakeSlowdown",
    0x100: "DisplayClockSetting",
}
NOT_THROTTLING = 0x1 | 0x2
_PID_REFRESH_READS = 5  # re-list the engine's processes every this many reads


def reason_names(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit) + (
        (f"0x{mask & ~sum(CLOCK_EVENT_REASONS):x}",) if mask & ~sum(CLOCK_EVENT_REASONS) else ())


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one instant; None = NVML could not say."""

    power_w: float | None = None
    sm_clock_mhz: int | None = None
    sm_clock_max_mhz: int | None = None  # the highest SM clock the GPU supports (boost)
    memory_used_bytes: int | None = None
    gpu_util_pct: float | None = None  # share of the last sample period a kernel ran (NVML)
    clock_event_reasons: int | None = None
    energy_mj: int | None = None  # total since the driver loaded
    pcie_gen: int | None = None  # current link generation and width
    pcie_width: int | None = None
    temperature_c: int | None = None
    pids: tuple[int, ...] | None = None  # compute processes (host PIDs when NVML runs outside our namespace)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["pids"] = None if self.pids is None else list(self.pids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GpuReading:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if values.get("pids") is not None:
            values["pids"] = tuple(values["pids"])
        return cls(**values)


@dataclass(frozen=True)
class GpuSnapshot:
    t_s: float
    devices: tuple[GpuReading, ...]  # in allocation order
    engine_pids: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"t_s": self.t_s, "devices": [d.to_json() for d in self.devices],
                "engine_pids": list(self.engine_pids)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GpuSnapshot:
        return cls(float(data["t_s"]), tuple(GpuReading.from_json(d) for d in data["devices"]),
                   tuple(data.get("engine_pids", ())))


class _Nvml(NvmlReader):
    """The provider's tolerant pynvml calls, plus one device's telemetry reading."""

    def reading(self, handle: Any, with_pids: bool = True) -> GpuReading:
        nv = self.nv
        power = self.get("nvmlDeviceGetPowerUsage", handle)
        memory = self.get("nvmlDeviceGetMemoryInfo", handle)
        util = self.get("nvmlDeviceGetUtilizationRates", handle)
        reasons = self.get("nvmlDeviceGetCurrentClocksEventReasons", handle)
        if reasons is None:
            reasons = self.get("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        procs = self.get("nvmlDeviceGetComputeRunningProcesses", handle) if with_pids else None
        return GpuReading(
            power_w=power / 1000 if power is not None else None,
            sm_clock_mhz=self.get("nvmlDeviceGetClockInfo", handle, getattr(nv, "NVML_CLOCK_SM", 1)),
            sm_clock_max_mhz=self.get("nvmlDeviceGetMaxClockInfo", handle, getattr(nv, "NVML_CLOCK_SM", 1)),
            memory_used_bytes=int(memory.used) if memory is not None else None,
            gpu_util_pct=float(util.gpu) if util is not None else None,
            clock_event_reasons=int(reasons) if reasons is not None else None,
            energy_mj=self.get("nvmlDeviceGetTotalEnergyConsumption", handle),
            pcie_gen=self.get("nvmlDeviceGetCurrPcieLinkGeneration", handle),
            pcie_width=self.get("nvmlDeviceGetCurrPcieLinkWidth", handle),
            temperature_c=self.get("nvmlDeviceGetTemperature", handle, getattr(nv, "NVML_TEMPERATURE_GPU", 0)),
            pids=tuple(sorted({int(p.pid) for p in procs})) if procs is not None else None,
        )


class NvmlProbe:
    kind = "cuda"

    def __init__(self, devices: Sequence[Device], engine_sid: int | None = None, root: Path = PROC,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.devices = tuple(devices)
        self.engine_sid = engine_sid
        self.root = root
        self._clock = clock
        self._stack = contextlib.ExitStack()
        self._nvml: _Nvml | None = None
        self._handles: list[Any] = []
        self._engine_pids: tuple[int, ...] = ()
        self._reads = 0

    def open(self) -> None:
        from pytest_mgpu.hardware.nvml import nvml_session

        nv = self._stack.enter_context(nvml_session())
        self._nvml = _Nvml(nv)
        try:
            self._handles = [self._handle(nv, d) for d in self.devices]
        except Exception:
            self._stack.close()
            raise

    @staticmethod
    def _handle(nv: Any, device: Device) -> Any:
        if device.uuid:
            with contextlib.suppress(nv.NVMLError):
                return nv.nvmlDeviceGetHandleByUUID(device.uuid)
        return nv.nvmlDeviceGetHandleByIndex(device.index)

    def read(self) -> GpuSnapshot:
        assert self._nvml is not None, "open() first"
        if self.engine_sid is not None and self._reads % _PID_REFRESH_READS == 0:
            self._engine_pids = session_pids(self.engine_sid, self.root)
        self._reads += 1
        return GpuSnapshot(self._clock(), tuple(self._nvml.reading(h) for h in self._handles), self._engine_pids)

    def close(self) -> None:
        self._stack.close()
        self._nvml = None

    def summarize(self, snapshots: Sequence[GpuSnapshot], window_s: float, notes: tuple[str, ...]) -> Telemetry:
        pids = sorted({p for s in snapshots for p in s.engine_pids})
        processes = tuple(p for p in (process_info(pid, self.root) for pid in pids) if p is not None)
        return summarize_gpu(self.devices, snapshots, window_s, notes, processes, online_cpus(self.root))


def _values(readings: Sequence[GpuReading], name: str) -> list[Any]:
    return [v for v in (getattr(r, name) for r in readings) if v is not None]


def _energy_j(snapshots: Sequence[GpuSnapshot], pos: int) -> float | None:
    """From the energy counter; else the power samples integrated over time (trapezoids)."""
    counters = [(s.t_s, float(e)) for s in snapshots if (e := s.devices[pos].energy_mj) is not None]
    if len(counters) >= 2 and counters[-1][1] >= counters[0][1]:
        return (counters[-1][1] - counters[0][1]) / 1000
    power = [(s.t_s, float(p)) for s in snapshots if (p := s.devices[pos].power_w) is not None]
    if len(power) < 2:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(power))


def summarize_gpu(devices: Sequence[Device], snapshots: Sequence[GpuSnapshot], window_s: float,
                  notes: tuple[str, ...] = (), processes: tuple[ProcessInfo, ...] = (),
                  cpus_online: tuple[int, ...] = ()) -> Telemetry:
    """Per GPU over the window. Utilization skips the first snapshot (NVML's value looks back in time,
    before the window opened); engine presence is unknown when NVML's PIDs are from another namespace."""
    engine = {p for s in snapshots for p in s.engine_pids}
    seen = {p for s in snapshots for r in s.devices for p in (r.pids or ())}
    known_pids = any(r.pids is not None for s in snapshots for r in s.devices)
    namespace_ok = bool(engine & seen) or not seen
    if known_pids and not namespace_ok:
        notes += ("NVML lists compute processes whose PIDs are not the engine's (is NVML answering from another "
                  "PID namespace, e.g. a container?); whether the engine runs on each GPU is unknown",)
    out = []
    for pos, device in enumerate(devices):
        readings = [s.devices[pos] for s in snapshots]
        later = readings[1:] or readings
        util = _values(later, "gpu_util_pct")
        reasons = _values(later, "clock_event_reasons")
        pids = {p for r in readings for p in (r.pids or ())}
        energy = _energy_j(snapshots, pos)
        clocks = _values(later, "sm_clock_mhz")
        memory = _values(readings, "memory_used_bytes")
        gens, widths = _values(readings, "pcie_gen"), _values(readings, "pcie_width")
        present: bool | None = None
        if any(r.pids is not None for r in readings) and namespace_ok and engine:
            present = bool(pids & engine)
        out.append(DeviceTelemetry(
            index=device.index,
            busy=sum(util) / len(util) / 100 if util else None,
            engine_present=present,
            other_pids=tuple(sorted(pids - engine)) if namespace_ok and engine else (),
            energy_j=energy,
            power_w_mean=energy / window_s if energy is not None and window_s > 0 else None,
            sm_clock_mhz_mean=sum(clocks) / len(clocks) if clocks else None,
            sm_clock_mhz_max=max(_values(readings, "sm_clock_max_mhz"), default=None),
            memory_used_bytes_max=max(memory) if memory else None,
            clock_event_reasons=_or(reasons),
            throttled_fraction=sum(1 for r in reasons if r & ~NOT_THROTTLING) / len(reasons) if reasons else 0.0,
            pcie_gen_seen=max(gens) if gens else None,
            pcie_width_seen=max(widths) if widths else None,
            pcie_gen_max=device.pcie_gen_max,
            pcie_width_max=device.pcie_width_max,
            samples=len(readings),
        ))
    return Telemetry("cuda", window_s, tuple(out), processes, cpus_online, None, notes)


def _or(values: Sequence[int]) -> int:
    mask = 0
    for v in values:
        mask |= v
    return mask


# --- recordings: what a real GPU said, for tests and for bug reports --------------------------------------------


def load_recording(path: Path) -> tuple[tuple[Device, ...], tuple[GpuSnapshot, ...], dict[str, Any]]:
    """(devices, snapshots, metadata) of a recording made by `record`."""
    data = json.loads(path.read_text())
    devices = tuple(Device.from_json(d) for d in data["devices"])
    snapshots = tuple(GpuSnapshot.from_json(s) for s in data["snapshots"])
    return devices, snapshots, dict(data.get("meta", {}))


def record(seconds: float, interval_s: float, engine_pids: Sequence[int] = (),
           meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample every GPU for `seconds`; the devices as the hardware layer reads them, plus the snapshots."""
    from pytest_mgpu.hardware.nvml import read_topology

    topology = read_topology()
    probe = NvmlProbe(topology.devices)
    probe.open()
    snapshots = []
    try:
        end = time.monotonic() + seconds
        while True:
            snap = probe.read()
            snapshots.append(GpuSnapshot(snap.t_s, snap.devices, tuple(engine_pids)))
            if time.monotonic() >= end:
                break
            time.sleep(interval_s)
    finally:
        probe.close()
    t0 = snapshots[0].t_s
    return {
        "meta": {**(meta or {}), "seconds": seconds, "interval_s": interval_s, "topology": topology.to_json()},
        "devices": [d.to_json() for d in topology.devices],
        "snapshots": [GpuSnapshot(round(s.t_s - t0, 4), s.devices, s.engine_pids).to_json() for s in snapshots],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_mgpu.telemetry.nvml_probe",
                                     description="Record NVML telemetry of every GPU (for tests and bug reports).")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--pid", type=int, action="append", default=[], help="a PID to count as the engine")
    parser.add_argument("--note", default="", help="what was running while recording")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    data = record(args.seconds, args.interval, args.pid, {"note": args.note})
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(data['snapshots'])} snapshots of {len(data['devices'])} GPU(s) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
