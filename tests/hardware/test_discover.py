"""`hardware.discover`: files replace the machine; auto/cuda/cpu; snapshots; import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_mgpu.hardware import HardwareError, discover
from pytest_mgpu.hardware.cpu import cpu_topology
from pytest_mgpu.hardware.errors import TopologyFileError
from pytest_mgpu.hardware.snapshot import SCHEMA_VERSION, load_topology_file, write_snapshot
from pytest_mgpu.hardware.topology import LinkClass


def test_snapshot_round_trip(canned_name: str, topology_of: Any, tmp_path: Path) -> None:
    topo = topology_of(canned_name)
    path = tmp_path / "box.json"
    write_snapshot(topo, path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["fingerprint"]["dirname"].startswith(data["fingerprint"]["label"])
    again = load_topology_file(path)
    assert again.devices == topo.devices
    assert again.links == topo.links
    assert again.nvlink_lanes == topo.nvlink_lanes
    assert again.extra == topo.extra
    assert list(tmp_path.iterdir()) == [path]  # the temp file of the atomic write is gone


def test_format_is_told_by_content_not_name(topology_of: Any, topologies_dir: Path, tmp_path: Path) -> None:
    topo = topology_of("rtx4090-2x-sys-2numa.topo-m.txt")
    write_snapshot(topo, tmp_path / "snapshot.txt")
    (tmp_path / "text.json").write_text((topologies_dir / "rtx4090-2x-sys-2numa.topo-m.txt").read_text())
    assert load_topology_file(tmp_path / "snapshot.txt").links == topo.links
    assert load_topology_file(tmp_path / "text.json").links == topo.links


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"devices": []}', "expected a topology snapshot with 'devices' and 'links'"),
        ('{"schema_version": 99, "devices": [], "links": []}', "upgrade pytest-mgpu"),
        ('{"devices": [{"index": 0, "kind": "cuda", "name": "x"}], "links": [["X", "SYS"]]}', "malformed"),
    ],
)
def test_bad_snapshot_says_what_is_wrong(content: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(TopologyFileError, match=message) as info:
        load_topology_file(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyFileError, match=r"cannot read topology file .*nope\.txt"):
        discover("auto", tmp_path / "nope.txt")


def test_file_replaces_the_machine(topologies_dir: Path, fake_nvml: ModuleType) -> None:
    fake_nvml.install(None)
    topo = discover("auto", topologies_dir / "dgx-a100-8x-nv12.topo-m.txt")
    assert (topo.kind, topo.n_devices) == ("cuda", 8)
    assert fake_nvml.STATE["init_calls"] == 0  # the live machine is not even asked


def test_explicit_mode_must_match_the_file(topologies_dir: Path) -> None:
    with pytest.raises(HardwareError, match="describes cuda devices"):
        discover("cpu", topologies_dir / "dgx-a100-8x-nv12.topo-m.txt")


def test_auto_without_nvml_falls_back_to_cpu(fake_nvml: ModuleType) -> None:
    fake_nvml.install(None)
    topo = discover("auto")
    assert topo.kind == "cpu"
    assert "NVML Shared Library Not Found" in topo.extra["why_cpu"]


def test_auto_with_zero_gpus_is_cpu_and_cuda_is_an_error(fake_nvml: ModuleType) -> None:
    fake_nvml.install({"devices": []})
    assert discover("auto").kind == "cpu"
    with pytest.raises(HardwareError, match=r"--mgpu-device cuda needs at least one NVIDIA GPU.*sees no GPU.*cpu"):
        discover("cuda")
    assert fake_nvml.STATE["init_calls"] == fake_nvml.STATE["shutdown_calls"] == 2


def test_cuda_without_nvidia_ml_py(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(HardwareError, match=r"nvidia-ml-py is not installed"):
        discover("cuda")


def test_auto_with_gpus_is_cuda(fake_nvml: ModuleType, topology_of: Any, nvml_spec_of: Any) -> None:
    fake_nvml.install(nvml_spec_of(topology_of("rtx4090-2x-sys-2numa.topo-m.txt")))
    topo = discover("auto")
    assert (topo.kind, topo.source, topo.n_devices) == ("cuda", "nvml", 2)
    assert discover("cpu").kind == "cpu"


def test_cpu_mode_two_cores_are_two_devices() -> None:
    topo = cpu_topology(cpus=[0, 1], numa={0: 0, 1: 0})
    assert [d.cpus for d in topo.devices] == [(0,), (1,)]
    assert topo.link(0, 1) is LinkClass.NODE
    across = cpu_topology(cpus=[0, 1, 2, 3], numa={0: 0, 1: 0, 2: 1, 3: 1}, max_devices=2)
    assert [d.cpus for d in across.devices] == [(0, 1), (2, 3)]
    assert across.link(0, 1) is LinkClass.SYS


def test_importing_the_package_touches_no_gpu_library() -> None:
    code = (
        "import sys, pytest_mgpu, pytest_mgpu.hardware, pytest_mgpu.hardware.hooks, pytest_mgpu.hardware.leasing, "
        "pytest_mgpu.hardware.fingerprint, pytest_mgpu.hardware.probe, pytest_mgpu.hardware.nvml, pytest_mgpu.cli, "
        "pytest_mgpu.cli.topo\n"
        "print(sorted(m for m in ('torch', 'pynvml', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
