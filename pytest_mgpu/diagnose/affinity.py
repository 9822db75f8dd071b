"""`cross-numa`: traffic that crosses the socket interconnect. Either TP peers are joined by SYS
(every all-reduce goes over QPI/UPI), or the engine is pinned to CPUs of another NUMA node
than its devices (every launch and host copy crosses it)."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_mgpu.diagnose.registry import Context, detector
from pytest_mgpu.findings import Finding, Severity
from pytest_mgpu.hardware.topology import LinkClass


def _local_cpus(ctx: Context) -> set[int]:
    """CPUs on the rank devices' NUMA nodes (all devices' affinities there); their own affinity if unknown."""
    ranks = [ctx.topology.devices[i] for i in ctx.rank_devices()]
    nodes = {d.numa_node for d in ranks}
    if None in nodes:
        return {c for d in ranks for c in d.cpus}
    return {c for d in ctx.topology.devices if d.numa_node in nodes for c in d.cpus}


def _sys_peers(ctx: Context) -> Iterable[Finding]:
    for group in ctx.tp_groups():
        pairs = [(a, b) for k, a in enumerate(group) for b in group[k + 1:]
                 if ctx.topology.link(a, b) is LinkClass.SYS]
        if not pairs:
            continue
        nodes = sorted({str(ctx.topology.devices[i].numa_node) for i in group})
        yield Finding(
            "cross-numa", Severity.WARNING,
            f"tensor-parallel peers {list(group)} are joined by SYS ({ctx.topology.describe(group)}, NUMA nodes "
            f"{', '.join(nodes)}): every all-reduce crosses the CPU interconnect. Keep a TP group on one NUMA node "
            f"(mark the test @pytest.mark.mgpu_topology(min_link='NODE')), or split across nodes with PP instead.",
            {"tp_group": list(group), "sys_pairs": [list(p) for p in pairs], "numa_nodes": nodes},
        )


def _pinned_off_node(ctx: Context) -> Iterable[Finding]:
    telemetry = ctx.telemetry
    local = _local_cpus(ctx)
    if telemetry is None or not local or not telemetry.processes:
        return
    online = set(telemetry.online_cpus)
    offenders = []
    for proc in telemetry.processes:
        allowed = set(proc.cpus_allowed)
        if not allowed or (online and allowed >= online):
            continue  # unpinned: the scheduler (and NUMA balancing) decides; not a placement choice
        off = sorted(allowed - local)
        if off:
            offenders.append((proc, off, not (allowed & local)))
    if not offenders:
        return
    nodes = sorted({str(ctx.topology.devices[i].numa_node) for i in ctx.rank_devices()})
    worst = any(entirely for *_, entirely in offenders)
    described = "; ".join(f"{p.name} (pid {p.pid}) may run on CPUs {_ranges(off)}" for p, off, _ in offenders)
    yield Finding(
        "cross-numa", Severity.WARNING,
        f"engine processes are pinned {'entirely ' if worst else 'partly '}off their devices' NUMA node(s) "
        f"{', '.join(nodes)} (local CPUs {_ranges(sorted(local))}): {described}. Pin the engine to its devices' "
        f"CPUs (numactl --cpunodebind, taskset, or the engine's own binding such as VLLM_CPU_OMP_THREADS_BIND).",
        {"local_cpus": sorted(local), "numa_nodes": nodes,
         "processes": [{"pid": p.pid, "name": p.name, "cpus_allowed": list(p.cpus_allowed), "off_node": off}
                       for p, off, _ in offenders]},
    )


def _ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (the cpulist format)."""
    out: list[str] = []
    for c in cpus:
        if out and "-" in out[-1] and int(out[-1].split("-")[1]) == c - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{c}"
        elif out and "-" not in out[-1] and int(out[-1]) == c - 1:
            out[-1] = f"{out[-1]}-{c}"
        else:
            out.append(str(c))
    return ",".join(out)


@detector("cross-numa", "TP peers joined by SYS, or the engine pinned to CPUs off its devices' NUMA node")
def cross_numa(ctx: Context) -> Iterable[Finding]:
    yield from _sys_peers(ctx)
    yield from _pinned_off_node(ctx)
