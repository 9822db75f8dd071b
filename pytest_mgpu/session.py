"""Per-run state, kept in `config.stash` (never in module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from pytest_mgpu.settings import Settings

if TYPE_CHECKING:
    from pytest_mgpu.bench.results import BenchResult
    from pytest_mgpu.engines.pool import EnginePool, EngineTiming
    from pytest_mgpu.engines.registry import EngineRegistry
    from pytest_mgpu.gate.compare import Verdict
    from pytest_mgpu.hardware.leasing import Leaser
    from pytest_mgpu.hardware.topology import Topology
    from pytest_mgpu.history.state import HistoryState


@dataclass
class Record:
    """One measurement a test made, for the terminal summary and the reports."""

    nodeid: str
    result: BenchResult
    verdict: Verdict | None = None  # when the test checked a baseline
    notes: list[str] = field(default_factory=list)


@dataclass
class MgpuSession:
    """Everything pytest-mgpu keeps for one pytest run; each field has one owner that sets it."""

    config: pytest.Config
    settings: Settings
    records: list[Record] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # report entries (topology 'warn', missing baselines)
    _topology: Topology | None = None
    leaser: Leaser | None = None  # engines.hooks.get_leaser
    pool: EnginePool | None = None  # engines.hooks.get_pool; None again once stopped
    engines: EngineRegistry | None = None  # plugin.pytest_configure, from the pytest_mgpu_engines hook
    engine_timings: list[EngineTiming] = field(default_factory=list)  # kept after the pool is gone
    engine_events: list[str] = field(default_factory=list)
    bench_runs: dict[str, int] = field(default_factory=dict)  # base_url -> measurements so far on that engine
    history: HistoryState | None = None  # history.gate.get_history: the run-history store, opened on first use

    @property
    def topology(self) -> Topology:
        """This machine's topology (or the recorded one), discovered once, on first use."""
        if self._topology is None:
            from pytest_mgpu.hardware import discover

            self._topology = discover(self.settings.device, self.settings.topology_file)
        return self._topology


SESSION_KEY = pytest.StashKey[MgpuSession]()


def get_session(config: pytest.Config) -> MgpuSession:
    """The public accessor for pytest-mgpu's state in this run."""
    try:
        return config.stash[SESSION_KEY]
    except KeyError:
        raise RuntimeError("pytest-mgpu is not configured in this run (was it disabled with -p no:mgpu?)") from None
