"""Errors of the hardware layer. Each message says what was expected, what was found, what to do."""

from __future__ import annotations


class HardwareError(RuntimeError):
    """The machine (or the recorded topology) cannot give what was asked for."""


class TopologyFileError(HardwareError, ValueError):
    """A recorded topology file could not be read."""


class NvmlUnavailable(HardwareError):
    """NVML cannot be used here (no nvidia-ml-py, no driver, no GPU); the message says why."""
