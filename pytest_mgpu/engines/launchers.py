"""How each built-in engine is started: planners that turn a `LaunchRequest` into a `LaunchPlan`.

A planner only builds the command line and environment (unit-testable without the engine);
`process.EngineProcess` runs it. They are registered through the public hook
`pytest_mgpu_engines` like any plugin's engine (this module is that built-in plugin).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_mgpu.engines.process import EngineStartError, LaunchPlan
from pytest_mgpu.engines.spec import EngineSpec
from pytest_mgpu.hardware.topology import Device

if TYPE_CHECKING:
    from pytest_mgpu.engines.registry import EngineRegistry

TINY_MODEL = Path(__file__).with_name("tiny_model")
WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")

# Multi-GPU hosts of our CI keep NVLink multicast off; passed to every engine unless the caller overrides.
# Python engines write their log through a pipe-less file: unbuffered, so progress can read their phase live.
LOG_ENV = {"PYTHONUNBUFFERED": "1"}

CUDA_DEFAULT_ENV = {
    "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}


@dataclass(frozen=True)
class LaunchRequest:
    spec: EngineSpec
    devices: tuple[Device, ...]  # the devices allocated to the engine (len == spec.n_devices)
    port: int
    host: str = "127.0.0.1"
    work_dir: str | None = None  # a directory of this engine's own (its log's), for files a planner writes

    @property
    def served_name(self) -> str:
        return served_model_name(self.spec.model)


def served_model_name(model: str) -> str:
    """The name the server answers to: a local directory's name, or the hub id as given."""
    path = Path(model)
    return path.name if path.is_dir() else model


def has_weights(model: str) -> bool:
    path = Path(model)
    return not path.is_dir() or any(next(path.glob(g), None) for g in WEIGHT_GLOBS)


def _require_module(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise EngineStartError(
            f"the Python module {module!r} is not installed in {sys.executable}; expected it for this engine. "
            f'Install it with: pip install "pytest-mgpu[{extra}]" (or run `make test`, which sets up .venv).'
        )


def _vllm_args(req: LaunchRequest) -> list[str]:
    spec = req.spec
    args = [
        "--model", spec.model,
        "--served-model-name", req.served_name,
        "--host", req.host,
        "--port", str(req.port),
        "--tensor-parallel-size", str(spec.tp),
        "--pipeline-parallel-size", str(spec.pp),
    ]
    if not has_weights(spec.model) and "--load-format" not in spec.extra_args:
        args += ["--load-format", "dummy"]  # a weightless model such as the bundled tiny one
    return args + list(spec.extra_args)


def vllm_cpu_plan(req: LaunchRequest) -> LaunchPlan:
    """vLLM's CPU build: one core group per rank through VLLM_CPU_OMP_THREADS_BIND.

    Ranks take the first tp*pp allocated groups; groups beyond those stay idle, exactly as
    GPUs beyond tp*pp do when every GPU is visible to a TP=1 engine.
    """
    _require_module("vllm", "vllm-cpu")
    ranks = req.devices[: req.spec.world_size]
    bind = "|".join(",".join(map(str, d.cpus)) for d in ranks)
    # The OpenMP bind pins only the workers' compute threads; the API server and engine core would
    # float onto the load generator's core and stall it for seconds. Confine every engine process.
    cores = ",".join(str(c) for d in ranks for c in d.cpus)
    taskset = ["taskset", "-c", cores] if shutil.which("taskset") else []
    argv = [*taskset, sys.executable, "-m", "vllm.entrypoints.openai.api_server", *_vllm_args(req)]
    if req.spec.world_size > 1 and "--distributed-executor-backend" not in req.spec.extra_args:
        argv += ["--distributed-executor-backend", "mp"]
    if "--max-model-len" not in req.spec.extra_args:
        argv += ["--max-model-len", "2048"]
    env = {
        **LOG_ENV,
        "VLLM_CPU_OMP_THREADS_BIND": bind,
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB: the default takes a large share of NUMA node 0
        "VLLM_TARGET_DEVICE": "cpu",
    }
    return LaunchPlan(argv=tuple(argv), env={**env, **dict(req.spec.env)},
                      health_url=f"http://{req.host}:{req.port}/health")


def vllm_cuda_plan(req: LaunchRequest) -> LaunchPlan:
    """vLLM's CUDA build: `vllm serve` when its console script exists, else the same server as a module."""
    exe = shutil.which("vllm")
    if exe:
        argv = [exe, "serve", req.spec.model, *_vllm_args(req)[2:]]
    else:
        _require_module("vllm", "vllm")
        argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", *_vllm_args(req)]
    env = {**LOG_ENV, **CUDA_DEFAULT_ENV,
           "CUDA_VISIBLE_DEVICES": ",".join(d.uuid or str(d.index) for d in req.devices)}
    return LaunchPlan(argv=tuple(argv), env={**env, **dict(req.spec.env)},
                      health_url=f"http://{req.host}:{req.port}/health")


def trtllm_options(req: LaunchRequest) -> tuple[dict[str, object], tuple[str, ...]]:
    """The `--extra_llm_api_options` YAML's settings, and the user's args left for the command line.

    TensorRT-LLM takes parallelism and dummy weights as LLM API options, not flags: the vLLM-style
    `--load-format dummy` a user passes to every engine (--mgpu-engine-args) becomes `load_format: dummy`.
    """
    spec, rest = req.spec, list(req.spec.extra_args)
    options: dict[str, object] = {"tensor_parallel_size": spec.tp, "pipeline_parallel_size": spec.pp}
    for i, arg in enumerate(rest):
        if arg == "--load-format" and i + 1 < len(rest):
            options["load_format"] = rest[i + 1]
            del rest[i: i + 2]
            break
        if arg.startswith("--load-format="):
            options["load_format"] = arg.split("=", 1)[1]
            del rest[i]
            break
    if not has_weights(spec.model):
        options.setdefault("load_format", "dummy")
    return options, tuple(rest)


def yaml_text(options: dict[str, object]) -> str:
    """Flat `key: value` YAML (scalars only; strings JSON-quoted, which YAML reads as strings)."""
    import json

    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in options.items())


