"""Reports as a CI job reads them: JSON, Markdown, PNG, JUnit properties, pytest-benchmark files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_mgpu.session import get_session

SYNTHETIC = Path(__file__).parents[1] / "gate" / "synthetic.py"  # the conftest with the `measured` fixture
FP = "2xCPU-1core-NODE-3f2a9c"

TESTS = """
import os
from pytest_mgpu.findings import Finding, Severity

def test_steady(measured, mgpu_baseline):
    mgpu_baseline.check(measured())

def test_slower(measured, mgpu_baseline):
    mgpu_baseline.check(measured(tp=2, scale=float(os.environ.get("SLOWER", "1.0"))))

def test_new(measured, mgpu_baseline):
    finding = Finding("idle-devices", Severity.WARNING, "2 devices allocated, 1 used: use tp=2 or devices=1")
    mgpu_baseline.check(measured(tp=4, findings=(finding,)))
"""


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    """Record steady/slower, then re-run with test_slower 30% slower and every report asked for."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makeconftest(SYNTHETIC.read_text())
    pytester.makepyfile(test_perf=TESTS)
    pytester.runpytest_subprocess("--mgpu-update-baselines", "-k", "not new").assert_outcomes(passed=2)
    monkeypatch.setenv("SLOWER", "1.3")
    result = pytester.runpytest_subprocess("--mgpu-report=out/perf.json", "--mgpu-summary=out/perf.md",
                                           "--junitxml=out/junit.xml")
    result.assert_outcomes(passed=2, failed=1)
    return result


def test_terminal_summary_lists_every_measurement(run: pytest.RunResult) -> None:
    run.stdout.fnmatch_lines([
        "*= pytest-mgpu =*",
        f"hardware: {FP} (2x cpu-cores linked by NODE)",
        "test*configuration*tok/s/device*median TPOT ms*p99 TTFT ms*verdict",
        "test_perf.py::test_steady*vllm tp=1 pp=1 devices=1*1000*4.00*50.0*pass",
        "test_perf.py::test_slower*vllm tp=2 pp=1 devices=2*769*5.20*65.0*regression (*",
        "test_perf.py::test_new*vllm tp=4*new",
        "findings:",
        "*test_new: [[]idle-devices[]] 2 devices allocated, 1 used*",
        "warnings:",
        "*test_new: no baseline for vllm tp=4*",
        "reports: *perf.json, *perf.benchmark.json, *perf.png, *perf.md",
    ])


def test_json_report(pytester: pytest.Pytester, run: pytest.RunResult) -> None:
    data = json.loads((pytester.path / "out" / "perf.json").read_text())
    assert data["exit_status"] == 1
    assert list(data["hardware"]) == [FP]
    assert data["versions"] == {"vllm": ["0.32.0"]}
    by_test = {r["nodeid"].split("::")[1]: r for r in data["records"]}
    assert {k: r["outcome"] for k, r in by_test.items()} == {
        "test_steady": "pass", "test_slower": "regression", "test_new": "new"}
    slower = by_test["test_slower"]["verdict"]["metrics"][0]
    assert slower["metric"] == "output_throughput_per_gpu"
    assert slower["outcome"] == "regression"
    assert slower["change"] == pytest.approx(1 / 1.3 - 1)
    assert by_test["test_slower"]["result"]["summary"]["output_throughput_per_gpu"] == pytest.approx(1000 / 1.3)
    assert by_test["test_new"]["findings"][0]["code"] == "idle-devices"
    assert any("no baseline" in w for w in data["warnings"])


def test_markdown_summary(pytester: pytest.Pytester, run: pytest.RunResult) -> None:
    md = (pytester.path / "out" / "perf.md").read_text()
    assert md.startswith("## pytest-mgpu: 3 measurements, 1 regression\n")
    assert "| test | configuration | tok/s/device | median TPOT ms | p99 TTFT ms | verdict |" in md
    steady = ("| `test_perf.py::test_steady` | vllm tp=1 pp=1 devices=1 --load-format dummy "
              "| 1000 | 4.00 | 50.0 | pass |")
    assert steady in md
    assert "**regression (output_throughput_per_gpu -23.1%, median_tpot_ms +30.0%)**" in md
    assert "<details><summary>test_perf.py::test_slower: regression</summary>" in md
    assert "### Findings" in md
    assert "### Warnings" in md


