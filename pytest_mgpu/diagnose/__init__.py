"""Pathology detectors: each looks at the topology, the engine, a result and the telemetry sampled
during it, and explains a bad number.

One module per family registers its detectors: `devices` (idle-devices, shared-device),
`affinity` (cross-numa), `links` (pcie-degraded, p2p-unsupported), `clocks` (throttled),
`roofline` (below-roofline). `client-bound` comes from the load generator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_mgpu.diagnose import affinity, clocks, devices, links, roofline  # noqa: F401  (they register)
from pytest_mgpu.diagnose.registry import CODES, DETECTORS, Context, declare, detector
from pytest_mgpu.findings import Finding, Severity

if TYPE_CHECKING:
    from pytest_mgpu.bench.results import BenchResult
    from pytest_mgpu.engines.spec import EngineServer
    from pytest_mgpu.hardware.topology import Topology
    from pytest_mgpu.telemetry import Telemetry

__all__ = ["CODES", "DETECTORS", "Context", "Finding", "Severity", "declare", "detector", "diagnose"]


def diagnose(topology: Topology, server: EngineServer, result: BenchResult, telemetry: Telemetry | None = None,
             earlier: tuple[BenchResult, ...] = ()) -> list[Finding]:
    """Every registered detector's findings for one measurement (`earlier`: this session's results before it)."""
    ctx = Context(topology=topology, server=server, result=result, telemetry=telemetry, earlier=earlier)
    findings: list[Finding] = []
    for detect in DETECTORS.values():
        findings.extend(detect(ctx))
    return findings
