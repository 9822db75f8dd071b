"""The decode roofline against the worked numbers of the research notes and the H100 measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_mgpu.diagnose.enrich import enrich
from pytest_mgpu.diagnose.roofline import (
    ModelShape,
    RooflineUnavailable,
    decode_load,
    estimate,
    load_config,
    peak_bandwidth,
    tpot_floor,
)
from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.hardware.topology import Device

from .cases import as_cpu, h100_topology, recorded_telemetry, result, server, topology

LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
LLAMA_70B = {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
             "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def gpu(name: str, bandwidth: float | None = None) -> Device:
    return Device(index=0, kind="cuda", name=name, memory_bandwidth_bytes_per_s=bandwidth)


def test_llama_8b_on_h100_floor_and_mbu_match_the_measurement() -> None:
    """/work/shared/gpu: 16.06 GB of weights -> 4.79 ms on an H100; TPOT 6.42 ms at concurrency 1 -> MBU 0.75."""
    shape = ModelShape.from_config(LLAMA_8B)
    assert shape.params == pytest.approx(8.03e9, rel=1e-3)
    assert shape.weight_bytes / 1e9 == pytest.approx(16.06, abs=0.005)
    assert shape.kv_bytes_per_token == 131072
    bw = peak_bandwidth(gpu("NVIDIA H100 80GB HBM3"))
    assert bw == 3.35e12
    weights_only = tpot_floor(shape, bw)
    assert weights_only.tpot_floor_ms == pytest.approx(4.79, abs=0.005)
    at_c1 = tpot_floor(shape, bw, batch=1, context_tokens=128 + 64)  # 128 in, half of 128 out on average
    assert at_c1.mbu(6.42) == pytest.approx(0.75, abs=0.005)


@pytest.mark.parametrize(("config", "name", "tp", "floor_ms"), [
    (LLAMA_8B, "NVIDIA A100-SXM4-80GB", 1, 7.88),
    (LLAMA_8B, "NVIDIA H100 80GB HBM3", 2, 2.40),
    (LLAMA_8B, "NVIDIA H100 80GB HBM3", 4, 1.20),
    (LLAMA_8B, "NVIDIA H200", 1, 3.35),
    (LLAMA_8B, "NVIDIA L4", 1, 53.5),
    (LLAMA_8B, "NVIDIA L4", 2, 26.8),
    (LLAMA_8B, "NVIDIA GeForce RTX 4090", 1, 15.9),
    (LLAMA_70B, "NVIDIA H100 80GB HBM3", 4, 10.5),
    (LLAMA_70B, "NVIDIA H100 80GB HBM3", 8, 5.26),
    (LLAMA_70B, "NVIDIA H200", 8, 3.67),
])
def test_worked_floors_of_the_research_notes(config: dict, name: str, tp: int, floor_ms: float) -> None:
    bw = peak_bandwidth(gpu(name))
    assert bw is not None
    assert tpot_floor(ModelShape.from_config(config), bw, tp=tp).tpot_floor_ms == pytest.approx(floor_ms, rel=0.01)


def test_kv_cache_read_adds_to_the_floor() -> None:
    """8B, 32 sequences of 2048 tokens: +8.59 GB of KV per step -> +2.56 ms on an H100 (7.35 ms in all)."""
    roof = tpot_floor(ModelShape.from_config(LLAMA_8B), 3.35e12, batch=32, context_tokens=2048)
    assert roof.kv_bytes_per_step / 1e9 == pytest.approx(8.59, abs=0.01)
    assert roof.tpot_floor_ms == pytest.approx(7.35, abs=0.01)
    # KV heads shard over at most n_kv_heads ranks; weights over every rank; PP does not shorten a token
    tp16 = tpot_floor(ModelShape.from_config(LLAMA_8B), 3.35e12, tp=16, batch=32, context_tokens=2048)
    assert tp16.tpot_floor_ms == pytest.approx((16.06e9 / 16 + 8.59e9 / 8) / 3.35e12 * 1000, rel=1e-3)
    pp2 = tpot_floor(ModelShape.from_config(LLAMA_8B), 3.35e12, tp=1, pp=2)
    assert pp2.tpot_floor_ms == pytest.approx(4.79, abs=0.005)


def test_bandwidth_prefers_nvml_and_knows_the_table() -> None:
    assert peak_bandwidth(gpu("NVIDIA H100 80GB HBM3", 3.35232e12)) == 3.35232e12  # the recorded H100's NVML
    assert peak_bandwidth(h100_topology().devices[0]) == pytest.approx(3.352e12, rel=1e-3)
    assert peak_bandwidth(gpu("NVIDIA H100 PCIe")) == 2.0e12
    assert peak_bandwidth(gpu("NVIDIA A100 80GB PCIe")) == 1.94e12
    assert peak_bandwidth(gpu("NVIDIA A100-SXM4-40GB")) == 1.555e12
    assert peak_bandwidth(gpu("NVIDIA L40S")) is None  # not L4: unknown, so no floor


def test_shapes_from_real_configs_and_what_is_not_modelled(tmp_path: Path) -> None:
    tiny = ModelShape.from_config(load_config(str(TINY_MODEL)))
    assert (tiny.num_layers, tiny.hidden_size, tiny.num_kv_heads, tiny.head_dim) == (4, 128, 2, 32)
    assert ModelShape.from_config({**LLAMA_8B, "tie_word_embeddings": True}).params == \
        ModelShape.from_config(LLAMA_8B).params - 128256 * 4096
    assert ModelShape.from_config(LLAMA_8B, ["--dtype", "float32"]).weight_bytes_per_param == 4.0
    assert ModelShape.from_config({**LLAMA_8B, "torch_dtype": "float32"}).weight_bytes_per_param == 2.0
    fp8 = ModelShape.from_config({**LLAMA_8B, "quantization_config": {"quant_method": "fp8"}},
                                 ["--kv-cache-dtype", "fp8"])
    assert (fp8.weight_bytes_per_param, fp8.kv_bytes_per_value) == (1.0, 1.0)
    with pytest.raises(RooflineUnavailable, match="mixture-of-experts"):
        ModelShape.from_config({**LLAMA_8B, "num_local_experts": 8})
    with pytest.raises(RooflineUnavailable, match="awq"):
        ModelShape.from_config({**LLAMA_8B, "quantization_config": {"quant_method": "awq"}})
    with pytest.raises(RooflineUnavailable, match=r"no config\.json"):
        load_config(str(tmp_path))


def test_decode_load_from_littles_law() -> None:
    # 10 req/s x 1.6 s in the system = 16 in flight; 128 in + 128/2 out of context on average
    batch, context = decode_load({"completed": 64, "request_throughput": 10.0, "mean_e2el_ms": 1600.0,
                                  "total_input_tokens": 64 * 128, "total_output_tokens": 64 * 128}, 64)
    assert (batch, context) == (pytest.approx(16.0), pytest.approx(192.0))
    assert decode_load({"completed": 64, "request_throughput": 10.0, "mean_e2el_ms": 1600.0}, 4)[0] == 4.0
    assert decode_load({}, None) == (1.0, 0.0)


def test_enrich_adds_mbu_busy_energy_and_tokens_per_joule(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    topo = h100_topology()
    srv = server(topo, tp=1, model=str(tmp_path))
    base = result(srv, median_tpot_ms=6.42, output_throughput=2176.0)
    telemetry = recorded_telemetry("h100-copy")
    rich = enrich(base, srv, topo, telemetry)
    m = rich.metrics
    assert m["mbu"] == pytest.approx(m["tpot_floor_ms"] / 6.42)
    assert 0.7 < m["mbu"] < 0.8
    assert m["device_busy_0"] == m["device_busy_min"] == pytest.approx(0.998, abs=0.001)
    assert m["power_w_mean"] == pytest.approx(406.2, abs=0.5)  # the recorded copy loop's power
    assert m["tokens_per_joule"] == pytest.approx(2176.0 / m["power_w_mean"])
    assert rich.samples("mbu") == (m["mbu"],) and rich.samples("median_tpot_ms") == (6.42,)
    assert all(base.metrics[k] == v for k, v in base.metrics.items())  # nothing replaced
    assert rich.to_json()["summary"]["mbu"] == m["mbu"]


def test_estimate_refuses_cpu_devices() -> None:
    cpu = as_cpu(topology("l4-2x-pcie-no-p2p"))
    with pytest.raises(RooflineUnavailable, match="GPUs only"):
        estimate(cpu, server(cpu), {"median_tpot_ms": 1.0}, None)
    topo = h100_topology()
    assert estimate(topo, server(topo, model=str(TINY_MODEL)), {"median_tpot_ms": 1.0}, None).tpot_floor_ms > 0
