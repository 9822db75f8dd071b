"""A user's own test file, using only the contract, run by a real pytest against real vLLM engines.

It runs in a subprocess with its own engine pool: TP=2, PP=2 and TP=1 with two devices, each
serving a streamed completion; afterwards not one process of those engines may be left.
"""

from __future__ import annotations

import re

import pytest

from pytest_mgpu.session import get_session

from .helpers import survivors

pytestmark = pytest.mark.engine

USER_TESTS = '''
import json, urllib.request

def complete(server, n=6):
    body = json.dumps({"model": server.model_name, "prompt": "Tensor parallelism", "max_tokens": n,
                       "ignore_eos": True}).encode()
    req = urllib.request.Request(server.base_url + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.load(resp)["usage"]["completion_tokens"]

def test_tp2(mgpu_engine):
    server = mgpu_engine(tp=2)
    print("ENGINE_PID", server.pid, "n_devices", server.n_devices)
    assert server.n_devices == 2 and server.spec.tp == 2
    assert complete(server) == 6

def test_pp2(mgpu_engine):
    server = mgpu_engine(tp=1, pp=2)
    print("ENGINE_PID", server.pid, "n_devices", server.n_devices)
    assert server.n_devices == 2 and server.spec.pp == 2
    assert complete(server) == 6

def test_tp1_all_visible(mgpu_engine):
    server = mgpu_engine(tp=1, devices=2)
    print("ENGINE_PID", server.pid, "n_devices", server.n_devices)
    assert server.n_devices == 2 and server.spec.world_size == 1
    assert complete(server) == 6
'''


@pytest.fixture
def no_outer_engines(request: pytest.FixtureRequest) -> None:
    """The inner pytest needs both devices: stop this session's own engines first."""
    pool = get_session(request.config).pool
    if pool is not None:
        pool.stop_all()


@pytest.mark.usefixtures("no_outer_engines")
def test_users_contract_file_runs_tp2_pp2_and_all_visible(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", timeout=900)
    result.assert_outcomes(passed=3)
    pids = [int(p) for p in re.findall(r"ENGINE_PID (\d+)", result.stdout.str())]
    assert len(set(pids)) == 3, "each spec needs its own engine"
    assert all(survivors(pid) == [] for pid in pids), "an engine process outlived the pytest session"
