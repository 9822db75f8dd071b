"""GPU memory must return to idle after an engine stops, or the next engine measures a shared GPU.

A SIGKILL returns while CUDA contexts are still being unwound (sglang PR #32829); vLLM's own
test server raises if memory is not released within a deadline (vLLM PR #37230). So do we.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_mgpu.engines.process import EngineTeardownError

DRAIN_DEADLINE_S = 60.0
DRAIN_SLACK_BYTES = 512 * 2**20  # what a driver or a monitoring agent may hold on an idle GPU


@dataclass(frozen=True)
class DrainResult:
    seconds: float
    used_bytes: dict[str, int]  # device uuid -> memory used when it counted as idle


def nvml_memory_used(uuids: Sequence[str]) -> dict[str, int]:
    """Memory used per GPU, by UUID (NVML ignores CUDA_VISIBLE_DEVICES, UUIDs do not)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        out = {}
        for uuid in uuids:
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            out[uuid] = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        return out
    finally:
        pynvml.nvmlShutdown()


def wait_drained(
    uuids: Sequence[str],
    idle_bytes: dict[str, int],
    deadline_s: float = DRAIN_DEADLINE_S,
    read: Callable[[Sequence[str]], dict[str, int]] = nvml_memory_used,
) -> DrainResult:
    """Poll until every GPU is back within DRAIN_SLACK_BYTES of its idle reading, or raise."""
    t0 = time.monotonic()
    while True:
        used = read(uuids)
        busy = {u: b for u, b in used.items() if b > idle_bytes.get(u, 0) + DRAIN_SLACK_BYTES}
        if not busy:
            return DrainResult(time.monotonic() - t0, used)
        if time.monotonic() - t0 > deadline_s:
            detail = ", ".join(f"{u}: {b / 2**30:.2f} GiB used, idle was {idle_bytes.get(u, 0) / 2**30:.2f} GiB"
                               for u, b in busy.items())
            raise EngineTeardownError(
                f"GPU memory did not return to idle within {deadline_s:.0f} s after the engine stopped ({detail}); "
                "expected it back within 0.5 GiB. Another process may hold the GPU (nvidia-smi shows which); "
                "the next measurement on it would be wrong."
            )
        time.sleep(0.25)
