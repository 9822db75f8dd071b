"""Two pytest processes, each with two xdist workers, appending to one store at once: nothing lost or doubled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mgpu.history.store import HistoryStore
from pytest_mgpu.history.url import parse
from pytest_mgpu.testing import ScriptedServer

TEST = """
import pytest
from pytest_mgpu import Workload

@pytest.mark.parametrize("i", range(3))
def test_measure(mgpu_engine, mgpu_bench, i):
    server = mgpu_engine(tp=1)
    mgpu_bench(server, Workload(input_len=8, output_len=4, num_prompts=2, max_concurrency=2), repeats=1)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_append_at_once(backend: str, tmp_path: Path, scripted: ScriptedServer,
                                      request: pytest.FixtureRequest) -> None:
    url = "sqlite:///" + str(tmp_path / "shared.db") if backend == "sqlite" else request.getfixturevalue("pg_database")
    procs = []
    for n in range(2):
        work = tmp_path / f"runner{n}"
        work.mkdir()
        (work / "test_conc.py").write_text(TEST)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "PYTEST_MGPU_HISTORY": url}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "--mgpu-engine=external",
             f"--mgpu-base-url={scripted.base_url}", f"--mgpu-lock-dir={work / 'locks'}", "-q"],
            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
        assert "run history" not in out, out  # no store warning
    parsed = parse(url, tmp_path)
    assert parsed is not None
    with HistoryStore.open(parsed) as store:
        stored = store.measurements()
        series = store.series()
    assert len(stored) == 6  # 2 processes x 3 measurements, each stored once (not again by the xdist controller)
    assert len({s.row.uuid for s in stored}) == 6
    assert sorted((s.nodeid, s.runs) for s in series) == [(f"test_conc.py::test_measure[{i}]", 2) for i in range(3)]
