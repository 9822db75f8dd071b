"""SGLang: its command line (unit), and its lifecycle through the pool with a stand-in server.

SGLang has no CPU build we can install, so the lifecycle runs a stand-in `sglang` package put on
PYTHONPATH: its `sglang/launch_server.py` parses SGLang's flags, records what it was given,
starts a child "scheduler" (as SGLang does) and serves the scripted streaming server. The
inner pytest run is a user's: `--mgpu-engine sglang` on a recorded CUDA topology.
The real server is measured on a GPU host by perf_tests/gpu (see docs/engines.md).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from pytest_mgpu.engines.launchers import TINY_MODEL, LaunchRequest, sglang_plan
from pytest_mgpu.engines.process import EngineStartError
from pytest_mgpu.engines.spec import EngineSpec
from pytest_mgpu.hardware.snapshot import load_topology_file
from pytest_mgpu.hardware.topology import Device

TOPOLOGIES = Path(__file__).parents[1] / "data" / "topologies"
DGX = "dgx-h100-8x-nv18-2numa.topo-m.txt"  # recorded `nvidia-smi topo -m` with GPU UUIDs


def _gpu(i: int, uuid: str = "") -> Device:
    return Device(index=i, kind="cuda", name="NVIDIA H200", uuid=uuid)


def _flag(argv: tuple[str, ...], name: str) -> str:
    assert argv.count(name) == 1, f"{name} appears {argv.count(name)} times in {argv}"
    return argv[argv.index(name) + 1]


def _site_env() -> tuple[tuple[str, str], ...]:
    return (("PYTHONPATH", "/opt/sglang-site"),)  # the engine's own site: no import check here


def test_sglang_command_follows_its_documentation(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    spec = EngineSpec("sglang", str(tmp_path), tp=2, pp=2, n_devices=4, device_kind="cuda", env=_site_env())
    plan = sglang_plan(LaunchRequest(spec, tuple(_gpu(i, f"GPU-{i}") for i in (4, 5, 6, 7)), port=30001))
    assert plan.argv[:3] == (sys.executable, "-m", "sglang.launch_server")
    assert _flag(plan.argv, "--model-path") == str(tmp_path)
    assert _flag(plan.argv, "--served-model-name") == tmp_path.name
    assert _flag(plan.argv, "--tp-size") == "2" and _flag(plan.argv, "--pp-size") == "2"
    assert _flag(plan.argv, "--host") == "127.0.0.1" and _flag(plan.argv, "--port") == "30001"
    assert _flag(plan.argv, "--sampling-backend") == "pytorch"
    assert _flag(plan.argv, "--grammar-backend") == "none"
    assert "--load-format" not in plan.argv  # real weights
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "GPU-4,GPU-5,GPU-6,GPU-7"
    assert plan.env["NCCL_NVLS_ENABLE"] == "0" and plan.env["PYTHONPATH"] == "/opt/sglang-site"
    assert plan.health_url == "http://127.0.0.1:30001/health"


def test_sglang_user_args_pass_through_and_override_defaults() -> None:
    spec = EngineSpec("sglang", "meta-llama/Llama-3.1-8B", tp=1, n_devices=1, device_kind="cuda", env=_site_env(),
                      extra_args=("--load-format", "dummy", "--sampling-backend=flashinfer", "--mem-fraction-static",
                                  "0.8"))
    plan = sglang_plan(LaunchRequest(spec, (_gpu(2),), port=1))
    assert plan.argv[-5:] == ("--load-format", "dummy", "--sampling-backend=flashinfer", "--mem-fraction-static",
                              "0.8")
    assert "--sampling-backend" not in plan.argv  # the user's --sampling-backend=... wins
    assert _flag(plan.argv, "--load-format") == "dummy"  # once, the user's
    assert _flag(plan.argv, "--grammar-backend") == "none"
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "2"  # no UUID recorded: the index


def test_sglang_weightless_model_gets_dummy_weights() -> None:
    spec = EngineSpec("sglang", str(TINY_MODEL), tp=1, n_devices=1, device_kind="cuda", env=_site_env())
    plan = sglang_plan(LaunchRequest(spec, (_gpu(0),), port=1))
    assert _flag(plan.argv, "--load-format") == "dummy"


def test_sglang_on_cpu_says_it_needs_cuda() -> None:
    spec = EngineSpec("sglang", "/m", device_kind="cpu")
    with pytest.raises(EngineStartError, match="SGLang needs CUDA"):
        sglang_plan(LaunchRequest(spec, (Device(index=0, kind="cpu", name="CPU", cpus=(0,)),), port=1))


def test_sglang_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "sglang" not in p])
    spec = EngineSpec("sglang", "/m", device_kind="cuda")
    if any((Path(p) / "sglang").exists() for p in sys.path if p):
        pytest.fail("this check needs a Python without sglang; found one on sys.path")
    with pytest.raises(EngineStartError, match=r"'sglang' is not installed.*pytest-mgpu\[sglang\]"):
        sglang_plan(LaunchRequest(spec, (_gpu(0),), port=1))


# --- the lifecycle, with a stand-in sglang ------------------------------------------------------

LAUNCH_SERVER = '''
"""Stand-in for `python -m sglang.launch_server`: SGLang's flags, a scheduler child, a scripted server."""
import argparse, json, os, subprocess, sys

