"""The real vLLM CPU engine through the fixture, in this process: start, serve, reuse, replace, fail.

Order matters for speed on a 2-core box (each start costs about a minute): the TP=1 tests
share one engine; the last ones need other device sets and stop it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pytest_mgpu import Workload
from pytest_mgpu.engines.process import EngineStartError
from pytest_mgpu.fixtures import BenchRunner, EngineFactory
from pytest_mgpu.session import get_session

from .helpers import engine_env, stream_completion, survivors

pytestmark = pytest.mark.engine


def test_tp1_serves_a_streamed_completion(mgpu_engine: EngineFactory) -> None:
    server = mgpu_engine(tp=1)
    assert server.n_devices == 1
    assert server.spec.tp == 1 and server.spec.pp == 1
    chunks, usage = stream_completion(server, max_tokens=8)
    assert usage["completion_tokens"] == 8
    assert len(chunks) >= 2  # streamed, not one blob
    env = engine_env(server.pid or 0)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert server.log_path is not None and server.log_path.exists()


def test_identical_spec_is_reused(mgpu_engine: EngineFactory) -> None:
    first = mgpu_engine(tp=1)
    second = mgpu_engine(tp=1)
    assert first.pid == second.pid
    assert first.base_url == second.base_url


ENGINE_CLOCK_RUNS = """
import argparse, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("compare_vllm_client", sys.argv[1])
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)
url, model, tokenizer = sys.argv[2:5]
a = argparse.Namespace(input_len=32, output_len=4, num_prompts=6, max_concurrency=2)
out = {}
for name, run in (("ours", compare.run_ours), ("vllm", compare.run_vllm_client)):
    marks = []
    result = run(url, model, tokenizer, a, seed=5, at_start=lambda: marks.append(compare.engine_clock.read(url)))
    window = compare.engine_clock.window(marks[0] if marks else None, compare.engine_clock.read(url))
    out[name] = {"marks": len(marks), "mean_ttft_ms": result["mean_ttft_ms"],
                 **compare.over_engine(result, window)}
