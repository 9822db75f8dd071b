"""The detector registry. A detector is a function Context -> iterable of Findings.

Detectors are pure: everything they judge (topology, the engine, the result, the telemetry
sampled during the measurement) is in the Context, so each is tested on recorded cases.
Codes produced elsewhere (the load generator's `client-bound`) are declared here too, so
`--mgpu-fail-on` can name every code a user may see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_mgpu.findings import Finding

if TYPE_CHECKING:
    from pytest_mgpu.bench.results import BenchResult
    from pytest_mgpu.engines.spec import EngineServer
    from pytest_mgpu.hardware.topology import Topology
    from pytest_mgpu.telemetry import Telemetry


@dataclass(frozen=True)
class Context:
    topology: Topology
    server: EngineServer
    result: BenchResult
    telemetry: Telemetry | None = None  # per-device summary of the measurement window, when a sampler ran
    earlier: tuple[BenchResult, ...] = ()  # results measured before this one, in this session

    def rank_devices(self) -> tuple[int, ...]:
        """Topology indices of the devices the engine's ranks use (the first tp*pp allocated)."""
        return self.server.devices[: self.server.spec.world_size]

    def tp_groups(self) -> list[tuple[int, ...]]:
        """Topology indices of each tensor-parallel group (vLLM: rank = pp_rank * tp + tp_rank)."""
        tp, ranks = self.server.spec.tp, self.rank_devices()
        return [ranks[i : i + tp] for i in range(0, len(ranks), tp) if len(ranks[i : i + tp]) > 1]


Detector = Callable[[Context], Iterable[Finding]]
DETECTORS: dict[str, Detector] = {}
CODES: dict[str, str] = {}  # every finding code a run can produce -> what it means


def detector(code: str, description: str = "") -> Callable[[Detector], Detector]:
    def register(fn: Detector) -> Detector:
        DETECTORS[code] = fn
        CODES[code] = description or (fn.__doc__ or "").strip().splitlines()[0]
        return fn

    return register


def declare(code: str, description: str) -> None:
    """A code that something other than a detector produces (it still may be named in --mgpu-fail-on)."""
    CODES.setdefault(code, description)


declare("client-bound", "the load generator, not the engine, may have set the pace (from the load generator)")
declare("client-jitter", "the load generator lagged now and then: tail latencies are suspect, medians are not")
declare("output-length-mismatch", "the engine returned a different number of output tokens than asked for")
declare("usage-missing", "streams carried no usage chunk, so output tokens were counted from events")
