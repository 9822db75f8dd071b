"""Every metric's direction, pinned: a flipped direction makes a gate that can never fail."""

from __future__ import annotations

import re

import pytest

from pytest_mgpu import metrics
from pytest_mgpu.metrics import Direction

H, L, N = Direction.HIGHER, Direction.LOWER, Direction.NONE

EXPECTED: dict[str, Direction] = {
    "completed": N, "failed": N, "duration": N, "total_input_tokens": N, "total_output_tokens": N,
    "max_concurrent_requests": N, "n_devices": N, "max_output_tokens_per_s": N, "output_len_mismatches": N,
    "usage_missing": N, "device_busy_min": N, "energy_j": N, "power_w_mean": N, "tpot_floor_ms": N,
    "request_throughput": H, "output_throughput": H, "total_token_throughput": H, "request_goodput": H,
    "output_throughput_per_gpu": H, "total_token_throughput_per_gpu": H, "request_throughput_per_gpu": H,
    "interactivity": H, "tokens_per_joule": H, "mbu": H,
    "engine_startup_s": L, "engine_compile_cache_warm": N,
    **{f"{stat}_{lat}_ms": (N if stat == "std" else L)
       for lat in ("ttft", "tpot", "itl", "e2el") for stat in ("mean", "median", "std", "p90", "p99")},
}


def test_every_registered_metric_has_a_pinned_direction() -> None:
    import pytest_mgpu.diagnose.enrich  # noqa: F401  (registers per-device metrics on demand)

    names = {m.name for m in metrics.all_metrics() if not re.fullmatch(r"device_busy_\d+", m.name)}
    assert names == set(EXPECTED)


@pytest.mark.parametrize(("name", "direction"), sorted(EXPECTED.items()))
def test_direction(name: str, direction: Direction) -> None:
    m = metrics.get(name)
    assert m.direction is direction
    if direction is H:
        assert direction.improvement(100.0, 110.0) == pytest.approx(0.10)
        assert direction.satisfies(110.0, 100.0)
        assert not direction.satisfies(90.0, 100.0)
    elif direction is L:
        assert direction.improvement(100.0, 110.0) == pytest.approx(-0.10)
        assert direction.satisfies(90.0, 100.0)
        assert not direction.satisfies(110.0, 100.0)
    else:
        assert direction.improvement(100.0, 110.0) == 0.0
        with pytest.raises(ValueError, match="without a direction"):
            direction.satisfies(1.0, 1.0)


def test_gated_by_default_are_per_device_throughput_and_median_tpot() -> None:
    assert set(metrics.gated_metrics()) == {"output_throughput_per_gpu", "median_tpot_ms"}


def test_tails_are_informational_with_a_looser_tolerance() -> None:
    for name in ("p90_ttft_ms", "p99_ttft_ms", "p99_tpot_ms", "p99_itl_ms", "p99_e2el_ms"):
        m = metrics.get(name)
        assert not m.gated
        assert m.tolerance > metrics.get("median_tpot_ms").tolerance


def test_unknown_metric_error_lists_known_names() -> None:
    with pytest.raises(KeyError, match=r"unknown metric 'p99_tpot'; known metrics: .*p99_tpot_ms"):
        metrics.get("p99_tpot")


def test_bookkeeping_metric_cannot_be_judged() -> None:
    with pytest.raises(KeyError, match="'completed' has no better direction"):
        metrics.judged("completed")


def test_registering_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        metrics.register(metrics.Metric("median_tpot_ms", "ms", L))
