"""The detector registry. A detector is a function Context -> iterable of Findings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_mgpu.diagnose.findings import Finding, Severity

if TYPE_CHECKING:
    from pytest_mgpu.bench.results import BenchResult
    from pytest_mgpu.engines.spec import EngineServer
    from pytest_mgpu.hardware.topology import Topology


@dataclass(frozen=True)
class Context:
    topology: Topology
    server: EngineServer
    result: BenchResult
    telemetry: Any = None  # per-device samples over the measurement window, when a sampler ran
    extra: dict[str, Any] = field(default_factory=dict)


Detector = Callable[[Context], Iterable[Finding]]
DETECTORS: dict[str, Detector] = {}


def detector(code: str) -> Callable[[Detector], Detector]:
    def register(fn: Detector) -> Detector:
        DETECTORS[code] = fn
        return fn

    return register


@detector("idle-devices")
def idle_devices(ctx: Context) -> Iterable[Finding]:
    """Devices allocated or visible to the engine beyond tp*pp: TP=1 on a box where every GPU is visible."""
    spec = ctx.server.spec
    idle = ctx.server.n_devices - spec.world_size
    if idle <= 0:
        return
    per_gpu = ctx.result.metrics.get("output_throughput_per_gpu")
    used_share = spec.world_size / ctx.server.n_devices
    yield Finding(
        "idle-devices",
        Severity.WARNING,
        f"{ctx.server.n_devices} devices are allocated to an engine of tp*pp={spec.world_size}: {idle} sit idle, "
        f"so per-device throughput is at most {used_share:.0%} of what the used devices deliver. Allocate "
        f"exactly tp*pp devices (devices=None), or raise tp/pp to use them all.",
        {"allocated": ctx.server.n_devices, "world_size": spec.world_size, "idle": idle,
         "devices": list(ctx.server.devices), "output_throughput_per_gpu": per_gpu},
    )