def test_png_plot(pytester: pytest.Pytester, run: pytest.RunResult) -> None:
    png = (pytester.path / "out" / "perf.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 10_000


def test_junit_properties(pytester: pytest.Pytester, run: pytest.RunResult) -> None:
    tree = ET.parse(pytester.path / "out" / "junit.xml")
    props = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in tree.iter("testcase")}
    assert props["test_steady"]["mgpu_output_throughput_per_gpu"] == "1000.0"
    assert props["test_steady"]["mgpu_median_tpot_ms"] == "4.0"
    assert props["test_steady"]["mgpu_verdict"] == "pass"
    assert props["test_slower"]["mgpu_verdict"] == "regression"  # a failed test keeps its numbers
    assert props["test_slower"]["mgpu_fingerprint"] == FP


def test_pytest_benchmark_compare_reads_the_export(pytester: pytest.Pytester, run: pytest.RunResult) -> None:
    exported = pytester.path / "out" / "perf.benchmark.json"
    data = json.loads(exported.read_text())
    steady = next(b for b in data["benchmarks"] if "test_steady" in b["name"])
    assert steady["stats"]["data"] == pytest.approx([1 / 1000, 1 / 1010, 1 / 990])  # GPU-s per output token
    assert steady["stats"]["median"] == pytest.approx(1 / 1000)
    assert steady["extra_info"]["unit"] == "GPU-seconds per output token"
    assert data["machine_info"]["mgpu_fingerprint"] == FP
    cli = shutil.which("pytest-benchmark", path=str(Path(os.sys.executable).parent))
    assert cli is not None
    out = subprocess.run([cli, "compare", str(exported), "--columns=min,median,max,rounds"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "test_steady[vllm tp=1 pp=1 devices=1 --load-format dummy]" in out.stdout
    assert "test_slower[vllm tp=2 pp=1 devices=2 --load-format dummy]" in out.stdout
    assert "Median" in out.stdout


def test_github_step_summary_is_appended_by_default(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(SYNTHETIC.read_text())
    pytester.makepyfile(test_perf=TESTS)
    step = pytester.path / "step_summary.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    pytester.runpytest_subprocess("-k", "steady").assert_outcomes(passed=1)
    text = step.read_text()
    assert text.startswith("earlier step\n## pytest-mgpu: 1 measurement\n")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.runpytest_subprocess("test_plain.py").assert_outcomes(passed=1)
    assert step.read_text() == text  # no measurements, no news


def test_a_report_that_cannot_be_written_warns_and_keeps_the_outcome(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SYNTHETIC.read_text())
    pytester.makepyfile(test_perf=TESTS)
    (pytester.path / "blocked").write_text("a file where a directory is needed")
    result = pytester.runpytest_subprocess("-k", "steady", "--mgpu-report=blocked/perf.json",
                                           "--mgpu-summary=blocked/perf.md")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*could not write the JSON report *blocked/perf.json*",
                                 "*could not write the Markdown summary *blocked/perf.md*"])
    assert "INTERNALERROR" not in result.stdout.str()


def test_fingerprint_in_pytest_benchmark_machine_info(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SYNTHETIC.read_text())
    pytester.makepyfile(test_bench="""
def test_both(benchmark, measured):
    measured()
    benchmark(sum, [1, 2, 3])
""")
    pytester.runpytest_subprocess("--benchmark-json=bench.json").assert_outcomes(passed=1)
    data = json.loads((pytester.path / "bench.json").read_text())
    assert data["machine_info"]["mgpu_fingerprint"] == FP


def test_no_pytest_benchmark_no_problem(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SYNTHETIC.read_text())
    pytester.makepyfile(test_perf=TESTS)
    pytester.runpytest_subprocess("-p", "no:benchmark", "-k", "steady").assert_outcomes(passed=1)


def test_xdist_workers_measurements_reach_the_controllers_reports(pytester: pytest.Pytester,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With `-n 2` the workers measure and the controller reports: nothing may go missing on the way."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makeconftest(SYNTHETIC.read_text())
    pytester.makepyfile(test_perf=TESTS)
    pytester.runpytest_subprocess("--mgpu-update-baselines", "-k", "not new").assert_outcomes(passed=2)
    monkeypatch.setenv("SLOWER", "1.3")
    result = pytester.runpytest_subprocess("-n", "2", "--mgpu-report=out/perf.json", "--mgpu-summary=out/perf.md")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*= pytest-mgpu =*",
        "*test_perf.py::test_*",
        "*test_perf.py::test_*",
        "*test_perf.py::test_*",
        "findings:",
        "*test_new: [[]idle-devices[]]*",
        "warnings:",
        "*test_new: no baseline for vllm tp=4*",
    ])
    data = json.loads((pytester.path / "out" / "perf.json").read_text())
    by_test = {r["nodeid"].split("::")[1]: r for r in data["records"]}
    assert {k: r["outcome"] for k, r in by_test.items()} == {
        "test_steady": "pass", "test_slower": "regression", "test_new": "new"}
    slower = by_test["test_slower"]["verdict"]["metrics"][0]
    assert (slower["metric"], slower["outcome"]) == ("output_throughput_per_gpu", "regression")
    assert slower["change"] == pytest.approx(1 / 1.3 - 1)
    assert by_test["test_new"]["findings"][0]["code"] == "idle-devices"
    assert "regression" in (pytester.path / "out" / "perf.md").read_text()


