from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from pytest_mgpu import BenchResult
from pytest_mgpu.cli import bench as cli
from pytest_mgpu.testing import ScriptedServer


def test_bench_against_a_base_url_writes_a_result(server: ScriptedServer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    code = cli.main(["--base-url", server.base_url, "--input-len", "16", "--output-len", "4", "--num-prompts", "6",
                     "--max-concurrency", "2", "--devices", "2", "--goodput", "ttft:5000", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "Successful requests:                        6" in text
    assert "Request goodput (req/s):" in text
    result = BenchResult.from_json(json.loads(out.read_text()))
    assert result.completed == 6
    assert result.n_devices == 2
    assert result.spec["engine"] == "external"
    assert result.model == "scripted"  # asked /v1/models; its root (the tiny model) gave the tokenizer
    assert result.workload.goodput == {"ttft": 5000.0}


def test_an_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--base-url", "http://127.0.0.1:9", "--num-prompts", "1"])
    assert code == 2
    assert "could not ask http://127.0.0.1:9/v1/models which model it serves" in capsys.readouterr().err


def test_a_bad_workload_flag_is_a_clear_error(server: ScriptedServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--base-url", server.base_url, "--range-ratio", "2"]) == 2
    assert "range_ratio must be in [0, 1), got 2.0" in capsys.readouterr().err


def test_register_adds_the_bench_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="pytest_mgpu")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--base-url", "http://x", "--goodput", "tpot:50", "e2el:900"])
    assert args.func is cli.run
    assert args.goodput == [("tpot", 50.0), ("e2el", 900.0)]
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--base-url", "http://x", "--goodput", "ttft"])


def test_python_dash_m_pytest_mgpu_bench(server: ScriptedServer, tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "pytest_mgpu", "bench", "--base-url", server.base_url,
                           "--input-len", "8", "--output-len", "3", "--num-prompts", "4", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "pytest-mgpu serving benchmark" in proc.stdout
    assert BenchResult.from_json(json.loads(out.read_text())).completed == 4
