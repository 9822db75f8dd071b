"""Pathology detectors: each looks at the topology, the engine and a result, and explains a bad number."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_mgpu.diagnose.findings import Finding, Severity
from pytest_mgpu.diagnose.registry import DETECTORS, Context

if TYPE_CHECKING:
    from pytest_mgpu.bench.results import BenchResult
    from pytest_mgpu.engines.spec import EngineServer
    from pytest_mgpu.hardware.topology import Topology

__all__ = ["DETECTORS", "Context", "Finding", "Severity", "diagnose"]


def diagnose(topology: Topology, server: EngineServer, result: BenchResult) -> list[Finding]:
    """Every registered detector's findings for one measurement."""
    ctx = Context(topology=topology, server=server, result=result)
    findings: list[Finding] = []
    for detector in DETECTORS.values():
        findings.extend(detector(ctx))
    return findings
