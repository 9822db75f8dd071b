"""Fixtures for the hardware tests: canned topologies and a fake NVML built from them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_mgpu.hardware.snapshot import load_topology_file
from pytest_mgpu.hardware.topology import LinkClass, Topology

HERE = Path(__file__).parent
TOPOLOGIES = HERE.parent / "data" / "topologies"
FAKE_PYNVML = HERE / "fake_pynvml.py"
CANNED = sorted(p.name for p in TOPOLOGIES.iterdir() if not p.name.startswith("."))

_LEVEL = {LinkClass.PIX: 10, LinkClass.PXB: 20, LinkClass.PHB: 30, LinkClass.NODE: 40, LinkClass.SYS: 50}
_P2P = {"OK": 0, "CNS": 1, "GNS": 2, "TNS": 3, "DR": 4, "NS": 5, "U": 6, "X": 5}


def canned(name: str) -> Topology:
    return load_topology_file(TOPOLOGIES / name)


def bus_id(i: int) -> str:
    return f"00000000:{0x18 + 0x10 * i:02X}:00.0"


def spec_from_topology(topo: Topology, *, nvswitch: bool = False, numa_supported: bool = True,
                       ancestor_supported: bool = True) -> dict[str, Any]:
    """What NVML would answer on the machine `topo` describes (NVLink pairs direct, or via NVSwitch)."""
    n = topo.n_devices
    devices = []
    for i, d in enumerate(topo.devices):
        peers = [j for j in range(n) if j != i and topo.link(i, j) is LinkClass.NVLINK]
        if not peers:
            nvlinks = None
        elif nvswitch:
            nvlinks = [f"00000000:{0xA0 + k:02X}:00.0" for k in range(topo.lanes(i, peers[0]))]
        else:
            nvlinks = [bus_id(j) for j in peers for _ in range(topo.lanes(i, j))]
        devices.append({
            "name": d.name, "uuid": d.uuid or f"GPU-fake-{i}", "bus_id": bus_id(i),
            "memory_total": (81559 if "80GB" in d.name else 23034) * 2**20,
            "numa": d.numa_node if numa_supported else None, "cpus": list(d.cpus),
            "pcie": [5, 5, 16, 16], "max_clocks": [1980, 1980, 2619], "bus_width": 5120, "nvlinks": nvlinks,
        })

    def level(i: int, j: int) -> int | None:
        link = topo.link(i, j)
        if i == j:
            return None
        if link is LinkClass.NVLINK:
            return 40 if topo.devices[i].numa_node == topo.devices[j].numa_node else 50
        return _LEVEL.get(link)

    p2p = topo.extra.get("p2p_read")
    return {
        "devices": devices,
        "ancestor": [[level(i, j) for j in range(n)] for i in range(n)] if ancestor_supported else None,
        "p2p_nvlink": [[0 if i != j and topo.link(i, j) is LinkClass.NVLINK else 5 for j in range(n)]
                       for i in range(n)],
        "p2p_read": [[_P2P[p2p[i][j]] if p2p else (5 if i == j else 0) for j in range(n)] for i in range(n)],
    }


def load_fake_pynvml() -> ModuleType:
    module_spec = importlib.util.spec_from_file_location("pynvml", FAKE_PYNVML)
    assert module_spec is not None
    assert module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh fake `pynvml` in sys.modules; call `.install(spec)` to give it a machine."""
    module = load_fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "canned_name" in metafunc.fixturenames:
        metafunc.parametrize("canned_name", CANNED)


@pytest.fixture
def topology_of() -> Any:
    """`topology_of("dgx-h100-8x-nv18-2numa.topo-m.txt")` -> the canned Topology."""
    return canned


@pytest.fixture
def nvml_spec_of() -> Any:
    """`nvml_spec_of(topology, nvswitch=False, ...)` -> a fake-NVML spec of that machine."""
    return spec_from_topology


@pytest.fixture
def topologies_dir() -> Path:
    return TOPOLOGIES


@pytest.fixture
def fake_pynvml_dir(tmp_path: Path) -> Path:
    """A directory holding the fake as `pynvml.py`, for PYTHONPATH in subprocesses."""
    d = tmp_path / "fake-nvml"
    d.mkdir()
    (d / "pynvml.py").write_text(FAKE_PYNVML.read_text())
    return d
