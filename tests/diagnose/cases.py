"""Recorded cases for the detectors: canned topologies, real H100 NVML recordings, and results.

The results are real `BenchResult`s and the servers real `EngineServer` records (no engine
runs: detectors are pure functions of what was measured).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from pytest_mgpu.bench.results import BenchResult
from pytest_mgpu.bench.workload import Workload
from pytest_mgpu.diagnose import diagnose
from pytest_mgpu.engines.spec import EngineServer, EngineSpec
from pytest_mgpu.findings import Finding
from pytest_mgpu.hardware.topo_text import parse_topo_m
from pytest_mgpu.hardware.topology import Device, Topology
from pytest_mgpu.telemetry import Telemetry
from pytest_mgpu.telemetry.nvml_probe import GpuReading, GpuSnapshot, load_recording, summarize_gpu

DATA = Path(__file__).parent / "data"
TOPOLOGIES = Path(__file__).parents[1] / "data" / "topologies"
WORKLOAD = Workload(input_len=128, output_len=128, num_prompts=64, max_concurrency=16)


def topology(name: str) -> Topology:
    return parse_topo_m((TOPOLOGIES / f"{name}.topo-m.txt").read_text(), source=name)


def recording(name: str) -> tuple[tuple[Device, ...], tuple[GpuSnapshot, ...], dict[str, Any]]:
    return load_recording(DATA / f"{name}.json")


def h100_topology() -> Topology:
    """The recorded H100 exactly as the hardware layer read it through NVML (kept in the recording)."""
    _, _, meta = recording("h100-idle")
    return Topology.from_json(meta["topology"], source="h100 recording")


def as_cpu(topo: Topology) -> Topology:
    """The same layout with CPU devices (no GPU: no roofline, no NVML)."""
    devices = tuple(dataclasses.replace(d, kind="cpu") for d in topo.devices)
    return dataclasses.replace(topo, kind="cpu", devices=devices)


def recorded_telemetry(name: str, **reading_changes: Any) -> Telemetry:
    """The summary of a recording; `reading_changes` rewrites every reading (a derived case)."""
    devices, snapshots, _ = recording(name)
    if reading_changes:
        snapshots = tuple(
            GpuSnapshot(s.t_s, tuple(dataclasses.replace(r, **reading_changes) for r in s.devices), s.engine_pids)
            for s in snapshots)
    window = snapshots[-1].t_s - snapshots[0].t_s
    return summarize_gpu(devices, snapshots, window)


def server(topo: Topology, tp: int = 1, pp: int = 1, devices: tuple[int, ...] | None = None,
           model: str = "tiny", extra_args: tuple[str, ...] = (), pid: int | None = 4242) -> EngineServer:
    allocated = devices if devices is not None else tuple(range(tp * pp))
    spec = EngineSpec(engine="vllm", model=model, tp=tp, pp=pp, n_devices=len(allocated),
                      device_kind=topo.kind, extra_args=extra_args)
    return EngineServer(spec=spec, base_url="http://127.0.0.1:1", model_name="m", devices=allocated, pid=pid)


def result(srv: EngineServer, workload: Workload = WORKLOAD, **metrics: float) -> BenchResult:
    base = {"completed": 64.0, "failed": 0.0, "total_input_tokens": 64 * 128.0, "total_output_tokens": 64 * 128.0,
            "request_throughput": 10.0, "output_throughput": 1280.0, "median_tpot_ms": 10.0, "mean_e2el_ms": 1600.0,
            "output_throughput_per_gpu": 1280.0 / srv.n_devices, **metrics}
    return BenchResult(metrics=base, n_devices=srv.n_devices, repeats=(dict(base),), spec=srv.spec.key(),
                       workload=workload)


def findings(topo: Topology, srv: EngineServer, res: BenchResult | None = None,
             telemetry: Telemetry | None = None, earlier: tuple[BenchResult, ...] = ()) -> list[Finding]:
    return diagnose(topo, srv, res or result(srv), telemetry, earlier)


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


def capture_telemetry(name: str, engine_pids: tuple[int, ...]) -> Telemetry:
    """A recording of tools/capture_nvml.py (tests/data/nvml: flat per-GPU readings) as telemetry."""
    rows = json.loads((Path(__file__).parents[1] / "data" / "nvml" / f"{name}.json").read_text())
    by_time: dict[float, list[dict[str, Any]]] = {}
    for row in rows:
        by_time.setdefault(float(row["t_s"]), []).append(row)
    snapshots = tuple(
        GpuSnapshot(t, tuple(GpuReading(
            power_w=r["power_mw"] / 1000, sm_clock_mhz=r["sm_clock_mhz"], memory_used_bytes=r["memory_used_bytes"],
            gpu_util_pct=r["utilization_gpu_pct"], clock_event_reasons=r["clocks_event_reasons"],
            energy_mj=r["total_energy_mj"], pcie_gen=r["pcie_gen_current"], pcie_width=r["pcie_width_current"],
            temperature_c=r["temperature_c"], pids=tuple(p["pid"] for p in r["compute_processes"]))
            for r in sorted(readings, key=lambda r: r["index"])), engine_pids)
        for t, readings in sorted(by_time.items()))
    first = sorted(by_time[min(by_time)], key=lambda r: r["index"])
    devices = tuple(Device(index=r["index"], kind="cuda", name=r["name"], uuid=r["uuid"],
                           pcie_gen_max=r["pcie_gen_max"], pcie_width_max=r["pcie_width_max"]) for r in first)
    return summarize_gpu(devices, snapshots, snapshots[-1].t_s - snapshots[0].t_s)


def reading(**values: Any) -> GpuReading:
    return GpuReading(**values)


def dumps(found: list[Finding]) -> str:
    return json.dumps([f.to_json() for f in found], default=str)
