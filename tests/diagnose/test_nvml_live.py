"""The fixture layer's telemetry path on a real GPU (skipped where NVML sees none, as on CPU CI).

A PyTorch process started in its own session stands in for the engine (the pool starts engines
the same way): the sampler must find it on the GPU, see the GPU busy and count its energy, and
`enrich` must turn that into tokens per joule and, with a Llama-3.1-8B config, an MBU.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_mgpu.diagnose import diagnose
from pytest_mgpu.diagnose.enrich import enrich
from pytest_mgpu.hardware.errors import HardwareError
from pytest_mgpu.telemetry import start_telemetry

from .cases import result, server

COPY_LOOP = """
import time, torch
src = torch.empty(512 * 1024**2, device="cuda", dtype=torch.bfloat16)
dst = torch.empty_like(src)
dst.copy_(src)
torch.cuda.synchronize()
print("READY", flush=True)
end = time.time() + float(__import__("sys").argv[1])
while time.time() < end:
    dst.copy_(src)
    torch.cuda.synchronize()
"""


@pytest.fixture
def gpu_topology():  # type: ignore[no-untyped-def]
    from pytest_mgpu.hardware.nvml import read_topology

    try:
        return read_topology()
    except HardwareError as exc:
        pytest.skip(f"needs a GPU that NVML can see; {exc}")


def test_sampler_sees_a_gpu_process_busy_and_counts_its_energy(gpu_topology, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs PyTorch to put load on the GPU")
    proc = subprocess.Popen([sys.executable, "-c", COPY_LOOP, "8"], start_new_session=True,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        time.sleep(1)
        srv = server(gpu_topology, tp=1, pid=proc.pid)
        sampler = start_telemetry(gpu_topology, srv, interval_s=0.2)
        assert sampler is not None
        time.sleep(3)
        telemetry = sampler.stop()
    finally:
        proc.wait(timeout=60)
    d = telemetry.devices[0]
    print(json.dumps(telemetry.to_json(), indent=1))
    assert telemetry.notes == ()
    assert d.engine_present is True and d.other_pids == ()
    assert d.busy is not None and d.busy > 0.8
    assert d.energy_j is not None and d.energy_j > 0 and d.power_w_mean is not None and d.power_w_mean > 100
    assert [p.pid for p in telemetry.processes] == [proc.pid]
    llama = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 128256, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(llama))
    srv = server(gpu_topology, tp=1, pid=proc.pid, model=str(tmp_path))
    rich = enrich(result(srv, median_tpot_ms=6.42, output_throughput=2176.0), srv, gpu_topology, telemetry)
    print({k: rich.metrics[k] for k in ("mbu", "tpot_floor_ms", "tokens_per_joule", "device_busy_0")})
    assert 0.5 < rich.metrics["mbu"] < 1.0
    assert rich.metrics["tokens_per_joule"] == pytest.approx(2176.0 / rich.metrics["power_w_mean"])
    assert [f.code for f in diagnose(gpu_topology, srv, rich, telemetry)] in ([], ["throttled"])
