"""pytest-mgpu: hardware-aware performance regression testing of multi-GPU LLM inference.

Importing this package is cheap: no torch, vllm, tensorrt_llm or pynvml, no GPU access.
The public names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Workload": "pytest_mgpu.bench.workload",
    "BenchResult": "pytest_mgpu.bench.results",
    "assert_better": "pytest_mgpu.gate.assertions",
    "assert_slo": "pytest_mgpu.gate.assertions",
    "EngineSpec": "pytest_mgpu.engines.spec",
    "EngineServer": "pytest_mgpu.engines.spec",
    "Topology": "pytest_mgpu.hardware.topology",
    "LinkClass": "pytest_mgpu.hardware.topology",
    "get_session": "pytest_mgpu.session",
}

__all__ = [*sorted(_LAZY), "__version__"]

if TYPE_CHECKING:
    from pytest_mgpu.bench.results import BenchResult as BenchResult
    from pytest_mgpu.bench.workload import Workload as Workload
    from pytest_mgpu.engines.spec import EngineServer as EngineServer
    from pytest_mgpu.engines.spec import EngineSpec as EngineSpec
    from pytest_mgpu.gate.assertions import assert_better as assert_better
    from pytest_mgpu.gate.assertions import assert_slo as assert_slo
    from pytest_mgpu.hardware.topology import LinkClass as LinkClass
    from pytest_mgpu.hardware.topology import Topology as Topology
    from pytest_mgpu.session import get_session as get_session


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_mgpu' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
