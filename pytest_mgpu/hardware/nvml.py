"""The NVML provider: the live GPUs through nvidia-ml-py (`import pynvml`), read once.

NVML is started lazily and always shut down. A query the GPU or driver does not support
(NOT_SUPPORTED, common in VMs and on PCIe parts) means "unknown", never a crash.

NVML has no NVLink level in its PCIe-tree answer (`TopologyCommonAncestor` says SYS for two
NVSwitch-connected GPUs on different sockets, where `nvidia-smi topo -m` prints NV18), so a
pair is NVLink when P2P-over-NVLink is OK or a link of one lands on the other; otherwise
the common PCIe ancestor decides. NVML ignores `CUDA_VISIBLE_DEVICES`: indices here are
physical, in PCI bus order.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pytest_mgpu.hardware.cpu import numa_of_cpus
from pytest_mgpu.hardware.errors import HardwareError, NvmlUnavailable
from pytest_mgpu.hardware.topology import Device, LinkClass, Topology

# nvmlGpuTopologyLevel_t -> link class (INTERNAL is two GPUs on one board: as close as PCIe gets)
ANCESTOR_LEVELS = {0: LinkClass.PIX, 10: LinkClass.PIX, 20: LinkClass.PXB, 30: LinkClass.PHB,
                   40: LinkClass.NODE, 50: LinkClass.SYS}
# nvmlGpuP2PStatus_t -> the codes `nvidia-smi topo -p2p` prints
P2P_STATUS = {0: "OK", 1: "CNS", 2: "GNS", 3: "TNS", 4: "DR", 5: "NS", 6: "U"}
_PCI_ROOT = Path("/sys/bus/pci/devices")


@contextlib.contextmanager
def nvml_session() -> Iterator[Any]:
    """`with nvml_session() as nv:` the pynvml module, initialised; shut down on the way out."""
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML did not start: {exc}") from None
    try:
        yield pynvml
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def caps_index(value: Any) -> int:
    """pynvml spells `NVML_P2P_CAPS_INDEX_READ = 0,` (a tuple); ctypes rejects it. Pass a plain int."""
    return int(value[0]) if isinstance(value, tuple) else int(value)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def sysfs_bus_id(nvml_bus_id: str) -> str:
    """NVML's `00000000:18:00.0` -> sysfs's `0000:18:00.0`."""
    parts = nvml_bus_id.strip().lower().split(":")
    if len(parts) != 3:
        return nvml_bus_id.lower()
    return f"{parts[0][-4:].rjust(4, '0')}:{parts[1]}:{parts[2]}"


class NvmlReader:
    """Calls into pynvml where NOT_SUPPORTED, any other NVML error, or a function the binding lacks is None."""

    def __init__(self, nv: Any) -> None:
        self.nv = nv

    def get(self, name: str, *args: Any) -> Any:
        fn: Callable[..., Any] | None = getattr(self.nv, name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except self.nv.NVMLError:
            return None


def _affinity(r: NvmlReader, handle: Any) -> tuple[int, ...]:
    words = max(16, math.ceil((os.cpu_count() or 1) / 64))  # room for 1024 CPUs; more words cost nothing
    masks = r.get("nvmlDeviceGetCpuAffinity", handle, words)
    if masks is None:
        return ()
    return tuple(w * 64 + b for w, mask in enumerate(masks) for b in range(64) if (int(mask) >> b) & 1)


def _numa_node(r: NvmlReader, handle: Any, bus_id: str, cpus: tuple[int, ...], pci_root: Path) -> int | None:
    """NVML's answer, else sysfs for the PCI device, else the node all affine CPUs sit on."""
    node = r.get("nvmlDeviceGetNumaNodeId", handle)
    if isinstance(node, int) and node >= 0:
        return node
    with contextlib.suppress(OSError, ValueError):
        value = int((pci_root / sysfs_bus_id(bus_id) / "numa_node").read_text())
        if value >= 0:
            return value
    if cpus:
        nodes = {numa_of_cpus().get(c) for c in cpus}
        if len(nodes) == 1 and None not in nodes:
            return nodes.pop()
    return None


