"""The noise-aware history gate on seeded synthetic series: band from the series' own spread."""

from __future__ import annotations

import math
import random

import pytest

from pytest_mgpu.history.noise import DEFAULT_GATE, NoiseGate, check_against_history


def runs(seed: int, n: int, noise: float, level: float = 1000.0) -> list[float]:
    rng = random.Random(seed)
    return [level * (1 + rng.gauss(0, noise)) for _ in range(n)]


def repeats(level: float, spread: float = 0.001) -> list[float]:
    return [level * (1 - spread), level, level * (1 + spread)]


def test_a_3pct_step_on_a_quiet_series_is_a_regression() -> None:
    check = check_against_history(runs(1, 10, 0.003), repeats(970.0), higher_is_better=True, metric="tput")
    assert check.enough
    assert check.regressed
    assert check.runs_used == 10
    assert check.change_rel == pytest.approx(-0.03, abs=0.006)
    assert DEFAULT_GATE.floor_rel <= check.band_rel < 0.03  # about 5 x 0.3%: near the 2% floor
    assert "worse" in check.reason
    assert "regression" in check.reason


def test_an_unchanged_run_is_within_the_band() -> None:
    history = runs(2, 12, 0.02)
    for seed in range(10):
        now = runs(100 + seed, 1, 0.02)[0]
        check = check_against_history(history, repeats(now), higher_is_better=True)
        assert check.enough
        assert not check.regressed, check.reason


def test_a_noisy_series_gets_a_wide_band() -> None:
    history = runs(3, 20, 0.10)
    check = check_against_history(history, repeats(900.0), higher_is_better=True)
    assert check.spread_rel > 0.05
    assert check.band_rel == pytest.approx(DEFAULT_GATE.k * check.spread_rel)
    assert not check.regressed  # 10% slower is inside a 10%-noise series' band


def test_only_the_harmful_direction_counts() -> None:
    history = runs(4, 10, 0.003)
    faster = repeats(1100.0)
    assert not check_against_history(history, faster, higher_is_better=True).regressed  # throughput up
    assert check_against_history(history, faster, higher_is_better=False).regressed  # latency up
    slower = repeats(900.0)
    assert check_against_history(history, slower, higher_is_better=True).regressed
    assert not check_against_history(history, slower, higher_is_better=False).regressed


def test_too_little_history_falls_back_and_says_why() -> None:
    check = check_against_history(runs(5, 7, 0.003), repeats(500.0), higher_is_better=True, metric="tpot")
    assert not check.enough
    assert not check.regressed
    assert check.runs_used == 7
    assert "7 runs of history, need 8" in check.reason
    assert "pinned baseline" in check.reason
    assert math.isnan(check.band_rel)


def test_nan_runs_are_skipped_and_do_not_count() -> None:
    history = [*runs(6, 7, 0.003), math.nan]
    assert "7 runs of history" in check_against_history(history, repeats(1000.0), higher_is_better=True).reason
    history = [*runs(6, 8, 0.003), math.nan, math.inf]
    check = check_against_history(history, [970.0, math.nan, 971.0], higher_is_better=True)
    assert check.enough
    assert check.runs_used == 8
    assert check.current == pytest.approx(970.5)
    assert check.regressed


def test_no_finite_sample_now_is_not_judged() -> None:
    check = check_against_history(runs(7, 10, 0.003), [math.nan, math.nan], higher_is_better=True, metric="tpot")
    assert not check.enough
    assert not check.regressed
    assert "no finite sample" in check.reason
    assert not check_against_history(runs(7, 10, 0.003), [], higher_is_better=True).enough


def test_a_zero_center_has_no_relative_band() -> None:
    check = check_against_history([0.0] * 10, [1.0, 1.0, 1.0], higher_is_better=False)
    assert not check.enough
    assert "median is 0" in check.reason


def test_a_constant_history_uses_the_floor() -> None:
    history = [100.0] * 10
    quiet = check_against_history(history, [99.5, 99.5, 99.6], higher_is_better=True)
    assert quiet.enough
    assert quiet.spread_rel == 0
    assert quiet.band_rel == DEFAULT_GATE.floor_rel
    assert not quiet.regressed  # 0.5% on a perfectly quiet series is not an alarm
    assert check_against_history(history, [97.0, 97.0, 97.0], higher_is_better=True).regressed


def test_one_stalled_repeat_does_not_fail_a_run() -> None:
    check = check_against_history(runs(8, 10, 0.003), [1000.0, 1001.0, 700.0], higher_is_better=True)
    assert not check.regressed
    two = check_against_history(runs(8, 10, 0.003), [1000.0, 700.0, 701.0], higher_is_better=True)
    assert two.regressed  # two of three repeats slower: the median is


def test_only_the_recent_window_counts() -> None:
    history = [*runs(9, 10, 0.003, level=2000.0), *runs(10, 20, 0.003)]  # an old level, then 20 recent runs
    check = check_against_history(history, repeats(1000.0), higher_is_better=True)
    assert check.runs_used == DEFAULT_GATE.window
    assert check.center == pytest.approx(1000.0, rel=0.01)
    assert not check.regressed


def test_a_custom_gate_is_honoured() -> None:
    gate = NoiseGate(min_runs=3, window=5, k=2.0, floor_rel=0.0)
    check = check_against_history([100.0, 101.0, 99.0], [97.0, 97.0, 97.0], higher_is_better=True, gate=gate)
    assert check.enough
    assert check.band_rel == pytest.approx(2.0 * 1.4826 * 1.0 / 100.0)
    assert check.regressed


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"min_runs": 2, "window": 5, "k": 3.0, "floor_rel": 0.02}, "min_runs must be >= 3"),
    ({"min_runs": 8, "window": 5, "k": 3.0, "floor_rel": 0.02}, "window (5) must be >= min_runs (8)"),
    ({"min_runs": 8, "window": 20, "k": 0.0, "floor_rel": 0.02}, "k must be a positive"),
    ({"min_runs": 8, "window": 20, "k": 3.0, "floor_rel": math.nan}, "floor_rel must be"),
])
def test_a_bad_gate_is_a_clear_error(kwargs: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match="NoiseGate") as err:
        NoiseGate(**kwargs)  # type: ignore[arg-type]
    assert words in str(err.value)
