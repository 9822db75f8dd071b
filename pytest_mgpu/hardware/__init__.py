"""Hardware: topology discovery, fingerprints, device selection and leasing.

Importing this package touches no GPU: NVML is imported and started only inside `discover`.
"""

from __future__ import annotations

from pathlib import Path

from pytest_mgpu.hardware.errors import HardwareError, NvmlUnavailable, TopologyFileError
from pytest_mgpu.hardware.topology import Device, LinkClass, Topology

__all__ = [
    "DEVICE_MODES", "Device", "HardwareError", "LinkClass", "NvmlUnavailable", "Topology", "TopologyFileError",
    "discover",
]

DEVICE_MODES = ("auto", "cuda", "cpu")  # as --mgpu-device


def discover(device_mode: str = "auto", topology_file: Path | None = None) -> Topology:
    """This machine's topology, or the recorded one when a file is given.

    A file (JSON snapshot or `nvidia-smi topo -m` text) replaces the live machine. Otherwise
    `auto` means CUDA when NVML sees at least one GPU, else CPU core groups; `cuda` without
    a GPU is an error that says why NVML found none.
    """
    if topology_file is not None:
        from pytest_mgpu.hardware.snapshot import load_topology_file

        topology = load_topology_file(Path(topology_file))
        if device_mode != "auto" and device_mode != topology.kind:
            raise HardwareError(
                f"--mgpu-device {device_mode} was asked for, but the topology file {topology_file} describes "
                f"{topology.kind} devices; use --mgpu-device auto (or {topology.kind}) with this file"
            )
        return topology
    if device_mode not in DEVICE_MODES:
        raise HardwareError(f"unknown device mode {device_mode!r}; expected auto, cuda or cpu")
    why_cpu = "--mgpu-device cpu"
    if device_mode != "cpu":
        from pytest_mgpu.hardware import nvml

        try:
            return nvml.read_topology()
        except NvmlUnavailable as exc:
            if device_mode == "cuda":
                raise HardwareError(
                    f"--mgpu-device cuda needs at least one NVIDIA GPU, but none was found ({exc}). "
                    "Run on a GPU machine with the NVIDIA driver and nvidia-ml-py installed, or use "
                    "--mgpu-device cpu (or auto, which falls back to CPU core groups)"
                ) from None
            why_cpu = f"no CUDA GPU: {exc}"
    from pytest_mgpu.hardware import cpu

    topology = cpu.cpu_topology()
    topology.extra["why_cpu"] = why_cpu
    return topology
