"""Engines: what a plugin needs to add one is `LaunchRequest` and `LaunchPlan` (see pytest_mgpu/hooks.py).

Imported lazily, so `import pytest_mgpu.engines` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_mgpu.engines.launchers import LaunchRequest
    from pytest_mgpu.engines.process import LaunchPlan
    from pytest_mgpu.engines.registry import EngineRegistry

__all__ = ["EngineRegistry", "LaunchPlan", "LaunchRequest"]

_WHERE = {
    "LaunchRequest": "pytest_mgpu.engines.launchers",
    "LaunchPlan": "pytest_mgpu.engines.process",
    "EngineRegistry": "pytest_mgpu.engines.registry",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'pytest_mgpu.engines' has no attribute {name!r}")
