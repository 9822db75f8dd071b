"""The hardware fingerprint: which baselines a measurement may be compared with.

Only stable facts go in: device model, count, memory size, the link matrix and the NUMA
layout (and the CPU model in CPU mode). Never UUIDs, bus ids, clocks, temperatures, driver
or engine versions: a baseline must survive a GPU swap of the same model and an engine
upgrade (catching regressions across upgrades is the point), and must not be reused on a
box whose GPUs are joined differently.

The link matrix and NUMA layout enter as a labelled graph, hashed by colour refinement
(Weisfeiler-Lehman), so renumbering the devices never changes the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_mgpu.hardware.topology import LADDER, LinkClass, Topology

if TYPE_CHECKING:
    from pytest_mgpu.engines.spec import EngineServer

_VENDOR_WORDS = {"NVIDIA", "TESLA", "GEFORCE", "QUADRO", "UNKNOWN"}
_JOIN_NEXT = {"RTX", "GTX", "TITAN"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class Fingerprint:
    label: str  # readable: "2xH100-80GB-NV18", "2xCPU-1core-NODE"
    digest: str  # short hash of `facts`
    facts: dict[str, Any] = field(compare=False, hash=False)

    @property
    def dirname(self) -> str:
        """The baseline directory name: `<label>-<digest>`, safe on every filesystem."""
        return f"{self.label}-{self.digest}"

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "digest": self.digest, "dirname": self.dirname, "facts": self.facts}


def _memory_gib(topology: Topology, i: int) -> int | None:
    d = topology.devices[i]
    if d.memory_bytes:
        return round(d.memory_bytes / 2**30)
    m = re.search(r"(\d+)\s*GB", d.name)
    return int(m.group(1)) if m else None


def short_model(name: str) -> str:
    """`NVIDIA H100 80GB HBM3` -> `H100`, `NVIDIA GeForce RTX 4090` -> `RTX4090`, `NVIDIA A100-SXM4-80GB` -> `A100`."""
    words = [w for w in name.split() if w.upper() not in _VENDOR_WORDS]
    if not words:
        return "GPU"
    head = words[0]
    if head.upper() in _JOIN_NEXT and len(words) > 1:
        head += words[1]
    return _UNSAFE.sub("-", head.split("-")[0]) or "GPU"


def _device_label(topology: Topology, i: int) -> str:
    d = topology.devices[i]
    if topology.kind == "cpu":
        return f"CPU-{len(d.cpus)}core" if d.cpus else "CPU"
    mem = _memory_gib(topology, i)
    return short_model(d.name) + (f"-{mem}GB" if mem else "")


def _link_rank(label: str) -> tuple[int, int]:
    """Sort key, best first: NV# by lane count, then the PCIe ladder, unknown last."""
    if label.startswith("NV") and label[2:].isdigit():
        return (0, -int(label[2:]))
    try:
        return (1 + LADDER.index(LinkClass.parse(label)), 0)
    except ValueError:
        return (len(LADDER) + 1, 0)


def _pair_labels(topology: Topology) -> Counter[str]:
    n = topology.n_devices
    return Counter(topology.link_label(i, j) for i in range(n) for j in range(i + 1, n))


def _same_numa(topology: Topology, i: int, j: int) -> bool | None:
    a, b = topology.devices[i].numa_node, topology.devices[j].numa_node
    return None if a is None or b is None else a == b


def _structure(topology: Topology, colours: list[str]) -> str:
    """Colour refinement over the labelled graph: equal for isomorphic (renumbered) topologies."""
    n = topology.n_devices
    edge = [[f"{topology.link_label(i, j)}/{_same_numa(topology, i, j)}" for j in range(n)] for i in range(n)]
    for _ in range(n):
        refined = [
            hashlib.sha256(
                repr((colours[i], sorted((edge[i][j], colours[j]) for j in range(n) if j != i))).encode()
            ).hexdigest()[:16]
            for i in range(n)
        ]
        if len(set(refined)) == len(set(colours)):
            colours = refined
            break
        colours = refined
    return hashlib.sha256(repr(sorted(colours)).encode()).hexdigest()[:16]


def facts_of(topology: Topology) -> dict[str, Any]:
    """The stable facts, as plain JSON (stored next to baselines so a mismatch can be explained)."""
    n = topology.n_devices
    models = Counter((topology.devices[i].name, _memory_gib(topology, i)) for i in range(n))
    numa = Counter(d.numa_node for d in topology.devices)
    colours = [f"{d.name}/{_memory_gib(topology, d.index)}" for d in topology.devices]
    facts: dict[str, Any] = {
        "kind": topology.kind,
        "count": n,
        "models": sorted([name, mem, count] for (name, mem), count in models.items()),
        "links": dict(sorted(_pair_labels(topology).items())),
        "numa_nodes": len([k for k in numa if k is not None]),
        "devices_per_numa_node": sorted(c for k, c in numa.items() if k is not None),
        "devices_without_numa_node": numa.get(None, 0),
        "structure": _structure(topology, colours),
    }
    if topology.kind == "cpu" and topology.extra.get("cpu_model"):
        facts["cpu_model"] = topology.extra["cpu_model"]
    return facts


def label_of(topology: Topology) -> str:
    n = topology.n_devices
    if n == 0:
        return "0xnone"
    kinds = Counter(_device_label(topology, i) for i in range(n))
    devices = "+".join(f"{count}x{label}" for label, count in sorted(kinds.items()))
    links = sorted(_pair_labels(topology), key=_link_rank)
    links_part = "+".join("UNK" if x == "UNKNOWN" else x for x in links)
    return _UNSAFE.sub("-", devices + (f"-{links_part}" if links_part else ""))


def fingerprint(topology: Topology) -> Fingerprint:
    facts = facts_of(topology)
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:8]
    return Fingerprint(label=label_of(topology), digest=digest, facts=facts)


def node_facts(server: EngineServer) -> dict[str, Any]:
    """Multi-node engines: how many nodes, where, and what joins them (stored with each result).

    Kept out of the digest: the fingerprint names the head's hardware, and the spec key
    (which has `nodes`) already keeps multi-node baselines apart from single-node ones.
    """
    if not server.nodes:
        return {}
    return {"nodes": len(server.nodes), "node_link": server.node_link,
            "node_hosts": [n.host for n in server.nodes],
            "node_devices": [len(n.devices) for n in server.nodes]}
