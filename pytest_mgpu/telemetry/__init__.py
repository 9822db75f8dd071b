"""Telemetry over the measurement window: how busy each allocated device was, and what held it back.

A sampler thread polls a probe (NVML on GPUs) while the load runs, and the probe boils its
snapshots down to one `DeviceTelemetry` per allocated device. A probe whose readings are
cumulative counters (`/proc` CPU times on CPU core groups) is read only at the window's two ends:
the numbers are the same, and nothing runs beside the engine during the measurement (polling every
engine thread's `/proc` files each 0.5 s cost a 2-core box ~12% of the engine's throughput). The
detectors read only that summary, so they are tested on recorded readings without a GPU.

Unknown is not zero: a field NVML does not support (or `/proc` does not show) stays None and
no detector concludes anything from it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pytest_mgpu.telemetry.procfs import ProcessInfo

if TYPE_CHECKING:
    from pytest_mgpu.engines.spec import EngineServer
    from pytest_mgpu.hardware.topology import Topology

# None: read at the window's ends only (cumulative counters lose nothing between them)
DEFAULT_INTERVAL_S: dict[str, float | None] = {"cuda": 0.2, "cpu": None}


@dataclass(frozen=True)
class DeviceTelemetry:
    """One allocated device over the window. `busy` is the share of the window it worked for the engine:
    on a GPU NVML's kernel-active utilization, on a CPU core group the CPU time of the engine threads
    pinned to its cores per core-second (so a core group a TP=1 engine never uses reads ~0)."""

    index: int  # in the topology
    busy: float | None = None
    engine_present: bool | None = None  # GPU: an engine process holds a context; CPU: an engine thread is pinned here
    other_pids: tuple[int, ...] = ()  # processes on the device that are not the engine's (GPU)
    energy_j: float | None = None
    power_w_mean: float | None = None
    sm_clock_mhz_mean: float | None = None
    sm_clock_mhz_max: float | None = None  # the highest SM clock the GPU supports, when NVML said
    memory_used_bytes_max: int | None = None
    clock_event_reasons: int = 0  # OR over the samples
    throttled_fraction: float = 0.0  # samples with a throttling reason (not idle, not application clocks)
    pcie_gen_seen: int | None = None  # best current link generation seen under load
    pcie_width_seen: int | None = None
    pcie_gen_max: int | None = None  # what the link can do
    pcie_width_max: int | None = None
    system_busy: float | None = None  # CPU: every process's busy share of these cores (/proc/stat)
    samples: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["other_pids"] = list(self.other_pids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceTelemetry:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["other_pids"] = tuple(values.get("other_pids", ()))
        return cls(**values)


@dataclass(frozen=True)
class Telemetry:
    """Everything sampled during one measurement, in the engine's allocation order."""

    kind: str  # "cuda" or "cpu"
    window_s: float
    devices: tuple[DeviceTelemetry, ...] = ()
    processes: tuple[ProcessInfo, ...] = ()  # the engine's processes, with their CPU affinity
    online_cpus: tuple[int, ...] = ()
    engine_unpinned_cpu_s: float | None = None  # CPU: engine threads not pinned to one core group (the server)
    notes: tuple[str, ...] = field(default=())  # what could not be read, and why

    @property
    def energy_j(self) -> float | None:
        values = [d.energy_j for d in self.devices]
        return None if not values or any(v is None for v in values) else sum(v for v in values if v is not None)

    def device(self, index: int) -> DeviceTelemetry | None:
        return next((d for d in self.devices if d.index == index), None)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "window_s": self.window_s, "devices": [d.to_json() for d in self.devices],
                "processes": [p.to_json() for p in self.processes], "online_cpus": list(self.online_cpus),
                "engine_unpinned_cpu_s": self.engine_unpinned_cpu_s, "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Telemetry:
        return cls(
            kind=data["kind"], window_s=float(data["window_s"]),
            devices=tuple(DeviceTelemetry.from_json(d) for d in data.get("devices", ())),
            processes=tuple(ProcessInfo(int(p["pid"]), str(p["name"]), tuple(p["cpus_allowed"]))
                            for p in data.get("processes", ())),
            online_cpus=tuple(data.get("online_cpus", ())),
            engine_unpinned_cpu_s=data.get("engine_unpinned_cpu_s"),
            notes=tuple(data.get("notes", ())),
        )