def trtllm_plan(req: LaunchRequest) -> LaunchPlan:
    """`trtllm-serve MODEL --backend pytorch --host H --port N --extra_llm_api_options FILE` (its documented CLI).

    The YAML goes to the engine's work directory (its log directory). Not run here: TensorRT-LLM
    cannot be installed on our machines (docs/engines.md).
    """
    if req.spec.device_kind != "cuda":
        raise EngineStartError(
            "TensorRT-LLM runs only on NVIDIA GPUs; this run uses CPU devices. "
            "Use --mgpu-engine vllm on CPU machines, or run on a GPU host with --mgpu-device cuda."
        )
    exe = shutil.which("trtllm-serve")
    if exe is None:
        raise EngineStartError(
            'trtllm-serve is not on PATH; install TensorRT-LLM (pip install "pytest-mgpu[trtllm]") on a GPU host.'
        )
    options, rest = trtllm_options(req)
    work_dir = Path(req.work_dir) if req.work_dir else Path(tempfile.mkdtemp(prefix="mgpu-trtllm-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / f"trtllm-options-{req.port}.yaml"
    config.write_text(yaml_text(options))
    argv = [
        exe, req.spec.model, "--host", req.host, "--port", str(req.port), "--backend", "pytorch",
        "--tp_size", str(req.spec.tp), "--pp_size", str(req.spec.pp),
        "--extra_llm_api_options", str(config), *rest,
    ]
    env = {**CUDA_DEFAULT_ENV, "CUDA_VISIBLE_DEVICES": ",".join(d.uuid or str(d.index) for d in req.devices)}
    return LaunchPlan(argv=tuple(argv), env={**env, **dict(req.spec.env)},
                      health_url=f"http://{req.host}:{req.port}/health")


def _default(args: list[str], flag: str, value: str, user: tuple[str, ...]) -> list[str]:
    """`flag value` unless the user passed the flag (as `--flag v` or `--flag=v`)."""
    given = any(a == flag or a.startswith(flag + "=") for a in user)
    return args if given else [*args, flag, value]


def sglang_plan(req: LaunchRequest) -> LaunchPlan:
    """`python -m sglang.launch_server` (SGLang's documented entry point), CUDA only.

    `--sampling-backend pytorch --grammar-backend none` by default: SGLang 0.5.17 ships no prebuilt
    FlashInfer sampling kernels and would compile them on the first request. Its scheduler runs as
    a subprocess, so teardown of the whole process group matters as much as for vLLM.
    """
    spec = req.spec
    if spec.device_kind != "cuda":
        raise EngineStartError(
            "SGLang needs CUDA (NVIDIA GPUs); this run uses CPU devices and SGLang has no CPU build we can "
            "install. Use --mgpu-engine vllm on CPU machines, or run on a GPU host with --mgpu-device cuda."
        )
    if "PYTHONPATH" not in dict(spec.env):  # a site given to the engine alone is checked by the engine itself
        _require_module("sglang", "sglang")
    user = spec.extra_args
    args = [
        sys.executable, "-m", "sglang.launch_server",
        "--model-path", spec.model,
        "--served-model-name", req.served_name,
        "--tp-size", str(spec.tp),
        "--pp-size", str(spec.pp),
        "--host", req.host,
        "--port", str(req.port),
    ]
    args = _default(args, "--sampling-backend", "pytorch", user)
    args = _default(args, "--grammar-backend", "none", user)
    if not has_weights(spec.model):
        args = _default(args, "--load-format", "dummy", user)
    env = {**LOG_ENV, **CUDA_DEFAULT_ENV,
           "CUDA_VISIBLE_DEVICES": ",".join(d.uuid or str(d.index) for d in req.devices)}
    return LaunchPlan(argv=(*args, *user), env={**env, **dict(spec.env)},
                      health_url=f"http://{req.host}:{req.port}/health")


def external_plan(req: LaunchRequest) -> LaunchPlan:
    """"external" is a server someone else runs: pytest-mgpu connects to it and never starts it."""
    raise EngineStartError(
        "engine 'external' is not started by pytest-mgpu; mgpu_engine() connects to --mgpu-base-url instead. "
        "Start your server yourself and pass --mgpu-engine external --mgpu-base-url URL."
    )


BUILTIN_ENGINES = ("vllm", "sglang", "trtllm", "external")


@pytest.hookimpl(tryfirst=True)
def pytest_mgpu_engines(registry: EngineRegistry) -> None:
    """The built-in engines, through the same hook a plugin uses (this module is registered by plugin.py).

    First, so that a plugin reusing a built-in name is the one the error blames.
    """
    registry.add("vllm", "cpu", vllm_cpu_plan)
    registry.add("vllm", "cuda", vllm_cuda_plan)
    for kind in ("cuda", "cpu"):  # on CPU devices, SGLang and TensorRT-LLM say they need CUDA
        registry.add("sglang", kind, sglang_plan)
        registry.add("trtllm", kind, trtllm_plan)
        registry.add("external", kind, external_plan)


def plan_for(req: LaunchRequest) -> LaunchPlan:
    """The built-in engines' plan for a request (a pytest run plans through its session's registry)."""
    from pytest_mgpu.engines.registry import builtin_registry

    return builtin_registry().plan(req)
