"""Choosing the best set of devices, and honouring CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from pytest_mgpu.hardware.select import best_set, ranked_sets, visible_devices
from pytest_mgpu.hardware.topology import Device, LinkClass, Topology

H100 = "dgx-h100-8x-nv18-2numa.topo-m.txt"
PAIRS = "a100-pcie-4x-nvlink-pairs.topo-m.txt"
RTX = "rtx4090-2x-sys-2numa.topo-m.txt"


@pytest.mark.parametrize(
    ("name", "n", "kwargs", "expected"),
    [
        (H100, 2, {}, (0, 1)),
        (H100, 4, {}, (0, 1, 2, 3)),  # an NVLink clique on one NUMA node
        (H100, 4, {"among": (2, 3, 4, 5, 6)}, (4, 5, 6, 2)),
        (H100, 5, {"same_numa": True}, None),
        (PAIRS, 2, {}, (0, 1)),  # the bridged pair, not 0-2 over SYS
        (PAIRS, 2, {"among": (1, 2, 3)}, (2, 3)),
        (PAIRS, 2, {"among": (0, 2)}, (0, 2)),
        (PAIRS, 2, {"among": (0, 2), "min_link": LinkClass.NVLINK}, None),
        (PAIRS, 3, {"min_link": LinkClass.NVLINK}, None),
        (RTX, 2, {}, (0, 1)),
        (RTX, 2, {"min_link": LinkClass.NODE}, None),
        (RTX, 2, {"same_numa": True}, None),
        (RTX, 3, {}, None),
    ],
)
def test_best_set(name: str, n: int, kwargs: dict[str, Any], expected: tuple[int, ...] | None,
                  topology_of: Any) -> None:
    got = best_set(topology_of(name), n, **kwargs)
    assert got == (tuple(sorted(expected)) if expected else None)


def test_ranking_puts_nvlink_then_one_numa_node_first(topology_of: Any) -> None:
    sets = ranked_sets(topology_of(PAIRS), 2)
    assert sets[:2] == [(0, 1), (2, 3)]
    assert len(sets) == 6
    h100 = topology_of(H100)
    ranked = ranked_sets(h100, 2)
    same_node = [s for s in ranked if len(h100.numa_nodes(s)) == 1]
    assert ranked[0] == (0, 1)
    assert len(same_node) == 12
    assert ranked[:12] == same_node  # cross-socket pairs come after every same-socket one


def test_large_boxes_search_greedily() -> None:
    n = 32
    devices = tuple(Device(index=i, kind="cuda", name="GPU", numa_node=i // 8) for i in range(n))
    links = tuple(tuple(LinkClass.SELF if i == j else LinkClass.NVLINK if i // 8 == j // 8 else LinkClass.SYS
                        for j in range(n)) for i in range(n))
    topo = Topology(kind="cuda", devices=devices, links=links)
    start = time.monotonic()
    chosen = best_set(topo, 8, among=range(3, 32))
    assert time.monotonic() - start < 5
    assert chosen is not None
    assert topo.worst_link(chosen) is LinkClass.NVLINK


def _live(topo: Topology) -> Topology:
    return dataclasses.replace(topo, source="nvml")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (0, 1, 2, 3)),
        ("", ()),
        ("2,0", (2, 0)),
        ("1,7,2", (1,)),  # CUDA stops at the first device it cannot use
        ("-1", ()),
        ("1,1", (1,)),
    ],
)
def test_cuda_visible_devices_by_index(value: str | None, expected: tuple[int, ...], topology_of: Any) -> None:
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert visible_devices(_live(topology_of(PAIRS)), env) == expected


def test_cuda_visible_devices_by_uuid_prefix(topology_of: Any) -> None:
    topo = _live(topology_of(PAIRS))
    uuids = [d.uuid for d in topo.devices]
    assert visible_devices(topo, {"CUDA_VISIBLE_DEVICES": f"{uuids[3]},{uuids[1][:12]}"}) == (3, 1)
    assert visible_devices(topo, {"CUDA_VISIBLE_DEVICES": "GPU-"}) == ()  # ambiguous prefix


def test_recorded_topologies_ignore_cuda_visible_devices(topology_of: Any) -> None:
    assert visible_devices(topology_of(PAIRS), {"CUDA_VISIBLE_DEVICES": "0"}) == (0, 1, 2, 3)
