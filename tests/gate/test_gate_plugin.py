"""The gate as users run it: pytest in a subprocess, baselines on disk, synthetic results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .synthetic import CONFTEST, FP

TEST = """
def test_perf(measured, mgpu_baseline):
    mgpu_baseline.check(measured())
"""


@pytest.fixture
def gate(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_perf=TEST)
    return pytester


def record(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = p.runpytest_subprocess("--mgpu-update-baselines", *args)
    result.assert_outcomes(passed=1)
    return result


def baseline_file(p: pytest.Pytester, test: str = "test_perf") -> Path:
    return p.path / "baselines" / FP / "test_perf" / f"{test}.json"


def test_record_then_unchanged_runs_pass(gate: pytest.Pytester) -> None:
    result = record(gate)
    result.stdout.fnmatch_lines(["*pytest-mgpu*", "*test_perf.py::test_perf*recorded*",
                                 f"*recorded as the baseline in baselines/{FP}/test_perf/test_perf.json*"])
    stored = json.loads(baseline_file(gate).read_text())
    assert stored["schema_version"] == 2
    (entry,) = stored["entries"].values()
    assert entry["samples"]["output_throughput_per_gpu"] == [1000.0, 1010.0, 990.0]
    for _ in range(3):
        again = gate.runpytest_subprocess()
        again.assert_outcomes(passed=1)
        again.stdout.fnmatch_lines(["*test_perf.py::test_perf*vllm tp=1*1000*4.00*pass*"])


def test_slowdown_fails_naming_the_metric(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    record(gate)
    monkeypatch.setenv("MGPU_SLOWDOWN", "1.2")
    result = gate.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*pytest-mgpu: regression: vllm tp=1 pp=1 devices=1 --load-format dummy on " + FP,
        "*metric*baseline*now*change*tolerance*p-value*verdict",
        "*output_throughput_per_gpu ?tok/s/device?*1000*833*-16.7% worse*±10%*0.050*regression",
        "*median_tpot_ms ?ms?*4.00*4.80*+20.0% worse*±10%*0.050*regression",
    ])
    out = result.stdout.str()
    assert "Traceback" not in out  # pytrace=False: the table is the whole story
    result.stdout.fnmatch_lines(["*test_perf*regression (output_throughput_per_gpu -16.7%, median_tpot_ms +20.0%)*"])


def test_small_slowdown_within_tolerance_passes(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    record(gate)
    monkeypatch.setenv("MGPU_SLOWDOWN", "1.05")
    gate.runpytest_subprocess().assert_outcomes(passed=1)


def test_improvement_passes_with_a_refresh_hint(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    record(gate)
    monkeypatch.setenv("MGPU_SLOWDOWN", "0.7")
    result = gate.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*improvement*", "*refresh the baseline with --mgpu-update-baselines*"])


def test_overlapping_samples_are_noise_not_failure(gate: pytest.Pytester) -> None:
    record(gate)
    gate.makepyfile(test_perf="""
def test_perf(measured, mgpu_baseline):
    v = mgpu_baseline.check(measured(tput=(850.0, 1005.0, 700.0), tpot=(4.0, 4.1, 3.9)))
    assert v.outcome.value == "noise"
""")
    result = gate.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*noise (output_throughput_per_gpu -15.0%)*", "*not significant*"])


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        (["--mgpu-tolerance=25%"], "passed"),
        ([], "failed"),
    ],
)
def test_tolerance_option(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: list[str],
                          expected: str) -> None:
    record(gate)
    monkeypatch.setenv("MGPU_SLOWDOWN", "1.2")
    gate.runpytest_subprocess(*how).assert_outcomes(**{expected: 1})


def test_check_tolerance_argument_beats_the_option(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    record(gate)
    gate.makepyfile(test_perf="""
def test_perf(measured, mgpu_baseline):
    mgpu_baseline.check(measured(), tolerance={"output_throughput_per_gpu": 0.3, "median_tpot_ms": 0.3})
