"""The real vLLM CPU engine through the fixture, in this process: start, serve, reuse, replace, fail.

Order matters for speed on a 2-core box (each start costs about a minute): the TP=1 tests
share one engine; the last ones need other device sets and stop it.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from pytest_mgpu.engines.process import EngineStartError
from pytest_mgpu.fixtures import EngineFactory
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
    pool = get_session(request.config).services["engine_pool"]
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


def test_tp1_with_two_devices_binds_one_rank(mgpu_engine: EngineFactory) -> None:
    server = mgpu_engine(tp=1, devices=2)
    assert server.n_devices == 2
    assert engine_env(server.pid or 0)["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    _, usage = stream_completion(server, max_tokens=4)
    assert usage["completion_tokens"] == 4


def test_bad_fixture_arguments_are_clear(mgpu_engine: EngineFactory) -> None:
    with pytest.raises(ValueError, match=r"devices=1.*tp\*pp=2"):
        mgpu_engine(tp=2, devices=1)
    with pytest.raises(ValueError, match="tp=0"):
        mgpu_engine(tp=0)
