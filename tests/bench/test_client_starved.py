"""A starved client raises a client finding (whether a healthy one stays clean depends on the box: see
tests/bench/test_results.py::test_client_jitter_is_calibrated_on_healthy_hosts for the recorded hosts).

The starvation is real: a thread spins in the client's process with a 30 ms GIL switch interval,
so the event loop waits up to 30 ms at a time to stamp chunks, as on a host whose client has no
core to itself.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from pytest_mgpu import Workload
from pytest_mgpu.bench.runner import run_bench
from pytest_mgpu.testing import Behavior, Script, ScriptedServer

CLIENT_CODES = {"client-jitter", "client-bound"}
WORKLOAD = Workload(input_len=16, output_len=40, num_prompts=16, max_concurrency=4)


@pytest.fixture
def gil_hog() -> Iterator[None]:
    stop = threading.Event()
    old = sys.getswitchinterval()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    sys.setswitchinterval(0.03)
    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)


def _codes(server: ScriptedServer, tok_path: str) -> set[str]:
    server.set_script(Script(Behavior(ttft_s=0.01, itl_s=0.01)))
    r = run_bench(server.engine_server(tokenizer_path=tok_path), WORKLOAD)
    return {f.code for f in r.findings} & CLIENT_CODES


def test_a_starved_client_is_reported(server: ScriptedServer, tok_path: str, gil_hog: None) -> None:
    assert _codes(server, tok_path), "a client starved for up to 30 ms at a time raised no client finding"

