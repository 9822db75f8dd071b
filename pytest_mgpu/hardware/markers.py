"""The markers `mgpu_gpus(n)` and `mgpu_topology(min_link=..., same_numa=..., on_mismatch=...)`.

Arguments are checked at collection (a typo is a usage error naming the test, not a crash
mid-run). A test is judged on the best set of n devices it could get (n from `mgpu_gpus`,
default 2); that set is stored in `item.stash[APPROVED_DEVICES_KEY]` for the engine fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from pytest_mgpu.hardware.select import best_set
from pytest_mgpu.hardware.topology import LinkClass, Topology

GPUS_MARKER = "mgpu_gpus"
TOPOLOGY_MARKER = "mgpu_topology"
ON_MISMATCH = ("skip", "xfail", "warn")
DEFAULT_N_DEVICES = 2

MARKER_HELP = (
    f"{GPUS_MARKER}(n): the test needs n devices (GPUs, or CPU core groups in CPU mode); "
    "skipped, saying what was found, where fewer are available.",
    f"{TOPOLOGY_MARKER}(min_link='NVLINK', same_numa=False, on_mismatch='skip'): the devices the test "
    "uses must be linked at least this well (NVLINK > PIX > PXB > PHB > NODE > SYS), optionally on one "
    "NUMA node; otherwise skip, xfail or warn.",
    "mgpu_nodes(n): the test runs a multi-node engine over n nodes; skipped, saying what was found, where "
    "--mgpu-nodes names fewer (with the local launcher and no --mgpu-nodes: one node per device here).",
)
NODES_MARKER = "mgpu_nodes"

Action = Literal["run", "skip", "xfail", "warn"]
_ACTIONS: dict[str, Action] = {"skip": "skip", "xfail": "xfail", "warn": "warn"}


class MarkerError(ValueError):
    """A marker was given arguments it cannot use; the message names the test and the argument."""


class MgpuTopologyWarning(pytest.PytestWarning):
    """A test marked `mgpu_topology(on_mismatch="warn")` ran on devices linked worse than it asked."""


@dataclass(frozen=True)
class Requirement:
    """What a test's markers ask for."""

    n_devices: int = DEFAULT_N_DEVICES
    min_link: LinkClass | None = None  # None: no topology marker
    same_numa: bool = False
    on_mismatch: str = "skip"

    def describe(self) -> str:
        what = f"requires {self.n_devices} device{'s' if self.n_devices != 1 else ''}"
        if self.min_link is not None:
            what += f" linked by {self.min_link.label}"
        if self.same_numa:
            what += " on one NUMA node"
        return what


@dataclass(frozen=True)
class PlacementVerdict:
    """What a topology marker decides for one test: run on these devices, warn and run on the best, or skip."""

    action: Action
    reason: str  # "" when the requirement is met
    devices: tuple[int, ...] | None  # the set the test should use (the best available one on 'warn')


APPROVED_DEVICES_KEY = pytest.StashKey[tuple[int, ...]]()
REQUIREMENT_KEY = pytest.StashKey[Requirement]()
VERDICT_KEY = pytest.StashKey[PlacementVerdict]()


