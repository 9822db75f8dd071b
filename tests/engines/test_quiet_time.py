"""Measurements take turns on one machine: mgpu_bench waits while another process measures."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.hardware.leasing import Leaser
from pytest_mgpu.hardware.topology import Device, LinkClass, Topology
from pytest_mgpu.testing import Behavior, Script, ScriptedServer

TEST = """
from pytest_mgpu import Workload

def test_measure(mgpu_engine, mgpu_bench):
    server = mgpu_engine(tp=1)
    result = mgpu_bench(server, Workload(input_len=8, output_len=8, num_prompts=4, max_concurrency=2), repeats=1)
    assert result.metrics["completed"] == 4
"""


def test_bench_waits_for_a_measurement_in_another_process(pytester: pytest.Pytester, tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    pytester.makepyfile(test_measure=TEST)
    with ScriptedServer(Script(Behavior(ttft_s=0.01, itl_s=0.001)), root=str(TINY_MODEL)) as server:
        # this process plays the neighbour whose measurement is under way for 3 s
        cpu = Device(index=0, kind="cpu", name="CPU 1-core group")
        neighbour = Leaser(lock_dir, Topology(kind="cpu", devices=(cpu,), links=((LinkClass.SELF,),)))
        hold = neighbour.quiet(measuring=True, holder="neighbour::test_long_measurement")
        timer = threading.Timer(3.0, hold.release)
        timer.start()
        t0 = time.monotonic()
        try:
            result = pytester.runpytest_subprocess(
                "--mgpu-engine=external", f"--mgpu-base-url={server.base_url}", "--mgpu-external-devices=1",
                f"--mgpu-lock-dir={lock_dir}", "-p", "no:cacheprovider")
        finally:
            timer.cancel()
            hold.release()
        elapsed_s = time.monotonic() - t0
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_measure: waited * s for other processes on this machine to finish measuring*"])
    assert elapsed_s >= 3.0
