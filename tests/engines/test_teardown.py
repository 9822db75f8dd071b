"""No engine outlives its pytest session: normal end, a failing test, a crashed engine, Ctrl-C.

The inner pytest runs real process trees shaped like vLLM (tests/engines/fake_engine.py)
through the real fixture and pool, registered as engine "fake"; the real-vLLM versions of
these claims are in test_vllm_cpu.py and test_user_contract.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_mgpu.engines.process import session_members

FAKE = Path(__file__).with_name("fake_engine.py")

CONFTEST = f'''
import sys
from pytest_mgpu.engines import LaunchPlan

def _fake(req):
    mode = "stubborn" if req.spec.model == "stubborn" else "ok"  # stubborn ignores SIGTERM
    return LaunchPlan(argv=(sys.executable, {str(FAKE)!r}, str(req.port), mode), env={{}},
                      health_url=f"http://{{req.host}}:{{req.port}}/health")

def pytest_mgpu_engines(registry):
    registry.add("fake", "cpu", _fake)
'''

TESTS = '''
import os, signal, time

def test_passes(mgpu_engine):
    print("ENGINE_PID", mgpu_engine(tp=1, engine="fake").pid, flush=True)

def test_fails(mgpu_engine):
    print("ENGINE_PID", mgpu_engine(tp=1, engine="fake", model="stubborn").pid, flush=True)
    assert False, "a failing test"

def test_engine_crashes(mgpu_engine):
    server = mgpu_engine(tp=2, engine="fake")
    print("ENGINE_PID", server.pid, flush=True)
    os.kill(server.pid, signal.SIGKILL)  # the server dies; its children are orphaned in its session
'''


def _pids(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"ENGINE_PID (\d+)", text)]


def test_no_engine_survives_pass_fail_or_crash(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", f"--mgpu-lock-dir={tmp_path}")
    result.assert_outcomes(passed=2, failed=1)
    pids = _pids(result.stdout.str())
    assert len(pids) == 3
    for pid in pids:
        assert session_members(pid) == [], f"processes of engine session {pid} outlived pytest"


LONG_TEST = (
    "import time\n"
    "def test_long(mgpu_engine):\n"
    "    server = mgpu_engine(tp=1, engine='fake', model={model!r})\n"
    "    print('ENGINE_LOG', server.log_path, flush=True)\n"
    "    print('ENGINE_PID', server.pid, flush=True)\n"
    "    time.sleep(120)\n"
)


def _start_long_test(pytester: pytest.Pytester, lock_dir: Path, model: str) -> tuple[subprocess.Popen[str], int, Path]:
    """An inner pytest whose test holds a fake engine for two minutes; returns it, the engine pid and log."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(LONG_TEST.format(model=model))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", f"--mgpu-lock-dir={lock_dir}"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # A suite started in the background (`make test &`, a CI runner's job) inherits SIGINT ignored, and a
        # Python started with SIGINT ignored never turns Ctrl-C into KeyboardInterrupt: give it the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    found: dict[str, str] = {}
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # with -s the first print shares its line with the test file's name
        for key in ("ENGINE_LOG", "ENGINE_PID"):
            if key in line:
                found[key] = line.split(key, 1)[1].split()[0]
        if "ENGINE_PID" in found or time.monotonic() > deadline:
            break
    if "ENGINE_PID" not in found:
        proc.kill()
        pytest.fail(f"the inner pytest never printed its engine's pid:\n{proc.communicate()[0]}")
    return proc, int(found["ENGINE_PID"]), Path(found["ENGINE_LOG"])


def test_ctrl_c_stops_every_engine(pytester: pytest.Pytester, tmp_path: Path) -> None:
    proc, pid, _ = _start_long_test(pytester, tmp_path, "m")
    assert session_members(pid)
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()  # never leave the inner pytest (and, through its watchdog, its engine) running
        pytest.fail(f"pytest did not end within 90 s of Ctrl-C:\n{proc.communicate()[0]}")
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert session_members(pid) == [], "Ctrl-C left engine processes behind"


def test_sigkilled_pytest_leaves_no_engine_behind(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """No finalizer runs after SIGKILL (a CI job's hard timeout): the engine's watchdog reaps the group."""
    proc, pid, log = _start_long_test(pytester, tmp_path, "stubborn")
    assert len(session_members(pid)) == 3  # the server and its two children
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 20  # the stubborn engine ignores SIGTERM: reaped by SIGKILL after the grace
    while session_members(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_members(pid) == [], "a SIGKILLed pytest left engine processes behind"
    assert f"pytest exited without stopping engine session {pid}; killing" in log.read_text()


def _device_locks(lock_dir: Path) -> list[Path]:
    """The device lock files the inner pytest's lease wrote its holder into (not box/quiet)."""
    return [p for p in sorted(lock_dir.glob("*.lock")) if p.read_text() and "devices" in json.loads(p.read_text())]


def _held(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_sigkilled_pytest_keeps_the_lease_until_the_engine_is_gone(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The kernel frees pytest's lock descriptors at SIGKILL; the watchdog's copies stay until the engine is gone,
    so the next run cannot lease devices an orphaned engine still occupies."""
    proc, pid, _ = _start_long_test(pytester, tmp_path, "stubborn")  # ignores SIGTERM: lives ~5 s after the kill
    locks = _device_locks(tmp_path)
    assert locks and all(_held(p) for p in locks)
    proc.kill()
    proc.communicate(timeout=30)
    assert session_members(pid), "the engine is already gone: nothing to prove"
    assert all(_held(p) for p in locks), "the lease was freed while the orphaned engine still ran"
    deadline = time.monotonic() + 20
    while session_members(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_members(pid) == []
    deadline = time.monotonic() + 5  # the watchdog exits right after the group is gone
    while any(_held(p) for p in locks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_held(p) for p in locks), "the lease outlived the engine"
