"""The four fixtures of the contract. Thin: each hands its work to a subpackage."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

from pytest_mgpu.engines.hooks import get_pool, stop_pool
from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.engines.spec import EngineServer, EngineSpec
from pytest_mgpu.session import MgpuSession, get_session

if TYPE_CHECKING:
    from pytest_mgpu.bench.results import BenchResult
    from pytest_mgpu.bench.workload import Workload
    from pytest_mgpu.gate.fixture import BaselineChecker
    from pytest_mgpu.hardware.topology import Topology


class EngineFactory:
    """`mgpu_engine(tp=2, pp=1, *, nodes=None, engine=None, model=None, devices=None, extra_args=(), env=None)`."""

    def __init__(self, session: MgpuSession, request: pytest.FixtureRequest, log_dir: Path) -> None:
        self._session = session
        self._request = request
        self._log_dir = log_dir

    def __call__(
        self,
        tp: int = 2,
        pp: int = 1,
        *,
        nodes: int | None = None,
        engine: str | None = None,
        model: str | None = None,
        devices: int | Literal["all"] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> EngineServer:
        spec = self.spec(tp, pp, nodes=nodes, engine=engine, model=model, devices=devices, extra_args=extra_args,
                         env=env)
        if spec.engine == "external":
            return self._external(spec)
        prefer = _approved_devices(self._request)
        pool = get_pool(self._session, self._log_dir)
        return pool.get(spec, prefer if prefer and len(prefer) == spec.n_devices else None)

    def spec(
        self,
        tp: int = 2,
        pp: int = 1,
        *,
        nodes: int | None = None,
        engine: str | None = None,
        model: str | None = None,
        devices: int | Literal["all"] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> EngineSpec:
        """The spec such a call would start, validated (a bad argument is the test's error, not the engine's)."""
        s = self._session.settings
        for name, value in (("tp", tp), ("pp", pp)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"mgpu_engine({name}={value!r}): expected an integer >= 1")
        if nodes is not None:  # multi-node
            from pytest_mgpu.engines.multinode import check_nodes

            check_nodes(tp, pp, nodes)
        engine = engine or s.engine
        topo = self._session.topology
        if engine == "external":
            n = s.external_devices
        elif devices is None:
            n = tp * pp
        elif devices == "all":
            n = topo.n_devices
        elif isinstance(devices, int) and not isinstance(devices, bool) and devices >= tp * pp:
            n = devices
        else:
            raise ValueError(
                f"mgpu_engine(devices={devices!r}): expected None (tp*pp={tp * pp} devices), 'all', "
                f"or an integer >= tp*pp"
            )
        return EngineSpec(
            engine=engine,
            model=str(model or s.model or TINY_MODEL),
            tp=tp,
            pp=pp,
            n_devices=n,
            device_kind=topo.kind,
            extra_args=tuple(s.engine_args) + tuple(extra_args),
            env=tuple(sorted((env or {}).items())),
            nodes=_nodes_for(nodes, n),
        )

    def _external(self, spec: EngineSpec) -> EngineServer:
        from pytest_mgpu.engines.external import connect

        return connect(self._session.settings, spec)


def _nodes_for(nodes: int | None, n_devices: int) -> int:
    """Multi-node: the device count (all nodes together) must split evenly too."""
    if nodes is None or nodes == 1:
        return 1
    if n_devices % nodes:
        raise ValueError(f"mgpu_engine(nodes={nodes}): {n_devices} devices do not split evenly over {nodes} nodes; "
                         "expected devices= divisible by nodes")
    return nodes


def _approved_devices(request: pytest.FixtureRequest) -> tuple[int, ...] | None:
    try:
        from pytest_mgpu.hardware.markers import APPROVED_DEVICES_KEY
    except ImportError:
        return None
    value: tuple[int, ...] | None = request.node.stash.get(APPROVED_DEVICES_KEY, None)
    return value


@pytest.fixture(scope="session")
def _mgpu_engine_logs(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Path]:
    log_dir = tmp_path_factory.mktemp("mgpu-engines")
    yield log_dir
    stop_pool(get_session(pytestconfig))


@pytest.fixture
def mgpu_engine(request: pytest.FixtureRequest, _mgpu_engine_logs: Path) -> EngineFactory:
    """Start (or reuse) an OpenAI-compatible engine at the TP/PP size a test asks for."""
    return EngineFactory(get_session(request.config), request, _mgpu_engine_logs)


class BenchRunner:
    """`mgpu_bench(server, workload=None, *, repeats=None) -> BenchResult`, recorded for the reports."""

    def __init__(self, session: MgpuSession, request: pytest.FixtureRequest) -> None:
        self._session = session
        self._request = request

    def __call__(self, server: EngineServer, workload: Workload | None = None, *,
                 repeats: int | None = None) -> BenchResult:
        from pytest_mgpu.bench.measure import measure
        from pytest_mgpu.bench.workload import Workload
        from pytest_mgpu.diagnose.policy import failing, failure_message

        session = self._session
        record = measure(session, server, workload or Workload(), repeats=repeats or session.settings.repeats,
                         nodeid=self._request.node.nodeid)
        fatal = failing(record.result.findings, session.settings.fail_on)
        if fatal:
            pytest.fail(failure_message(fatal, server.spec.label()), pytrace=False)
        return record.result


@pytest.fixture
def mgpu_bench(request: pytest.FixtureRequest) -> BenchRunner:
    """Run a `pytest_mgpu.Workload` against a server: `mgpu_bench(server, workload=None, *, repeats=None)`."""
    return BenchRunner(get_session(request.config), request)


@pytest.fixture
def mgpu_baseline(request: pytest.FixtureRequest) -> BaselineChecker:
    """Compare results with the stored baseline for this hardware: `mgpu_baseline.check(result)`."""
    from pytest_mgpu.gate.fixture import make_baseline_checker

    return make_baseline_checker(request)


@pytest.fixture
def mgpu_topology(request: pytest.FixtureRequest) -> Topology:
    """This machine's topology (or the one recorded in --mgpu-topology-file)."""
    return get_session(request.config).topology


__all__ = ["BenchRunner", "EngineFactory", "mgpu_baseline", "mgpu_bench", "mgpu_engine", "mgpu_topology"]
