"""What pytest-mgpu does not trust: whatever answers on a port, proxies from the environment, user args
that move the engine's address, and the secrets in an engine's args and env (real processes throughout)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mgpu import probe_http
from pytest_mgpu.bench.runner import external_server, run_bench
from pytest_mgpu.bench.workload import Workload
from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.engines.pool import EnginePool
from pytest_mgpu.engines.process import EngineProcess, EngineStartError, LaunchPlan, free_port
from pytest_mgpu.engines.spec import EngineSpec
from pytest_mgpu.hardware.cpu import cpu_topology
from pytest_mgpu.testing.scripted_server import Behavior, Script, ScriptedServer

FAKE = str(Path(__file__).with_name("fake_engine.py"))
SECRET = "sk-untrusted-test-0123456789"
ENV_SECRET = "hf_untrusted_env_abcdef"

# Answers 200 to every GET: on /health only with the right Bearer key when one is given as --api-key.
HTTP_200 = """
import http.server, sys
port, key = int(sys.argv[1]), (sys.argv[3] if len(sys.argv) > 3 else None)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = key is None or self.headers.get("Authorization") == "Bearer " + key
        self.send_response(200 if ok else 401)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def _wait_listening(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listened on port {port} within {timeout_s} s")


@pytest.fixture
def foreign_server() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A plain HTTP server in another process, answering 200, on a free port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", HTTP_200, str(port)])
    try:
        _wait_listening(port)
        yield port, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_foreign_server_on_the_port_is_not_taken_for_the_engine(
        tmp_path: Path, foreign_server: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, foreign = foreign_server
    engine = EngineProcess(LaunchPlan(argv=("sleep", "30"), env={}, health_url=f"http://127.0.0.1:{port}/health"),
                           tmp_path / "engine.log")
    t0 = time.monotonic()
    with pytest.raises(EngineStartError, match=rf"someone else answers on port {port}: pid {foreign.pid} \(.*python"):
        engine.start(timeout_s=60)
    assert time.monotonic() - t0 < 15  # at once, not after the start timeout
    assert engine.pid is None and not engine.alive()
    assert foreign.poll() is None  # not ours to kill


def test_the_engines_own_listener_is_accepted_and_the_api_key_reaches_health(tmp_path: Path) -> None:
    port = free_port()
    argv = (sys.executable, "-c", HTTP_200, str(port), "--api-key", SECRET)
    engine = EngineProcess(LaunchPlan(argv=argv, env={}, health_url=f"http://127.0.0.1:{port}/health"),
                           tmp_path / "engine.log")
    engine.start(timeout_s=60)  # the server answers 401 without `Authorization: Bearer SECRET`
    try:
        assert engine.healthy()
    finally:
        engine.stop()
    log = engine.log_path.read_text()  # the server prints nothing: all of it is our `$ argv` line
    assert log.startswith("$ ") and "--api-key ***" in log and SECRET not in log


def test_secrets_stay_out_of_the_argv_line_and_the_error_message(tmp_path: Path) -> None:
    echo = "import os, sys; print('args', sys.argv, 'token', os.environ['HF_TOKEN'], flush=True); sys.exit(3)"
    plan = LaunchPlan(argv=(sys.executable, "-c", echo, "--hf-token", SECRET), env={"HF_TOKEN": ENV_SECRET},
                      health_url=f"http://127.0.0.1:{free_port()}/health")
    engine = EngineProcess(plan, tmp_path / "engine.log")
    with pytest.raises(EngineStartError, match="exited with code 3") as err:
        engine.start(timeout_s=60)
    message = str(err.value)
    assert "token ***" in message  # the log tail is there, masked
    assert SECRET not in message and ENV_SECRET not in message
    assert SECRET not in engine.log_path.read_text().splitlines()[0]


def test_probes_and_the_load_generator_bypass_proxies_for_loopback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = free_port()  # nothing listens: a proxy there fails every request sent through it
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{dead}")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    port = free_port()
    engine = EngineProcess(LaunchPlan(argv=(sys.executable, FAKE, str(port), "ok"), env={},
                                      health_url=f"http://127.0.0.1:{port}/health"), tmp_path / "engine.log")
    engine.start(timeout_s=60)
    engine.stop()
    assert not probe_http.is_loopback("http://example.com/v1/models")  # a remote server keeps its proxy
    with ScriptedServer(Script(default=Behavior(ttft_s=0.001, itl_s=0.001)), root=str(TINY_MODEL)) as scripted:
        server = external_server(scripted.base_url, api_key=SECRET)  # /v1/models, then the load generator
        result = run_bench(server, Workload(input_len=8, output_len=4, num_prompts=4, max_concurrency=2),
                           repeats=1)
    assert result.metrics["completed"] == 4


def test_host_or_port_in_engine_args_is_refused_without_the_override(tmp_path: Path) -> None:
    pool = EnginePool(cpu_topology(cpus=[0], numa={0: 0}), lambda n, prefer, timeout_s: None,  # type: ignore
                      tmp_path, 30)
    for args in (("--host", "0.0.0.0"), ("--port=8000",)):
        with pytest.raises(EngineStartError, match=r"engine args carry --(host|port).*--mgpu-allow-host-override"):
            pool.get(EngineSpec(engine="vllm", model="m", extra_args=args))


OVERRIDE_CONFTEST = f"""
import sys
from pytest_mgpu.engines import LaunchPlan

def _fake(req):  # stands in for a launcher that appends the user's args after its own --host/--port
    return LaunchPlan(argv=(sys.executable, {FAKE!r}, str(req.port), "ok", *req.spec.extra_args), env={{}},
                      health_url=f"http://{{req.host}}:{{req.port}}/health")

def pytest_mgpu_engines(registry):
    registry.add("fake", "cpu", _fake)
"""


def test_host_override_is_allowed_only_by_the_option_and_then_warned_about(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest(OVERRIDE_CONFTEST)
    pytester.makepyfile("def test_exposed(mgpu_engine):\n"
                        "    mgpu_engine(tp=1, engine='fake', extra_args=('--host', '0.0.0.0'))\n")
    args = ("-p", "no:cacheprovider", f"--mgpu-lock-dir={tmp_path}", "--mgpu-summary=summary.md")
    refused = pytester.runpytest_subprocess(*args)
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(["*engine args carry --host*--mgpu-allow-host-override*"])
    allowed = pytester.runpytest_subprocess(*args, "--mgpu-allow-host-override")
    allowed.assert_outcomes(passed=1)
    allowed.stdout.fnmatch_lines(["*engine args override --host for fake tp=1 pp=1 devices=1 --host 0.0.0.0*"])
    assert "override --host" in (pytester.path / "summary.md").read_text()