""")
    monkeypatch.setenv("MGPU_SLOWDOWN", "1.2")
    gate.runpytest_subprocess("--mgpu-tolerance=1%").assert_outcomes(passed=1)


def test_tails_gate_only_when_asked(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    gate.makepyfile(test_perf="""
def test_perf(measured, mgpu_baseline):
    mgpu_baseline.check(measured(), metrics=["p99_ttft_ms"])
""")
    record(gate)
    monkeypatch.setenv("MGPU_SLOWDOWN", "1.2")  # +20% p99 TTFT: inside the tails' 25% tolerance
    gate.runpytest_subprocess().assert_outcomes(passed=1)
    monkeypatch.setenv("MGPU_SLOWDOWN", "1.4")
    result = gate.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*p99_ttft_ms ?ms?*50.0*70.0*+40.0% worse*±25%*regression"])


def test_engine_version_change_is_shown_next_to_the_verdict(gate: pytest.Pytester,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGPU_VLLM", "0.31.0")
    record(gate)
    monkeypatch.setenv("MGPU_VLLM", "0.32.0")
    monkeypatch.setenv("MGPU_SLOWDOWN", "1.2")
    result = gate.runpytest_subprocess()
    result.assert_outcomes(failed=1)  # same key: versions never split baselines
    result.stdout.fnmatch_lines(["*versions changed since the baseline: vllm 0.31.0 -> 0.32.0*"])


@pytest.mark.parametrize(
    ("policy", "outcome", "line"),
    [
        ("warn", {"passed": 1}, f"*test_perf: no baseline for vllm tp=1 pp=1 devices=1 --load-format dummy on {FP}*"),
        ("skip", {"skipped": 1}, "*SKIPPED*no baseline for vllm tp=1*record one with --mgpu-update-baselines*"),
        ("fail", {"failed": 1}, "*no baseline for vllm tp=1*(--mgpu-missing-baseline fail)*"),
    ],
)
def test_missing_baseline_policy(gate: pytest.Pytester, policy: str, outcome: dict[str, int], line: str) -> None:
    result = gate.runpytest_subprocess(f"--mgpu-missing-baseline={policy}", "-rs")
    result.assert_outcomes(**outcome)
    result.stdout.fnmatch_lines([line])
    assert not baseline_file(gate).exists()  # only --mgpu-update-baselines writes


def test_other_hardware_is_never_compared(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    record(gate)
    gate.makepyfile(test_perf="""
def test_perf(measured, mgpu_baseline):
    v = mgpu_baseline.check(measured(fingerprint="1xH100-SXM-abc123", scale=3.0))
    assert v.outcome.value == "new"
""")
    gate.runpytest_subprocess().assert_outcomes(passed=1)


@pytest.mark.parametrize("content", ["{ truncated", '{"benchmarks": []}'])
def test_corrupt_baseline_is_a_test_error_not_internalerror(gate: pytest.Pytester, content: str) -> None:
    path = baseline_file(gate)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    result = gate.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    result.stdout.fnmatch_lines([f"*BaselineError: baseline file *{path.name}*--mgpu-update-baselines*"])


def test_several_configurations_share_one_file(gate: pytest.Pytester) -> None:
    gate.makepyfile(test_perf="""
import pytest
@pytest.mark.parametrize("tp", [1, 2])
def test_cfg(measured, mgpu_baseline, tp):
    mgpu_baseline.check(measured(tp=tp))

def test_both(measured, mgpu_baseline):
    mgpu_baseline.check(measured(tp=1))
    mgpu_baseline.check(measured(tp=2))
""")
    gate.runpytest_subprocess("--mgpu-update-baselines").assert_outcomes(passed=3)
    both = json.loads(baseline_file(gate, "test_both").read_text())
    assert sorted(e["spec"]["tp"] for e in both["entries"].values()) == [1, 2]
    assert baseline_file(gate, "test_cfg[1]").exists()
    assert baseline_file(gate, "test_cfg[2]").exists()
    gate.runpytest_subprocess().assert_outcomes(passed=3)


def test_unknown_metric_is_a_clear_error(gate: pytest.Pytester) -> None:
    gate.makepyfile(test_perf="""
