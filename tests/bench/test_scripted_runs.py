"""The whole load generator against the scripted server: a timing oracle with known chunk times.

The server logs when each request arrived and when it wrote each token event, on the same
system-wide monotonic clock the client reads, so the truth is known per request.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics

import pytest

from pytest_mgpu import BenchResult, Workload
from pytest_mgpu.bench.errors import BenchError
from pytest_mgpu.bench.load import arrival_offsets_s
from pytest_mgpu.bench.runner import run_bench
from pytest_mgpu.testing import Behavior, Script, ScriptedServer

TTFT_S, ITL_S = 0.040, 0.008


def measured(server: ScriptedServer, repeat: int = 0) -> list[dict[str, object]]:
    return [q for q in server.stats().requests if f"-r{repeat}-" in str(q["id"])]


def _oracle_misses(server: ScriptedServer, tok_path: str) -> tuple[list[str], BenchResult]:
    """One run against the oracle: how far each median is from the server's truth (misses > 1 ms)."""
    server.reset()
    w = Workload(input_len=32, output_len=12, num_prompts=24, max_concurrency=4)
    r = run_bench(server.engine_server(tokenizer_path=tok_path), w)
    log = {str(q["id"]).rsplit("-", 1)[1]: q for q in measured(server)}
    records = r.requests[0]
    assert len(records) == len(log) == 24
    # the truth: when the server wrote each token event, from the moment the client sent the request
    # (TTFT and E2EL by definition include sending the request; the receive path is all that is left)
    writes = [[t - rec.send_s for t in log[str(rec.index)]["write_s"]] for rec in records]  # type: ignore
    assert all(len(ws) == 12 for ws in writes)
    truth_ms = {
        "ttft": statistics.median(ws[0] for ws in writes) * 1000,
        "e2el": statistics.median(ws[-1] for ws in writes) * 1000,
        "tpot": statistics.median((ws[-1] - ws[0]) / 11 for ws in writes) * 1000,
        "itl": statistics.median(b - a for ws in writes for a, b in itertools.pairwise(ws)) * 1000,
    }
    misses = [f"median {name}: client {r.metrics[f'median_{name}_ms']:.3f} ms, server truth {truth:.3f} ms"
              for name, truth in truth_ms.items() if abs(r.metrics[f"median_{name}_ms"] - truth) >= 1.0]
    return misses, r


def test_latencies_match_the_scripted_chunk_times(server: ScriptedServer, tok_path: str) -> None:
    # Best of three: on a shared box other processes can only delay the client (one-sided noise),
    # so one clean run proves the arithmetic, while a wrong formula misses in every run.
    server.set_script(Script(Behavior(ttft_s=TTFT_S, itl_s=ITL_S)))
    attempts = []
    for _ in range(3):
        misses, r = _oracle_misses(server, tok_path)
        attempts.append(misses)
        if not misses:
            break
    assert not attempts[-1], f"every attempt missed the oracle by >= 1 ms: {attempts}"
    assert TTFT_S * 1000 <= r.median_ttft_ms < TTFT_S * 1000 + 20  # the script itself, loosely (load only delays)
    assert r.median_tpot_ms == pytest.approx(ITL_S * 1000, abs=1)
    assert r.median_itl_ms == pytest.approx(ITL_S * 1000, abs=1)
    assert r.completed == 24
    assert r.total_output_tokens == 24 * 12
    assert r.total_input_tokens == 24 * 32
    assert r.output_len_mismatches == 0
    assert r.output_throughput == pytest.approx(24 * 12 / r.duration)


def test_requests_carry_exact_lengths(server: ScriptedServer, tok_path: str) -> None:
    run_bench(server.engine_server(tokenizer_path=tok_path), Workload(input_len=50, output_len=7, num_prompts=3))
    for q in measured(server):
        assert q["path"] == "/v1/completions"
        assert q["prompt_is_token_ids"] is True
        assert q["prompt_tokens"] == 50
        # the body vLLM's client sends: no min_tokens (it would switch on a logits processor in the engine)
        assert (q["max_tokens"], q["min_tokens"], q["ignore_eos"], q["stream"]) == (7, None, True, True)
        assert q["stream_options"] == {"include_usage": True}


