"""benchmarks/compare_vllm_client.py's verdict: a ratio that cancels drift within a round (pairs of opposite
order), an interval that says when the rounds cannot tell, and exit codes by verdict."""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def rounds_with_drift(true_ratio: float, drift: float, n: int) -> list[dict[str, dict[str, float]]]:
    """Runs in order vllm, ours on even rounds and reversed on odd ones; each later run in a round reads
    `drift` higher, and every round has its own level (the engine's round-to-round swing)."""
    out = []
    for k in range(n):
        level = 10.0 + 3.0 * k
        order = ["vllm", "ours"] if k % 2 == 0 else ["ours", "vllm"]
        values = {"vllm": level, "ours": level * true_ratio}
        out.append({name: {"median_ttft_ms": values[name] * (1 + drift * order.index(name))} for name in values})
    return out


def test_pairs_of_opposite_order_cancel_drift(compare: ModuleType) -> None:
    rounds = rounds_with_drift(1.02, drift=0.08, n=4)
    assert compare.balanced_ratio(rounds, "ours", "median_ttft_ms") == pytest.approx(1.02, rel=1e-12)
    # what the unpaired median of per-round ratios read with an odd number of rounds: the drift, not the clients
    per_round = sorted(r["ours"]["median_ttft_ms"] / r["vllm"]["median_ttft_ms"] for r in rounds[:3])
    assert abs(per_round[1] - 1.02) > 0.05


def test_another_reference_and_a_trailing_round(compare: ModuleType) -> None:
    rounds = rounds_with_drift(0.9, drift=0.0, n=3)
    for r in rounds:
        r["vllm-noenv"] = {"median_ttft_ms": r["vllm"]["median_ttft_ms"] * 0.96}
    assert compare.balanced_ratio(rounds, "ours", "median_ttft_ms", base="vllm-noenv") == pytest.approx(0.9 / 0.96)
    rounds[0]["vllm"]["median_ttft_ms"] = 0.0  # a zero reference is no ratio, not a crash
    assert math.isnan(compare.balanced_ratio(rounds[:2], "ours", "median_ttft_ms"))


SHOWN_METRICS = ("output_throughput", "median_tpot_ms", "median_ttft_ms", "median_ttft_ms_less_client",
                 "median_itl_ms", "median_e2el_ms", "p99_tpot_ms", "p99_ttft_ms", "request_throughput",
                 "duration", "completed", "failed")