def _count_arg(item: pytest.Item, mark: pytest.Mark, what: str) -> int:
    """The single count argument n of `mgpu_gpus(n)` or `mgpu_nodes(n)`; MarkerError naming the test otherwise."""
    where = f"{item.nodeid}: @pytest.mark.{mark.name}{_call(mark)}"
    if len(mark.args) + len(mark.kwargs) != 1 or (mark.kwargs and "n" not in mark.kwargs):
        raise MarkerError(f"{where}: expected exactly one argument, the number of {what}, "
                          f"e.g. @pytest.mark.{mark.name}(2)")
    n = mark.args[0] if mark.args else mark.kwargs["n"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise MarkerError(f"{where}: n={n!r} is not a number of {what}; expected an integer >= 1")
    return n


def _gpus(item: pytest.Item, mark: pytest.Mark) -> int:
    return _count_arg(item, mark, "devices")


def _call(mark: pytest.Mark) -> str:
    return "(" + ", ".join([*map(repr, mark.args), *(f"{k}={v!r}" for k, v in mark.kwargs.items())]) + ")"


def _topology(item: pytest.Item, mark: pytest.Mark) -> tuple[LinkClass, bool, str]:
    where = f"{item.nodeid}: @pytest.mark.{TOPOLOGY_MARKER}{_call(mark)}"
    allowed = ("min_link", "same_numa", "on_mismatch")
    unknown = sorted(set(mark.kwargs) - set(allowed))
    if unknown:
        raise MarkerError(f"{where}: unknown argument {', '.join(unknown)}; expected {', '.join(allowed)}")
    if len(mark.args) > 1 or (mark.args and "min_link" in mark.kwargs):
        raise MarkerError(f"{where}: only min_link may be given by position; pass the others by name")
    raw_link = mark.args[0] if mark.args else mark.kwargs.get("min_link", "NVLINK")
    try:
        min_link = LinkClass.parse_requirement(raw_link)
    except ValueError:
        raise MarkerError(f"{where}: min_link={raw_link!r} is not a link class; expected one of "
                          "NVLINK > PIX > PXB > PHB > NODE > SYS") from None
    same_numa = mark.kwargs.get("same_numa", False)
    if not isinstance(same_numa, bool):
        raise MarkerError(f"{where}: same_numa={same_numa!r}; expected True or False")
    on_mismatch = mark.kwargs.get("on_mismatch", "skip")
    if on_mismatch not in ON_MISMATCH:
        raise MarkerError(f"{where}: on_mismatch={on_mismatch!r}; expected one of {', '.join(ON_MISMATCH)}")
    return min_link, same_numa, on_mismatch


def requirement_of(item: pytest.Item) -> Requirement | None:
    """The item's requirement (None without mgpu markers); raises MarkerError on bad arguments."""
    gpus = item.get_closest_marker(GPUS_MARKER)
    topo = item.get_closest_marker(TOPOLOGY_MARKER)
    if gpus is None and topo is None:
        return None
    n = _gpus(item, gpus) if gpus is not None else DEFAULT_N_DEVICES
    if topo is None:
        return Requirement(n_devices=n)
    min_link, same_numa, on_mismatch = _topology(item, topo)
    return Requirement(n_devices=n, min_link=min_link, same_numa=same_numa, on_mismatch=on_mismatch)


def _found(topology: Topology, devices: tuple[int, ...], same_numa: bool) -> str:
    text = topology.describe(devices)
    nodes = topology.numa_nodes(devices)
    if same_numa and len(nodes) > 1:
        text += " across NUMA nodes " + ", ".join("?" if x is None else str(x) for x in sorted(nodes, key=str))
    elif same_numa and None in nodes:
        text += " on an unknown NUMA node"
    return text


def judge(topology: Topology, req: Requirement, among: tuple[int, ...]) -> PlacementVerdict:
    """Can the test have what it asks for among the devices this process may use?"""
    if req.n_devices > len(among):
        found = topology.describe(among) if among else "no devices"
        return PlacementVerdict("skip", f"{req.describe()}; found {found}", None)
    chosen = best_set(topology, req.n_devices, min_link=req.min_link, same_numa=req.same_numa, among=among)
    if chosen is not None:
        return PlacementVerdict("run", "", chosen)
    best = best_set(topology, req.n_devices, among=among)
    assert best is not None  # n <= len(among), and without constraints every set qualifies
    reason = f"{req.describe()}; found {_found(topology, best, req.same_numa)}"
    action = _ACTIONS[req.on_mismatch]
    return PlacementVerdict(action, reason, best if action == "warn" else None)


# --- mgpu_nodes(n): multi-node engines (engines/multinode.py) ---
def nodes_required(item: pytest.Item) -> int | None:
    """n from the item's `mgpu_nodes(n)` (None without it); raises MarkerError on bad arguments."""
    mark = item.get_closest_marker(NODES_MARKER)
    if mark is None:
        return None
    return _count_arg(item, mark, "nodes")


def available_nodes(hosts: tuple[str, ...], launcher: str, n_devices: int) -> tuple[int, str]:
    """How many nodes a multi-node engine can have here, and where that number comes from."""
    if hosts:
        return len(hosts), f"--mgpu-nodes names {len(hosts)} ({', '.join(hosts)})"
    if launcher == "local":
        return n_devices, f"the local launcher has {n_devices} device{'s' if n_devices != 1 else ''} for nodes"
    return 1, f"--mgpu-node-launcher {launcher} without --mgpu-nodes names no other node"


def judge_nodes(n: int, hosts: tuple[str, ...], launcher: str, n_devices: int) -> str | None:
    """The skip reason when fewer than n nodes are available, else None."""
    have, why = available_nodes(hosts, launcher, n_devices)
    return None if n <= have else f"requires {n} nodes; {why}"
