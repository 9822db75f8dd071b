"""`python -m pytest_mgpu topo`, the command table, the probe, and the real H100 capture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_mgpu import cli
from pytest_mgpu.hardware.fingerprint import fingerprint
from pytest_mgpu.hardware.snapshot import load_topology_file
from pytest_mgpu.hardware.topo_text import parse_topo_m

NVML_DATA = Path(__file__).parent.parent / "data" / "nvml"


def topo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_mgpu", "topo", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_text_output_is_a_topo_matrix_that_parses_back(topologies_dir: Path) -> None:
    path = topologies_dir / "a100-pcie-4x-nvlink-pairs.topo-m.txt"
    out = topo("--from", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "GPU0  X     NV12  SYS   SYS   0-31,64-95    0" in lines
    assert "Fingerprint: " + fingerprint(load_topology_file(path)).dirname in lines
    assert parse_topo_m(out.stdout).links == load_topology_file(path).links


def test_json_is_a_snapshot(topologies_dir: Path, tmp_path: Path) -> None:
    out = topo("--json", "--from", str(topologies_dir / "dgx-h100-8x-nv18-2numa.topo-m.txt"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["devices"]) == 8
    assert [len(row) for row in data["links"]] == [8] * 8
    assert all(data["links"][i][i] == "X" for i in range(8))
    assert data["links"][0][5] == "NVLINK"
    assert data["nvlink_lanes"][0][5] == 18
    assert data["fingerprint"]["label"] == "8xH100-80GB-NV18"
    snapshot = tmp_path / "box.json"
    snapshot.write_text(out.stdout)
    again = json.loads(topo("--json", "--from", str(snapshot)).stdout)
    assert again["fingerprint"] == data["fingerprint"]


def test_live_machine_through_nvml(fake_pynvml_dir: Path, tmp_path: Path, topology_of: Any,
                                   nvml_spec_of: Any) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(nvml_spec_of(topology_of("dgx-h100-8x-nv18-2numa.topo-m.txt"), nvswitch=True)))
    env = {"PYTHONPATH": str(fake_pynvml_dir), "FAKE_NVML_SPEC": str(spec)}
    out = topo(env=env)
    assert out.returncode == 0, out.stderr
    assert "GPU7  NV18  NV18  NV18  NV18  NV18  NV18  NV18  X" in out.stdout
    assert "NVLinks 18" in out.stdout
    assert "Source: nvml (driver 580.159.04, CUDA 13.0)" in out.stdout
    assert "Fingerprint: 8xH100-80GB-NV18-" in out.stdout
    probe = topo("--probe", env=env)
    # this machine's torch has no CUDA, so the probe explains itself instead of measuring
    assert probe.returncode == 1
    assert "cannot measure NCCL bus bandwidth: this PyTorch cannot use CUDA" in probe.stderr


def test_probe_without_gpus_says_why(fake_pynvml_dir: Path) -> None:
    out = topo("--probe", env={"PYTHONPATH": str(fake_pynvml_dir), "FAKE_NVML_SPEC": ""})
    assert out.returncode == 1
    assert "Source: cpu (no CUDA GPU: NVML did not start: NVML Shared Library Not Found)" in out.stdout
    assert "cannot measure NCCL bus bandwidth: this machine has no CUDA GPU" in out.stderr


def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    out = topo("--from", str(tmp_path / "missing.txt"))
    assert out.returncode == 2
    assert out.stderr.startswith("pytest-mgpu topo: cannot read topology file")


def test_command_table_is_the_only_place_to_add_a_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hello_cmd.py").write_text(
        "def register(subparsers):\n"
        "    p = subparsers.add_parser('hello', help='say hello')\n"
        "    p.set_defaults(func=lambda args: print('hello') or 7)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "hello", "hello_cmd")
    assert cli.main(["hello"]) == 7
    assert cli.main([]) == 2
    assert "hello" in capsys.readouterr().out


def test_probe_measures_a_pair_with_gloo(topology_of: Any) -> None:
    """The spawn/rendezvous/timing path of the NCCL probe, on CPU (NCCL itself needs 2 GPUs)."""
    pytest.importorskip("torch.distributed")
    from pytest_mgpu.hardware.probe import measure_pair

    result = measure_pair(topology_of("rtx4090-2x-sys-2numa.topo-m.txt"), 0, 1, backend="gloo",
                          size_bytes=1 << 20, iterations=3, timeout_s=120)
    assert (result.a, result.b, result.link) == (0, 1, "SYS")
    assert result.busbw_bytes_per_s > 0


def test_real_h100_capture_reads_the_same_everywhere() -> None:
    """Recorded on an H100 VM: the NVML snapshot and the nvidia-smi text give one fingerprint."""
    live = load_topology_file(NVML_DATA / "h100-single-vm.snapshot.json")
    text = load_topology_file(NVML_DATA / "h100-single-vm.recording.txt")
    device = live.devices[0]
    assert device.name == "NVIDIA H100 80GB HBM3"
    assert device.memory_bandwidth_bytes_per_s == pytest.approx(3.352e12, rel=1e-3)
    assert (device.nvlink_count, device.numa_node, device.cpus) == (None, 0, tuple(range(16)))
    assert text.devices[0].uuid == device.uuid
    assert fingerprint(live) == fingerprint(text)
    assert fingerprint(live).dirname == "1xH100-80GB-57615156"
    recorded = (NVML_DATA / "h100-single-vm.topo.txt").read_text().splitlines()
    assert recorded[-1] == "Fingerprint: 1xH100-80GB-57615156"


@pytest.mark.parametrize("name", ["h100-single-vm.nvml-idle.json", "h100-single-vm.nvml-load.json"])
def test_real_nvml_readings_are_complete(name: str) -> None:
    readings = json.loads((NVML_DATA / name).read_text())
    assert len(readings) == 10
    for r in readings:
        assert r["errors"] == {}
        assert r["max_mem_clock_mhz"] == 2619
        assert r["memory_total_bytes"] == 81559 * 2**20
    idle = json.loads((NVML_DATA / "h100-single-vm.nvml-idle.json").read_text())
    load = json.loads((NVML_DATA / "h100-single-vm.nvml-load.json").read_text())
    assert max(r["power_mw"] for r in load) > 5 * max(r["power_mw"] for r in idle)
    assert all(r["clocks_event_reasons"] & 1 for r in idle)  # bit 0: GPU idle
    assert all(r["compute_processes"] for r in load)


_ONE_CPU = {"index": 0, "kind": "cpu", "name": "cpu-cores", "cpus": [0]}
BAD_TOPOLOGIES = [
    pytest.param({"kind": "cpu", "devices": "abc", "links": []}, "'devices' must be a list, got 'abc'",
                 id="devices-not-a-list"),
    pytest.param({"kind": "cpu", "devices": [{**_ONE_CPU, "index": 5}, {**_ONE_CPU, "cpus": [1]}],
                  "links": [["X", "SYS"], ["SYS", "X"]]},
                 "device 0 ('cpu-cores') has index 5; expected the indices 0..1",
                 id="index-out-of-range"),
    pytest.param({"kind": "cpu", "devices": ["abc"], "links": [["X"]]}, "each device must be an object",
                 id="device-not-an-object"),
    pytest.param({"kind": "cpu", "devices": [_ONE_CPU], "links": [["X"]], "schema_version": True},
                 "schema_version must be an integer", id="schema-version-bool"),
]


@pytest.mark.parametrize(("snapshot", "problem"), BAD_TOPOLOGIES)
def test_bad_topology_file_is_one_line_and_exit_2(tmp_path: Path, snapshot: dict[str, Any], problem: str) -> None:
    path = tmp_path / "topo.json"
    path.write_text(json.dumps(snapshot))
    out = topo("--from", str(path))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert problem in out.stderr


def test_deeply_nested_topology_json_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "topo.json"
    path.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    out = topo("--from", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "nested too deeply" in out.stderr


@pytest.mark.parametrize(("snapshot", "problem"), BAD_TOPOLOGIES)
def test_bad_topology_file_is_a_usage_error_in_pytest(pytester: pytest.Pytester, snapshot: dict[str, Any],
                                                      problem: str) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    (pytester.path / "topo.json").write_text(json.dumps(snapshot))
    result = pytester.runpytest_subprocess("--mgpu-topology-file", "topo.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # not INTERNALERROR (3)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"*--mgpu-topology-file*{problem}*"])
