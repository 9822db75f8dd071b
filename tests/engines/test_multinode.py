"""Real vLLM CPU engines over two "nodes" on this box (local launcher, gloo/TCP between them).

One module so the engines share the session's pool; each start costs 1.5-2 minutes here,
so workloads stay tiny. The SIGKILL and dead-follower cases run first, in inner pytest processes
with their own lock directories; the measured engines last, after waiting their turn for the box.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_mgpu import Workload
from pytest_mgpu.engines.process import session_members
from pytest_mgpu.fixtures import BenchRunner, EngineFactory

from .helpers import engine_env, stream_completion

pytestmark = pytest.mark.engine

TINY = Workload(input_len=16, output_len=16, num_prompts=8, max_concurrency=4)


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _check_two_nodes(mgpu_engine: EngineFactory, mgpu_bench: BenchRunner, tp: int, pp: int) -> None:
    server = mgpu_engine(tp=tp, pp=pp, nodes=2)
    assert [n.rank for n in server.nodes] == [0, 1]
    assert server.n_devices == 2 and server.spec.nodes == 2
    assert server.node_link == "gloo/TCP loopback"
    assert "nodes=2" in server.spec.label() and server.spec.key()["nodes"] == 2
    head, follower = server.nodes
    assert head.pid == server.pid and follower.pid is not None
    assert set(head.devices).isdisjoint(follower.devices)  # each node leased its own core group
    # each node binds its own rank to its own core; only the follower is headless
    binds = [engine_env(pid or 0)["VLLM_CPU_OMP_THREADS_BIND"] for pid in (head.pid, follower.pid)]
    assert binds[0] != binds[1], binds
    head_argv, follower_argv = _cmdline(head.pid or 0), _cmdline(follower.pid)
    assert "--headless" in follower_argv and "--headless" not in head_argv
    assert follower_argv[follower_argv.index("--node-rank") + 1] == "1"
    assert follower.log_path is not None and "world_size=2 rank=1" in follower.log_path.read_text()
    _, usage = stream_completion(server, max_tokens=8)
    assert usage["completion_tokens"] == 8
    result = mgpu_bench(server, TINY, repeats=1)
    assert result.n_devices == 2  # per-device metrics count both nodes' devices
    assert result.hardware["nodes"] == 2 and result.hardware["node_link"] == "gloo/TCP loopback"
    assert result.output_throughput_per_gpu == pytest.approx(result.output_throughput / 2)
    print(f"\n{server.spec.label()}: started in {server.startup_s:.0f} s, "
          f"{result.output_throughput:.0f} tok/s, {result.output_throughput_per_gpu:.0f} tok/s/device")


def test_bad_node_counts_are_clear(mgpu_engine: EngineFactory) -> None:
    with pytest.raises(ValueError, match=r"tp\*pp=2 ranks do not split evenly over 3 nodes"):
        mgpu_engine(tp=2, nodes=3)
    with pytest.raises(ValueError, match=r"nodes=0"):
        mgpu_engine(tp=2, nodes=0)
    with pytest.raises(ValueError, match=r"3 devices do not split evenly over 2 nodes"):
        mgpu_engine(tp=2, nodes=2, devices=3)


DEAD_FOLLOWER_TEST = (
    "def test_dead_follower(mgpu_engine):\n"
    "    mgpu_engine(tp=2, nodes=2)\n"
)


def test_follower_that_dies_at_start_fails_fast_with_its_log(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The follower gets a bad argument only it sees (through a launcher template); the head is real vLLM."""
    pytester.makepyfile(DEAD_FOLLOWER_TEST)
    t0 = time.monotonic()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--mgpu-lock-dir={tmp_path}", "--mgpu-nodes=localhost,localhost",
        "--mgpu-node-launcher=sh -c '{cmd} --no-such-follower-flag' {host}",
    )
    elapsed = time.monotonic() - t0
    out = result.stdout.str()
    result.assert_outcomes(failed=1)
    assert "node 1 of 2 (on localhost) exited with code" in out
    assert "Last lines of its log" in out and "-node1.log" in out
    assert "no-such-follower-flag" in out  # vLLM's own complaint, from the follower's log tail
    assert elapsed < 300, f"took {elapsed:.0f} s: a dead follower must fail the start at once"


LONG_TEST = (
    "import time\n"
    "def test_long(mgpu_engine):\n"
    "    server = mgpu_engine(tp=2, nodes=2)\n"
    "    print('NODE_PIDS', ','.join(str(n.pid) for n in server.nodes), flush=True)\n"
    "    time.sleep(600)\n"
)


def test_sigkilled_pytest_leaves_no_node_behind(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """No finalizer runs after SIGKILL: each node's watchdog reaps its own group."""
    pytester.makepyfile(LONG_TEST)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", f"--mgpu-lock-dir={tmp_path}"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    pids: list[int] = []
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "NODE_PIDS" in line:
            pids = [int(p) for p in line.split("NODE_PIDS", 1)[1].split()[0].split(",")]
            break
    if len(pids) != 2:
        proc.kill()
        pytest.fail("the inner pytest never printed its nodes' pids:\n" + "".join(lines) + proc.communicate()[0])
    assert all(session_members(p) for p in pids)
    # a multi-node start shows its progress like any other (CI logs: plain lines, then the last one)
    assert any("engine vllm tp=2 pp=1 devices=2 nodes=2: healthy after" in line for line in lines), "".join(lines)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 60
    while any(session_members(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = {p: session_members(p) for p in pids}
    assert not any(left.values()), f"a SIGKILLed pytest left node processes behind: {left}"


@pytest.mark.mgpu_nodes(2)
def test_tp2_over_two_nodes_serves_and_is_measured(mgpu_engine: EngineFactory, mgpu_bench: BenchRunner) -> None:
    _check_two_nodes(mgpu_engine, mgpu_bench, tp=2, pp=1)


@pytest.mark.mgpu_nodes(2)
def test_pp2_over_two_nodes_serves_and_is_measured(mgpu_engine: EngineFactory, mgpu_bench: BenchRunner) -> None:
    _check_two_nodes(mgpu_engine, mgpu_bench, tp=1, pp=2)
