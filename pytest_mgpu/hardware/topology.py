"""The topology model: devices and how each pair is linked.

One model for both kinds of device: CUDA GPUs (from NVML, `nvidia-smi topo -m` text or a
JSON snapshot) and CPU core groups (the vLLM CPU build binds one group per rank).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

DeviceKind = Literal["cuda", "cpu"]


class LinkClass(enum.IntEnum):
    """Link classes, ordered worst to best so that `a >= b` means "a is at least as good as b".

    Names follow `nvidia-smi topo -m`: SYS crosses the CPU interconnect (two NUMA nodes),
    NODE stays within one NUMA node but crosses PCIe host bridges, PHB crosses one host
    bridge, PXB several PCIe switches, PIX at most one switch, NVLINK is a direct NVLink.
    """

    UNKNOWN = 0
    SYS = 1
    NODE = 2
    PHB = 3
    PXB = 4
    PIX = 5
    NVLINK = 6
    SELF = 7  # the diagonal ("X")

    @classmethod
    def parse(cls, text: str) -> LinkClass:
        """Accepts ladder names (any case) and nvidia-smi cells such as `NV18`, `X`, `PIX`."""
        t = text.strip().upper()
        if t == "X":
            return cls.SELF
        if t == "NVLINK" or (t.startswith("NV") and t[2:].isdigit()):
            return cls.NVLINK
        if t in ("", "?", "UNKNOWN", "N/A"):
            return cls.UNKNOWN
        try:
            return cls[t]
        except KeyError:
            ladder = " > ".join(c.name for c in LADDER)
            raise ValueError(f"unknown link class {text!r}; expected one of {ladder}") from None

    @property
    def label(self) -> str:
        return "X" if self is LinkClass.SELF else self.name

    @classmethod
    def parse_requirement(cls, value: object) -> LinkClass:
        """A link class a user may ask for (a marker, an option): a ladder name or a LinkClass."""
        ladder = " > ".join(c.name for c in LADDER)
        if isinstance(value, LinkClass) and value in LADDER:
            return value
        if isinstance(value, str) and value.strip().upper() in {c.name for c in LADDER}:
            return cls[value.strip().upper()]
        raise ValueError(f"expected a link class, one of {ladder}; got {value!r}")


LADDER: tuple[LinkClass, ...] = (
    LinkClass.NVLINK,
    LinkClass.PIX,
    LinkClass.PXB,
    LinkClass.PHB,
    LinkClass.NODE,
    LinkClass.SYS,
)


@dataclass(frozen=True)
class Device:
    index: int
    kind: DeviceKind
    name: str  # "NVIDIA H100 80GB HBM3" or "cpu-cores"
    uuid: str = ""
    memory_bytes: int = 0
    pci_bus_id: str = ""
    numa_node: int | None = None
    cpus: tuple[int, ...] = ()  # CPU affinity (GPU) or the core group itself (CPU)
    pcie_gen_current: int | None = None
    pcie_gen_max: int | None = None
    pcie_width_current: int | None = None
    pcie_width_max: int | None = None
    nvlink_count: int | None = None
    memory_bandwidth_bytes_per_s: float | None = None  # peak, for the roofline

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Device:
        if not isinstance(data, dict):
            raise TypeError(f"each device must be an object such as {{\"index\": 0, \"name\": ...}}, got {data!r}")
        known = {f for f in cls.__dataclass_fields__}
        kwargs: dict[str, Any] = {k: (tuple(v) if k == "cpus" else v) for k, v in data.items() if k in known}
        return cls(**kwargs)


@dataclass(frozen=True)
class Topology:
    """Devices plus the square link matrix (`links[i][j]`, SELF on the diagonal)."""

    kind: DeviceKind
    devices: tuple[Device, ...]
    links: tuple[tuple[LinkClass, ...], ...]
    source: str = "live"  # where it came from: "nvml", "cpu", a file path
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # Bonded NVLinks per pair (the # of nvidia-smi's NV#), 0 where not NVLink or not known; () = not known.
    nvlink_lanes: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        n = len(self.devices)
        for pos, d in enumerate(self.devices):
            if not isinstance(d.index, int) or isinstance(d.index, bool) or d.index != pos:
                raise ValueError(f"device {pos} ({d.name!r}) has index {d.index!r}; expected the indices "
                                 f"0..{n - 1} in order, one per device")
            if not isinstance(d.cpus, tuple) or not all(isinstance(c, int) and c >= 0 for c in d.cpus):
                raise ValueError(f"device {pos} has cpus {d.cpus!r}; expected a list of CPU numbers")
        if len(self.links) != n or any(len(row) != n for row in self.links):
            raise ValueError(f"link matrix must be {n}x{n} for {n} devices")
        if self.nvlink_lanes and (len(self.nvlink_lanes) != n or any(len(r) != n for r in self.nvlink_lanes)):
            raise ValueError(f"nvlink_lanes must be {n}x{n} for {n} devices")

    @property
    def n_devices(self) -> int:
        return len(self.devices)

    def link(self, i: int, j: int) -> LinkClass:
        return self.links[i][j]

    def lanes(self, i: int, j: int) -> int:
        """Bonded NVLinks between i and j (0 when not NVLink or not known)."""
        return self.nvlink_lanes[i][j] if self.nvlink_lanes else 0

    def link_label(self, i: int, j: int) -> str:
        """The cell nvidia-smi would print: `X`, `NV18`, `PIX`, ..., `SYS` (`NVLINK` when the count is unknown)."""
        link = self.links[i][j]
        if link is LinkClass.NVLINK and self.lanes(i, j):
            return f"NV{self.lanes(i, j)}"
        return link.label

    def worst_link(self, indices: tuple[int, ...] | list[int]) -> LinkClass:
        """The weakest link among a set of devices (SELF for a single device)."""
        worst = LinkClass.SELF
        for a in indices:
            for b in indices:
                if a != b:
                    worst = min(worst, self.links[a][b])
        return worst

    def numa_nodes(self, indices: tuple[int, ...] | list[int]) -> set[int | None]:
        return {self.devices[i].numa_node for i in indices}

    def describe(self, indices: tuple[int, ...] | list[int] | None = None) -> str:
        """Human text such as '2x NVIDIA H100 80GB HBM3 linked by NVLINK'."""
        idx = list(range(self.n_devices)) if indices is None else list(indices)
        if not idx:
            return "no devices"
        names = sorted({self.devices[i].name for i in idx})
        what = f"{len(idx)}x {' + '.join(names)}"
        if len(idx) < 2:
            return what
        return f"{what} linked by {self.worst_link(idx).label}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "devices": [d.to_json() for d in self.devices],
            "links": [[c.label for c in row] for row in self.links],
            **({"nvlink_lanes": [list(r) for r in self.nvlink_lanes]} if self.nvlink_lanes else {}),
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "json") -> Topology:
        for key in ("devices", "links"):
            if not isinstance(data[key], list):
                raise TypeError(f"'{key}' must be a list, got {data[key]!r}")
        devices = tuple(Device.from_json(d) for d in data["devices"])
        if not all(isinstance(row, list) for row in data["links"]):
            raise TypeError(f"'links' must be a list of rows (lists of link classes), got {data['links']!r}")
        links = tuple(tuple(LinkClass.parse(c) for c in row) for row in data["links"])
        return cls(
            kind=data.get("kind", "cuda"),
            devices=devices,
            links=links,
            source=source,
            extra=dict(data.get("extra", {})),
            nvlink_lanes=tuple(tuple(int(x) for x in row) for row in data.get("nvlink_lanes") or ()),
        )
