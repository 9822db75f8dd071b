from __future__ import annotations

import asyncio
import json
import time

import pytest

from pytest_mgpu import BenchResult, Workload
from pytest_mgpu.bench.health import ClientHealth, HealthLimits, LoopLagMonitor, assess
from pytest_mgpu.findings import Finding, Severity


def make(**changes: object) -> BenchResult:
    reps = ({"output_throughput": 100.0, "median_tpot_ms": 5.0, "completed": 10.0, "failed": 0.0},
            {"output_throughput": 120.0, "median_tpot_ms": 4.0, "completed": 10.0, "failed": 1.0})
    base: dict[str, object] = dict(
        metrics={"output_throughput": 110.0, "median_tpot_ms": 4.5, "completed": 10.0, "failed": 1.0},
        n_devices=2, repeats=reps, spec={"engine": "vllm", "model": "tiny_model", "tp": 2, "pp": 1},
        workload=Workload(max_concurrency=4), hardware={"fingerprint": "cpu-x"}, versions={"vllm": "0.32"},
        client=ClientHealth(wall_s=1.0, cpu_s=0.2, cpu_util=0.2), model="tiny_model", date="20250101-000000",
    )
    base.update(changes)
    return BenchResult(**base)  # type: ignore[arg-type]


def test_metrics_are_attributes_and_unknown_names_say_what_exists() -> None:
    r = make()
    assert r.output_throughput == 110.0
    assert r.n_devices == 2
    with pytest.raises(AttributeError, match="no metric 'output_tput'; it has: completed, failed"):
        _ = r.output_tput


def test_samples_are_the_repeats_values() -> None:
    assert make().samples("output_throughput") == (100.0, 120.0)
    with pytest.raises(KeyError, match="no metric 'nope'"):
        make().samples("nope")


def test_json_has_vllm_keys_and_round_trips() -> None:
    r = make()
    data = r.to_json()
    text = json.dumps(data, allow_nan=False, sort_keys=True)
    for key in ("date", "backend", "model_id", "num_prompts", "request_rate", "burstiness", "max_concurrency",
                "output_throughput", "median_tpot_ms", "completed", "failed", "tensor_parallel_size"):
        assert key in data
    assert data["request_rate"] == "inf"
    assert data["completed"] == 10
    assert isinstance(data["completed"], int)
    assert data["schema_version"] == 1
    back = BenchResult.from_json(json.loads(text))
    assert back == r
    assert back.samples("median_tpot_ms") == (5.0, 4.0)


def test_json_refuses_non_finite_numbers() -> None:
    with pytest.raises(ValueError, match=r"output_throughput holds a non-finite number \(nan\)"):
        make(metrics={"output_throughput": float("nan")}).to_json()


def test_from_json_rejects_other_schema_versions() -> None:
    data = make().to_json()
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version 99 is not supported"):
        BenchResult.from_json(data)


def test_with_findings_adds_without_duplicates_and_keeps_the_original() -> None:
    r = make()
    f = Finding("cross-numa", Severity.WARNING, "devices on two NUMA nodes")
    r2 = r.with_findings(f)
    assert r.findings == ()
    assert r2.with_findings(f).findings == (f,)
    assert r2.output_throughput == r.output_throughput


@pytest.mark.parametrize(
    ("health", "tpot_ms", "code", "expect"),
    [
        (ClientHealth(cpu_util=0.3, loop_lag_p99_ms=1.0, dispatch_lag_p99_ms=0.5), 5.0, None, ""),
        (ClientHealth(cpu_util=0.97), 5.0, "client-bound", "the client used 97% of its core"),
        (ClientHealth(loop_stalled_fraction=0.4, loop_lag_max_ms=4100), 5.0, "client-bound",
         "its event loop stood still for 40% of the run (longest 4100 ms)"),
        (ClientHealth(loop_lag_p50_ms=3.0), 10.0, "client-bound", "median event-loop lag was 3.0 ms (limit 2.5 ms"),
        (ClientHealth(dispatch_lag_p50_ms=30.0), 100.0, "client-bound", "median dispatch lag was 30.0 ms (limit 25.0"),
        (ClientHealth(loop_lag_p99_ms=9.0), 10.0, "client-jitter",
         "p99 event-loop lag was 9.0 ms (8.0 ms beyond the 1 ms timer granularity); limit 5.0 ms"),
        (ClientHealth(dispatch_lag_p99_ms=4.0), 10.0, None, ""),  # tails: over half the TPOT only
        (ClientHealth(dispatch_lag_p99_ms=9.0, loop_lag_p99_ms=3.0), 7.8, None, ""),  # the healthy H100 at c=64
        (ClientHealth(loop_lag_p99_ms=1.9), 0.1, None, ""),  # under the 2 ms timer floor
    ],
)
def test_client_findings(health: ClientHealth, tpot_ms: float, code: str | None, expect: str) -> None:
    found = assess(health, {"median_tpot_ms": tpot_ms, "p99_itl_ms": tpot_ms}, HealthLimits())
    assert [f.code for f in found] == ([code] if code else [])
    if code:
        assert expect in found[0].message
        assert found[0].evidence["client"]["cpu_util"] == health.cpu_util


@pytest.mark.parametrize(
    ("lag_p99_ms", "tpot_ms", "itl_p99_ms", "code"),
    [
        (2.9, 5.0, 9.0, None),  # healthy 16-core H200, concurrency 16 (flagged before the calibration)
        (4.0, 6.2, 14.0, None),  # healthy H200, concurrency 64
        (2.46, 7.67, 16.19, None),  # healthy H100, concurrency 64
        (4.0, 5.0, 7.0, "client-jitter"),  # a tight tail that 3 ms of client delay could have made
        (25.0, 6.2, 30.0, "client-jitter"),  # a starved client: the p99 ITL may be mostly its own delay
    ],
)
def test_client_jitter_is_calibrated_on_healthy_hosts(lag_p99_ms: float, tpot_ms: float, itl_p99_ms: float,
                                                      code: str | None) -> None:
    found = assess(ClientHealth(loop_lag_p99_ms=lag_p99_ms), {"median_tpot_ms": tpot_ms, "p99_itl_ms": itl_p99_ms})
    assert [f.code for f in found] == ([code] if code else [])


def test_stalled_fraction_counts_only_lag_beyond_the_timer_floor() -> None:
    h = ClientHealth.measure(10.0, 1.0, [0.001], [0.0005] * 1000 + [4.001], [0.0])
    assert h.loop_stalled_fraction == pytest.approx(0.4)
    assert h.cpu_util == pytest.approx(0.1)


def test_loop_lag_monitor_sees_a_blocked_loop() -> None:
    async def scenario() -> list[float]:
        monitor = LoopLagMonitor(tick_s=0.002)
        monitor.start()
        await asyncio.sleep(0.02)
        time.sleep(0.05)  # a callback that hogs the loop, as a slow client does
        await asyncio.sleep(0.02)
        return await monitor.stop()

    lags = asyncio.run(scenario())
    assert max(lags) >= 0.04
    assert sorted(lags)[len(lags) // 2] < 0.01


def test_client_health_worst_and_json() -> None:
    a, b = ClientHealth(cpu_util=0.5, loop_lag_p99_ms=3.0), ClientHealth(cpu_util=0.2, loop_lag_p99_ms=7.0)
    w = ClientHealth.worst([a, b])
    assert (w.cpu_util, w.loop_lag_p99_ms) == (0.5, 7.0)
    assert ClientHealth.from_json(w.to_json()) == w