print("RESULT " + json.dumps(out))
"""


def test_engine_clock_brackets_both_clients_measured_runs(mgpu_engine: EngineFactory) -> None:
    # benchmarks/compare_vllm_client.py compares each client with the engine's own TTFT over the same run:
    # the counters must cover exactly the measured requests (no warm-up: vLLM's client sends 1 + c copies of
    # its first prompt first, ours c), and a client's clock, which starts before a request leaves and stops
    # after its first token arrives, can only read more than the engine's. (In a subprocess: vLLM's client
    # imports vllm and torch, which this test process must not carry into later tests.)
    server = mgpu_engine(tp=1)
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_vllm_client.py"
    proc = subprocess.run([sys.executable, "-c", ENGINE_CLOCK_RUNS, str(script), server.base_url, server.model_name,
                           server.tokenizer_path or server.model_name], capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    for name, run in json.loads(lines[-1][len("RESULT "):]).items():
        assert run["marks"] == 1, f"{name}: the start of its measured run was not marked once: {run}"
        assert run["engine_requests"] == 6, f"{name}: the window is not the measured requests: {run}"
        assert run["engine_mean_ttft_ms"] > 0 and run["engine_mean_tpot_ms"] > 0
        # a correctness bound, not a speed one: what the client adds is its own paths, not a second TTFT
        assert 0 <= run["ttft_over_engine_ms"] < run["engine_mean_ttft_ms"], f"{name}: {run}"


def test_engine_killed_mid_session_is_replaced(mgpu_engine: EngineFactory, request: pytest.FixtureRequest) -> None:
    old = mgpu_engine(tp=1)
    assert old.pid is not None
    os.killpg(old.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while survivors(old.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    new = mgpu_engine(tp=1)
    assert new.pid != old.pid
    _, usage = stream_completion(new, max_tokens=4)
    assert usage["completion_tokens"] == 4
    pool = get_session(request.config).pool
    assert any("replaced" in e for e in pool.events)


def test_nonexistent_model_fails_fast_with_the_engines_error(mgpu_engine: EngineFactory, tmp_path: object) -> None:
    t0 = time.monotonic()
    with pytest.raises(EngineStartError) as err:
        mgpu_engine(tp=1, model="/nonexistent/model-dir")
    elapsed = time.monotonic() - t0
    assert elapsed < 120, f"took {elapsed:.0f} s; the start timeout is 600 s"
    msg = str(err.value)
    assert "exited with code" in msg
    assert "/nonexistent/model-dir" in msg  # vLLM's own complaint, from its log
    assert "Last lines of its log" in msg


def test_engine_process_dying_mid_measurement_ends_it_within_seconds(
        mgpu_engine: EngineFactory, mgpu_bench: BenchRunner) -> None:
    """Kill one non-leader process of the engine's group while requests run: the liveness watch names it."""
    server = mgpu_engine(tp=1)
    assert server.pid is not None
    members = {p: _cmdline(p) for p in survivors(server.pid) if p != server.pid}
    # the rank's worker if it has a process of its own, else the engine core (never a helper like resource_tracker)
    victims = sorted(members, key=lambda p: ("Worker" not in members[p], "EngineCore" not in members[p]))
    assert victims, f"expected the API server to have child processes, found {survivors(server.pid)}"
    victim = victims[0]
    assert "VLLM" in members[victim] or "EngineCore" in members[victim], members
    killed_at: list[float] = []

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 600  # the measurement may first wait its turn box-wide
        while time.monotonic() < deadline and not killed_at:
            if _requests_running(server.base_url) > 0:
                os.kill(victim, signal.SIGKILL)
                killed_at.append(time.monotonic())
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    try:
        with pytest.raises(Exception) as err:
            mgpu_bench(server, Workload(input_len=64, output_len=256, num_prompts=400, max_concurrency=4), repeats=3)
        failed_at = time.monotonic()
    finally:
        killer.join(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # the next test gets a fresh engine
    assert killed_at, "the measurement ended before requests were running"
    took = failed_at - killed_at[0]
    msg = str(err.value)
    print(f"\nkilled pid {victim}; the measurement failed {took:.1f} s later:\n{msg[:600]}")
    assert took < 60, f"the measurement took {took:.0f} s to notice a dead engine process"  # correctness bound
    assert f"pid {victim}" in msg
    assert "Last lines of its log" in msg


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _requests_running(base_url: str) -> float:
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5) as resp:
            text = resp.read().decode(errors="replace")
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:num_requests_running"))


def test_tp1_with_two_devices_divides_per_device_metrics_by_two(mgpu_engine: EngineFactory,
                                                                  mgpu_bench: BenchRunner) -> None:
    """The all-visible pathology: one rank, two devices: per-device metrics are total / 2, flagged idle.

    Functional only: how much the idle device changes the rank's speed is a benchmark
    (benchmarks/idle_device_ratio.py), since this box's load swings speed by +-35%.
    """
    workload = Workload(input_len=64, output_len=64, num_prompts=16, max_concurrency=8)
    server = mgpu_engine(tp=1, devices=2)
    assert server.n_devices == 2
    assert engine_env(server.pid or 0)["VLLM_CPU_OMP_THREADS_BIND"] == "0"  # device 1 gets no rank
    two = mgpu_bench(server, workload, repeats=1)
    assert two.n_devices == 2
    assert two.output_throughput_per_gpu == pytest.approx(two.output_throughput / 2, rel=1e-9)
    assert "idle-devices" in {f.code for f in two.findings}


def test_bad_fixture_arguments_are_clear(mgpu_engine: EngineFactory) -> None:
    with pytest.raises(ValueError, match=r"devices=1.*tp\*pp=2"):
        mgpu_engine(tp=2, devices=1)
    with pytest.raises(ValueError, match="tp=0"):
        mgpu_engine(tp=0)
