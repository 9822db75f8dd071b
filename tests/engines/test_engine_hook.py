"""Engines as plugins: a conftest adds an engine through `pytest_mgpu_engines(registry)`, users run it.

The third-party engine here is the scripted streaming server (`python -m
pytest_mgpu.testing.scripted_server`) started by a planner in the rootdir conftest.py: no vLLM
needed, and everything else (leasing, process group, health, load generator, report, teardown)
is the real plugin in a real pytest subprocess.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

SCRIPTED_CONFTEST = '''
import json, sys
from pathlib import Path
from pytest_mgpu.engines import LaunchPlan, LaunchRequest

def scripted_plan(request: LaunchRequest) -> LaunchPlan:
    script = json.dumps({"default": {"ttft_s": 0.02, "itl_s": 0.002}})
    argv = (sys.executable, "-m", "pytest_mgpu.testing.scripted_server", "--host", request.host,
            "--port", str(request.port), "--model", Path(request.spec.model).name, "--script", script)
    return LaunchPlan(argv=argv, env={"SCRIPTED_DEVICES": str(len(request.devices))},
                      health_url=f"http://{request.host}:{request.port}/v1/models")

def pytest_mgpu_engines(registry):
    registry.add("scripted", "cpu", scripted_plan)
'''

SCRIPTED_TEST = '''
from pathlib import Path
from pytest_mgpu import Workload, assert_slo
from pytest_mgpu.engines.launchers import TINY_MODEL  # its tokenizer sizes the prompts

def test_third_party_engine(mgpu_engine, mgpu_bench):
    server = mgpu_engine(tp=1, engine="scripted", model=str(TINY_MODEL))
    env = dict(e.split("=", 1) for e in Path(f"/proc/{server.pid}/environ").read_text().split("\\0") if "=" in e)
    assert env["SCRIPTED_DEVICES"] == "1"
    print("ENGINE_PID", server.pid, flush=True)
    result = mgpu_bench(server, Workload(input_len=16, output_len=8, num_prompts=8, max_concurrency=4), repeats=1)
    assert result.failed == 0 and result.completed == 8
    assert result.spec["engine"] == "scripted"
    assert 0 < result.metrics["engine_startup_s"] == server.startup_s  # start-up time, on the result
    assert_slo(result, engine_startup_s=120)  # a test can gate it like any lower-is-better metric
'''


def _run(pytester: pytest.Pytester, tmp_path: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", f"--mgpu-lock-dir={tmp_path / 'locks'}",
                                         "--mgpu-device=cpu", *args)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_conftest_engine_is_measured_end_to_end(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest(SCRIPTED_CONFTEST)
    pytester.makepyfile(SCRIPTED_TEST)
    result = _run(pytester, tmp_path, "--mgpu-repeats=1", "--mgpu-report=report.json", "--mgpu-summary=summary.md")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "report.json").read_text())
    [engine] = report["engines"]
    assert engine["label"] == "scripted tp=1 pp=1 devices=1" and engine["startup_s"] > 0
    assert report["records"][0]["result"]["summary"]["engine_startup_s"] == pytest.approx(engine["startup_s"])
    assert "| scripted tp=1 pp=1 devices=1 | " in (pytester.path / "summary.md").read_text()
    result.stdout.fnmatch_lines(["*test_third_party_engine*scripted tp=1 pp=1 devices=1*",
                                 "*scripted tp=1 pp=1 devices=1: started in *, stopped in *"])
    pids = [int(p) for p in re.findall(r"ENGINE_PID (\d+)", result.stdout.str())]
    assert len(pids) == 1 and not _alive(pids[0]), "the third-party engine outlived the session"


def test_mgpu_engine_option_accepts_a_plugin_engine(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest(SCRIPTED_CONFTEST)
    pytester.makepyfile("""
        def test_default_engine(mgpu_engine):
            assert mgpu_engine(tp=1).spec.engine == "scripted"
    """)
    _run(pytester, tmp_path, "--mgpu-engine=scripted").assert_outcomes(passed=1)


def test_unknown_engine_lists_the_registered_ones(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest(SCRIPTED_CONFTEST)
    pytester.makepyfile("def test_x(): pass")
    result = _run(pytester, tmp_path, "--mgpu-engine=mlc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown engine 'mlc' (--mgpu-engine, env PYTEST_MGPU_ENGINE or ini mgpu_engine);"
                                 " registered engines: vllm, sglang, trtllm, external, scripted*pytest_mgpu_engines*"])


def test_help_lists_the_engines(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    text = re.sub(r"\s+", " ", result.stdout.str())
    assert "vllm, sglang, trtllm, external (see --mgpu-base-url), and any engine a plugin adds" in text


def test_a_name_registered_twice_names_both(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest(SCRIPTED_CONFTEST + '''
def pytest_mgpu_engines(registry):
    registry.add("scripted", "cpu", scripted_plan)
    registry.add("vllm", "cpu", scripted_plan)
''')
    pytester.makepyfile("def test_x(): pass")
    result = _run(pytester, tmp_path)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*engine 'vllm' on cpu is registered twice: by pytest_mgpu.engines.launchers."
                                 "vllm_cpu_plan and by conftest.scripted_plan*"])


def test_a_planner_that_raises_is_named(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest('''
def broken_plan(request):
    return {"argv": ["oops"]}["env"]

def pytest_mgpu_engines(registry):
    registry.add("broken", "cpu", broken_plan)
''')
    pytester.makepyfile("def test_x(mgpu_engine):\n    mgpu_engine(tp=1, engine='broken')\n")
    result = _run(pytester, tmp_path)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*EngineStartError: engine 'broken': its planner conftest.broken_plan raised "
                                 "KeyError: 'env'; expected a LaunchPlan*"])


def test_a_server_that_never_becomes_healthy_is_named_and_stopped(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest('''
import sys
from pytest_mgpu.engines import LaunchPlan

def mute_plan(request):
    code = "import os, time; print('MUTE_PID', os.getpid(), flush=True); time.sleep(600)"
    return LaunchPlan(argv=(sys.executable, "-c", code), env={},
                      health_url=f"http://{request.host}:{request.port}/health")

def pytest_mgpu_engines(registry):
    registry.add("mute", "cpu", mute_plan)
''')
    pytester.makepyfile("def test_x(mgpu_engine):\n    mgpu_engine(tp=1, engine='mute')\n")
    result = _run(pytester, tmp_path, "--mgpu-start-timeout=15")  # room for python to start on a busy box
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*EngineStartError: engine 'mute' (mute tp=1 pp=1 devices=1): the engine did not "
                                 "become healthy within 15 s*"])
    pids = sorted({int(p) for p in re.findall(r"MUTE_PID (\d+)", result.stdout.str())})  # also in the log tail
    assert len(pids) == 1 and not _alive(pids[0])
