"""Change-point detection against known seeded series: steps at the right run, creeps, and silence in noise."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from pytest_mgpu.history import changepoint
from pytest_mgpu.history.changepoint import detect_changes


def noisy(seed: int, levels: list[float], noise: float) -> list[float]:
    rng = random.Random(seed)
    return [lv * (1 + rng.gauss(0, noise)) for lv in levels]


@pytest.mark.parametrize("seed", range(5))
def test_a_step_is_named_at_the_first_run_after_it(seed: int) -> None:
    values = noisy(seed, [1000.0] * 12 + [950.0] * 6, 0.005)
    found = detect_changes(values, higher_is_better=True)
    assert len(found) == 1, found
    (cp,) = found
    assert cp.kind == "step"
    assert abs(cp.index - 12) <= 1
    assert cp.change_rel == pytest.approx(-0.05, abs=0.01)
    assert cp.before > cp.after


def test_a_3pct_step_after_8_quiet_runs_is_found_with_3_runs_after_it() -> None:
    hits = 0
    for seed in range(20):
        found = detect_changes(noisy(seed, [1000.0] * 8 + [970.0] * 3, 0.003), higher_is_better=True)
        hits += any(abs(c.index - 8) <= 1 and c.kind == "step" for c in found)
    assert hits >= 18


def test_a_noiseless_step_is_exact() -> None:
    (cp,) = detect_changes([100.0] * 8 + [110.0] * 4)
    assert (cp.index, cp.before, cp.after, cp.kind) == (8, 100.0, 110.0, "step")
    assert cp.change_rel == pytest.approx(0.10)


@pytest.mark.parametrize("noise", [0.003, 0.02, 0.10])
def test_flat_noise_has_no_change_points(noise: float) -> None:
    alarms = [detect_changes(noisy(seed, [1000.0] * 25, noise)) for seed in range(20)]
    assert sum(bool(a) for a in alarms) <= 1, [a for a in alarms if a]


def test_two_steps_are_both_named() -> None:
    values = noisy(3, [1000.0] * 8 + [900.0] * 6 + [1000.0] * 6, 0.003)
    found = detect_changes(values)
    assert [c.kind for c in found] == ["step", "step"]
    assert abs(found[0].index - 8) <= 1
    assert abs(found[1].index - 14) <= 1
    assert [c.index for c in detect_changes(values, higher_is_better=True)] == [found[0].index]


def test_a_creep_of_1pct_per_run_is_reported_as_a_creep() -> None:
    levels = [1000.0] * 10 + [1000.0 * 0.99**j for j in range(1, 11)]
    for seed in range(5):
        found = detect_changes(noisy(seed, levels, 0.003), higher_is_better=True)
        creeps = [c for c in found if c.kind == "creep"]
        assert len(creeps) == 1, found
        (creep,) = creeps
        assert 10 <= creep.index <= 16  # significant within 6 creeping runs
        assert creep.start <= 10
        assert creep.change_rel < -0.02
        assert not [c for c in found if c.kind == "step" and c.index >= creep.start]


def test_a_step_is_not_called_a_creep() -> None:
    found = detect_changes(noisy(11, [1000.0] * 10 + [900.0] * 8, 0.003), higher_is_better=True)
    assert [c.kind for c in found] == ["step"]


def test_direction_is_respected() -> None:
    up = noisy(4, [1000.0] * 10 + [1100.0] * 5, 0.003)
    assert detect_changes(up, higher_is_better=True) == []  # throughput up is an improvement
    assert len(detect_changes(up, higher_is_better=False)) == 1  # latency up is a regression
    assert len(detect_changes(up)) == 1  # no direction: both
    creep_up = [1000.0 * 1.01**j for j in range(12)]
    assert detect_changes(creep_up, higher_is_better=True) == []
    assert [c.kind for c in detect_changes(creep_up, higher_is_better=False)] == ["creep"]


def test_one_slow_run_is_not_a_change() -> None:
    values = noisy(5, [1000.0] * 15, 0.003)
    values[7] = 800.0
    assert detect_changes(values) == []
    values[-1] = 800.0  # the newest run alone: the history gate's job, not a persistent change
    assert detect_changes(values) == []


def test_nan_runs_are_skipped_and_indices_stay_those_given() -> None:
    values: list[float] = [100.0] * 8 + [110.0] * 4
    values.insert(3, math.nan)
    values.insert(10, math.inf)
    (cp,) = detect_changes(values)
    assert cp.index == 9  # the NaN at 3 shifted the first 110 to position 9 of the series as given
    assert values[cp.index] == 110.0
    assert values[cp.index - 1] == 100.0


def test_degenerate_inputs_have_defined_results() -> None:
    assert detect_changes([]) == []
    assert detect_changes([1.0, 2.0, 3.0]) == []  # too short to confirm anything
    assert detect_changes([math.nan] * 10) == []
    assert detect_changes([5.0] * 30) == []
    with pytest.raises(ValueError, match="median is 0"):
        detect_changes([0.0] * 10 + [1.0] * 3)


def test_mann_kendall_matches_scipy_kendall_tau() -> None:
    rng = random.Random(7)
    for n in (5, 8):
        for _ in range(50):
            w = [rng.gauss(0, 1) + 0.3 * i for i in range(n)]
            for decreasing in (True, False):
                want = stats.kendalltau(range(n), w, alternative="less" if decreasing else "greater").pvalue
                assert changepoint.mann_kendall_p(w, decreasing) == pytest.approx(want, abs=1e-12)


def test_theil_sen_matches_scipy() -> None:
    w = noisy(8, [100.0 - 2 * i for i in range(8)], 0.01)
    w[3] = 500.0  # one wild run barely moves the slope
    slope, intercept = changepoint.theil_sen(w)
    fit = stats.theilslopes(w, range(8))
    assert (slope, intercept) == pytest.approx((fit.slope, fit.intercept))
    assert slope == pytest.approx(-2.0, abs=0.5)
