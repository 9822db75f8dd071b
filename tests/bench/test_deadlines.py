"""Bounded waits against the scripted server: a stalled server fails at the request timeout, a
broken first repeat stops the measurement, the overall deadline and the liveness watch end it early.

Time bounds here are correctness bounds (a fix for "blocks for hours"), generous on a loaded box.
"""

from __future__ import annotations

import time

import pytest

from pytest_mgpu import Workload
from pytest_mgpu.bench.errors import BenchError
from pytest_mgpu.bench.runner import measurement_deadline_s, run_bench
from pytest_mgpu.testing import Behavior, Script, ScriptedServer


def test_a_stalled_server_fails_at_the_request_timeout_naming_it(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(Behavior(hang_s=3600)))
    t0 = time.monotonic()
    with pytest.raises(BenchError) as err:
        run_bench(server.engine_server(tokenizer_path=tok_path),
                  Workload(input_len=8, output_len=4, num_prompts=8, max_concurrency=2), repeats=3,
                  request_timeout_s=2.0)
    took = time.monotonic() - t0
    assert took < 20, f"a stalled server took {took:.1f} s to fail with a 2 s request timeout"
    assert "timed out after 2 s" in str(err.value)
    assert "warm-up" in str(err.value) and "--mgpu-request-timeout" in str(err.value)


def test_a_broken_first_repeat_stops_the_measurement(server: ScriptedServer, tok_path: str) -> None:
    # warm-up answers; every measured request stalls: repeat 1 fails, repeats 2 and 3 are never sent
    server.set_script(Script(rules=(("*-r*", Behavior(hang_s=3600)),)))
    with pytest.raises(BenchError) as err:
        run_bench(server.engine_server(tokenizer_path=tok_path),
                  Workload(input_len=8, output_len=4, num_prompts=4, max_concurrency=4), repeats=3,
                  request_timeout_s=1.0)
    assert "repeat 1 of 3" in str(err.value)
    assert not server.stats().ids("*-r1-*") and not server.stats().ids("*-r2-*")


def test_the_overall_deadline_ends_the_measurement(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(Behavior(itl_s=0.5)))  # slow but answering: only the deadline ends it
    t0 = time.monotonic()
    with pytest.raises(BenchError, match="did not finish within its deadline of 2 s"):
        run_bench(server.engine_server(tokenizer_path=tok_path),
                  Workload(input_len=8, output_len=100, num_prompts=2, max_concurrency=1, warmup=0),
                  request_timeout_s=100.0, deadline_s=2.0)
    assert time.monotonic() - t0 < 20


def test_liveness_reporting_a_death_ends_the_measurement_within_seconds(server: ScriptedServer,
                                                                        tok_path: str) -> None:
    server.set_script(Script(Behavior(itl_s=0.5)))
    t_dead = time.monotonic() + 1.0

    def liveness() -> str | None:
        return "worker 123 died" if time.monotonic() > t_dead else None

    t0 = time.monotonic()
    with pytest.raises(BenchError, match="worker 123 died"):
        run_bench(server.engine_server(tokenizer_path=tok_path),
                  Workload(input_len=8, output_len=100, num_prompts=4, max_concurrency=1, warmup=0),
                  request_timeout_s=300.0, liveness=liveness)
    assert time.monotonic() - t0 < 20


def test_the_deadline_is_derived_from_waves_repeats_and_the_request_timeout() -> None:
    w = Workload(num_prompts=512, max_concurrency=128)  # 4 waves
    assert measurement_deadline_s(w, 3, 300.0) == (1 + 3 * 4) * 300.0 + 60.0
    open_loop = Workload(num_prompts=100, request_rate=10.0)  # 1 wave + 10 s arrival spread per repeat
    assert measurement_deadline_s(open_loop, 2, 10.0) == (1 + 2) * 10.0 + 2 * 10.0 + 60.0


def test_a_bad_request_timeout_is_refused(server: ScriptedServer, tok_path: str) -> None:
    with pytest.raises(ValueError, match="request_timeout_s"):
        run_bench(server.engine_server(tokenizer_path=tok_path), Workload(num_prompts=1), request_timeout_s=0)


def test_failed_requests_from_a_dead_engine_name_the_dead_process(server: ScriptedServer, tok_path: str) -> None:
    """The engine answers errors at once when a worker dies: the failure still names the dead process."""
    server.set_script(Script(Behavior(status=500, error_message="EngineCore encountered an issue")))
    with pytest.raises(BenchError) as err:
        run_bench(server.engine_server(tokenizer_path=tok_path), Workload(input_len=8, output_len=4, num_prompts=4),
                  liveness=lambda: "pid 4242 (VLLM::Worker) died")
    assert "pid 4242 (VLLM::Worker) died" in str(err.value)
