"""Choosing devices: which set of n is best, and which devices this process may use at all.

Best means, in order: the weakest link in the set is as good as possible (an NVLink clique
beats anything over PCIe), the set sits on one NUMA node, it crosses SYS as few times as
possible, as many pairs as possible share a NUMA node, and its links are good overall;
ties go to the lowest indices, so the choice is deterministic.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator, Mapping

from pytest_mgpu.hardware.topology import LinkClass, Topology

MAX_EXACT_COMBINATIONS = 50_000  # beyond this (e.g. 8 of 32 devices) the search turns greedy


def _score(topology: Topology, devices: tuple[int, ...]) -> tuple[int, int, int, int, int]:
    pairs = list(itertools.combinations(devices, 2))
    one_node = len(topology.numa_nodes(devices)) == 1 and None not in topology.numa_nodes(devices)
    sys_hops = sum(1 for a, b in pairs if topology.link(a, b) <= LinkClass.SYS)
    node = [topology.devices[i].numa_node for i in range(topology.n_devices)]
    same_node_pairs = sum(1 for a, b in pairs if node[a] is not None and node[a] == node[b])
    total = sum(int(topology.link(a, b)) * 100 + topology.lanes(a, b) for a, b in pairs)
    return (int(topology.worst_link(devices)), int(one_node), -sys_hops, same_node_pairs, total)


def _acceptable(topology: Topology, devices: tuple[int, ...], min_link: LinkClass | None, same_numa: bool) -> bool:
    if min_link is not None and topology.worst_link(devices) < min_link:
        return False
    if same_numa:
        nodes = topology.numa_nodes(devices)
        return len(nodes) == 1 and None not in nodes
    return True


def _greedy(topology: Topology, n: int, among: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """One candidate per starting device: grow by the device that keeps the set's score highest."""
    for start in among:
        chosen = [start]
        while len(chosen) < n:
            rest = [d for d in among if d not in chosen]
            chosen.append(max(rest, key=lambda d: (_score(topology, tuple(sorted([*chosen, d]))), -d)))
        yield tuple(sorted(chosen))


def ranked_sets(
    topology: Topology,
    n: int,
    *,
    min_link: LinkClass | None = None,
    same_numa: bool = False,
    among: Iterable[int] | None = None,
) -> list[tuple[int, ...]]:
    """Every acceptable set of n devices, best first (see the module docstring for "best")."""
    pool = tuple(sorted(set(range(topology.n_devices) if among is None else among)))
    if n < 1 or n > len(pool):
        return []
    if math.comb(len(pool), n) <= MAX_EXACT_COMBINATIONS:
        candidates: Iterable[tuple[int, ...]] = itertools.combinations(pool, n)
    else:
        candidates = set(_greedy(topology, n, pool))
    ok = [s for s in candidates if _acceptable(topology, s, min_link, same_numa)]
    return sorted(ok, key=lambda s: (tuple(-x for x in _score(topology, s)), s))


def best_set(
    topology: Topology,
    n: int,
    *,
    min_link: LinkClass | None = None,
    same_numa: bool = False,
    among: Iterable[int] | None = None,
) -> tuple[int, ...] | None:
    """The best n devices meeting the constraints, or None when no set does."""
    sets = ranked_sets(topology, n, min_link=min_link, same_numa=same_numa, among=among)
    return sets[0] if sets else None


def visible_devices(topology: Topology, environ: Mapping[str, str] | None = None) -> tuple[int, ...]:
    """The devices this process may use: all of them, or those `CUDA_VISIBLE_DEVICES` names.

    Entries are NVML indices (in PCI bus order, like `CUDA_DEVICE_ORDER=PCI_BUS_ID`) or UUIDs
    (`GPU-...`, a unique prefix is enough, as CUDA accepts). CUDA stops at the first entry it
    cannot use; so does this. Only a live CUDA topology is restricted: a recorded one
    (`--mgpu-topology-file`) describes another machine.
    """
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None or topology.kind != "cuda" or topology.source != "nvml":
        return tuple(range(topology.n_devices))
    chosen: list[int] = []
    for entry in (e.strip() for e in value.split(",")):
        if entry.lstrip("-").isdigit():
            index = int(entry)
            if not 0 <= index < topology.n_devices:
                break
        else:
            matches = [d.index for d in topology.devices if d.uuid and entry and d.uuid.startswith(entry)]
            if len(matches) != 1:
                break
            index = matches[0]
        if index in chosen:
            break
        chosen.append(index)
    return tuple(chosen)
