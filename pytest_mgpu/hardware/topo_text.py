"""`nvidia-smi topo -m` text: parse a recording into a Topology, and print one the same way.

A recording may also hold `nvidia-smi -L` lines (the only place model names and UUIDs
appear) and a `nvidia-smi topo -p2p r` matrix (OK / CNS / ...), so a file made with
`(nvidia-smi -L; nvidia-smi topo -m; nvidia-smi topo -p2p r) > box.txt` describes a box
fully enough for markers and fingerprints. Real output varies: ANSI underline escapes on
the header, tabs or spaces, NIC rows and a NIC legend, and the affinity columns
`CPU Affinity`, `NUMA Affinity`, `GPU NUMA ID` on newer drivers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pytest_mgpu.hardware.cpu import parse_cpulist
from pytest_mgpu.hardware.errors import TopologyFileError
from pytest_mgpu.hardware.topology import Device, LinkClass, Topology

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_AFFINITY_COLUMNS = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")
_GPU_LIST_LINE = re.compile(r"^GPU (\d+): (.+?)(?: \(UUID: ([^)]+)\))?\s*$")  # nvidia-smi -L
_NIC_LEGEND_LINE = re.compile(r"^\s*(NIC\d+):\s*(\S+)\s*$")
_GPU_LABEL = re.compile(r"^GPU(\d+)$")
_NVLINK_CELL = re.compile(r"^NV(\d+)$")
_CELL_ALIASES = {"SOC": "SYS"}  # drivers before NODE existed printed SOC for the socket interconnect
P2P_CODES = ("X", "OK", "CNS", "GNS", "TNS", "NS", "U", "DR")  # `nvidia-smi topo -p2p` legend

LEGEND = """\
Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks
"""


@dataclass(frozen=True)
class _Block:
    """One matrix: its columns and, per row label, the matrix cells and the affinity cells."""

    columns: tuple[str, ...]
    affinity_columns: tuple[str, ...]
    rows: dict[str, tuple[tuple[str, ...], dict[str, str], int]]  # label -> (cells, affinity, line number)


def _header_tokens(line: str) -> list[str]:
    for name in _AFFINITY_COLUMNS:
        line = line.replace(name, name.replace(" ", "\0"))
    return [t.replace("\0", " ") for t in line.split()]


def _blocks(lines: list[str]) -> list[_Block]:
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        tokens = _header_tokens(lines[i])
        if not tokens or tokens[0] != "GPU0":
            i += 1
            continue
        split = next((k for k, t in enumerate(tokens) if t in _AFFINITY_COLUMNS), len(tokens))
        columns, affinity = tuple(tokens[:split]), tuple(tokens[split:])
        rows: dict[str, tuple[tuple[str, ...], dict[str, str], int]] = {}
        i += 1
        while i < len(lines) and lines[i].strip():
            cells = lines[i].split()
            if cells[0] not in columns:
                break
            matrix = tuple(cells[1 : 1 + len(columns)])
            rest = cells[1 + len(columns) :]
            rows[cells[0]] = (matrix, dict(zip(affinity, rest, strict=False)), i + 1)
            i += 1
        blocks.append(_Block(columns, affinity, rows))
    return blocks


def _is_p2p_block(block: _Block) -> bool:
    cells = {c for matrix, _, _ in block.rows.values() for c in matrix}
    return not block.affinity_columns and bool(cells) and cells <= set(P2P_CODES) and cells != {"X"}


def _link_cell(cell: str, where: str) -> tuple[LinkClass, int]:
    cell = _CELL_ALIASES.get(cell, cell)
    nv = _NVLINK_CELL.match(cell)
    if nv:
        return LinkClass.NVLINK, int(nv.group(1))
    try:
        return LinkClass.parse(cell), 0
    except ValueError:
        raise TopologyFileError(
            f"{where}: unknown link {cell!r}; expected X, NV#, PIX, PXB, PHB, NODE or SYS "
            "(as printed by `nvidia-smi topo -m`)"
        ) from None


def _numa(cell: str | None) -> int | None:
    if cell is None or not cell[:1].isdigit():
        return None
    return min(parse_cpulist(cell))


def parse_topo_m(text: str, source: str = "nvidia-smi topo -m") -> Topology:
    """A Topology from `nvidia-smi topo -m` output (optionally with `-L` lines and a `-p2p` matrix)."""
    lines = _ANSI.sub("", text).replace("\r", "").splitlines()
    blocks = _blocks(lines)
    link_blocks = [b for b in blocks if not _is_p2p_block(b)]
    if not link_blocks:
        raise TopologyFileError(
            f"{source}: no GPU matrix found; expected the output of `nvidia-smi topo -m` "
            "(a header line starting with GPU0 and one row per GPU)"
        )
    block = link_blocks[0]
    gpu_labels = [label for label in block.rows if _GPU_LABEL.match(label)]
    n = len(gpu_labels)
    if gpu_labels != [f"GPU{k}" for k in range(n)] or any(f"GPU{k}" not in block.columns for k in range(n)):
        raise TopologyFileError(
            f"{source}: GPU rows {gpu_labels} do not match the header columns {list(block.columns)}; "
            "expected rows GPU0..GPU{n-1} under a header naming the same GPUs"
        )
    col = {name: k for k, name in enumerate(block.columns)}
    names = {int(m.group(1)): (m.group(2).strip(), m.group(3) or "") for m in map(_GPU_LIST_LINE.match, lines) if m}

    links: list[list[LinkClass]] = []
    lanes: list[list[int]] = []
    devices: list[Device] = []
    for i, label in enumerate(gpu_labels):
        matrix, affinity, line_no = block.rows[label]
        if len(matrix) < n:
            raise TopologyFileError(f"{source}: line {line_no}: {label} has {len(matrix)} cells, expected {n}")
        where = f"{source}: line {line_no}, {label} to GPU"
        row = [_link_cell(matrix[col[f"GPU{j}"]], f"{where}{j}") for j in range(n)]
        if row[i][0] is not LinkClass.SELF:
            raise TopologyFileError(
                f"{source}: line {line_no}: {label} to itself is {matrix[col[label]]!r}, expected X"
            )
        links.append([c for c, _ in row])
        lanes.append([k for _, k in row])
        cpu_cell = affinity.get("CPU Affinity", "")
        name, uuid = names.get(i, ("unknown GPU", ""))
        devices.append(Device(
            index=i,
            kind="cuda",
            name=name,
            uuid=uuid,
            numa_node=_numa(affinity.get("NUMA Affinity")),
            cpus=tuple(parse_cpulist(cpu_cell)) if cpu_cell[:1].isdigit() else (),
        ))
    extra: dict[str, Any] = {}
    nic_names = {m.group(1): m.group(2) for m in map(_NIC_LEGEND_LINE.match, lines) if m}
    nics = [
        {"name": label, "device": nic_names.get(label, label), "links": [cells[col[g]] for g in gpu_labels]}
        for label, (cells, _, _) in block.rows.items()
        if label not in gpu_labels and len(cells) >= n
    ]
    if nics:
        extra["nics"] = nics
    gpu_numa_ids = [block.rows[g][1].get("GPU NUMA ID", "N/A") for g in gpu_labels]
    if any(v[:1].isdigit() for v in gpu_numa_ids):
        extra["gpu_numa_id"] = [int(v) if v.isdigit() else None for v in gpu_numa_ids]
    p2p = [b for b in blocks if _is_p2p_block(b)]
    if p2p and all(g in p2p[0].rows and g in p2p[0].columns for g in gpu_labels):
        pcol = {name: k for k, name in enumerate(p2p[0].columns)}
        extra["p2p_read"] = [[p2p[0].rows[a][0][pcol[b]] for b in gpu_labels] for a in gpu_labels]
    return Topology(
        kind="cuda",
        devices=tuple(devices),
        links=tuple(tuple(r) for r in links),
        source=source,
        extra=extra,
        nvlink_lanes=tuple(tuple(r) for r in lanes) if any(any(r) for r in lanes) else (),
    )


def format_cpulist(cpus: tuple[int, ...] | list[int]) -> str:
    """`0-15,32-47` style (the inverse of the sysfs cpulist format)."""
    out: list[str] = []
    ordered = sorted(set(cpus))
    k = 0
    while k < len(ordered):
        start = end = ordered[k]
        while k + 1 < len(ordered) and ordered[k + 1] == end + 1:
            k += 1
            end = ordered[k]
        out.append(str(start) if start == end else f"{start}-{end}")
        k += 1
    return ",".join(out) or "N/A"


def format_topo_m(topology: Topology, *, legend: bool = True) -> str:
    """The matrix as `nvidia-smi topo -m` prints it (padded with spaces); GPU text parses back."""
    prefix = "GPU" if topology.kind == "cuda" else "CPU"
    n = topology.n_devices
    header = ["", *(f"{prefix}{j}" for j in range(n)), "CPU Affinity", "NUMA Affinity"]
    rows = [header]
    for i, d in enumerate(topology.devices):
        cells = [f"{prefix}{i}", *(topology.link_label(i, j) for j in range(n))]
        cells += [format_cpulist(d.cpus), "N/A" if d.numa_node is None else str(d.numa_node)]
        rows.append(cells)
    for nic in topology.extra.get("nics", []):
        rows.append([nic["name"], *nic["links"]])
    widths = [max(len(r[c]) for r in rows if c < len(r)) + 2 for c in range(len(header))]
    text = "\n".join("".join(cell.ljust(widths[c]) for c, cell in enumerate(r)).rstrip() for r in rows)
    names = ""
    if topology.kind == "cuda":
        names = "".join(
            f"GPU {d.index}: {d.name}" + (f" (UUID: {d.uuid})" if d.uuid else "") + "\n" for d in topology.devices
        )
    nic_legend = ""
    if topology.extra.get("nics"):
        nic_legend = "\nNIC Legend:\n\n" + "".join(f"  {x['name']}: {x['device']}\n" for x in topology.extra["nics"])
    return (names + "\n" if names else "") + text + "\n" + ("\n" + LEGEND if legend else "") + nic_legend