def test_perf(measured, mgpu_baseline):
    mgpu_baseline.check(measured(), metrics=["p99_tpot"])
""")
    result = gate.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*UnknownMetricError: unknown metric 'p99_tpot'; known metrics:*"])


def test_two_pytest_processes_recording_at_once_keep_both_entries(gate: pytest.Pytester) -> None:
    gate.makepyfile(test_perf="""
import time
def test_perf(measured, mgpu_baseline):
    for i in range(10):  # many read-modify-writes, so the two processes interleave
        mgpu_baseline.check(measured(tput=(1000.0 + i, 1010.0, 990.0)))
""")
    procs = []
    for tp in ("1", "2"):
        env = {**os.environ, "MGPU_TP": tp}
        procs.append(subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                       "--mgpu-update-baselines"], cwd=gate.path, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    stored = json.loads(baseline_file(gate).read_text())
    assert sorted(e["spec"]["tp"] for e in stored["entries"].values()) == [1, 2]


def test_findings_are_named_under_the_table(gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    record(gate)
    gate.makepyfile(test_perf="""
from pytest_mgpu.findings import Finding, Severity

def test_perf(measured, mgpu_baseline):
    lag = Finding("client-bound", Severity.WARNING, "the load generator set the pace")
    mgpu_baseline.check(measured(scale=1.3, findings=(lag,)))
""")
    result = gate.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*regression*", "the measurement has findings (client-bound)*"])


def test_baselines_only_for_other_hardware_say_gate_off_and_which_fact_changed(
        gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail-open gate (issue 12): a new fingerprint is named, with the stored facts that differ."""
    gate.makepyfile(test_perf="""
import os
def test_perf(measured, mgpu_baseline):
    n = int(os.environ.get("MGPU_COUNT", "2"))
    mgpu_baseline.check(measured(fingerprint=f"{n}xCPU-1core-NODE-{n}", facts={"count": n, "cpu_model": "EPYC"}))
""")
    record(gate)
    gate.runpytest_subprocess().assert_outcomes(passed=1)  # same hardware: compared, no warning
    monkeypatch.setenv("MGPU_COUNT", "4")
    result = gate.runpytest_subprocess("--mgpu-summary", "summary.md")
    result.assert_outcomes(passed=1)  # warn is the default policy, but loudly
    result.stdout.fnmatch_lines([
        "*GATE OFF: no baseline for vllm tp=1* on 4xCPU-1core-NODE-4*baselines exist for hardware "
        "2xCPU-1core-NODE-2*this machine differs in count: 2 -> 4*",
    ])
    assert "cpu_model" not in result.stdout.str().split("GATE OFF")[1].split("\n")[0]  # unchanged facts unnamed
    md = (gate.path / "summary.md").read_text()
    assert "GATE OFF" in md and "count: 2 -> 4" in md
    failing = gate.runpytest_subprocess("--mgpu-missing-baseline", "fail")  # the nightly workflow's policy
    failing.assert_outcomes(failed=1)


def test_changed_engine_args_on_the_same_hardware_name_the_changed_field(gate: pytest.Pytester,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    record(gate)
    monkeypatch.setenv("MGPU_TP", "2")
    result = gate.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*GATE OFF*this hardware has 1 baseline(s) for this test*"
                                 "nearest differs in spec.n_devices: 1 -> 2; spec.tp: 1 -> 2*"])


def test_unwritable_baselines_dir_keeps_the_measurement_in_the_reports(gate: pytest.Pytester) -> None:
    (gate.path / "not-a-dir").write_text("a file where the baselines directory should be\n")
    result = gate.runpytest_subprocess("--mgpu-update-baselines", "--mgpu-baselines", "not-a-dir/baselines",
                                       "--mgpu-report", "report.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*could not write the baseline*under the baselines directory*not-a-dir/baselines*"
                                 "the measurement is in the reports*"])
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()
    report = json.loads((gate.path / "report.json").read_text())
    (measurement,) = report["records"]
    assert measurement["result"]["summary"]["output_throughput_per_gpu"] == 1000.0
    assert "could not write the baseline" in " ".join(measurement["verdict"]["notes"])
