"""pytest-mgpu's pytest hooks. Only hooks live here: the work is done by the subpackages.

Each area keeps its own hooks in a `hooks` module (markers in hardware, reporting in report,
the engine pool in engines); `pytest_configure` registers them, so this file stays a table
of contents.
"""

from __future__ import annotations

import importlib

import pytest

from pytest_mgpu import settings as _settings
from pytest_mgpu.session import SESSION_KEY, MgpuSession

# (module, plugin name): hook modules registered at configure time, in this order.
_HOOK_MODULES = (
    ("pytest_mgpu.hardware.hooks", "mgpu-hardware"),
    ("pytest_mgpu.engines.hooks", "mgpu-engines"),
    ("pytest_mgpu.history.hooks", "mgpu-history"),
    ("pytest_mgpu.report.hooks", "mgpu-report"),
)

pytest_plugins = ["pytest_mgpu.fixtures"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_mgpu import hooks
    from pytest_mgpu.engines import launchers

    pluginmanager.add_hookspecs(hooks)
    if not pluginmanager.has_plugin("mgpu-builtin-engines"):
        pluginmanager.register(launchers, "mgpu-builtin-engines")  # vLLM, SGLang, TensorRT-LLM, external


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    session = MgpuSession(config=config, settings=_settings.resolve(config))
    config.stash[SESSION_KEY] = session
    from pytest_mgpu.engines.registry import EngineRegistry

    session.engines = EngineRegistry()
    config.hook.pytest_mgpu_engines(registry=session.engines)
    session.engines.check_name(session.settings.engine)
    if session.settings.topology_file is not None:  # a file is cheap to read: a bad one is a usage error now
        from pytest_mgpu.hardware import HardwareError

        try:
            session.topology  # noqa: B018 (read once, here, so a bad file stops the run before collection)
        except HardwareError as exc:
            raise pytest.UsageError(f"pytest-mgpu: --mgpu-topology-file: {exc}") from None
    for module_name, plugin_name in _HOOK_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        if not config.pluginmanager.has_plugin(plugin_name):
            config.pluginmanager.register(module, plugin_name)
