"""The plugin as users meet it: help text, option precedence, usage errors, import weight."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_mgpu.settings import OPTIONS


def test_help_lists_every_option_once(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    out = result.stdout.str()
    assert result.ret == 0
    for opt in OPTIONS:
        assert opt.cli in out, opt.cli
        assert opt.env in out, opt.env
        assert f"{opt.ini} (string):" in out or f"{opt.ini} (string)" in out, opt.ini
    result.stdout.fnmatch_lines(["*multi-GPU LLM inference performance (pytest-mgpu)*"])


_PROBE = """
from pytest_mgpu.session import get_session
def test_probe(request):
    s = get_session(request.config).settings
    print("RESOLVED", s.repeats, s.missing_baseline, s.tolerance)
"""


@pytest.mark.parametrize(
    ("ini", "env", "cli", "expected"),
    [
        ("", "", [], "RESOLVED 3 warn None"),
        ("mgpu_repeats = 5", "", [], "RESOLVED 5 warn None"),
        ("mgpu_repeats = 5", "7", [], "RESOLVED 7 warn None"),
        ("mgpu_repeats = 5", "7", ["--mgpu-repeats=9"], "RESOLVED 9 warn None"),
    ],
)
def test_precedence_cli_over_env_over_ini(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ini: str, env: str, cli: list[str], expected: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(_PROBE)
    if env:
        monkeypatch.setenv("PYTEST_MGPU_REPEATS", env)
    result = pytester.runpytest_subprocess("-s", *cli)
    result.stdout.fnmatch_lines([f"*{expected}*"])
    assert result.ret == 0


def test_tolerance_accepts_percent(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(_PROBE)
    result = pytester.runpytest_subprocess("-s", "--mgpu-tolerance=7.5%", "--mgpu-missing-baseline=skip")
    result.stdout.fnmatch_lines(["*RESOLVED 3 skip 0.075*"])


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--mgpu-repeats=0"], {}, "*invalid value '0' for command line --mgpu-repeats: expected an integer >= 1*"),
        ([], {"PYTEST_MGPU_ENGINE": "mlc"},
         "*unknown engine 'mlc' (--mgpu-engine, env PYTEST_MGPU_ENGINE or ini mgpu_engine); registered engines: "
         "vllm, sglang, trtllm, external*"),
        (["--mgpu-device=tpu"], {}, "*--mgpu-device: expected one of auto, cuda, cpu*"),
        (["--mgpu-engine=external"], {}, "*--mgpu-engine external needs --mgpu-base-url*"),
        (["--mgpu-base-url=http://127.0.0.1:1"], {}, "*--mgpu-base-url is only used with --mgpu-engine external*"),
    ],
)
def test_bad_values_are_usage_errors_naming_their_source(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], message: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()


def test_bad_ini_value_names_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmgpu_start_timeout = soon\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid value 'soon' for ini option mgpu_start_timeout in *tox.ini*"])


def test_import_loads_no_heavy_module() -> None:
    code = (
        "import sys, pytest_mgpu, pytest_mgpu.plugin, pytest_mgpu.fixtures;"
        "heavy = [m for m in ('torch', 'vllm', 'pynvml', 'tensorrt_llm', 'transformers') if m in sys.modules];"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_pytest_help_loads_no_heavy_module(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import sys\n"
        "def pytest_unconfigure():\n"
        "    print('HEAVY', [m for m in ('torch', 'vllm', 'pynvml', 'transformers') if m in sys.modules])\n"
    )
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["HEAVY []"])
