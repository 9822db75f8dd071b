"""The NVML provider against a fake pynvml that keeps the real binding's quirks.

Each canned machine is turned into what NVML would answer there; the provider must
rebuild the same link matrix nvidia-smi printed (NVLink from the P2P/NvLink calls,
everything else from the PCIe common ancestor).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_mgpu.hardware import nvml
from pytest_mgpu.hardware.errors import HardwareError, NvmlUnavailable
from pytest_mgpu.hardware.topology import LinkClass

MULTI_GPU = [
    ("dgx-h100-8x-nv18-2numa.topo-m.txt", True, 18),
    ("dgx-a100-8x-nv12.topo-m.txt", True, 12),
    ("a100-pcie-4x-nvlink-pairs.topo-m.txt", False, 12),
    ("l4-2x-pcie-no-p2p.topo-m.txt", False, None),
    ("rtx4090-2x-sys-2numa.topo-m.txt", False, None),
]


@pytest.mark.parametrize(("name", "nvswitch", "links_per_gpu"), MULTI_GPU)
def test_rebuilds_the_matrix_nvidia_smi_prints(
    name: str, nvswitch: bool, links_per_gpu: int | None, fake_nvml: ModuleType, topology_of: Any,
    nvml_spec_of: Any, tmp_path: Path,
) -> None:
    want = topology_of(name)
    fake_nvml.install(nvml_spec_of(want, nvswitch=nvswitch))
    got = nvml.read_topology(pci_root=tmp_path)
    assert got.source == "nvml"
    assert got.links == want.links
    assert got.nvlink_lanes == want.nvlink_lanes
    for g, w in zip(got.devices, want.devices, strict=True):
        assert (g.name, g.uuid, g.numa_node, g.cpus) == (w.name, w.uuid, w.numa_node, w.cpus)
        assert g.nvlink_count == links_per_gpu
        assert (g.pcie_gen_current, g.pcie_gen_max, g.pcie_width_current, g.pcie_width_max) == (5, 5, 16, 16)
    assert fake_nvml.STATE["initialized"] == 0
    assert fake_nvml.STATE["init_calls"] == fake_nvml.STATE["shutdown_calls"] == 1


def test_peak_memory_bandwidth_from_clock_and_bus_width(fake_nvml: ModuleType, topology_of: Any,
                                                         nvml_spec_of: Any) -> None:
    fake_nvml.install(nvml_spec_of(topology_of("rtx4090-2x-sys-2numa.topo-m.txt")))
    got = nvml.read_topology()
    # 2 (DDR) * 2619 MHz * 5120 bit / 8 = 3.352 TB/s, the H100 SXM figure
    assert got.devices[0].memory_bandwidth_bytes_per_s == pytest.approx(3.352e12, rel=1e-3)


def test_p2p_read_status_and_the_tuple_caps_index(fake_nvml: ModuleType, topology_of: Any,
                                                   nvml_spec_of: Any) -> None:
    fake_nvml.install(nvml_spec_of(topology_of("l4-2x-pcie-no-p2p.topo-m.txt")))
    assert fake_nvml.NVML_P2P_CAPS_INDEX_READ == (0,)
    fake_nvml.nvmlInit()
    with pytest.raises(ctypes.ArgumentError):  # what the real binding does with the tuple
        fake_nvml.nvmlDeviceGetP2PStatus(0, 1, fake_nvml.NVML_P2P_CAPS_INDEX_READ)
    fake_nvml.nvmlShutdown()
    got = nvml.read_topology()
    assert got.extra["p2p_read"] == [["X", "CNS"], ["CNS", "X"]]
    assert all(isinstance(index, int) for _, _, _, index in fake_nvml.STATE["calls"][1:])
    assert nvml.caps_index((0,)) == 0
    assert nvml.caps_index(2) == 2


def _single_vm_spec(numa: int | None = None) -> dict[str, Any]:
    """What an H100 exposed to a VM answers: NUMA, NVLink, common ancestor and P2P all NOT_SUPPORTED."""
    return {"devices": [{
        "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "bus_id": "00000000:00:05.0", "memory_total": 81559 * 2**20,
        "numa": numa, "cpus": [0, 1], "pcie": [5, 5, 16, 16], "max_clocks": [1980, 1980, 2619], "bus_width": 5120,
        "nvlinks": None,
    }]}


def test_not_supported_means_unknown_never_a_crash(fake_nvml: ModuleType, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.install({**_single_vm_spec(), "ancestor": None})
    monkeypatch.setattr(nvml, "numa_of_cpus", lambda: {})
    got = nvml.read_topology(pci_root=tmp_path)
    d = got.devices[0]
    assert (d.nvlink_count, d.numa_node) == (None, None)
    assert d.memory_bytes == 81559 * 2**20
    assert got.nvlink_lanes == ()


def test_numa_falls_back_to_sysfs_then_to_cpu_affinity(fake_nvml: ModuleType, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.install(_single_vm_spec())
    node_file = tmp_path / "0000:00:05.0" / "numa_node"
    node_file.parent.mkdir()
    node_file.write_text("1\n")
    assert nvml.read_topology(pci_root=tmp_path).devices[0].numa_node == 1
    node_file.write_text("-1\n")  # what a VM's sysfs says
    monkeypatch.setattr(nvml, "numa_of_cpus", lambda: {0: 3, 1: 3})
    assert nvml.read_topology(pci_root=tmp_path).devices[0].numa_node == 3


def test_unknown_pcie_ancestor_is_unknown(fake_nvml: ModuleType, topology_of: Any, nvml_spec_of: Any) -> None:
    spec = nvml_spec_of(topology_of("a100-pcie-4x-nvlink-pairs.topo-m.txt"), ancestor_supported=False)
    fake_nvml.install(spec)
    got = nvml.read_topology()
    assert got.link(0, 1) is LinkClass.NVLINK  # NVLink does not need the ancestor
    assert got.link(0, 2) is LinkClass.UNKNOWN


def test_shut_down_even_when_a_gpu_cannot_be_opened(fake_nvml: ModuleType, topology_of: Any,
                                                    nvml_spec_of: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.install(nvml_spec_of(topology_of("rtx4090-2x-sys-2numa.topo-m.txt")))

    def lost(index: int) -> int:
        if index == 1:
            raise fake_nvml.NVMLError(15)  # GPU is lost
        return index

    monkeypatch.setattr(fake_nvml, "nvmlDeviceGetHandleByIndex", lost)
    with pytest.raises(HardwareError, match="lists 2 GPUs but cannot open GPU 1"):
        nvml.read_topology()
    assert fake_nvml.STATE["init_calls"] == fake_nvml.STATE["shutdown_calls"] == 1


def test_no_library_is_unavailable_not_a_crash(fake_nvml: ModuleType) -> None:
    fake_nvml.install(None)
    with pytest.raises(NvmlUnavailable, match="NVML did not start: NVML Shared Library Not Found"):
        nvml.read_topology()


@pytest.mark.parametrize(("nvml_id", "sysfs"), [("00000000:18:00.0", "0000:18:00.0"),
                                                ("0000:3B:00.0", "0000:3b:00.0"), ("00000001:AF:00.0", "0001:af:00.0")])
def test_sysfs_bus_id(nvml_id: str, sysfs: str) -> None:
    assert nvml.sysfs_bus_id(nvml_id) == sysfs
