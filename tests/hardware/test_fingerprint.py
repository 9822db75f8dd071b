"""The hardware fingerprint: readable, stable under renumbering, different when the box differs."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from typing import Any

import pytest

from pytest_mgpu.hardware.cpu import cpu_topology
from pytest_mgpu.hardware.fingerprint import fingerprint, short_model
from pytest_mgpu.hardware.topology import Device, LinkClass, Topology

LABELS = {
    "dgx-h100-8x-nv18-2numa.topo-m.txt": "8xH100-80GB-NV18",
    "dgx-a100-8x-nv12.topo-m.txt": "8xA100-80GB-NV12",
    "a100-pcie-4x-nvlink-pairs.topo-m.txt": "4xA100-80GB-NV12+SYS",
    "l4-2x-pcie-no-p2p.topo-m.txt": "2xL4-NODE",
    "rtx4090-2x-sys-2numa.topo-m.txt": "2xRTX4090-SYS",
    "h100-single-vm.topo-m.txt": "1xGPU",
}


def permuted(topo: Topology, order: list[int], *, new_uuids: bool = False) -> Topology:
    """The same machine with device i renamed to order.index(i) (and optionally other UUIDs)."""
    devices = tuple(
        dataclasses.replace(topo.devices[old], index=new, pci_bus_id=f"0000:{new:02x}:00.0",
                            uuid=f"GPU-other-{new}" if new_uuids else topo.devices[old].uuid)
        for new, old in enumerate(order)
    )
    links = tuple(tuple(topo.links[a][b] for b in order) for a in order)
    lanes = tuple(tuple(topo.nvlink_lanes[a][b] for b in order) for a in order) if topo.nvlink_lanes else ()
    return Topology(kind=topo.kind, devices=devices, links=links, source=topo.source, nvlink_lanes=lanes)


def with_link(topo: Topology, i: int, j: int, link: LinkClass) -> Topology:
    links = [list(r) for r in topo.links]
    links[i][j] = links[j][i] = link
    lanes = [list(r) for r in topo.nvlink_lanes] if topo.nvlink_lanes else []
    if lanes and link is not LinkClass.NVLINK:
        lanes[i][j] = lanes[j][i] = 0
    return dataclasses.replace(topo, links=tuple(map(tuple, links)), nvlink_lanes=tuple(map(tuple, lanes)))


def with_numa(topo: Topology, nodes: list[int | None]) -> Topology:
    devices = tuple(dataclasses.replace(d, numa_node=k) for d, k in zip(topo.devices, nodes, strict=True))
    return dataclasses.replace(topo, devices=devices)


def test_labels(canned_name: str, topology_of: Any) -> None:
    fp = fingerprint(topology_of(canned_name))
    assert fp.label == LABELS[canned_name]
    assert re.fullmatch(r"[0-9a-f]{8}", fp.digest)
    assert fp.dirname == f"{fp.label}-{fp.digest}"
    assert re.fullmatch(r"[A-Za-z0-9._+-]+", fp.dirname)


def test_cpu_labels() -> None:
    assert fingerprint(cpu_topology(cpus=[0, 1], numa={0: 0, 1: 0})).label == "2xCPU-1core-NODE"
    assert fingerprint(cpu_topology(cpus=[0, 1, 2, 3], numa={0: 0, 1: 0, 2: 1, 3: 1}, max_devices=2)).label == (
        "2xCPU-2core-SYS")


@pytest.mark.parametrize("name", ["dgx-h100-8x-nv18-2numa.topo-m.txt", "a100-pcie-4x-nvlink-pairs.topo-m.txt",
                                  "rtx4090-2x-sys-2numa.topo-m.txt"])
def test_invariant_under_renumbering_and_new_uuids(name: str, topology_of: Any) -> None:
    topo = topology_of(name)
    rng = random.Random(7)
    for _ in range(5):
        order = list(range(topo.n_devices))
        rng.shuffle(order)
        other = permuted(topo, order, new_uuids=True)
        assert fingerprint(other) == fingerprint(topo)
        assert fingerprint(other).facts == fingerprint(topo).facts


def test_differs_when_a_link_differs(topology_of: Any) -> None:
    topo = topology_of("a100-pcie-4x-nvlink-pairs.topo-m.txt")
    broken = with_link(topo, 0, 1, LinkClass.SYS)  # a missing NVLink bridge
    assert fingerprint(broken).digest != fingerprint(topo).digest
    assert fingerprint(broken).label == "4xA100-80GB-NV12+SYS"  # the other pair keeps its bridge


def test_differs_when_only_the_arrangement_differs() -> None:
    """Same counts of NVLink and SYS pairs, but a matching (0-1, 2-3) versus a path (0-1, 1-2)."""
    dev = tuple(Device(index=i, kind="cuda", name="NVIDIA A100 80GB PCIe", numa_node=0) for i in range(4))

    def topo(nv_pairs: set[frozenset[int]]) -> Topology:
        links = tuple(tuple(LinkClass.SELF if i == j else LinkClass.NVLINK if frozenset((i, j)) in nv_pairs
                            else LinkClass.NODE for j in range(4)) for i in range(4))
        return Topology(kind="cuda", devices=dev, links=links)

    matching = fingerprint(topo({frozenset((0, 1)), frozenset((2, 3))}))
    path = fingerprint(topo({frozenset((0, 1)), frozenset((1, 2))}))
    assert matching.facts["links"] == path.facts["links"]
    assert matching.digest != path.digest


def test_differs_when_the_numa_layout_differs(topology_of: Any) -> None:
    topo = topology_of("a100-pcie-4x-nvlink-pairs.topo-m.txt")  # pairs on nodes 0,0 / 1,1
    split = with_numa(topo, [0, 1, 0, 1])  # each bridged pair split across sockets
    assert fingerprint(split).digest != fingerprint(topo).digest
    rtx = topology_of("rtx4090-2x-sys-2numa.topo-m.txt")
    assert fingerprint(with_numa(rtx, [0, 0])).digest != fingerprint(rtx).digest


def test_volatile_facts_stay_out(topology_of: Any) -> None:
    topo = topology_of("dgx-h100-8x-nv18-2numa.topo-m.txt")
    noisy = dataclasses.replace(topo, devices=tuple(
        dataclasses.replace(d, pcie_gen_current=3, pci_bus_id="0000:99:00.0", cpus=(1, 2), uuid="GPU-x")
        for d in topo.devices), extra={"driver_version": "999.1"})
    assert fingerprint(noisy) == fingerprint(topo)
    text = json.dumps(fingerprint(topo).facts)
    assert not any(d.uuid in text for d in topo.devices)


@pytest.mark.parametrize(("name", "short"), [
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA GeForce RTX 4090", "RTX4090"),
    ("Tesla V100-SXM2-32GB", "V100"), ("NVIDIA L4", "L4"), ("NVIDIA RTX A6000", "RTXA6000"), ("unknown GPU", "GPU"),
])
def test_short_model(name: str, short: str) -> None:
    assert short_model(name) == short
