"""The fixture layer end to end: a user's test against a real vLLM CPU engine, TP=1 with both devices.

Telemetry must see the engine working on its first core group and not at all on the second,
the `idle-devices` finding must flow into the result and the JSON report, and
`--mgpu-fail-on idle-devices` must turn it into a test failure carrying its message and evidence.
"""

from __future__ import annotations

import json

import pytest

from pytest_mgpu.session import get_session

pytestmark = pytest.mark.engine

USER_TEST = '''
from pytest_mgpu import Workload

def test_all_visible(mgpu_engine, mgpu_bench):
    server = mgpu_engine(tp=1, devices=2)
    mgpu_bench(server, Workload(input_len=32, output_len=64, num_prompts=24, max_concurrency=8), repeats=1)
'''


@pytest.fixture
def no_outer_engines(request: pytest.FixtureRequest) -> None:
    """The inner pytest needs both devices: stop this session's own engines first."""
    pool = get_session(request.config).pool
    if pool is not None:
        pool.stop_all()


def test_usage_error_for_an_unknown_finding_code(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("--mgpu-fail-on", "idle-devices,idel-devices")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid value*--mgpu-fail-on*unknown finding code(s) idel-devices*"
                                 "expected a comma-separated list of*idle-devices*"])


def test_help_lists_the_fail_on_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--mgpu-fail-on=CODES*Finding codes that fail the test instead of only*"])


@pytest.mark.usefixtures("no_outer_engines")
def test_idle_devices_on_a_real_engine_fails_the_test_when_named_in_fail_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--mgpu-fail-on", "idle-devices",
                                           "--mgpu-report", "report.json", timeout=900)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*finding(s) named in --mgpu-fail-on for vllm tp=1 pp=1 devices=2*",
        "*[[]idle-devices[]] (warning) 2 devices are allocated to an engine of tp*pp=1: 1 sit idle*",
        "*evidence: {*\"allocated\": 2*",
    ])
    report = json.loads((pytester.path / "report.json").read_text())
    [record] = report["records"]
    metrics = record["result"]["summary"]
    assert metrics["device_busy_0"] > 0.2, metrics  # rank 0's core group ran the model
    assert metrics["device_busy_1"] < 0.05, metrics  # nothing of the engine ran on the second
    assert metrics["device_busy_min"] == metrics["device_busy_1"]
    assert "mbu" not in metrics  # no roofline on CPU devices
    [finding] = [f for f in record["findings"] if f["code"] == "idle-devices"]
    assert finding["evidence"]["no_engine_process_on"] == [1]
