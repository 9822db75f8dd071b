"""`python -m pytest_mgpu history ...` as users run it (subprocess), on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pytest_mgpu.history.rows import RunInfo
from pytest_mgpu.history.store import HistoryStore
from pytest_mgpu.history.url import parse

from .test_store import make_row

ROOT = Path(__file__).parents[2]


def cli(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_MGPU_HISTORY", None)
    return subprocess.run([sys.executable, "-m", "pytest_mgpu", "history", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def seed_step(url: str, tmp_path: Path) -> None:
    """16 runs at 100 (+-0.3%), then a 10% drop from run 9 on, each its own run with its own commit."""
    parsed = parse(url, tmp_path)
    assert parsed is not None
    with HistoryStore.open(parsed) as store:
        for i in range(16):
            value = (100.0 if i < 8 else 90.0) * (1 + 0.003 * ((i * 7) % 3 - 1))
            run = RunInfo(uuid=str(uuid.uuid4()), started_utc="2026", source="pytest", git_commit=f"c{i:02d}")
            store.append(run, [make_row(value, i)])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_list_show_detect_prune(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}" if backend == "sqlite" else request.getfixturevalue("pg_database")
    seed_step(url, tmp_path)
    listed = cli(tmp_path, "list", "--json", "--history", url)
    assert listed.returncode == 0, listed.stderr
    [series] = json.loads(listed.stdout)["series"]
    assert (series["test"], series["spec"], series["fingerprint"], series["runs"]) == (
        "t.py::test_a", "vllm tp=1 pp=1 devices=1", "1xCPU-test", 16)
    shown = cli(tmp_path, "show", "--history", url, "--test", "t.py::test_a")
    assert shown.returncode == 0 and shown.stdout.count("t.py::test_a") == 16
    found = cli(tmp_path, "detect", "--json", "--history", url, "--metric", "output_throughput_per_gpu")
    assert found.returncode == 0, found.stderr
    [cp] = json.loads(found.stdout)["change_points"]
    assert (cp["test"], cp["spec"], cp["metric"], cp["run"]) == ("t.py::test_a", "vllm tp=1 pp=1 devices=1",
                                                                  "output_throughput_per_gpu", 9)
    assert cp["before"] == pytest.approx(100, rel=0.01) and cp["after"] == pytest.approx(90, rel=0.01)
    assert cp["change"] == pytest.approx(-0.1, abs=0.01)
    assert "commit c07 -> c08" in cp["changed"]
    pruned = cli(tmp_path, "prune", "--keep", "10", "--history", url)
    assert pruned.returncode == 0 and "pruned 6 measurement(s)" in pruned.stdout
    assert json.loads(cli(tmp_path, "list", "--json", "--history", url).stdout)["series"][0]["runs"] == 10


def test_import_baselines_and_reports_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    first = cli(tmp_path, "import", str(ROOT / "baselines"), "--baselines-root", str(ROOT / "baselines"),
                "--history", url)
    assert first.returncode == 0, first.stderr
    n = int(first.stdout.strip().splitlines()[-1].split()[1])
    assert n == len(list((ROOT / "baselines").rglob("*.json"))) > 0  # one entry per committed baseline file
    again = cli(tmp_path, "import", str(ROOT / "baselines"), "--history", url)
    assert "imported 0 new measurement(s)" in again.stdout
    series = json.loads(cli(tmp_path, "list", "--json", "--history", url).stdout)["series"]
    assert any(s["test"] == "perf_tests/test_configurations.py::test_configuration[tp1]" for s in series)


def test_import_of_a_foreign_file_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"hello": 1}')
    out = cli(tmp_path, "import", str(tmp_path / "x.json"), "--history", f"sqlite:///{tmp_path / 'h.db'}")
    assert out.returncode == 1
    assert "expected a pytest-mgpu baseline" in out.stderr and "x.json" in out.stderr


def test_unreachable_store_is_exit_2_without_the_password(tmp_path: Path) -> None:
    from .conftest import free_port

    out = cli(tmp_path, "list", "--history", f"postgresql://u:PwNeverShown@127.0.0.1:{free_port()}/d")
    assert out.returncode == 2
    assert "could not open the history store postgresql+psycopg://u:***@127.0.0.1" in out.stderr
    assert "PwNeverShown" not in out.stderr + out.stdout


def test_plot_writes_one_png_per_series_and_metric(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    seed_step(url, tmp_path)
    out = cli(tmp_path, "plot", "--history", url, "--out", str(tmp_path / "plots"))
    assert out.returncode == 0, out.stderr
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
