"""Verdict logic on synthetic samples: tolerance and significance must both be met to fail."""

from __future__ import annotations

import math

import pytest

from pytest_mgpu.gate import compare, stats
from pytest_mgpu.gate.compare import Outcome
from pytest_mgpu.metrics import Direction

BASE = (1000.0, 1010.0, 990.0)


def test_median_ignores_nan_and_handles_even_counts() -> None:
    assert stats.median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        stats.median([math.nan])


def test_three_vs_three_complete_separation_is_the_smallest_p() -> None:
    p = stats.p_worse(BASE, (800.0, 810.0, 790.0), Direction.HIGHER)
    assert p == pytest.approx(0.05)
    assert stats.significant(p)


def test_one_sided_in_the_bad_direction_only() -> None:
    # Higher-is-better got higher: not "worse" at all.
    assert stats.p_worse(BASE, (1200.0, 1210.0, 1190.0), Direction.HIGHER) == pytest.approx(1.0)
    # Lower-is-better (latency) got higher: worse.
    assert stats.p_worse((4.0, 4.1, 3.9), (5.0, 5.1, 4.9), Direction.LOWER) == pytest.approx(0.05)


def test_ties_are_not_significant() -> None:
    p = stats.p_worse((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), Direction.LOWER)
    assert p is not None
    assert p > 0.5
    assert not stats.significant(p)


def test_untestable_with_one_sample() -> None:
    assert stats.p_worse((1000.0,), (800.0, 810.0), Direction.HIGHER) is None
    assert stats.significant(None)


@pytest.mark.parametrize(
    ("metric", "baseline", "current", "expected"),
    [
        # per-GPU throughput, higher is better
        ("output_throughput_per_gpu", BASE, (995.0, 1005.0, 1001.0), Outcome.PASS),
        ("output_throughput_per_gpu", BASE, (800.0, 810.0, 790.0), Outcome.REGRESSION),
        ("output_throughput_per_gpu", BASE, (1300.0, 1310.0, 1290.0), Outcome.IMPROVEMENT),
        # median 850 (-15%) but one new sample beats a baseline sample: overlap -> noise
        ("output_throughput_per_gpu", BASE, (850.0, 1005.0, 700.0), Outcome.NOISE),
        # -8%: significant but within the 10% tolerance
        ("output_throughput_per_gpu", BASE, (920.0, 921.0, 919.0), Outcome.PASS),
        # TPOT, lower is better: +20% is a regression, -20% an improvement
        ("median_tpot_ms", (4.0, 4.1, 3.9), (4.8, 4.9, 4.85), Outcome.REGRESSION),
        ("median_tpot_ms", (4.0, 4.1, 3.9), (3.2, 3.25, 3.1), Outcome.IMPROVEMENT),
        # one sample each side: tolerance alone decides
        ("median_tpot_ms", (4.0,), (5.0,), Outcome.REGRESSION),
        # nothing to compare with
        ("median_tpot_ms", (), (5.0, 5.1), Outcome.NEW),
        ("median_tpot_ms", (4.0, 4.1), (math.nan, math.nan), Outcome.NEW),
    ],
)
def test_judge_metric(metric: str, baseline: tuple[float, ...], current: tuple[float, ...],
                      expected: Outcome) -> None:
    assert compare.judge_metric(metric, baseline, current, tolerance=0.10).outcome is expected


def test_tolerance_precedence() -> None:
    names = ("output_throughput_per_gpu", "p99_ttft_ms")
    assert compare.resolve_tolerances(names, None, None) == {"output_throughput_per_gpu": 0.10, "p99_ttft_ms": 0.25}
    assert compare.resolve_tolerances(names, 0.05, None) == {"output_throughput_per_gpu": 0.05, "p99_ttft_ms": 0.05}
    assert compare.resolve_tolerances(names, 0.05, 0.3) == {"output_throughput_per_gpu": 0.3, "p99_ttft_ms": 0.3}
    assert compare.resolve_tolerances(names, 0.05, {"p99_ttft_ms": 0.5}) == {
        "output_throughput_per_gpu": 0.05, "p99_ttft_ms": 0.5}
    with pytest.raises(ValueError, match="relative change >= 0"):
        compare.resolve_tolerances(names, None, -0.1)


def test_wider_tolerance_turns_a_regression_into_a_pass() -> None:
    v = compare.judge_metric("output_throughput_per_gpu", BASE, (800.0, 810.0, 790.0), tolerance=0.25)
    assert v.outcome is Outcome.PASS
    assert v.change == pytest.approx(-0.20)


def test_overall_is_the_worst_outcome() -> None:
    assert compare.overall([Outcome.PASS, Outcome.IMPROVEMENT]) is Outcome.IMPROVEMENT
    assert compare.overall([Outcome.IMPROVEMENT, Outcome.NOISE]) is Outcome.NOISE
    assert compare.overall([Outcome.NOISE, Outcome.REGRESSION, Outcome.PASS]) is Outcome.REGRESSION
    assert compare.overall([]) is Outcome.PASS


def test_version_changes_are_listed_not_keyed() -> None:
    assert compare.version_changes({"vllm": "0.31.0", "torch": "2.13"}, {"vllm": "0.32.0", "torch": "2.13"}) == (
        "vllm 0.31.0 -> 0.32.0",)
    assert compare.version_changes({}, {"nccl": "2.21"}) == ("nccl (none) -> 2.21",)
