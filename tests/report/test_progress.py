"""Progress while engines start: plain periodic lines in CI logs (not a TTY), nothing under -q.

The in-place TTY line is captured in docs/engines.md (`script -q -c`), and the phases come from
real vLLM CPU log lines (engines/phases.py, tests/engines/test_phases.py).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from pytest_mgpu.engines.phases import PHASES

MUTE_CONFTEST = '''
import sys
from pytest_mgpu.engines import LaunchPlan

def mute_plan(request):
    return LaunchPlan(argv=(sys.executable, "-c", "import time; time.sleep(600)"), env={},
                      health_url=f"http://{request.host}:{request.port}/health")

def pytest_mgpu_engines(registry):
    registry.add("mute", "cpu", mute_plan)
'''


def _mute(pytester: pytest.Pytester, tmp_path: Path, *args: str) -> pytest.RunResult:
    pytester.makeconftest(MUTE_CONFTEST)
    pytester.makepyfile("def test_x(mgpu_engine):\n    mgpu_engine(tp=1, engine='mute')\n")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--mgpu-lock-dir={tmp_path}",
                                         "--mgpu-device=cpu", "--mgpu-start-timeout=4", *args)


def test_start_progress_is_shown_and_ended(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = _mute(pytester, tmp_path)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["pytest-mgpu: engine mute tp=1 pp=1 devices=1: starting, 1 s, starting",
                                 "pytest-mgpu: engine mute tp=1 pp=1 devices=1: failed after * s"])


def test_quiet_under_q(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = _mute(pytester, tmp_path, "-q")
    result.assert_outcomes(failed=1)
    assert "pytest-mgpu: engine" not in result.stdout.str()


def test_plain_lines_during_a_real_vllm_start(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The suite's tiny-model vLLM CPU engine at TP=1: lines every 15 s with the phase from its log."""
    pytester.makepyfile("def test_start(mgpu_engine):\n    assert mgpu_engine(tp=1).pid\n")
    # a loaded shared box has taken > 600 s to start it; the progress lines, not the start time, are checked
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--mgpu-lock-dir={tmp_path}",
                                           "--mgpu-device=cpu", "--mgpu-start-timeout=1500", timeout=1800)
    result.assert_outcomes(passed=1)
    lines = re.findall(r"pytest-mgpu: engine vllm tp=1 pp=1 devices=1: starting, (\d+) s, (.+)", result.stdout.str())
    assert len(lines) >= 2, result.stdout.str()
    seconds = [int(s) for s, _ in lines]
    assert seconds[0] <= 3 and all(b - a >= 14 for a, b in itertools.pairwise(seconds)), seconds  # ~15 s apart
    phases = {p for _, p in lines}
    assert phases - {"starting"} <= {p for p, _ in PHASES} and phases != {"starting"}, phases
    result.stdout.fnmatch_lines(["pytest-mgpu: engine vllm tp=1 pp=1 devices=1: healthy after * s",
                                 "*vllm tp=1 pp=1 devices=1: started in * s (compile cache *), stopped in *"])
