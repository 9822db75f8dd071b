"""pytest-mgpu's own hook specifications (as pytest-xdist's newhooks.py): what plugins may implement.

Registered by plugin.py's `pytest_addhooks`. Implement them in a conftest.py at the rootdir (or in
a plugin): the registry is filled once, at configure time, before `--mgpu-engine` is checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_mgpu.engines.registry import EngineRegistry


def pytest_mgpu_engines(registry: EngineRegistry) -> None:
    """Add engines: `registry.add(name, device_kind, planner)`.

    `planner(request: LaunchRequest) -> LaunchPlan` builds the command line, environment and
    health URL for one start (both types from `pytest_mgpu.engines`); pytest-mgpu runs it in its
    own process group, waits for health, leases the devices and stops it. vLLM, SGLang,
    TensorRT-LLM and "external" are registered through this same hook.
    """