def _nvlinks(r: NvmlReader, handle: Any) -> tuple[int | None, list[str]]:
    """(active links or None when NVML cannot say, the PCI bus id at the far end of each)."""
    known = False
    remotes: list[str] = []
    for link in range(int(getattr(r.nv, "NVML_NVLINK_MAX_LINKS", 18))):
        state = r.get("nvmlDeviceGetNvLinkState", handle, link)
        if state is None:
            continue
        known = True
        if state:
            remote = r.get("nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
            remotes.append(sysfs_bus_id(_text(remote.busId)) if remote is not None else "")
    return (len(remotes) if known else None), remotes


def _device(r: NvmlReader, index: int, handle: Any, pci_root: Path) -> tuple[Device, list[str]]:
    memory = r.get("nvmlDeviceGetMemoryInfo", handle)
    pci = r.get("nvmlDeviceGetPciInfo", handle)
    bus_id = _text(pci.busId) if pci is not None else ""
    cpus = _affinity(r, handle)
    nvlink_count, remotes = _nvlinks(r, handle)
    mem_clock_mhz = r.get("nvmlDeviceGetMaxClockInfo", handle, getattr(r.nv, "NVML_CLOCK_MEM", 2))
    bus_width_bits = r.get("nvmlDeviceGetMemoryBusWidth", handle)
    bandwidth = 2 * mem_clock_mhz * 1e6 * bus_width_bits / 8 if mem_clock_mhz and bus_width_bits else None
    device = Device(
        index=index,
        kind="cuda",
        name=_text(r.get("nvmlDeviceGetName", handle) or "unknown GPU"),
        uuid=_text(r.get("nvmlDeviceGetUUID", handle) or ""),
        memory_bytes=int(memory.total) if memory is not None else 0,
        pci_bus_id=bus_id,
        numa_node=_numa_node(r, handle, bus_id, cpus, pci_root),
        cpus=cpus,
        pcie_gen_current=r.get("nvmlDeviceGetCurrPcieLinkGeneration", handle),
        pcie_gen_max=r.get("nvmlDeviceGetMaxPcieLinkGeneration", handle),
        pcie_width_current=r.get("nvmlDeviceGetCurrPcieLinkWidth", handle),
        pcie_width_max=r.get("nvmlDeviceGetMaxPcieLinkWidth", handle),
        nvlink_count=nvlink_count,
        memory_bandwidth_bytes_per_s=bandwidth,
    )
    return device, remotes


def _pair(r: NvmlReader, a: Any, b: Any, remotes: list[str], da: Device, db: Device) -> tuple[LinkClass, int]:
    direct = remotes.count(sysfs_bus_id(db.pci_bus_id)) if db.pci_bus_id else 0
    status = r.get("nvmlDeviceGetP2PStatus", a, b, caps_index(r.nv.NVML_P2P_CAPS_INDEX_NVLINK))
    if direct or status == 0:
        lanes = direct or min(da.nvlink_count or 0, db.nvlink_count or 0)
        return LinkClass.NVLINK, lanes
    level = r.get("nvmlDeviceGetTopologyCommonAncestor", a, b)
    return ANCESTOR_LEVELS.get(level, LinkClass.UNKNOWN), 0


def read_topology(pci_root: Path = _PCI_ROOT) -> Topology:
    """The live GPUs. Raises NvmlUnavailable when NVML is absent or sees no GPU."""
    with nvml_session() as nv:
        r = NvmlReader(nv)
        try:
            count = int(nv.nvmlDeviceGetCount())
        except nv.NVMLError as exc:
            raise NvmlUnavailable(f"NVML could not count GPUs: {exc}") from None
        if count < 1:
            raise NvmlUnavailable("NVML started but sees no GPU")
        handles = []
        for i in range(count):
            try:
                handles.append(nv.nvmlDeviceGetHandleByIndex(i))
            except nv.NVMLError as exc:
                raise HardwareError(
                    f"NVML lists {count} GPUs but cannot open GPU {i}: {exc}. Check `nvidia-smi`; "
                    "a lost or reset-pending GPU needs the machine's attention"
                ) from None
        read = [_device(r, i, h, pci_root) for i, h in enumerate(handles)]
        devices = tuple(d for d, _ in read)
        read_index = caps_index(nv.NVML_P2P_CAPS_INDEX_READ)
        links: list[list[LinkClass]] = []
        lanes: list[list[int]] = []
        p2p: list[list[str]] = []
        for i, (a, (da, remotes)) in enumerate(zip(handles, read, strict=True)):
            row = [(LinkClass.SELF, 0) if i == j else _pair(r, a, b, remotes, da, devices[j])
                   for j, b in enumerate(handles)]
            links.append([c for c, _ in row])
            lanes.append([k for _, k in row])
            p2p.append(["X" if i == j else P2P_STATUS.get(r.get("nvmlDeviceGetP2PStatus", a, b, read_index), "U")
                        for j, b in enumerate(handles)])
        extra: dict[str, Any] = {"p2p_read": p2p}
        driver = r.get("nvmlSystemGetDriverVersion")
        if driver:
            extra["driver_version"] = _text(driver)
        cuda = r.get("nvmlSystemGetCudaDriverVersion")
        if cuda:
            extra["cuda_driver_version"] = f"{int(cuda) // 1000}.{int(cuda) % 1000 // 10}"
        return Topology(
            kind="cuda",
            devices=devices,
            links=tuple(tuple(row) for row in links),
            source="nvml",
            extra=extra,
            nvlink_lanes=tuple(tuple(row) for row in lanes) if any(any(row) for row in lanes) else (),
        )
