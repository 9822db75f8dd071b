"""Nothing secret leaves the process, end to end on real vLLM (CPU build).

An inner pytest starts the engine with `--api-key` in its args and a token in its env, measures
it through `mgpu_bench` (so the key must reach vLLM's real auth as a Bearer token), records a
baseline and writes every report; then every file the run wrote and everything it printed is
searched for the secrets. One engine start (about a minute on a 2-core box).
"""

from __future__ import annotations

import pytest

from pytest_mgpu.hardware.leasing import default_lock_dir

pytestmark = pytest.mark.engine

API_KEY = "sk-mgpu-secret-api-key-7f3a91"
ENV_TOKEN = "hf_mgpu_secret_env_token_b2c4d6"
CLI_KEY = "sk-mgpu-secret-cli-key-e5d1c0"  # --mgpu-api-key: the engine's own --api-key wins, never printed

INNER = f"""
import urllib.error, urllib.request
from pytest_mgpu.bench.workload import Workload

def test_secret_engine(mgpu_engine, mgpu_bench, mgpu_baseline):
    server = mgpu_engine(tp=1, extra_args=("--api-key", {API_KEY!r}), env={{"HF_TOKEN": {ENV_TOKEN!r}}})
    try:  # vLLM really demands the key: a request without it is refused
        urllib.request.build_opener(urllib.request.ProxyHandler({{}})).open(server.base_url + "/v1/models")
        raise AssertionError("vLLM answered /v1/models without the API key")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401, exc.code
    result = mgpu_bench(server, Workload(input_len=16, output_len=8, num_prompts=4, max_concurrency=2), repeats=1)
    assert result.metrics["completed"] == 4, result.metrics
    mgpu_baseline.check(result)
"""


def test_no_secret_in_any_file_or_output(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_secret=INNER)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rA", "--mgpu-update-baselines", "--mgpu-report=reports/perf.json",
        "--mgpu-summary=reports/summary.md", "--junitxml=reports/junit.xml", f"--mgpu-api-key={CLI_KEY}",
        "--mgpu-start-timeout=1200",
        timeout=1500,  # a busy shared box: the engine waits its turn for devices and quiet time
    )
    result.assert_outcomes(passed=1)
    reports = pytester.path / "reports"
    written = {p.name for p in reports.iterdir()}
    assert {"perf.json", "perf.benchmark.json", "summary.md", "junit.xml"} <= written, written
    baselines = list((pytester.path / "baselines").rglob("*.json"))
    assert baselines, "no baseline was recorded"
    logs = list(pytester.path.rglob("engine-*.log"))
    assert logs, "no engine log under the run's directory"
    assert "--api-key ***" in logs[0].read_text()  # the argv line is there, masked
    # what the reports say about the engine: its args, with the value masked
    assert "--api-key ***" in (reports / "summary.md").read_text() + (reports / "perf.json").read_text()

    planted = pytester.path / "test_secret.py"  # our own input: the only file that may hold the secrets
    files = [p for p in pytester.path.rglob("*") if p.is_file() and p != planted]
    files += [p for p in default_lock_dir().glob("*") if p.is_file()]
    assert len(files) > 8, files
    outputs = {"stdout": result.stdout.str(), "stderr": result.stderr.str()}
    for secret in (API_KEY, ENV_TOKEN, CLI_KEY):
        leaks = [str(p) for p in files if secret.encode() in p.read_bytes()]
        leaks += [name for name, text in outputs.items() if secret in text]
        assert not leaks, f"secret {secret[:6]}... found in {leaks}"
