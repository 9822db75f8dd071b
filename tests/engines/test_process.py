"""Process lifecycle on a real process tree: health, crash detection, timeouts, group teardown."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from pytest_mgpu.engines.process import (
    EngineProcess,
    EngineStartError,
    LaunchPlan,
    check_port_free,
    free_port,
    session_members,
)

FAKE = str(Path(__file__).with_name("fake_engine.py"))


def _proc(tmp_path: Path, mode: str) -> EngineProcess:
    port = free_port()
    plan = LaunchPlan(argv=(sys.executable, FAKE, str(port), mode), env={},
                      health_url=f"http://127.0.0.1:{port}/health")
    return EngineProcess(plan, tmp_path / f"{mode}.log")


def test_start_healthy_then_stop_leaves_no_member(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "ok")
    proc.start(timeout_s=30)
    sid = proc.pid
    assert sid is not None
    assert proc.healthy()
    assert len(session_members(sid)) == 3  # server + 2 children
    proc.stop()
    assert session_members(sid) == []
    assert not proc.alive()
    proc.stop()  # idempotent


def test_stop_kills_processes_that_ignore_sigterm(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "stubborn")
    proc.start(timeout_s=30)
    sid = proc.pid
    assert sid is not None
    t0 = time.monotonic()
    proc.stop(grace_s=1.0)
    assert session_members(sid) == []
    assert time.monotonic() - t0 < 10


def test_crash_at_start_fails_at_once_with_log_tail(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "crash")
    t0 = time.monotonic()
    with pytest.raises(EngineStartError) as err:
        proc.start(timeout_s=60)
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "exited with code 3" in msg
    assert "model 'nope' does not exist" in msg
    assert str(proc.log_path) in msg


def test_start_timeout_tears_down_the_group(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "never-healthy")
    with pytest.raises(EngineStartError, match="did not become healthy within 2 s"):
        proc.start(timeout_s=2)
    assert not proc.alive()
    children_line = next(line for line in proc.log_path.read_text().splitlines() if "children" in line)
    for pid in map(int, children_line.split(":")[1].split()):
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(EngineStartError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port_free(port)