p = argparse.ArgumentParser()
for flag in ("--model-path", "--served-model-name", "--tp-size", "--pp-size", "--host", "--port",
             "--sampling-backend", "--grammar-backend", "--load-format"):
    p.add_argument(flag, required=flag not in ("--load-format",))
args, rest = p.parse_known_args()
scheduler = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])  # SGLang's scheduler
with open(os.environ["FAKE_SGLANG_RECORD"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                        "server_pid": os.getpid(), "scheduler_pid": scheduler.pid}) + "\\n")
from pytest_mgpu.testing.scripted_server import main
main(["--host", args.host, "--port", args.port, "--model", args.served_model_name,
      "--script", json.dumps({"default": {"ttft_s": 0.02, "itl_s": 0.002}})])
'''

INNER_TEST = '''
from pytest_mgpu import Workload

def test_sglang_end_to_end(mgpu_engine, mgpu_bench):
    server = mgpu_engine(tp=2)
    print("SERVER", server.pid, list(server.devices), server.versions, server.startup_s, flush=True)
    assert mgpu_engine(tp=2).pid == server.pid  # the pool reuses it
    result = mgpu_bench(server, Workload(input_len=16, output_len=8, num_prompts=8, max_concurrency=4), repeats=1)
    assert result.failed == 0 and result.completed == 8
    print("METRICS", result.metrics["output_throughput"] > 0, flush=True)
'''


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sglang_lifecycle_through_the_pool(pytester: pytest.Pytester, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    (site / "sglang").mkdir(parents=True)
    (site / "sglang" / "__init__.py").write_text("")
    (site / "sglang" / "launch_server.py").write_text(LAUNCH_SERVER)
    dist = site / "sglang-0.5.17.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sglang\nVersion: 0.5.17\n")
    record = tmp_path / "record.jsonl"
    repo = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), repo, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FAKE_SGLANG_RECORD", str(record))
    pytester.makepyfile(INNER_TEST)
    result = pytester.runpytest_subprocess(
        "-s", "-p", "no:cacheprovider", "--mgpu-engine=sglang", f"--mgpu-lock-dir={tmp_path / 'locks'}",
        f"--mgpu-topology-file={TOPOLOGIES / DGX}", "--mgpu-repeats=1",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*sglang tp=2 pp=1 devices=2: started in *"])
    started = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(started) == 1, started  # one engine, reused
    run = started[0]
    argv = run["argv"]
    assert argv[argv.index("--tp-size") + 1] == "2" and argv[argv.index("--pp-size") + 1] == "1"
    assert argv[argv.index("--sampling-backend") + 1] == "pytorch"
    assert argv[argv.index("--load-format") + 1] == "dummy"  # the bundled tiny model has no weights
    found = re.search(r"SERVER (\d+) (\[[\d, ]*\]) (.*)", result.stdout.str())
    assert found, result.stdout.str()
    pid, devices, server_line = int(found[1]), json.loads(found[2]), found[3]
    assert pid == run["server_pid"]
    recorded = load_topology_file(TOPOLOGIES / DGX)
    assert run["cuda_visible_devices"] == ",".join(recorded.devices[i].uuid for i in devices)  # leased, by UUID
    assert "'sglang': '0.5.17'" in server_line
    assert not _alive(run["server_pid"]) and not _alive(run["scheduler_pid"]), "the scheduler outlived its engine"


def test_sglang_version_is_read_from_the_engines_own_site(tmp_path: Path) -> None:
    from pytest_mgpu.engines.pool import _engine_versions

    dist = tmp_path / "sglang-0.5.17.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sglang\nVersion: 0.5.17\n")
    spec = EngineSpec("sglang", "/m", device_kind="cuda", env=(("PYTHONPATH", f"{tmp_path}{os.pathsep}/nowhere"),))
    assert _engine_versions(spec) == {"sglang": "0.5.17", "distribution": "sglang"}
