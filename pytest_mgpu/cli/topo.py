"""`python -m pytest_mgpu topo [--json] [--from FILE] [--probe]`: this machine as pytest-mgpu sees it.

The text output is the `nvidia-smi topo -m` matrix with CPU and NUMA affinity, the
per-device facts NVML adds, and the fingerprint that names this machine's baselines.
`--json` prints a snapshot that `--mgpu-topology-file` (and `--from`) read back.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_mgpu.hardware import DEVICE_MODES

if TYPE_CHECKING:
    from pytest_mgpu.hardware.fingerprint import Fingerprint
    from pytest_mgpu.hardware.topology import Topology


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "topo",
        help="show devices, links, NUMA/CPU affinity and the hardware fingerprint",
        description="The devices pytest-mgpu would use: the link matrix as `nvidia-smi topo -m` prints it, "
        "CPU and NUMA affinity, per-device facts, and the fingerprint that names this machine's baselines.",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON snapshot instead of text")
    parser.add_argument("--from", dest="from_file", type=Path, metavar="FILE",
                        help="read a recorded topology (JSON snapshot or `nvidia-smi topo -m` text) instead")
    parser.add_argument("--device", choices=DEVICE_MODES, default="auto",
                        help="device kind, as --mgpu-device (default: auto)")
    parser.add_argument("--probe", action="store_true",
                        help="also measure NCCL all-reduce bus bandwidth per GPU pair (needs torch and 2+ GPUs)")
    parser.set_defaults(func=run)


def _gb(value: float | None, unit: float = 1e9) -> str:
    return "?" if value is None else f"{value / unit:.1f}"


def _pcie(cur_gen: int | None, cur_width: int | None, max_gen: int | None, max_width: int | None) -> str:
    if cur_gen is None and max_gen is None:
        return "PCIe ?"
    text = f"PCIe Gen{cur_gen or '?'} x{cur_width or '?'}"
    if (cur_gen, cur_width) != (max_gen, max_width):
        text += f" (max Gen{max_gen or '?'} x{max_width or '?'})"
    return text


def device_lines(topology: Topology) -> list[str]:
    lines = []
    for d in topology.devices:
        if d.kind == "cpu":
            lines.append(f"  CPU{d.index}: {d.name}, cores {','.join(map(str, d.cpus))}, NUMA {d.numa_node}")
            continue
        parts = [d.name]
        if d.memory_bytes:
            parts.append(f"{d.memory_bytes / 2**30:.1f} GiB")
        if d.memory_bandwidth_bytes_per_s:
            parts.append(f"peak memory bandwidth {d.memory_bandwidth_bytes_per_s / 1e9:.0f} GB/s")
        if d.pcie_gen_current is not None or d.pcie_gen_max is not None:
            parts.append(_pcie(d.pcie_gen_current, d.pcie_width_current, d.pcie_gen_max, d.pcie_width_max))
        if topology.source == "nvml":
            parts.append("NVLinks " + ("unknown (not supported)" if d.nvlink_count is None else str(d.nvlink_count)))
        if d.pci_bus_id:
            parts.append(f"bus {d.pci_bus_id}")
        lines.append(f"  GPU{d.index}: " + ", ".join(parts))
    return lines


def render_text(topology: Topology, fingerprint: Fingerprint) -> str:
    from pytest_mgpu.hardware.topo_text import format_topo_m

    out = [format_topo_m(topology).rstrip("\n"), "", "Devices:", *device_lines(topology)]
    p2p = topology.extra.get("p2p_read")
    if p2p:
        bad = [f"GPU{i}-GPU{j} {p2p[i][j]}" for i in range(len(p2p)) for j in range(i + 1, len(p2p))
               if p2p[i][j] != "OK"]
        if bad:
            out.append("P2P read not OK (as `nvidia-smi topo -p2p r`): " + ", ".join(bad))
    source = topology.source
    if "driver_version" in topology.extra:
        source += f" (driver {topology.extra['driver_version']}, CUDA {topology.extra.get('cuda_driver_version', '?')})"
    if "why_cpu" in topology.extra:
        source += f" ({topology.extra['why_cpu']})"
    out += ["", f"Source: {source}", f"Fingerprint: {fingerprint.dirname}"]
    return "\n".join(out)


def _probe(topology: Topology) -> tuple[list[dict[str, Any]] | None, str | None]:
    from pytest_mgpu.hardware import probe
    from pytest_mgpu.hardware.errors import HardwareError

    reason = probe.cannot_probe(topology)
    if reason is not None:
        return None, f"cannot measure NCCL bus bandwidth: {reason}"
    try:
        return [r.to_json() for r in probe.probe_pairs(topology)], None
    except HardwareError as exc:
        return None, str(exc)


def run(args: argparse.Namespace) -> int:
    from pytest_mgpu.hardware import discover
    from pytest_mgpu.hardware.errors import HardwareError
    from pytest_mgpu.hardware.fingerprint import fingerprint
    from pytest_mgpu.hardware.snapshot import snapshot_json

    try:
        topology = discover(args.device, args.from_file)
    except HardwareError as exc:
        print(f"pytest-mgpu topo: {exc}", file=sys.stderr)
        return 2
    results, probe_error = _probe(topology) if args.probe else (None, None)
    if args.json:
        data = snapshot_json(topology)
        if args.probe:
            data["probe"] = results if results is not None else {"error": probe_error}
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render_text(topology, fingerprint(topology)))
        for r in results or []:
            print(f"probe: GPU{r['a']}-GPU{r['b']} ({r['link']}): all-reduce bus bandwidth "
                  f"{r['busbw_bytes_per_s'] / 1e9:.1f} GB/s ({r['size_bytes'] >> 20} MiB x {r['iterations']})")
    if probe_error:
        print(f"pytest-mgpu topo --probe: {probe_error}", file=sys.stderr)
        return 1
    return 0
