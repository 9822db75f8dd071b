"""`nvidia-smi topo -m` parsing and classification, on every canned topology."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_mgpu.hardware.errors import TopologyFileError
from pytest_mgpu.hardware.topo_text import format_cpulist, format_topo_m, parse_topo_m
from pytest_mgpu.hardware.topology import LinkClass as L

NV, SYS, NODE = L.NVLINK, L.SYS, L.NODE

# file -> (model, NUMA node per GPU, CPU affinity of GPU0, pair -> (link, lanes) spot checks, worst link)
EXPECTED: dict[str, dict[str, Any]] = {
    "dgx-h100-8x-nv18-2numa.topo-m.txt": dict(
        model="NVIDIA H100 80GB HBM3", numa=[0, 0, 0, 0, 1, 1, 1, 1], cpus0="0-55,112-167",
        pairs={(0, 7): (NV, 18), (3, 4): (NV, 18), (6, 5): (NV, 18)}, worst=NV),
    "dgx-a100-8x-nv12.topo-m.txt": dict(
        model="NVIDIA A100-SXM4-80GB", numa=[3, 3, 1, 1, 7, 7, 5, 5], cpus0="48-63,176-191",
        pairs={(0, 1): (NV, 12), (0, 7): (NV, 12)}, worst=NV),
    "a100-pcie-4x-nvlink-pairs.topo-m.txt": dict(
        model="NVIDIA A100 80GB PCIe", numa=[0, 0, 1, 1], cpus0="0-31,64-95",
        pairs={(0, 1): (NV, 12), (2, 3): (NV, 12), (0, 2): (SYS, 0), (1, 3): (SYS, 0)}, worst=SYS),
    "l4-2x-pcie-no-p2p.topo-m.txt": dict(
        model="NVIDIA L4", numa=[0, 0], cpus0="0-23", pairs={(0, 1): (NODE, 0)}, worst=NODE),
    "rtx4090-2x-sys-2numa.topo-m.txt": dict(
        model="NVIDIA GeForce RTX 4090", numa=[0, 1], cpus0="0-15,32-47", pairs={(1, 0): (SYS, 0)}, worst=SYS),
    "h100-single-vm.topo-m.txt": dict(
        model="unknown GPU", numa=[0], cpus0="0-15", pairs={}, worst=L.SELF),
}


def test_every_canned_file_has_expectations(canned_name: str) -> None:
    assert canned_name in EXPECTED


def test_parse_and_classify(canned_name: str, topologies_dir: Path) -> None:
    want = EXPECTED[canned_name]
    topo = parse_topo_m((topologies_dir / canned_name).read_text(), canned_name)
    n = len(want["numa"])
    assert topo.kind == "cuda"
    assert topo.n_devices == n
    assert [d.name for d in topo.devices] == [want["model"]] * n
    assert [d.numa_node for d in topo.devices] == want["numa"]
    assert format_cpulist(topo.devices[0].cpus) == want["cpus0"]
    assert all(topo.link(i, i) is L.SELF for i in range(n))
    for (i, j), (link, lanes) in want["pairs"].items():
        assert (topo.link(i, j), topo.lanes(i, j)) == (link, lanes)
        assert (topo.link(j, i), topo.lanes(j, i)) == (link, lanes)
    assert topo.worst_link(list(range(n))) is want["worst"]


def test_uuids_come_from_the_gpu_list(topology_of: Any) -> None:
    topo = topology_of("dgx-h100-8x-nv18-2numa.topo-m.txt")
    assert all(re.fullmatch(r"GPU-[0-9a-f-]{36}", d.uuid) for d in topo.devices)
    assert len({d.uuid for d in topo.devices}) == 8


def test_nic_rows_and_legend(topology_of: Any) -> None:
    nics = topology_of("dgx-h100-8x-nv18-2numa.topo-m.txt").extra["nics"]
    assert [(x["name"], x["device"]) for x in nics] == [(f"NIC{k}", f"mlx5_{k}") for k in range(4)]
    assert nics[0]["links"] == ["PIX", "PIX", "NODE", "NODE", "SYS", "SYS", "SYS", "SYS"]


def test_p2p_matrix_is_read(topology_of: Any) -> None:
    topo = topology_of("l4-2x-pcie-no-p2p.topo-m.txt")
    assert topo.extra["p2p_read"] == [["X", "CNS"], ["CNS", "X"]]
    assert topo.n_devices == 2  # the -p2p matrix is not taken for a second link matrix


def test_ansi_escapes_are_ignored(topologies_dir: Path) -> None:
    text = (topologies_dir / "rtx4090-2x-sys-2numa.topo-m.txt").read_text()
    assert "\x1b[4m" in text
    assert parse_topo_m(text) == parse_topo_m(re.sub(r"\x1b\[[0-9;]*m", "", text))


def test_tabs_spaces_and_crlf_read_the_same(topologies_dir: Path) -> None:
    text = (topologies_dir / "dgx-h100-8x-nv18-2numa.topo-m.txt").read_text()
    spaced = text.replace("\t", "    ")
    assert parse_topo_m(spaced) == parse_topo_m(text)
    assert parse_topo_m(text.replace("\n", "\r\n")) == parse_topo_m(text)


def test_real_single_gpu_capture() -> None:
    """Verbatim capture from an H100 VM: empty cell before GPU NUMA ID, N/A, one GPU."""
    text = "\t\x1b[4mGPU0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\nGPU0\t X \t0-15\t0\t\tN/A\n"
    topo = parse_topo_m(text)
    assert topo.n_devices == 1
    assert topo.devices[0].cpus == tuple(range(16))
    assert topo.devices[0].numa_node == 0
    assert "gpu_numa_id" not in topo.extra


def test_old_driver_soc_means_sys() -> None:
    text = "\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tSOC\t0-7\nGPU1\tSOC\t X \t8-15\n"
    topo = parse_topo_m(text)
    assert topo.link(0, 1) is L.SYS
    assert topo.devices[1].numa_node is None  # no NUMA column: unknown, not 0


def test_render_parses_back(canned_name: str, topology_of: Any) -> None:
    topo = topology_of(canned_name)
    again = parse_topo_m(format_topo_m(topo), topo.source)
    assert dataclasses.replace(again, extra={}) == dataclasses.replace(topo, extra={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no matrix here\n", "no GPU matrix found"),
        ("\tGPU0\tGPU1\nGPU0\t X \tFOO\nGPU1\tFOO\t X \n", "line 2, GPU0 to GPU1: unknown link 'FOO'"),
        ("\tGPU0\tGPU1\nGPU0\tSYS\tSYS\nGPU1\tSYS\t X \n", "GPU0 to itself is 'SYS', expected X"),
        ("\tGPU0\tGPU1\nGPU1\t X \tSYS\n", "GPU rows ['GPU1'] do not match"),
    ],
)
def test_malformed_text_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(TopologyFileError, match=re.escape(message)):
        parse_topo_m(text, "box.txt")
