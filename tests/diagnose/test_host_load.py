"""host_load: the rest of the machine's CPU time, read from a recorded /proc tree."""

from __future__ import annotations

from pathlib import Path

from pytest_mgpu.telemetry.procfs import host_load


def _proc(root: Path, pid: int, sid: int, utime: int, stime: int, comm: str = "x y") -> None:
    (root / str(pid)).mkdir(parents=True)
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) S 1 {sid} {sid} 0 -1 0 0 0 0 0 {utime} {stime} 0 0\n")


def test_counts_processes_outside_the_excluded_sessions_and_steal(tmp_path: Path) -> None:
    _proc(tmp_path, 100, 100, 500, 100)  # the engine's session: excluded
    _proc(tmp_path, 101, 100, 50, 50)
    _proc(tmp_path, 200, 200, 30, 20)  # a neighbour: counted
    _proc(tmp_path, 300, 300, 7, 3, comm="a) b")  # a command with ") " in it still parses
    (tmp_path / "stat").write_text("cpu  10 0 5 100 0 0 0 40 0 0\ncpu0 5 0 2 50 0 0 0 20 0 0\n")
    load = host_load({100}, root=tmp_path, ticks_per_s=100)
    assert load.others_cpu_s == 0.6
    assert load.steal_s == 0.4


def test_an_unreadable_proc_reads_as_nothing(tmp_path: Path) -> None:
    load = host_load(set(), root=tmp_path / "missing", ticks_per_s=100)
    assert (load.others_cpu_s, load.steal_s) == (0.0, 0.0)


def test_excluded_pids_are_not_counted(tmp_path: Path) -> None:
    _proc(tmp_path, 200, 200, 30, 20)
    _proc(tmp_path, 201, 200, 5, 5)  # the caller itself, in a neighbour's session
    assert host_load(set(), root=tmp_path, ticks_per_s=100, exclude_pids={201}).others_cpu_s == 0.5