S = TypeVar("S")


class Probe(Protocol[S]):
    """Reads one snapshot of every allocated device; turns a window of snapshots into Telemetry."""

    kind: str

    def open(self) -> None: ...

    def read(self) -> S: ...

    def close(self) -> None: ...

    def summarize(self, snapshots: Sequence[S], window_s: float, notes: tuple[str, ...]) -> Telemetry: ...


class Sampler(Generic[S]):
    """Polls a probe on a daemon thread from `start()` to `stop()`; never raises into the measurement.

    `interval_s=None` reads the probe at `start()` and `stop()` only, with no thread in between.
    """

    def __init__(self, probe: Probe[S], interval_s: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.probe = probe
        self.interval_s = interval_s
        self._clock = clock
        self._snapshots: list[S] = []
        self._notes: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opened = False
        self._t0 = 0.0
        self.telemetry: Telemetry | None = None

    def start(self) -> Sampler[S]:
        try:
            self.probe.open()
            self._opened = True
            self._t0 = self._clock()
            self._snapshots.append(self.probe.read())
        except Exception as exc:  # telemetry is evidence, not the measurement: note it and carry on
            self._notes.append(f"{self.probe.kind} telemetry unavailable: {exc}")
            self._close()
            return self
        if self.interval_s is None:
            return self
        self._thread = threading.Thread(target=self._run, name="mgpu-telemetry", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.interval_s is not None
        while not self._stop.wait(self.interval_s):
            try:
                self._snapshots.append(self.probe.read())
            except Exception as exc:
                self._notes.append(f"a {self.probe.kind} telemetry read failed: {exc}")
                return

    def stop(self) -> Telemetry:
        """End the window and summarize it (idempotent: a second call returns the same telemetry)."""
        if self.telemetry is not None:
            return self.telemetry
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        window_s = self._clock() - self._t0 if self._opened else 0.0
        if self._opened:
            try:
                self._snapshots.append(self.probe.read())
            except Exception as exc:
                self._notes.append(f"the last {self.probe.kind} telemetry read failed: {exc}")
        self._close()
        self.telemetry = Telemetry(self.probe.kind, window_s, notes=tuple(self._notes))
        if len(self._snapshots) >= 2:
            try:
                self.telemetry = self.probe.summarize(self._snapshots, window_s, tuple(self._notes))
            except Exception as exc:
                self.telemetry = Telemetry(self.probe.kind, window_s, notes=(
                    *self._notes, f"summarizing {self.probe.kind} telemetry failed: {type(exc).__name__}: {exc}"))
        return self.telemetry

    def _close(self) -> None:
        if self._opened:
            self._opened = False
            try:
                self.probe.close()
            except Exception as exc:
                self._notes.append(f"closing {self.probe.kind} telemetry failed: {exc}")

    def __enter__(self) -> Sampler[S]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def probe_for(topology: Topology, server: EngineServer) -> Probe[Any] | None:
    """NVML for GPUs, `/proc` for CPU core groups; None where nothing can be sampled (an external server)."""
    if server.spec.engine == "external" or server.pid is None:
        return None
    devices = tuple(topology.devices[i] for i in server.devices)
    if topology.kind == "cuda":
        from pytest_mgpu.telemetry.nvml_probe import NvmlProbe

        return NvmlProbe(devices, engine_sid=server.pid)
    from pytest_mgpu.telemetry.cpu_probe import CpuProbe

    return CpuProbe(devices, engine_sid=server.pid)


def start_telemetry(topology: Topology, server: EngineServer, interval_s: float | None = None) -> Sampler[Any] | None:
    """A started sampler for the engine's devices, or None where nothing can be sampled."""
    probe = probe_for(topology, server)
    if probe is None:
        return None
    return Sampler(probe, interval_s if interval_s is not None else DEFAULT_INTERVAL_S.get(probe.kind, 0.5)).start()