def test_text_prompts_go_as_text(server: ScriptedServer, tok_path: str) -> None:
    r = run_bench(server.engine_server(tokenizer_path=tok_path),
                  Workload(input_len=50, output_len=3, num_prompts=3, text_prompts=True))
    assert {q["prompt_is_token_ids"] for q in measured(server)} == {False}
    assert r.completed == 3


def test_closed_loop_never_exceeds_the_concurrency_and_reaches_it(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(Behavior(ttft_s=0.01, itl_s=0.002)))
    w = Workload(input_len=8, output_len=8, num_prompts=40, max_concurrency=5)
    r = run_bench(server.engine_server(tokenizer_path=tok_path), w)
    assert server.stats().max_in_flight == 5
    assert r.completed == 40
    assert r.client.queue_p99_ms > 0  # requests waited for a slot, as a closed loop should


def test_warmup_is_sent_first_and_excluded(server: ScriptedServer, tok_path: str) -> None:
    w = Workload(input_len=8, output_len=4, num_prompts=10, max_concurrency=3)
    r = run_bench(server.engine_server(tokenizer_path=tok_path), w)
    ids = [str(q["id"]) for q in server.stats().requests]
    assert ["-w-" in i for i in ids] == [True] * 3 + [False] * 10
    assert r.completed == 10
    assert r.total_output_tokens == 40
    run_bench(server.engine_server(tokenizer_path=tok_path), Workload(input_len=8, output_len=4, num_prompts=2,
                                                                       warmup=0))
    assert len(server.stats().requests) == 13 + 2


def test_open_loop_sends_on_the_normalized_schedule(server: ScriptedServer, tok_path: str) -> None:
    w = Workload(input_len=8, output_len=2, num_prompts=20, request_rate=40.0, burstiness=1.0, seed=5, warmup=0)
    planned = arrival_offsets_s(20, 40.0, 1.0, seed=5)
    assert planned[-1] == pytest.approx(0.5)
    medians = []
    for _ in range(3):  # best of three, as above: a loaded box only adds delay
        server.reset()
        r = run_bench(server.engine_server(tokenizer_path=tok_path), w)
        recs = r.requests[0]
        # the client planned exactly vLLM's normalized schedule ...
        assert [x.scheduled_s - recs[0].scheduled_s for x in recs] == pytest.approx(
            [p - planned[0] for p in planned], abs=1e-9)
        assert r.duration >= 0.5
        # ... and the server saw the requests arrive on it
        arrivals = [float(q["received_s"]) for q in measured(server)]  # type: ignore[arg-type]
        errors_ms = [((a - arrivals[0]) - (p - planned[0])) * 1000 for a, p in zip(arrivals, planned, strict=True)]
        medians.append(statistics.median(abs(e) for e in errors_ms))
        if medians[-1] < 2.0 and max(abs(e) for e in errors_ms) < 15.0:
            break
    assert medians[-1] < 2.0, f"arrivals off the schedule by {medians} ms (median, per attempt)"


def test_a_few_failures_are_counted_not_hidden(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(rules=(("*-r0-7", Behavior(status=500, error_message="KV cache exhausted")),)))
    r = run_bench(server.engine_server(tokenizer_path=tok_path), Workload(input_len=8, output_len=4,
                                                                           num_prompts=40))
    assert (r.completed, r.failed) == (39, 1)


def test_too_many_failures_raise_with_the_servers_text(server: ScriptedServer, tok_path: str) -> None:
    bad = Behavior(status=503, error_message="engine overloaded, try later")
    server.set_script(Script(rules=(("*-r0-1", bad), ("*-r0-2", bad))))
    with pytest.raises(BenchError) as info:
        run_bench(server.engine_server(tokenizer_path=tok_path), Workload(input_len=8, output_len=4, num_prompts=20))
    err = info.value
    assert (err.failed, err.total) == (2, 20)
    assert "2 of 20 requests failed (10.0%, more than the 5.0% tolerated" in str(err)
    assert err.errors == ("HTTP 503: engine overloaded, try later",)


def test_zero_successes_raise_even_after_a_good_warmup(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(rules=(("*-r0-*", Behavior(status=400, error_message="prompt too long")),)))
    with pytest.raises(BenchError, match=r"all 6 requests failed .*this is an error, not a measurement") as info:
        run_bench(server.engine_server(tokenizer_path=tok_path), Workload(input_len=8, output_len=4, num_prompts=6))
    assert "HTTP 400: prompt too long" in str(info.value)


