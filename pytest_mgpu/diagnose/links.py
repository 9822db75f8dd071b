"""The links between and to devices: `pcie-degraded` (a link trained below what it can do) and
`p2p-unsupported` (TP peers that cannot reach each other's memory directly, so NCCL falls back
to copies through host memory)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pytest_mgpu.diagnose.registry import Context, detector
from pytest_mgpu.findings import Finding, Severity

LOADED_BUSY = 0.05  # GPUs lower the link generation when idle to save power: judge a link only under load
P2P_OK = {"OK", "X", 0}
P2P_UNKNOWN = {"U", "", None, 6}
P2P_MEANING = {"CNS": "chipset not supported", "GNS": "GPU not supported", "TNS": "topology not supported",
               "NS": "not supported", "DR": "disabled by regkey", 1: "chipset not supported",
               2: "GPU not supported", 3: "topology not supported", 4: "disabled by regkey", 5: "not supported"}


@detector("pcie-degraded", "a PCIe link trained below its maximum generation or width under load")
def pcie_degraded(ctx: Context) -> Iterable[Finding]:
    for d in ctx.telemetry.devices if ctx.telemetry else ():
        if d.busy is not None and d.busy < LOADED_BUSY:
            continue
        short = []
        if d.pcie_gen_seen is not None and d.pcie_gen_max is not None and d.pcie_gen_seen < d.pcie_gen_max:
            short.append(f"generation {d.pcie_gen_seen} of {d.pcie_gen_max}")
        if d.pcie_width_seen is not None and d.pcie_width_max is not None and d.pcie_width_seen < d.pcie_width_max:
            short.append(f"width x{d.pcie_width_seen} of x{d.pcie_width_max}")
        if not short:
            continue
        yield Finding(
            "pcie-degraded", Severity.WARNING,
            f"device {d.index}'s PCIe link ran at {' and '.join(short)} under load "
            f"({'busy ' + format(d.busy, '.0%') if d.busy is not None else 'load unknown'}): host transfers and "
            f"PCIe peer traffic are slower than the slot allows. Reseat the card or riser, check the BIOS link "
            f"settings, and compare `nvidia-smi -q -d PCIE`.",
            {"device": d.index, "pcie_gen_seen": d.pcie_gen_seen, "pcie_gen_max": d.pcie_gen_max,
             "pcie_width_seen": d.pcie_width_seen, "pcie_width_max": d.pcie_width_max, "busy": d.busy},
        )


def _p2p_matrix(ctx: Context) -> list[list[Any]] | None:
    for key in ("p2p", "p2p_read"):
        matrix = ctx.topology.extra.get(key)
        if isinstance(matrix, list) and len(matrix) == ctx.topology.n_devices:
            return matrix
    return None


@detector("p2p-unsupported", "tensor-parallel peers without GPU peer-to-peer access")
def p2p_unsupported(ctx: Context) -> Iterable[Finding]:
    matrix = _p2p_matrix(ctx)
    if matrix is None:
        return
    for group in ctx.tp_groups():
        bad = [(a, b, matrix[a][b]) for k, a in enumerate(group) for b in group[k + 1:]
               if matrix[a][b] not in P2P_OK and matrix[a][b] not in P2P_UNKNOWN]
        if not bad:
            continue
        cells = ", ".join(f"{a}-{b}: {code} ({P2P_MEANING.get(code, 'no P2P')})" for a, b, code in bad)
        yield Finding(
            "p2p-unsupported", Severity.WARNING,
            f"tensor-parallel peers {list(group)} have no GPU peer-to-peer access ({cells}): all-reduces go "
            f"through host memory (NCCL 'via SHM') and custom all-reduce is off. Expect TP to scale poorly here; "
            f"prefer PP across such pairs, or a box whose GPUs report P2P OK (`nvidia-smi topo -p2p r`).",
            {"tp_group": list(group), "pairs": [[a, b, code] for a, b, code in bad]},
        )
