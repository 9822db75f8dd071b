"""The CPU provider: this machine's usable cores as device groups, NUMA nodes from sysfs.

The vLLM CPU build binds one core group per rank (`VLLM_CPU_OMP_THREADS_BIND`), so a core
group plays the part of a GPU: groups on one NUMA node are joined by NODE, across nodes SYS.
"""

from __future__ import annotations

import os
from pathlib import Path

from pytest_mgpu.hardware.topology import Device, LinkClass, Topology

MAX_CPU_DEVICES = 8
_NODE_ROOT = Path("/sys/devices/system/node")


def parse_cpulist(text: str) -> list[int]:
    """`0-3,8,10-11` -> [0, 1, 2, 3, 8, 10, 11] (the sysfs and nvidia-smi format)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def numa_of_cpus(root: Path = _NODE_ROOT) -> dict[int, int]:
    """cpu -> NUMA node, from sysfs; every cpu on node 0 when sysfs says nothing."""
    mapping: dict[int, int] = {}
    for node_dir in sorted(root.glob("node[0-9]*")):
        try:
            cpus = parse_cpulist((node_dir / "cpulist").read_text())
        except OSError:
            continue
        for cpu in cpus:
            mapping[cpu] = int(node_dir.name[4:])
    return mapping


_parse_cpulist = parse_cpulist  # the name this module used first


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor model (a stable fact for the fingerprint), or "" when the system does not say."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model"):
                return " ".join(value.split())
    except OSError:
        pass
    return ""


def cpu_topology(
    cpus: list[int] | None = None,
    numa: dict[int, int] | None = None,
    max_devices: int = MAX_CPU_DEVICES,
) -> Topology:
    """Split the usable cores into at most `max_devices` equal groups, never across NUMA nodes."""
    usable = sorted(os.sched_getaffinity(0)) if cpus is None else sorted(cpus)
    node_of = numa_of_cpus() if numa is None else numa
    by_node: dict[int, list[int]] = {}
    for cpu in usable:
        by_node.setdefault(node_of.get(cpu, 0), []).append(cpu)
    n_groups = min(max_devices, len(usable))
    per_group = max(1, len(usable) // n_groups)
    groups: list[tuple[int, tuple[int, ...]]] = []
    for node, node_cpus in sorted(by_node.items()):
        for start in range(0, len(node_cpus) - per_group + 1, per_group):
            groups.append((node, tuple(node_cpus[start : start + per_group])))
    groups = groups[:max_devices]
    devices = tuple(
        Device(index=i, kind="cpu", name=f"CPU {len(g)}-core group", numa_node=node, cpus=g)
        for i, (node, g) in enumerate(groups)
    )
    links = tuple(
        tuple(
            LinkClass.SELF if a is b else (LinkClass.NODE if a.numa_node == b.numa_node else LinkClass.SYS)
            for b in devices
        )
        for a in devices
    )
    model = cpu_model_name()
    return Topology(kind="cpu", devices=devices, links=links, source="cpu", extra={"cpu_model": model} if model else {})
