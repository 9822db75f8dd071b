"""The perf suite's shared setup: copy this folder to start your own.

Light on purpose (no torch, vllm or pynvml here: collection and `pytest --help` stay cheap and
never touch a GPU). Each configuration is measured once per session (`measure`), so the tests
that compare configurations reuse the measurements the baseline gates made; and the run ends
with one table of every configuration, the TP-scaling and PP-vs-TP tables, and the idle-device
loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_mgpu import get_session

GPU_ONLY_DIR = Path(__file__).parent / "gpu"


@dataclass
class PerfBook:
    """This session's measurements by configuration id, and the tables the comparison tests made."""

    results: dict[str, Any] = field(default_factory=dict)  # config id -> BenchResult
    devices: dict[str, tuple[int, ...]] = field(default_factory=dict)  # config id -> the ranks' topology indices
    tables: list[tuple[str, list[str]]] = field(default_factory=list)  # (title, lines)

    def add_table(self, title: str, lines: list[str]) -> None:
        self.tables = [(t, ls) for t, ls in self.tables if t != title] + [(title, lines)]


BOOK_KEY = pytest.StashKey[PerfBook]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[BOOK_KEY] = PerfBook()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`perf_tests/gpu` measures real GPUs only: on CPU devices it is skipped, saying so."""
    gpu_items = [i for i in items if GPU_ONLY_DIR in i.path.parents]
    if not gpu_items or config.option.collectonly:
        return
    topology = get_session(config).topology
    if topology.kind != "cuda":
        reason = f"GPU-only suite (run with --mgpu-device cuda on a GPU host); found {topology.describe()}"
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def perf_book(pytestconfig: pytest.Config) -> PerfBook:
    return pytestconfig.stash[BOOK_KEY]


@pytest.fixture
def perf_workload(mgpu_topology: Any) -> Any:
    from .plan import WORKLOADS

    return WORKLOADS[mgpu_topology.kind]


@pytest.fixture
def perf_slo(mgpu_topology: Any) -> dict[str, float]:
    from .plan import SLOS

    return SLOS[mgpu_topology.kind]


@pytest.fixture
def measure(mgpu_engine: Any, mgpu_bench: Any, mgpu_topology: Any, perf_book: PerfBook,
            perf_workload: Any) -> Callable[[Any], Any]:
    """`measure(config) -> BenchResult`: the session's measurement of a configuration, made on first use."""
    from .plan import why_not

    def run(config: Any) -> Any:
        if config.id in perf_book.results:
            return perf_book.results[config.id]
        reason = why_not(config, mgpu_topology.n_devices, mgpu_topology.kind)
        if reason:
            pytest.skip(reason)
        server = mgpu_engine(tp=config.tp, pp=config.pp, devices=config.devices,
                             nodes=config.nodes if config.nodes > 1 else None)
        result = mgpu_bench(server, perf_workload)
        perf_book.results[config.id] = result
        perf_book.devices[config.id] = server.devices[: config.tp * config.pp]
        return result

    return run


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    book = config.stash.get(BOOK_KEY, None)
    if book is None or not book.results:
        return
    try:
        lines = _configuration_table(config, book)
    except Exception as exc:  # the summary must never turn the run into an INTERNALERROR
        lines = [f"could not build the configuration table: {type(exc).__name__}: {exc}"]
    terminalreporter.write_sep("=", "perf_tests: configurations")
    for line in lines:
        terminalreporter.write_line(line)
    for title, table in book.tables:
        terminalreporter.write_sep("-", title)
        for line in table:
            terminalreporter.write_line(line)


def _configuration_table(config: pytest.Config, book: PerfBook) -> list[str]:
    from pytest_mgpu.gate.table import aligned, number
    from pytest_mgpu.report.model import rows

    by_result = {id(r.result): r for r in rows(get_session(config))}
    table = []
    for config_id, result in book.results.items():
        row = by_result.get(id(result))
        m = result.metrics
        busy = [m[f"device_busy_{i}"] for i in range(result.n_devices) if f"device_busy_{i}" in m]
        codes = sorted({f.code for f in result.findings})
        table.append([
            config_id, str(result.n_devices), number(m.get("output_throughput_per_gpu")),
            number(m.get("median_tpot_ms")), number(m.get("median_ttft_ms")), number(m.get("p99_ttft_ms")),
            "/".join(f"{b:.0%}" for b in busy) or "-", number(m.get("mbu")), number(m.get("tokens_per_joule")),
            row.verdict_text() if row else "measured", ", ".join(codes) or "-",
        ])
    headers = ("config", "devices", "tok/s/device", "TPOT ms", "TTFT ms", "p99 TTFT ms", "busy", "MBU",
               "tok/J", "verdict", "findings")
    return aligned(headers, table).splitlines()
