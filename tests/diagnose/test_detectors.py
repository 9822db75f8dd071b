"""Each finding code fires on a recorded case that should trigger it and stays silent on one that should not.

Topologies are the canned `nvidia-smi topo -m` recordings in tests/data/topologies; telemetry is
what a real H100 reported under load (tests/diagnose/data, made by record_nvml.sh), or a case
derived from such a recording by changing one field (a throttle bit, a PCIe link at gen 1).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pytest_mgpu.bench.health import ClientHealth, assess
from pytest_mgpu.telemetry import DeviceTelemetry, Telemetry
from pytest_mgpu.telemetry.procfs import ProcessInfo

from .cases import (
    WORKLOAD,
    as_cpu,
    capture_telemetry,
    codes,
    findings,
    h100_topology,
    recorded_telemetry,
    result,
    server,
    topology,
)

LLAMA_8B = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "vocab_size": 128256, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def only(found: list, code: str) -> list:
    return [f for f in found if f.code == code]


# --- idle-devices ---------------------------------------------------------------------------------------------


def test_idle_devices_fires_for_tp1_with_every_gpu_visible_and_quantifies_the_loss() -> None:
    topo = topology("rtx4090-2x-sys-2numa")
    exact = server(topo, tp=1, devices=(0,))
    visible = server(topo, tp=1, devices=(0, 1))
    before = result(exact, output_throughput=1000.0, output_throughput_per_gpu=1000.0)
    after = result(visible, output_throughput=450.0, output_throughput_per_gpu=225.0)
    telemetry = Telemetry("cuda", 5.0, (DeviceTelemetry(0, busy=0.97, engine_present=True),
                                         DeviceTelemetry(1, busy=0.0, engine_present=False)))
    [finding] = only(findings(topo, visible, after, telemetry, earlier=(before,)), "idle-devices")
    assert "2 devices are allocated to an engine of tp*pp=1: 1 sit idle" in finding.message
    assert "device(s) [1]: no engine process on it" in finding.message
    assert "78% of each device's throughput lost" in finding.message  # 1 - 225/1000
    assert "total throughput 0.45x" in finding.message
    assert finding.evidence["per_device_loss"] == pytest.approx(0.775)
    assert finding.evidence["busy"] == {0: 0.97, 1: 0.0}


def test_idle_devices_fires_on_the_h100_recording_where_the_engine_holds_no_context() -> None:
    """Real NVML: the leased GPU ran no compute process of the engine (its only process was on the CPU)."""
    topo = h100_topology()
    srv = server(topo, tp=1)
    [finding] = only(findings(topo, srv, telemetry=recorded_telemetry("h100-idle")), "idle-devices")
    assert "device(s) [0] are leased to the engine" in finding.message
    assert "no engine process on it" in finding.message
    assert finding.evidence["no_engine_process_on"] == [0]


def test_idle_devices_on_the_hardware_capture_recordings() -> None:
    topo = h100_topology()
    srv = server(topo, tp=1)
    idle = capture_telemetry("h100-single-vm.nvml-idle", engine_pids=(449,))
    assert codes(only(findings(topo, srv, telemetry=idle), "idle-devices")) == ["idle-devices"]
    load = capture_telemetry("h100-single-vm.nvml-load", engine_pids=(449,))
    assert findings(topo, srv, telemetry=load) == []


def test_idle_devices_is_silent_when_the_engine_runs_on_exactly_its_devices() -> None:
    topo = h100_topology()
    srv = server(topo, tp=1)
    assert only(findings(topo, srv, telemetry=recorded_telemetry("h100-matmul")), "idle-devices") == []
    assert only(findings(topology("dgx-h100-8x-nv18-2numa"), server(topology("dgx-h100-8x-nv18-2numa"), tp=8)),
                "idle-devices") == []


def test_idle_devices_needs_the_same_workload_for_a_measured_loss() -> None:
    topo = topology("l4-2x-pcie-no-p2p")
    other = dataclasses.replace(WORKLOAD, max_concurrency=1)
    before = result(server(topo, tp=1, devices=(0,)), workload=other)
    [finding] = only(findings(topo, server(topo, tp=1, devices=(0, 1)), earlier=(before,)), "idle-devices")
    assert "Measured loss" not in finding.message and "per_device_loss" not in finding.evidence


# --- cross-numa -------------------------------------------------------------------------------------------------


def test_cross_numa_fires_for_tp_peers_joined_by_sys() -> None:
    topo = topology("rtx4090-2x-sys-2numa")
    [finding] = only(findings(topo, server(topo, tp=2)), "cross-numa")
    assert "tensor-parallel peers [0, 1] are joined by SYS" in finding.message
    assert finding.evidence["numa_nodes"] == ["0", "1"]


def test_cross_numa_fires_for_an_engine_pinned_to_the_other_socket() -> None:
    topo = topology("rtx4090-2x-sys-2numa")  # GPU0: CPUs 0-15,32-47 on node 0; GPU1: 16-31,48-63 on node 1
    online = tuple(range(64))
    telemetry = Telemetry("cuda", 5.0, (DeviceTelemetry(0, busy=0.9, engine_present=True),),
                          processes=(ProcessInfo(4242, "python3", tuple(range(16, 32))),), online_cpus=online)
    [finding] = only(findings(topo, server(topo, tp=1), telemetry=telemetry), "cross-numa")
    assert "pinned entirely off their devices' NUMA node(s) 0" in finding.message
    assert "python3 (pid 4242) may run on CPUs 16-31" in finding.message


def test_cross_numa_is_silent_on_nvlink_peers_and_unpinned_engines() -> None:
    topo = topology("dgx-h100-8x-nv18-2numa")
    online = tuple(range(topo.devices[0].cpus[-1] + 1))
    unpinned = Telemetry("cuda", 5.0, processes=(ProcessInfo(1, "vllm", online),), online_cpus=online)
    assert only(findings(topo, server(topo, tp=2, devices=(0, 4)), telemetry=unpinned), "cross-numa") == []
    pinned_local = Telemetry("cuda", 5.0, processes=(ProcessInfo(1, "vllm", topo.devices[0].cpus),),
                             online_cpus=online)
    assert only(findings(topo, server(topo, tp=1), telemetry=pinned_local), "cross-numa") == []
    rtx = topology("rtx4090-2x-sys-2numa")  # PP across the sockets is not a TP group
    assert only(findings(rtx, server(rtx, tp=1, pp=2)), "cross-numa") == []


# --- pcie-degraded ---------------------------------------------------------------------------------------------


def test_pcie_degraded_fires_for_a_link_at_gen1_under_load() -> None:
    topo = h100_topology()
    telemetry = recorded_telemetry("h100-copy", pcie_gen=1)
    [finding] = only(findings(topo, server(topo, tp=1), telemetry=telemetry), "pcie-degraded")
    assert "generation 1 of 5" in finding.message and "under load (busy 100%)" in finding.message


def test_pcie_degraded_fires_for_a_narrow_link() -> None:
    topo = h100_topology()
    telemetry = recorded_telemetry("h100-matmul", pcie_width=8)
    [finding] = only(findings(topo, server(topo, tp=1), telemetry=telemetry), "pcie-degraded")
    assert "width x8 of x16" in finding.message


def test_pcie_degraded_is_silent_at_full_speed_and_on_an_idle_downtrained_link() -> None:
    topo = h100_topology()
    assert only(findings(topo, server(topo, tp=1), telemetry=recorded_telemetry("h100-copy")), "pcie-degraded") == []
    idle_gen1 = recorded_telemetry("h100-idle", pcie_gen=1)  # GPUs drop the link gen when idle, by design
    assert only(findings(topo, server(topo, tp=1), telemetry=idle_gen1), "pcie-degraded") == []


# --- p2p-unsupported --------------------------------------------------------------------------------------------


def test_p2p_unsupported_fires_for_tp_peers_on_l4s_without_p2p() -> None:
    topo = topology("l4-2x-pcie-no-p2p")
    [finding] = only(findings(topo, server(topo, tp=2)), "p2p-unsupported")
    assert "0-1: CNS (chipset not supported)" in finding.message


def test_p2p_unsupported_is_silent_without_tp_peers_or_with_p2p_ok() -> None:
    topo = topology("l4-2x-pcie-no-p2p")
    assert only(findings(topo, server(topo, tp=1, pp=2)), "p2p-unsupported") == []  # PP needs no P2P
    ok = dataclasses.replace(topo, extra={**topo.extra, "p2p_read": [["X", "OK"], ["OK", "X"]]})
    assert only(findings(ok, server(ok, tp=2)), "p2p-unsupported") == []
    unknown = dataclasses.replace(topo, extra={**topo.extra, "p2p_read": [["X", "U"], ["U", "X"]]})
    assert only(findings(unknown, server(unknown, tp=2)), "p2p-unsupported") == []


# --- throttled --------------------------------------------------------------------------------------------------


def test_throttled_fires_on_the_real_power_capped_h100() -> None:
    """The recorded bf16 matmul ran at the 700 W cap: NVML said SwPowerCap and SM clocks fell to ~1630 MHz."""
    topo = h100_topology()
    [finding] = only(findings(topo, server(topo, tp=1), telemetry=recorded_telemetry("h100-matmul")), "throttled")
    assert finding.severity.value == "warning"
    assert "throttled (SwPowerCap) in 100% of the samples" in finding.message
    assert 1600 < finding.evidence["sm_clock_mhz_mean"] < 1700


def test_power_cap_with_clocks_held_is_the_normal_full_load_state() -> None:
    """A healthy H100 serving at high load sat at its power cap 21-38% of the time at 97-99% of its clock."""
    topo = h100_topology()
    held = recorded_telemetry("h100-matmul", clock_event_reasons=0x4, sm_clock_mhz=1932, sm_clock_max_mhz=1980)
    assert only(findings(topo, server(topo, tp=1), telemetry=held), "throttled") == []
    cut = recorded_telemetry("h100-matmul", clock_event_reasons=0x4, sm_clock_mhz=1630, sm_clock_max_mhz=1980)
    assert len(only(findings(topo, server(topo, tp=1), telemetry=cut), "throttled")) == 1


def test_throttled_fires_on_a_thermal_slowdown_bit() -> None:
    topo = h100_topology()
    telemetry = recorded_telemetry("h100-copy", clock_event_reasons=0x40)
    [finding] = only(findings(topo, server(topo, tp=1), telemetry=telemetry), "throttled")
    assert finding.evidence["reasons"] == ["HwThermalSlowdown"]


@pytest.mark.parametrize(("recording", "reasons"), [("h100-copy", None), ("h100-idle", None),
                                                    ("h100-copy", 0x2), ("h100-copy", 0x3)])
def test_throttled_is_silent_for_idle_and_application_clocks(recording: str, reasons: int | None) -> None:
    topo = h100_topology()
    telemetry = recorded_telemetry(recording, **({} if reasons is None else {"clock_event_reasons": reasons}))
    assert only(findings(topo, server(topo, tp=1), telemetry=telemetry), "throttled") == []


# --- shared-device ----------------------------------------------------------------------------------------------


def test_shared_device_fires_when_another_process_uses_the_gpu() -> None:
    topo = h100_topology()
    [finding] = only(findings(topo, server(topo, tp=1), telemetry=recorded_telemetry("h100-shared")), "shared-device")
    assert finding.evidence["other_pids"] == [788]


def test_shared_device_is_silent_for_the_engine_alone_and_for_pids_of_another_namespace() -> None:
    topo = h100_topology()
    assert only(findings(topo, server(topo, tp=1), telemetry=recorded_telemetry("h100-matmul")),
                "shared-device") == []
    # NVML in a container may list host PIDs: none is the engine's, so nothing can be concluded
    foreign = recorded_telemetry("h100-shared", pids=(90001, 90002))
    assert foreign.devices[0].engine_present is None and foreign.devices[0].other_pids == ()
    assert any("another PID namespace" in n for n in foreign.notes)
    assert codes(findings(topo, server(topo, tp=1), telemetry=foreign)) == []


# --- client-bound -----------------------------------------------------------------------------------------------


def test_client_bound_from_the_load_generator_stays_among_the_findings() -> None:
    topo = topology("l4-2x-pcie-no-p2p")
    srv = server(topo, tp=1)
    metrics = {"median_tpot_ms": 10.0}
    busy_client = ClientHealth(wall_s=10.0, cpu_s=9.8, cpu_util=0.98)
    res = result(srv).with_findings(*assess(busy_client, metrics))
    res = res.with_findings(*findings(topo, srv, res))
    assert "client-bound" in codes(list(res.findings))
    calm = result(srv).with_findings(*assess(ClientHealth(wall_s=10.0, cpu_s=1.0, cpu_util=0.1), metrics))
    assert "client-bound" not in codes(list(calm.findings))


# --- below-roofline ---------------------------------------------------------------------------------------------


@pytest.fixture
def llama_8b(tmp_path: Path) -> str:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    return str(tmp_path)


def test_below_roofline_fires_for_a_tpot_faster_than_memory_allows(llama_8b: str) -> None:
    topo = h100_topology()
    srv = server(topo, tp=1, model=llama_8b)
    res = result(srv, median_tpot_ms=3.0, request_throughput=0.3, mean_e2el_ms=3000.0)
    [finding] = only(findings(topo, srv, res), "below-roofline")
    assert finding.severity.value == "error"
    assert "below the memory-bandwidth floor 4.8 ms" in finding.message
    assert finding.evidence["mbu"] == pytest.approx(1.6, abs=0.01)


def test_below_roofline_is_silent_for_a_plausible_tpot_and_without_a_floor(llama_8b: str) -> None:
    topo = h100_topology()
    srv = server(topo, tp=1, model=llama_8b)
    assert only(findings(topo, srv, result(srv, median_tpot_ms=6.42)), "below-roofline") == []
    cpu = as_cpu(topology("l4-2x-pcie-no-p2p"))
    assert only(findings(cpu, server(cpu, model=llama_8b), result(server(cpu), median_tpot_ms=0.01)),
                "below-roofline") == []


# --- all together -----------------------------------------------------------------------------------------------


def test_a_healthy_measurement_has_no_findings(llama_8b: str) -> None:
    topo = h100_topology()
    srv = server(topo, tp=1, model=llama_8b)
    found = findings(topo, srv, result(srv, median_tpot_ms=6.42), recorded_telemetry("h100-copy"))
    assert found == []


def test_unsupported_nvml_fields_mean_unknown_and_no_finding() -> None:
    """NOT_SUPPORTED everywhere (a VM slice): every field None, and no detector concludes anything."""
    topo = h100_topology()
    blank = recorded_telemetry("h100-matmul", power_w=None, sm_clock_mhz=None, memory_used_bytes=None,
                               gpu_util_pct=None, clock_event_reasons=None, energy_mj=None, pcie_gen=None,
                               pcie_width=None, temperature_c=None, pids=None)
    d = blank.devices[0]
    assert (d.busy, d.engine_present, d.energy_j, d.pcie_gen_seen) == (None, None, None, None)
    assert findings(topo, server(topo, tp=1), telemetry=blank) == []