def test_unreadable_worker_output_is_a_warning_not_a_crash(pytestconfig: pytest.Config) -> None:
    from pytest_mgpu.report.xdist import merge_worker_output
    from pytest_mgpu.session import MgpuSession

    session = MgpuSession(config=pytestconfig, settings=get_session(pytestconfig).settings)
    merge_worker_output(session, {"version": 1, "records": [{"nodeid": "t::x", "result": {"schema_version": 0}}]},
                        "gw3")
    merge_worker_output(session, "garbage", "gw4")
    assert session.records == []
    assert len(session.warnings) == 2
    assert session.warnings[0].startswith("xdist worker gw3: could not read its pytest-mgpu results (ValueError: ")
    assert "BenchResult schema_version 0 is not supported" in session.warnings[0]
    assert session.warnings[1] == ("xdist worker gw4 sent no pytest-mgpu results the controller can read (got str); "
                                   "its measurements are missing from the reports")


def test_verdicts_survive_the_trip_from_worker_to_controller() -> None:
    from pytest_mgpu.gate.compare import MetricVerdict, Outcome, Verdict

    verdict = Verdict(Outcome.REGRESSION, "vllm tp=2 pp=1 devices=2", FP, metrics=(
        MetricVerdict("output_throughput_per_gpu", "tok/s", "higher", 1000.0, 770.0, -0.23, 0.05, 0.01,
                      Outcome.REGRESSION, 3, 3),
        MetricVerdict("p99_ttft_ms", "ms", "lower", None, float("inf"), None, 0.5, None, Outcome.NEW)),
        baseline_path="baselines/x.json", version_changes=("vllm 0.31.0 -> 0.32.0",), notes=("refresh?",))
    back = Verdict.from_json(json.loads(json.dumps(verdict.to_json())))
    assert back == verdict


CRASHING = """
import os
from pytest_mgpu import Workload

W = Workload(input_len=8, output_len=4, num_prompts=4, max_concurrency=2)

def test_measures_then_its_worker_crashes(mgpu_engine, mgpu_bench):
    mgpu_bench(mgpu_engine(), W, repeats=1)
    os._exit(1)  # a segfault or the OOM killer, after the measurement was made

def test_measures(mgpu_engine, mgpu_bench):
    mgpu_bench(mgpu_engine(), W, repeats=1)
"""


def test_a_crashed_xdist_workers_measurements_are_recovered_and_the_crash_said(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lost measurements (issue 12): each worker spools its records after every measurement."""
    from pytest_mgpu.engines.launchers import TINY_MODEL
    from pytest_mgpu.testing import ScriptedServer

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makepyfile(test_crash=CRASHING)
    with ScriptedServer(root=str(TINY_MODEL)) as srv:
        result = pytester.runpytest_subprocess("-n", "2", "--mgpu-engine", "external",
                                               "--mgpu-base-url", srv.base_url, "--mgpu-report=out/perf.json",
                                               "--mgpu-summary=out/perf.md",
                                               # a private lock dir: no waiting on engines elsewhere on the box
                                               "--mgpu-lock-dir", str(pytester.path / "locks"), timeout=300)
    out = result.stdout.str()
    assert "crashed" in out and "recovered from its spool file" in out, out
    data = json.loads((pytester.path / "out" / "perf.json").read_text())
    nodeids = sorted(r["nodeid"].split("::")[1] for r in data["records"])
    assert nodeids == ["test_measures", "test_measures_then_its_worker_crashes"], nodeids
    assert any("crashed" in w and "1 measurement(s)" in w for w in data["warnings"]), data["warnings"]
    assert "recovered from its spool file" in (pytester.path / "out" / "perf.md").read_text()