def test_a_dead_server_fails_at_warmup_with_its_text(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(Behavior(status=500, error_message="CUDA error: out of memory")))
    with pytest.raises(BenchError, match=r"every warm-up request .* failed") as info:
        run_bench(server.engine_server(tokenizer_path=tok_path), Workload(input_len=8, output_len=4, num_prompts=6))
    assert info.value.errors == ("HTTP 500: CUDA error: out of memory",)


def test_a_hung_request_times_out_and_counts_as_failed(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(rules=(("*-r0-3", Behavior(hang_s=60)),)))
    w = Workload(input_len=8, output_len=4, num_prompts=40, max_concurrency=8)
    r = run_bench(server.engine_server(tokenizer_path=tok_path), w, request_timeout_s=1.0)
    assert (r.completed, r.failed) == (39, 1)
    assert r.duration < 5


def test_usage_mismatch_is_counted_and_flagged(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(rules=(("*-r0-[0-4]", Behavior(usage_completion_tokens=3)),)))
    r = run_bench(server.engine_server(tokenizer_path=tok_path), Workload(input_len=8, output_len=6, num_prompts=20))
    assert r.output_len_mismatches == 5
    assert r.total_output_tokens == 15 * 6 + 5 * 3  # the server's usage is the count of record
    assert "output-length-mismatch" in [f.code for f in r.findings]


def test_missing_usage_falls_back_to_events_and_is_flagged(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(Behavior(include_usage=False, tokens_per_event=2)))
    r = run_bench(server.engine_server(tokenizer_path=tok_path), Workload(input_len=8, output_len=6, num_prompts=4))
    assert r.usage_missing == 4
    assert r.total_output_tokens == 4 * 3  # three events of two tokens each: undercounted, hence the finding
    assert {"usage-missing", "output-length-mismatch"} <= {f.code for f in r.findings}


def test_chat_endpoint_counts_the_role_chunk_as_first_token(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(Behavior(ttft_s=0.02, itl_s=0.005)))
    r = run_bench(server.engine_server(tokenizer_path=tok_path),
                  Workload(input_len=40, output_len=5, num_prompts=6, max_concurrency=3, endpoint="chat"))
    log = measured(server)
    assert {q["path"] for q in log} == {"/v1/chat/completions"}
    assert {q["prompt_is_token_ids"] for q in log} == {False}
    assert r.completed == 6
    assert r.total_output_tokens == 30
    assert 20 <= r.median_ttft_ms < 60  # the server waits 20 ms; a loaded box only adds to it
    for rec in r.requests[0]:  # the role chunk counts as the first event, and the first token follows at once
        assert len(rec.itl_s) == 5
        assert rec.itl_s[0] < 0.001


def test_repeats_use_fresh_prompts_and_summarize_by_median(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(Behavior(ttft_s=0.005, itl_s=0.001)))
    r = run_bench(server.engine_server(tokenizer_path=tok_path), Workload(input_len=8, output_len=4, num_prompts=5),
                  repeats=3)
    assert len(r.repeats) == 3
    assert r.samples("completed") == (5, 5, 5)
    assert r.output_throughput == statistics.median(r.samples("output_throughput"))
    assert len(measured(server, 2)) == 5


def test_per_gpu_throughput_divides_by_allocated_devices(server: ScriptedServer, tok_path: str) -> None:
    r = run_bench(server.engine_server(n_devices=2, tokenizer_path=tok_path),
                  Workload(input_len=8, output_len=4, num_prompts=4))
    assert r.n_devices == 2
    assert r.output_throughput_per_gpu == pytest.approx(r.output_throughput / 2)
    assert r.request_throughput_per_gpu == pytest.approx(r.request_throughput / 2)


def test_run_bench_works_inside_a_running_event_loop(server: ScriptedServer, tok_path: str) -> None:
    async def caller() -> float:
        result = run_bench(server.engine_server(tokenizer_path=tok_path),
                           Workload(input_len=8, output_len=4, num_prompts=2))
        return result.completed

    assert asyncio.run(caller()) == 2


def test_nothing_listening_is_a_bench_error_with_the_connection_error(tok_path: str) -> None:
    dead = ScriptedServer()  # never started: port 0
    with pytest.raises(BenchError) as info:
        run_bench(dead.engine_server(tokenizer_path=tok_path), Workload(input_len=8, output_len=4, num_prompts=2))
    assert "ClientConnectorError" in info.value.errors[0]
