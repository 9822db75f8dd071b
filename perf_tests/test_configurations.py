"""Every configuration this box can run, measured once, gated against its baseline and held to the SLOs.

Runs first (alphabetical order), in the engine order of `plan.CONFIGS`, so the comparison tests
that follow reuse these measurements and start no engine of their own.
"""

from __future__ import annotations

import pytest

from pytest_mgpu import assert_slo, get_session

from .plan import CONFIGS, GATED, TOLERANCES, Config


def _marks(c: Config) -> list[pytest.MarkDecorator]:
    return [pytest.mark.mgpu_gpus(c.min_devices), *([pytest.mark.mgpu_nodes(c.nodes)] if c.nodes > 1 else [])]


@pytest.mark.parametrize("config", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CONFIGS])
def test_configuration(config, measure, mgpu_baseline, mgpu_topology, perf_slo, pytestconfig) -> None:
    result = measure(config)  # more than 5% failed requests is an error of mgpu_bench itself
    kind = mgpu_topology.kind
    chosen = get_session(pytestconfig).settings.tolerance  # --mgpu-tolerance, when given, wins
    mgpu_baseline.check(result, metrics=GATED[kind], tolerance=None if chosen is not None else TOLERANCES[kind])
    assert_slo(result, **perf_slo)
