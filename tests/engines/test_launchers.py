"""Command lines and environments each engine is started with (no engine is started here)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from pytest_mgpu.engines.launchers import TINY_MODEL, LaunchRequest, plan_for
from pytest_mgpu.engines.process import EngineStartError
from pytest_mgpu.engines.spec import EngineSpec
from pytest_mgpu.hardware.topology import Device


def _cpu(i: int, cores: tuple[int, ...]) -> Device:
    return Device(index=i, kind="cpu", name="CPU group", cpus=cores, numa_node=0)


def _gpu(i: int) -> Device:
    return Device(index=i, kind="cuda", name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{i:04d}")


def _flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_vllm_cpu_binds_one_core_group_per_rank() -> None:
    spec = EngineSpec("vllm", str(TINY_MODEL), tp=2, pp=1, n_devices=2, device_kind="cpu")
    plan = plan_for(LaunchRequest(spec, (_cpu(0, (0, 1)), _cpu(1, (2, 3))), port=1234))
    assert plan.argv[:6] == ("taskset", "-c", "0,1,2,3", sys.executable, "-m", "vllm.entrypoints.openai.api_server")
    assert _flag(plan.argv, "--tensor-parallel-size") == "2"
    assert _flag(plan.argv, "--pipeline-parallel-size") == "1"
    assert _flag(plan.argv, "--distributed-executor-backend") == "mp"
    assert _flag(plan.argv, "--load-format") == "dummy"  # the tiny model ships no weights
    assert _flag(plan.argv, "--port") == "1234" and _flag(plan.argv, "--host") == "127.0.0.1"
    assert plan.env["VLLM_CPU_OMP_THREADS_BIND"] == "0,1|2,3"
    assert plan.health_url == "http://127.0.0.1:1234/health"


def test_vllm_cpu_idle_devices_get_no_rank() -> None:
    spec = EngineSpec("vllm", str(TINY_MODEL), tp=1, pp=1, n_devices=2, device_kind="cpu")
    plan = plan_for(LaunchRequest(spec, (_cpu(0, (0,)), _cpu(1, (1,))), port=1))
    assert plan.env["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert plan.argv[:3] == ("taskset", "-c", "0")  # the idle device's core stays free
    assert "--distributed-executor-backend" not in plan.argv


def test_pp_and_user_args_pass_through(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    spec = EngineSpec("vllm", str(tmp_path), tp=1, pp=2, n_devices=2, device_kind="cpu",
                      extra_args=("--max-model-len", "512"), env=(("VLLM_CPU_KVCACHE_SPACE", "2"),))
    plan = plan_for(LaunchRequest(spec, (_cpu(0, (0,)), _cpu(1, (1,))), port=1))
    assert _flag(plan.argv, "--pipeline-parallel-size") == "2"
    assert "--load-format" not in plan.argv  # real weights
    assert plan.argv.count("--max-model-len") == 1 and _flag(plan.argv, "--max-model-len") == "512"
    assert plan.env["VLLM_CPU_KVCACHE_SPACE"] == "2"  # the caller's env wins


def test_vllm_cuda_sets_visible_devices_and_keeps_multicast_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/vllm" if name == "vllm" else None)
    spec = EngineSpec("vllm", "meta-llama/Llama-3.1-8B", tp=2, pp=1, n_devices=2, device_kind="cuda",
                      extra_args=("--load-format", "dummy"))
    plan = plan_for(LaunchRequest(spec, (_gpu(3), _gpu(5)), port=8000))
    assert plan.argv[:3] == ("/usr/bin/vllm", "serve", "meta-llama/Llama-3.1-8B")
    assert _flag(plan.argv, "--tensor-parallel-size") == "2"
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "GPU-0003,GPU-0005"
    assert plan.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert plan.env["NCCL_NVLS_ENABLE"] == "0"
    assert plan.env["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
    assert plan.env["NVSHMEM_DISABLE_NVLS"] == "1"


def test_trtllm_command_follows_its_documentation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/bin/trtllm-serve" if name == "trtllm-serve" else None)
    spec = EngineSpec("trtllm", "/models/llama", tp=4, pp=2, n_devices=8, device_kind="cuda",
                      extra_args=("--load-format", "dummy", "--max_batch_size", "64"))
    plan = plan_for(LaunchRequest(spec, tuple(_gpu(i) for i in range(8)), port=9000, work_dir=str(tmp_path)))
    assert plan.argv[:2] == ("/opt/bin/trtllm-serve", "/models/llama")
    assert _flag(plan.argv, "--tp_size") == "4" and _flag(plan.argv, "--pp_size") == "2"
    assert _flag(plan.argv, "--backend") == "pytorch"
    assert _flag(plan.argv, "--port") == "9000" and _flag(plan.argv, "--host") == "127.0.0.1"
    assert "--load-format" not in plan.argv and plan.argv[-2:] == ("--max_batch_size", "64")
    config = Path(_flag(plan.argv, "--extra_llm_api_options"))
    assert config.parent == tmp_path  # next to the engine's log
    assert config.read_text() == "tensor_parallel_size: 4\npipeline_parallel_size: 2\nload_format: \"dummy\"\n"
    assert plan.env["CUDA_VISIBLE_DEVICES"].count(",") == 7
    assert plan.health_url == "http://127.0.0.1:9000/health"


def test_trtllm_weightless_model_gets_dummy_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/bin/trtllm-serve")
    spec = EngineSpec("trtllm", str(TINY_MODEL), device_kind="cuda")
    plan = plan_for(LaunchRequest(spec, (_gpu(0),), port=1, work_dir=str(tmp_path)))
    text = Path(_flag(plan.argv, "--extra_llm_api_options")).read_text()
    assert 'load_format: "dummy"' in text and "tensor_parallel_size: 1" in text


def test_trtllm_on_cpu_says_it_cannot_run_here() -> None:
    spec = EngineSpec("trtllm", "/models/llama", tp=1, n_devices=1, device_kind="cpu")
    with pytest.raises(EngineStartError, match="TensorRT-LLM runs only on NVIDIA GPUs"):
        plan_for(LaunchRequest(spec, (_cpu(0, (0,)),), port=1))


def test_unknown_engine_lists_the_known_ones() -> None:
    spec = EngineSpec("mlc", "/m", device_kind="cpu")
    with pytest.raises(EngineStartError, match="no launcher for engine 'mlc' on cpu; known: vllm on cpu"):
        plan_for(LaunchRequest(spec, (_cpu(0, (0,)),), port=1))
