"""Metric arithmetic on hand-made records, against vLLM's definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pytest_mgpu import metrics as registry
from pytest_mgpu.bench.compute import compute_metrics, summarize
from pytest_mgpu.bench.load import arrival_offsets_s
from pytest_mgpu.bench.records import RequestRecord


def rec(i: int, ttft: float, itl: tuple[float, ...], out: int, *, ok: bool = True, asked: int | None = None,
        prompt: int = 10, usage: bool = True) -> RequestRecord:
    if not ok:
        return RequestRecord(i, 0.0, 0.0, 0.0, False, requested_output_tokens=asked or out, error="boom")
    return RequestRecord(i, 0.0, 0.0, float(i), True, ttft, itl, ttft + sum(itl), out, prompt,
                         asked if asked is not None else out, usage)


RECORDS = (
    rec(0, 0.100, (0.010, 0.020, 0.030), 4),  # TPOT = 0.060 / 3 = 20 ms
    rec(1, 0.200, (), 1),  # one token: no TPOT (but counts as 0 for goodput)
    rec(2, 0.300, (0.040,), 2),  # TPOT = 40 ms
    rec(3, 0.0, (), 5, ok=False),
)


def test_vllm_definitions() -> None:
    m = compute_metrics(RECORDS, 2.0, n_devices=1)
    assert m["completed"] == 3
    assert m["failed"] == 1
    assert m["total_output_tokens"] == 7
    assert m["total_input_tokens"] == 30
    assert m["output_throughput"] == pytest.approx(3.5)
    assert m["request_throughput"] == pytest.approx(1.5)
    assert m["total_token_throughput"] == pytest.approx(18.5)
    assert m["mean_ttft_ms"] == pytest.approx(200)
    assert m["median_ttft_ms"] == pytest.approx(200)
    assert m["std_ttft_ms"] == pytest.approx(np.std([100, 200, 300]))  # population std, as numpy's default
    assert m["mean_tpot_ms"] == pytest.approx(30)  # (20 + 40) / 2: the one-token request is left out
    assert m["median_tpot_ms"] == pytest.approx(30)
    assert m["mean_itl_ms"] == pytest.approx(25)  # pooled gaps 10, 20, 30, 40
    assert m["p90_itl_ms"] == pytest.approx(np.percentile([10, 20, 30, 40], 90))
    assert m["p99_e2el_ms"] == pytest.approx(np.percentile([160, 200, 340], 99))
    assert m["interactivity"] == pytest.approx(1000 / 30)
    assert "request_goodput" not in m


def test_every_metric_is_registered_with_a_direction() -> None:
    m = compute_metrics(RECORDS, 2.0, n_devices=1, goodput_ms={"ttft": 1})
    for name in m:
        registry.get(name)  # raises for an unregistered name
    assert registry.get("median_tpot_ms").direction is registry.Direction.LOWER
    assert registry.get("output_throughput_per_gpu").direction is registry.Direction.HIGHER


def test_per_gpu_metrics_halve_with_two_devices() -> None:
    one = compute_metrics(RECORDS, 2.0, n_devices=1)
    two = compute_metrics(RECORDS, 2.0, n_devices=2)
    for name in ("output_throughput", "total_token_throughput", "request_throughput"):
        assert one[name] == two[name]
        assert two[f"{name}_per_gpu"] == pytest.approx(one[f"{name}_per_gpu"] / 2)
        assert one[f"{name}_per_gpu"] == one[name]
    assert two["n_devices"] == 2


@pytest.mark.parametrize(
    ("objectives", "good"),
    [({"ttft": 200}, 2), ({"ttft": 99}, 0), ({"tpot": 20}, 2), ({"tpot": 19}, 1), ({"e2el": 200}, 2),
     ({"ttft": 300, "tpot": 30}, 2)],
)
def test_goodput_counts_requests_meeting_every_objective(objectives: dict[str, float], good: int) -> None:
    m = compute_metrics(RECORDS, 2.0, n_devices=1, goodput_ms=objectives)
    assert m["request_goodput"] == pytest.approx(good / 2.0)


def test_output_length_mismatches_and_missing_usage_are_counted() -> None:
    records = (rec(0, 0.1, (0.01,), 2, asked=2), rec(1, 0.1, (0.01,), 2, asked=8),
               rec(2, 0.1, (0.01,), 2, usage=False), rec(3, 0.1, (), 1, ok=False, asked=9))
    m = compute_metrics(records, 1.0, n_devices=1)
    assert m["output_len_mismatches"] == 1  # failed requests are not judged
    assert m["usage_missing"] == 1


def test_no_successful_request_gives_zeros_not_nan() -> None:
    m = compute_metrics((rec(0, 0.0, (), 3, ok=False),), 1.0, n_devices=1)
    assert m["completed"] == 0
    assert all(math.isfinite(v) for v in m.values())
    assert m["median_ttft_ms"] == 0
    assert m["interactivity"] == 0


def test_peaks_use_vllm_one_second_buckets() -> None:
    records = tuple(RequestRecord(i, 0, 0, send, True, 0.1, (0.1,) * 4, 0.5, 5, 1, 5, True)
                    for i, send in enumerate((0.0, 0.55)))
    m = compute_metrics(records, 2.0, n_devices=1)
    assert m["max_output_tokens_per_s"] == 9  # 5 + 4 token events in the first second
    assert m["max_concurrent_requests"] == 2  # they never overlap, but vLLM counts per touched second


def test_summary_is_the_median_but_failures_take_the_worst_repeat() -> None:
    reps = [{"output_throughput": 10.0, "failed": 0.0}, {"output_throughput": 30.0, "failed": 2.0},
            {"output_throughput": 20.0, "failed": 0.0}]
    assert summarize(reps) == {"output_throughput": 20.0, "failed": 2.0}


def test_open_loop_arrivals_end_exactly_at_n_over_rate() -> None:
    for burstiness in (0.5, 1.0, 4.0):
        offsets = arrival_offsets_s(200, 8.0, burstiness, seed=1)
        assert offsets[-1] == pytest.approx(25.0, abs=1e-12)
        assert all(b >= a for a, b in itertools.pairwise(offsets))
        assert offsets == arrival_offsets_s(200, 8.0, burstiness, seed=1)
        assert offsets != arrival_offsets_s(200, 8.0, burstiness, seed=2)


def test_burstiness_shapes_the_gaps() -> None:
    gaps = {b: np.diff([0.0, *arrival_offsets_s(2000, 10.0, b, seed=0)]) for b in (0.25, 1.0, 16.0)}
    cv = {b: float(np.std(g) / np.mean(g)) for b, g in gaps.items()}
    assert cv[0.25] > 1.6  # gamma(k) gaps have coefficient of variation 1/sqrt(k)
    assert 0.9 < cv[1.0] < 1.1
    assert cv[16.0] < 0.3
    assert arrival_offsets_s(4, 2.0, float("inf"), seed=0) == [0.5, 1.0, 1.5, 2.0]
    assert arrival_offsets_s(3, float("inf"), 1.0, seed=0) == [0.0, 0.0, 0.0]
