#!/usr/bin/env python3
"""Record raw NVML readings of every GPU as a JSON list, for telemetry tests to replay.

    python tools/capture_nvml.py [--samples 10] [--interval 0.2] [--load] [--out FILE]

Each element is one reading of one GPU: `t_s` (seconds since the first reading), `index`,
`uuid`, `name`, then one key per field below (null when NVML cannot say; the NVML error
text is kept under `errors`). `--load` keeps every GPU busy with matrix multiplies
(PyTorch, in a child process) while sampling, so power, clocks and utilization move.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pynvml as nv

Reading = Callable[[Any], Any]


def _processes(h: Any) -> list[dict[str, Any]]:
    return [{"pid": p.pid, "used_memory_bytes": p.usedGpuMemory} for p in nv.nvmlDeviceGetComputeRunningProcesses(h)]


def _event_reasons(h: Any) -> int:
    fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
    return int(fn(h))


# field -> how to read it; the unit is in the name
FIELDS: dict[str, Reading] = {
    "power_mw": nv.nvmlDeviceGetPowerUsage,
    "total_energy_mj": nv.nvmlDeviceGetTotalEnergyConsumption,
    "sm_clock_mhz": lambda h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
    "mem_clock_mhz": lambda h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
    "graphics_clock_mhz": lambda h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_GRAPHICS),
    "max_sm_clock_mhz": lambda h: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM),
    "max_mem_clock_mhz": lambda h: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM),
    "max_graphics_clock_mhz": lambda h: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_GRAPHICS),
    "utilization_gpu_pct": lambda h: nv.nvmlDeviceGetUtilizationRates(h).gpu,
    "utilization_memory_pct": lambda h: nv.nvmlDeviceGetUtilizationRates(h).memory,
    "memory_used_bytes": lambda h: nv.nvmlDeviceGetMemoryInfo(h).used,
    "memory_total_bytes": lambda h: nv.nvmlDeviceGetMemoryInfo(h).total,
    "clocks_event_reasons": _event_reasons,
    "pcie_gen_current": nv.nvmlDeviceGetCurrPcieLinkGeneration,
    "pcie_gen_max": nv.nvmlDeviceGetMaxPcieLinkGeneration,
    "pcie_width_current": nv.nvmlDeviceGetCurrPcieLinkWidth,
    "pcie_width_max": nv.nvmlDeviceGetMaxPcieLinkWidth,
    "compute_processes": _processes,
    "temperature_c": lambda h: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
}

_LOAD = """
import sys, torch
xs = [torch.randn(8192, 8192, device=f"cuda:{i}") for i in range(torch.cuda.device_count())]
for x in xs: (x @ x).sum().item()
print("ready", flush=True)
while True:
    for x in xs: y = x @ x
    for i in range(len(xs)): torch.cuda.synchronize(i)
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_gpu(index: int, handle: Any, t0: float) -> dict[str, Any]:
    sample: dict[str, Any] = {"t_s": round(time.monotonic() - t0, 4), "unix_time": time.time(), "index": index,
                              "uuid": _text(nv.nvmlDeviceGetUUID(handle)), "name": _text(nv.nvmlDeviceGetName(handle))}
    errors: dict[str, str] = {}
    for field, read in FIELDS.items():
        try:
            sample[field] = read(handle)
        except nv.NVMLError as exc:
            sample[field] = None
            errors[field] = str(exc)
    sample["errors"] = errors
    return sample


def start_load(timeout_s: float = 120.0) -> subprocess.Popen[str] | None:
    proc = subprocess.Popen([sys.executable, "-c", _LOAD], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "ready":
            return proc
        if not line and proc.poll() is not None:
            print(f"capture_nvml: the load process exited with {proc.returncode}; sampling idle", file=sys.stderr)
            return None
    proc.kill()
    return None


def capture(samples: int, interval_s: float) -> list[dict[str, Any]]:
    nv.nvmlInit()
    try:
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
        out: list[dict[str, Any]] = []
        t0 = time.monotonic()
        for k in range(samples):
            out.extend(read_gpu(i, h, t0) for i, h in enumerate(handles))
            if k + 1 < samples:
                time.sleep(interval_s)
        return out
    finally:
        nv.nvmlShutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between readings")
    parser.add_argument("--load", action="store_true", help="keep the GPUs busy (needs PyTorch with CUDA)")
    parser.add_argument("--out", help="write here instead of stdout")
    args = parser.parse_args(argv)
    load = start_load() if args.load else None
    try:
        readings = capture(args.samples, args.interval)
    finally:
        if load is not None:
            load.kill()
            load.wait()
    text = json.dumps(readings, indent=1, sort_keys=True) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