def noisy_rounds(true_ratio: float, cv: float, n: int, seed: int = 7) -> list[dict[str, dict[str, Any]]]:
    """Rounds whose every run reads its own value: the same level for both clients times a run's own noise
    (`cv`, as one run's median TTFT at c=16 on an H200: 6-11%), ours `true_ratio` times vLLM's."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r: dict[str, dict[str, Any]] = {}
        for name, scale in (("vllm", 1.0), ("ours", true_ratio)):
            run: dict[str, Any] = {m: 100.0 * scale * (1 + rng.gauss(0, cv)) for m in SHOWN_METRICS}
            run.update(others_cores=0.0, ttfts_ms=[run["median_ttft_ms"]] * 3)
            r[name] = run
        r["ours"].update(client={"cpu_util": 0.1, "loop_lag_p99_ms": 1.0, "dispatch_lag_p99_ms": 1.0}, findings=[])
        out.append(r)
    return out


def test_the_interval_says_when_the_rounds_cannot_tell(compare: ModuleType) -> None:
    # the same clients with a 10% run-to-run spread: a point ratio off by several percent, an interval that
    # spans the limit: neither agreement nor a difference is shown
    wide = noisy_rounds(1.0, cv=0.10, n=16)
    point = compare.balanced_ratio(wide, "ours", "median_ttft_ms")
    low, high = compare.ratio_interval(wide, "ours", "median_ttft_ms")
    assert low < 1 < high and high - low > 0.06
    assert compare.judge(point, (low, high), 0.03) == "unresolved"
    assert compare.rounds_to_resolve(0.99, (low, high), 0.03, 8) > 16
    # a quiet engine: the interval is narrow, and decides both ways
    quiet = noisy_rounds(1.0, cv=0.002, n=8)
    interval = compare.ratio_interval(quiet, "ours", "median_ttft_ms")
    assert compare.judge(compare.balanced_ratio(quiet, "ours", "median_ttft_ms"), interval, 0.03) == "agree"
    slow = noisy_rounds(1.08, cv=0.002, n=8)
    interval = compare.ratio_interval(slow, "ours", "median_ttft_ms")
    assert compare.judge(compare.balanced_ratio(slow, "ours", "median_ttft_ms"), interval, 0.03) == "DISAGREE"


def test_fewer_than_four_pairs_have_no_interval_and_the_point_decides(compare: ModuleType) -> None:
    rounds = noisy_rounds(1.0, cv=0.05, n=6)
    low, high = compare.ratio_interval(rounds, "ours", "median_ttft_ms")
    assert math.isnan(low) and math.isnan(high)
    assert compare.judge(1.02, (low, high), 0.03) == "agree"
    assert compare.judge(1.05, (low, high), 0.03) == "DISAGREE"
    assert compare.judge(math.nan, (0.9, 1.1), 0.03) == "unresolved"


def _replay(tmp_path: Path, *data: object) -> subprocess.CompletedProcess[str]:
    paths = []
    for k, d in enumerate(data):
        paths.append(tmp_path / f"rounds{k}.json")
        paths[-1].write_text(json.dumps(d))
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "compare_vllm_client.py"), "--replay",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_replay_judges_saved_rounds_and_exits_by_verdict(tmp_path: Path) -> None:
    args = {"input_len": 128, "output_len": 128, "num_prompts": 96, "max_concurrency": 16}
    agree = _replay(tmp_path, {"args": args, "rounds": noisy_rounds(1.0, cv=0.002, n=8)})
    assert agree.returncode == 0, agree.stdout + agree.stderr
    assert "agree (limit 2%; 90% interval" in agree.stdout and "pooled median TTFT" in agree.stdout
    unresolved = _replay(tmp_path, {"args": args, "rounds": noisy_rounds(1.0, cv=0.10, n=8)})
    assert unresolved.returncode == 3 and "unresolved" in unresolved.stdout
    disagree = _replay(tmp_path, {"args": args, "rounds": noisy_rounds(1.10, cv=0.002, n=8)})
    assert disagree.returncode == 1 and "DISAGREE" in disagree.stdout
    bad = _replay(tmp_path, {"rounds": []})
    assert bad.returncode == 2 and "expected the JSON that --out writes" in bad.stderr
    rounds = noisy_rounds(1.0, cv=0.002, n=8)
    del rounds[3]["ours"]["client"]
    partial = _replay(tmp_path, {"args": args, "rounds": rounds})
    assert partial.returncode == 2 and "missing or malformed: 'client'" in partial.stderr


def test_replay_pools_like_runs_and_refuses_unlike_ones(tmp_path: Path) -> None:
    args = {"input_len": 128, "output_len": 128, "num_prompts": 96, "max_concurrency": 16}
    # two hosts' 3 pairs each: neither alone has an interval (4 pairs), pooled they have one
    alone = _replay(tmp_path, {"args": args, "rounds": noisy_rounds(1.0, cv=0.002, n=6)})
    assert "point only: 3 pairs" in alone.stdout
    pooled = _replay(tmp_path, {"args": args, "rounds": noisy_rounds(1.0, cv=0.002, n=7, seed=1)},
                     {"args": args, "rounds": noisy_rounds(1.0, cv=0.002, n=6, seed=2)})
    assert pooled.returncode == 0, pooled.stdout + pooled.stderr
    assert "12 alternating rounds" in pooled.stdout and "median over 6 clean pairs" in pooled.stdout
    assert "90% interval" in pooled.stdout
    other = _replay(tmp_path, {"args": args, "rounds": noisy_rounds(1.0, cv=0.002, n=6)},
                    {"args": {**args, "max_concurrency": 64}, "rounds": noisy_rounds(1.0, cv=0.002, n=6)})
    assert other.returncode == 2 and "pool only like runs" in other.stderr


def test_rounds_saved_as_they_finish_can_be_judged(compare: ModuleType, tmp_path: Path) -> None:
    # a GPU host went back mid-run and took 22 measured rounds with it: each round is saved as it ends
    out = tmp_path / "deep" / "compare.json"
    a = argparse.Namespace(input_len=128, output_len=128, num_prompts=96, max_concurrency=16, out=out,
                           engine_arg=["--api-key=s3cret-key", "--no-enable-prefix-caching"])
    rounds = noisy_rounds(1.0, cv=0.002, n=9)
    for k in range(1, len(rounds) + 1):
        compare.save(rounds[:k], a, finished=False)
        saved = json.loads(out.read_text())
        assert len(saved["rounds"]) == k and saved["finished"] is False
    assert "s3cret-key" not in out.read_text()  # an engine's secret never reaches the file
    assert "--no-enable-prefix-caching" in saved["args"]["engine_arg"]
    assert [p.name for p in out.parent.iterdir()] == ["compare.json"]  # atomic: no temp file left
    judged = subprocess.run([sys.executable, str(REPO / "benchmarks" / "compare_vllm_client.py"), "--replay",
                             str(out)], capture_output=True, text=True, timeout=120)
    assert judged.returncode == 0, judged.stdout + judged.stderr
    assert "8 alternating rounds" in judged.stdout  # the odd 9th round waits for its pair
    assert "median TTFT as printed, x/vllm with its 90% interval: ours=" in judged.stdout


def test_the_engines_own_clock_is_read_from_its_metrics(compare: ModuleType) -> None:
    # vLLM's random prompts hit the prefix cache on the tiny model's 1024-id vocabulary (7-20% of prompt tokens
    # on the CPU box), ours never; and the engine times every request itself: each run records both from the
    # engine's Prometheus counters, read as the measured requests start and after they end
    import http.server
    import threading

    engine = {"hits": 0.0, "n": 0.0, "ttft_s": 0.0}

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # two engines' lines add up; other metrics are ignored
            body = (f'vllm:prefix_cache_hits_total{{engine="0",model_name="m"}} {engine["hits"]}\n'
                    f'vllm:prefix_cache_hits_total{{engine="1",model_name="m"}} 0.0\n'
                    f'vllm:prefix_cache_queries_total{{engine="0",model_name="m"}} {4 * engine["hits"] + 100}\n'
                    '# HELP vllm:prefix_cache_hits_created a timestamp, not a count\n'
                    'vllm:prefix_cache_hits_created{engine="0",model_name="m"} 1.7e+09\n'
                    f'vllm:time_to_first_token_seconds_sum{{engine="0",model_name="m"}} {engine["ttft_s"]}\n'
                    f'vllm:time_to_first_token_seconds_count{{engine="0",model_name="m"}} {engine["n"]}\n'
                    f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.1",model_name="m"}} {engine["n"]}\n'
                    f'vllm:e2e_request_latency_seconds_count{{engine="0",model_name="m"}} {engine["n"]}\n'
                    ).encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    clock = compare.engine_clock
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        before = clock.read(url)
        assert before == {"prefix_hits": 0.0, "prefix_queries": 100.0, "ttft_s": 0.0, "ttft_n": 0.0, "e2el_n": 0.0}
        engine.update(hits=256.0, n=8.0, ttft_s=0.4)  # 8 requests, 50 ms each on the engine's clock
        after = clock.read(url)
        window = clock.window(before, after)
        assert window.requests == 8 and window.mean_ttft_ms == pytest.approx(50.0)
        assert window.prefix_hit_share == pytest.approx(0.25)
        assert window.mean_tpot_ms is None  # a series the engine does not export: no number, not an error
        run = compare.over_engine({"mean_ttft_ms": 52.5, "mean_tpot_ms": 5.0}, window)
        assert run["ttft_over_engine_ms"] == pytest.approx(2.5)  # what the client's clock adds
        assert run["prefix_cache_hit_share"] == pytest.approx(0.25) and "tpot_over_engine_ms" not in run
        assert clock.window(after, after) is None  # nothing finished in between: no window
        assert clock.read(url + "/nothing") is None  # 404: an engine without the counters
    finally:
        server.shutdown()
        server.server_close()
    assert clock.read(url) is None  # gone: None, not an exception
    assert compare.over_engine({"mean_ttft_ms": 1.0}, None) == {}


def engine_phase_rounds(offset_ms: dict[str, float], n: int, seed: int = 0,
                        gap_ms: dict[str, float] | None = None) -> list[dict[str, dict[str, Any]]]:
    """Each run on an engine whose TTFT swings 15% and TPOT 10% from run to run (the H200's lockstep phase at
    c=16, the CPU box's speed), plus client offsets that barely move: 96 requests of 128 tokens at c=16, each
    slot sending again `gap_ms` after its last response."""
    rng = random.Random(seed)
    gap_ms = gap_ms or {}
    out = []
    for _ in range(n):
        r: dict[str, dict[str, Any]] = {}
        for name, off in offset_ms.items():
            engine_ms, engine_tpot = 60.0 * (1 + rng.gauss(0, 0.15)), 5.0 * (1 + rng.gauss(0, 0.10))
            run: dict[str, Any] = {m: 100.0 * (1 + rng.gauss(0, 0.002)) for m in SHOWN_METRICS}
            ttft = engine_ms + off + rng.gauss(0, 0.05)
            tpot = engine_tpot + rng.gauss(0, 0.001)
            engine_e2el = engine_ms + 127 * engine_tpot
            duration_s = 96 / 16 * (engine_e2el + off + gap_ms.get(name, 0.5)) / 1000
            run.update(others_cores=0.0, median_ttft_ms=ttft, median_ttft_ms_less_client=ttft,
                       engine_mean_ttft_ms=engine_ms, ttft_over_engine_ms=ttft - engine_ms,
                       median_tpot_ms=tpot, engine_mean_tpot_ms=engine_tpot, tpot_over_engine_ms=tpot - engine_tpot,
                       engine_mean_e2el_ms=engine_e2el, duration=duration_s, completed=96,
                       output_throughput=96 * 128 / duration_s, vllm_client_extra_ms=0.9)
            r[name] = run
        r["ours"].update(client={"cpu_util": 0.1, "loop_lag_p99_ms": 1.0, "dispatch_lag_p99_ms": 1.0}, findings=[])
        out.append(r)
    return out


def one_engine(report: str, metric: str) -> float:
    found = re.search(rf"^{metric} with both clients on one engine, x/vllm: ours=([0-9.]+)", report, re.M)
    assert found, report
    return float(found.group(1))


def test_ttft_is_judged_on_the_engines_clock(compare: ModuleType, tmp_path: Path) -> None:
    # runs' medians that swing with the engine cannot settle 3%; each client's offset from the engine's own
    # TTFT can, both ways
    args = {"input_len": 128, "output_len": 128, "num_prompts": 96, "max_concurrency": 16}
    same = engine_phase_rounds({"vllm": 1.9, "ours": 1.0}, n=8)  # vLLM's 0.9 ms send time is its own
    assert compare.judge(compare.balanced_ratio(same, "ours", "median_ttft_ms"),  # 4 pairs of 15%: not even
                         compare.ratio_interval(same, "ours", "median_ttft_ms"), 0.03) != "agree"  # the sign
    referenced = compare.engine_referenced(same, ("vllm", "ours"))
    assert referenced is not None
    ratio = compare.balanced_ratio(referenced, "ours", "clock_ttft_ms_less_client")
    assert ratio == pytest.approx(1.0, abs=0.005)
    agree = _replay(tmp_path, {"args": args, "rounds": same})
    assert agree.returncode == 0, agree.stdout + agree.stderr
    assert "against the engine's own clock" in agree.stdout and "runs' medians: " in agree.stdout
    assert "clock_ttft_ms_less_client 1.00" in agree.stdout
    assert "the engine's own mean TTFT while each client ran" in agree.stdout
    # TPOT and throughput alike: the engine's 10% swing is gone, what each client adds is compared
    assert "runs' medians: " in agree.stdout.split("output_throughput", 2)[1].splitlines()[0]
    assert one_engine(agree.stdout, "tpot_ms") == pytest.approx(1.0, abs=0.002)
    assert one_engine(agree.stdout, "output_throughput") == pytest.approx(1.0, abs=0.005)
    # a client that waits 30 ms before its slot sends again loses throughput the engine never saw
    slow = _replay(tmp_path, {"args": args, "rounds": engine_phase_rounds({"vllm": 1.9, "ours": 1.0}, n=8,
                                                                            gap_ms={"ours": 30.0})})
    assert slow.returncode == 1, slow.stdout
    assert one_engine(slow.stdout, "output_throughput") == pytest.approx(0.955, abs=0.01)  # 30 of ~680 ms
    late = _replay(tmp_path, {"args": args, "rounds": engine_phase_rounds({"vllm": 1.9, "ours": 7.0}, n=8)})
    assert late.returncode == 1 and "DISAGREE" in late.stdout, late.stdout  # ours adds 6 ms more: 10% of TTFT
    # older files (no offsets) keep the runs' medians as the verdict
    old = engine_phase_rounds({"vllm": 1.9, "ours": 1.0}, n=8)
    del old[2]["ours"]["ttft_over_engine_ms"]
    assert compare.engine_referenced(old, ("vllm", "ours")) is None
    assert _replay(tmp_path, {"args": args, "rounds": old}).returncode in (1, 3)
