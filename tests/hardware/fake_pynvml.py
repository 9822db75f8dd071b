"""A stand-in for nvidia-ml-py's `pynvml`, driven by a JSON-able spec of a machine.

It keeps the traits of the real binding that the provider must survive:
`NVML_P2P_CAPS_INDEX_READ` is the tuple `(0,)` and passing it raises ctypes.ArgumentError;
unsupported queries raise `NVMLError_NotSupported`; calls before `nvmlInit` raise
`NVMLError_Uninitialized`. Usable in-process (`install(spec)`) or, copied as `pynvml.py`
onto PYTHONPATH, in a subprocess (spec read from the file named by $FAKE_NVML_SPEC).
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_NVLINK_MAX_LINKS = 36
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_P2P_CAPS_INDEX_READ = (0,)  # sic: the real binding has `= 0,`
NVML_P2P_CAPS_INDEX_WRITE = 1
NVML_P2P_CAPS_INDEX_NVLINK = 2
NVML_P2P_STATUS_OK = 0


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported",
                12: "NVML Shared Library Not Found"}.get(self.value, f"NVML error {self.value}")


class NVMLError_Uninitialized(NVMLError):  # the real binding's names
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_UNINITIALIZED)


class NVMLError_InvalidArgument(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_INVALID_ARGUMENT)


class NVMLError_NotSupported(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_SUPPORTED)


class NVMLError_LibraryNotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_LIBRARY_NOT_FOUND)


STATE: dict[str, Any] = {"spec": None, "initialized": 0, "init_calls": 0, "shutdown_calls": 0, "calls": []}


def install(spec: dict[str, Any] | None) -> None:
    """Use this spec (None: behave as if the NVML library were missing)."""
    STATE.update(spec=spec, initialized=0, init_calls=0, shutdown_calls=0, calls=[])


def _spec() -> dict[str, Any]:
    if not STATE["initialized"]:
        raise NVMLError_Uninitialized()
    spec: dict[str, Any] = STATE["spec"]
    return spec


def _dev(handle: Any) -> dict[str, Any]:
    d: dict[str, Any] = _spec()["devices"][handle]
    return d


def _field(handle: Any, key: str) -> Any:
    value = _dev(handle).get(key)
    if value is None:
        raise NVMLError_NotSupported()
    return value


def nvmlInit() -> None:
    STATE["init_calls"] += 1
    if STATE["spec"] is None:
        raise NVMLError_LibraryNotFound()
    STATE["initialized"] += 1


def nvmlShutdown() -> None:
    STATE["shutdown_calls"] += 1
    if not STATE["initialized"]:
        raise NVMLError_Uninitialized()
    STATE["initialized"] -= 1


def nvmlSystemGetDriverVersion() -> str:
    return str(_spec().get("driver", "580.159.04"))


def nvmlSystemGetCudaDriverVersion() -> int:
    return int(_spec().get("cuda", 13000))


def nvmlDeviceGetCount() -> int:
    return len(_spec()["devices"])


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    if not 0 <= index < nvmlDeviceGetCount():
        raise NVMLError_InvalidArgument()
    return index


def nvmlDeviceGetName(handle: int) -> str:
    return str(_dev(handle)["name"])


def nvmlDeviceGetUUID(handle: int) -> str:
    return str(_dev(handle)["uuid"])


def nvmlDeviceGetMemoryInfo(handle: int) -> Any:
    total = _field(handle, "memory_total")
    used = _dev(handle).get("memory_used", 0)
    return SimpleNamespace(total=total, used=used, free=total - used)


def nvmlDeviceGetPciInfo(handle: int) -> Any:
    return SimpleNamespace(busId=_dev(handle)["bus_id"].encode())


def nvmlDeviceGetNumaNodeId(handle: int) -> int:
    return int(_field(handle, "numa"))


def nvmlDeviceGetCpuAffinity(handle: int, words: int) -> Any:
    masks = (ctypes.c_ulonglong * words)()
    for cpu in _field(handle, "cpus"):
        if cpu // 64 < words:
            masks[cpu // 64] |= 1 << (cpu % 64)
    return masks


def _pcie(handle: int, k: int) -> int:
    return int(_field(handle, "pcie")[k])


def nvmlDeviceGetCurrPcieLinkGeneration(handle: int) -> int:
    return _pcie(handle, 0)


def nvmlDeviceGetMaxPcieLinkGeneration(handle: int) -> int:
    return _pcie(handle, 1)


def nvmlDeviceGetCurrPcieLinkWidth(handle: int) -> int:
    return _pcie(handle, 2)


def nvmlDeviceGetMaxPcieLinkWidth(handle: int) -> int:
    return _pcie(handle, 3)


def nvmlDeviceGetNvLinkState(handle: int, link: int) -> int:
    remotes = _field(handle, "nvlinks")
    if link >= len(remotes):
        raise NVMLError_NotSupported() if link >= _dev(handle).get("max_links", 18) else NVMLError_InvalidArgument()
    return 1


def nvmlDeviceGetNvLinkRemotePciInfo(handle: int, link: int) -> Any:
    nvmlDeviceGetNvLinkState(handle, link)
    return SimpleNamespace(busId=_field(handle, "nvlinks")[link].encode())


def nvmlDeviceGetP2PStatus(a: int, b: int, index: Any) -> int:
    STATE["calls"].append(("P2P", a, b, index))
    if not isinstance(index, int):
        raise ctypes.ArgumentError("argument 3: TypeError: Don't know how to convert parameter 3")
    key = {0: "p2p_read", 2: "p2p_nvlink"}.get(index)
    matrix = _spec().get(key or "")
    if matrix is None:
        raise NVMLError_NotSupported()
    return int(matrix[a][b])


def nvmlDeviceGetTopologyCommonAncestor(a: int, b: int) -> int:
    matrix = _spec().get("ancestor")
    if matrix is None or matrix[a][b] is None:
        raise NVMLError_NotSupported()
    return int(matrix[a][b])


def nvmlDeviceGetMaxClockInfo(handle: int, clock: int) -> int:
    return int(_field(handle, "max_clocks")[clock])


def nvmlDeviceGetClockInfo(handle: int, clock: int) -> int:
    return int(_field(handle, "clocks")[clock])


def nvmlDeviceGetMemoryBusWidth(handle: int) -> int:
    return int(_field(handle, "bus_width"))


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    return int(_field(handle, "power_mw"))


def nvmlDeviceGetTotalEnergyConsumption(handle: int) -> int:
    return int(_field(handle, "energy_mj")) + int(time.monotonic() * 100_000)


def nvmlDeviceGetUtilizationRates(handle: int) -> Any:
    gpu, mem = _field(handle, "utilization")
    return SimpleNamespace(gpu=gpu, memory=mem)


def nvmlDeviceGetCurrentClocksEventReasons(handle: int) -> int:
    return int(_field(handle, "clocks_event_reasons"))


def nvmlDeviceGetComputeRunningProcesses(handle: int) -> list[Any]:
    return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in _dev(handle).get("processes", [])]


def nvmlDeviceGetTemperature(handle: int, sensor: int) -> int:
    return int(_field(handle, "temperature_c"))


if os.environ.get("FAKE_NVML_SPEC"):
    with open(os.environ["FAKE_NVML_SPEC"]) as _f:
        install(json.load(_f))
