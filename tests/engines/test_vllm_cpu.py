"""The real vLLM CPU engine through the fixture, in this process: start, serve, reuse, replace, fail.

Order matters for speed on a 2-core box (each start costs about a minute): the TP=1 tests
share one engine; the last ones need other device sets and stop it.
"""

from __future__ import annotations

import os
import signal
import time

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


def test_tp1_with_two_devices_halves_per_device_throughput(mgpu_engine: EngineFactory, mgpu_bench: BenchRunner) -> None:
    """The all-visible pathology: the same single rank, twice the devices, half the per-device throughput."""
    workload = Workload(input_len=64, output_len=64, num_prompts=48, max_concurrency=8)
    one = mgpu_bench(mgpu_engine(tp=1), workload, repeats=2)
    server = mgpu_engine(tp=1, devices=2)
    assert server.n_devices == 2
    assert engine_env(server.pid or 0)["VLLM_CPU_OMP_THREADS_BIND"] == "0"  # device 1 gets no rank
    two = mgpu_bench(server, workload, repeats=2)
    raw = two.output_throughput / one.output_throughput
    per_device = two.output_throughput_per_gpu / one.output_throughput_per_gpu
    print(f"\nTP=1 devices=1: {one.output_throughput:.0f} tok/s; devices=2: {two.output_throughput:.0f} tok/s "
          f"(raw ratio {raw:.2f}); per device {one.output_throughput_per_gpu:.0f} -> "
          f"{two.output_throughput_per_gpu:.0f} (ratio {per_device:.2f})")
    # within noise (this box's client shares its two cores with the engine): the idle device adds nothing
    assert 0.75 < raw < 1.33, "the idle device should not change what the single rank delivers"
    assert per_device == pytest.approx(raw / 2, rel=1e-6)  # so per device it is half, up to that noise
    assert "idle-devices" in {f.code for f in two.findings}
    assert "idle-devices" not in {f.code for f in one.findings}


def test_bad_fixture_arguments_are_clear(mgpu_engine: EngineFactory) -> None:
    with pytest.raises(ValueError, match=r"devices=1.*tp\*pp=2"):
        mgpu_engine(tp=2, devices=1)
    with pytest.raises(ValueError, match="tp=0"):
        mgpu_engine(tp=0)
