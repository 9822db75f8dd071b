"""assert_better / assert_slo: direction from the registry, short tables on failure."""

from __future__ import annotations

import pytest

from pytest_mgpu import assert_better, assert_slo
from pytest_mgpu.metrics import UnknownMetricError

from .synthetic import make_result

FAIL = pytest.fail.Exception


def test_assert_better_higher_is_better() -> None:
    fast, slow = make_result(scale=1.0), make_result(scale=1.5)
    assert_better(fast, slow, "output_throughput_per_gpu")
    assert_better(fast, slow, "output_throughput_per_gpu", by=1.4)  # 1000 >= 667 * 1.4
    with pytest.raises(FAIL) as info:
        assert_better(fast, slow, "output_throughput_per_gpu", by=1.6)
    assert str(info.value) == (
        "pytest-mgpu: assert_better failed on output_throughput_per_gpu [tok/s/device] (higher is better)\n"
        "   configuration                                 median  samples\n"
        "a  vllm tp=1 pp=1 devices=1 --load-format dummy  1000    1000, 1010, 990\n"
        "b  vllm tp=1 pp=1 devices=1 --load-format dummy  667     667, 673, 660\n"
        "needed: a >= 1067 (b x 1.6); got a/b = 1.500"
    )


def test_assert_better_lower_is_better() -> None:
    fast, slow = make_result(scale=1.0), make_result(scale=1.5)
    assert_better(fast, slow, "median_tpot_ms", by=1.5)  # 4.0 <= 6.0 / 1.5
    with pytest.raises(FAIL, match=r"needed: a <= 2.67 \(b / 1.5\); got a/b = 1.500"):
        assert_better(slow, fast, "median_tpot_ms", by=1.5)
    with pytest.raises(FAIL, match=r"\(lower is better\)"):
        assert_better(slow, fast, "median_tpot_ms")


def test_assert_better_refuses_bookkeeping_metrics_and_bad_factors() -> None:
    r = make_result()
    with pytest.raises(UnknownMetricError, match="'completed' has no better direction"):
        assert_better(r, r, "completed")
    with pytest.raises(ValueError, match="positive factor"):
        assert_better(r, r, "median_tpot_ms", by=0)
    with pytest.raises(UnknownMetricError, match="the result has no metric 'mean_itl_ms'"):
        assert_better(r, r, "mean_itl_ms")


def test_assert_slo() -> None:
    r = make_result()  # p99 TTFT 50 ms, median TPOT 4 ms, 1000 tok/s/device
    assert_slo(r, p99_ttft_ms=2000, median_tpot_ms=5, output_throughput_per_gpu=900)
    with pytest.raises(FAIL) as info:
        assert_slo(r, p99_ttft_ms=40, output_throughput_per_gpu=1200, median_tpot_ms=5)
    assert str(info.value) == (
        "pytest-mgpu: SLO violated by vllm tp=1 pp=1 devices=1 --load-format dummy\n"
        "metric                                    limit    now   status\n"
        "p99_ttft_ms [ms]                          <= 40.0  50.0  VIOLATED\n"
        "output_throughput_per_gpu [tok/s/device]  >= 1200  1000  VIOLATED\n"
        "median_tpot_ms [ms]                       <= 5.00  4.00  ok"
    )


def test_assert_slo_unknown_metric_lists_known_ones() -> None:
    with pytest.raises(UnknownMetricError, match=r"unknown metric 'p99_ttft'; known metrics: .*p99_ttft_ms"):
        assert_slo(make_result(), p99_ttft=100)
    with pytest.raises(ValueError, match="at least one limit"):
        assert_slo(make_result())


def test_failures_print_no_traceback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
from pytest_mgpu.gate.assertions import assert_slo
from pytest_mgpu.bench.results import BenchResult
from pytest_mgpu.bench.workload import Workload

def test_slo():
    r = BenchResult(metrics={"p99_ttft_ms": 3000.0}, n_devices=1, repeats=({"p99_ttft_ms": 3000.0},),
                    spec={"engine": "vllm", "tp": 1, "pp": 1, "n_devices": 1}, workload=Workload())
    assert_slo(r, p99_ttft_ms=2000)
""")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*SLO violated by vllm tp=1 pp=1 devices=1",
                                 "*p99_ttft_ms ?ms?*<= 2000*3000*VIOLATED"])
    assert "assert_slo(r, p99_ttft_ms=2000)" not in result.stdout.str()
