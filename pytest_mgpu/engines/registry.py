"""Which engines exist: `(name, device kind) -> planner`, filled by the `pytest_mgpu_engines` hook.

One registry per pytest run (on `MgpuSession.engines`), never a module dict: a conftest or plugin
adds its engine through the hook and the built-ins use the same door (engines/launchers.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from pytest_mgpu.engines.process import EngineStartError, LaunchPlan

if TYPE_CHECKING:
    from pytest_mgpu.engines.launchers import LaunchRequest

Planner = Callable[["LaunchRequest"], LaunchPlan]
DEVICE_KINDS = ("cpu", "cuda")


@dataclass(frozen=True)
class _Entry:
    planner: Planner
    origin: str  # the planner's module, to name in errors


def _origin(planner: Planner) -> str:
    module = getattr(planner, "__module__", None) or "?"
    return f"{module}.{getattr(planner, '__qualname__', repr(planner))}"


class EngineRegistry:
    """`add(name, device_kind, planner)`; `plan(request)` runs the planner, naming the engine in any error."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}

    def add(self, name: str, device_kind: str, planner: Planner) -> None:
        if not isinstance(name, str) or not name or name != name.strip():
            raise pytest.UsageError(f"pytest-mgpu: engine name {name!r}: expected a non-empty name without spaces")
        if device_kind not in DEVICE_KINDS:
            raise pytest.UsageError(
                f"pytest-mgpu: engine {name!r} registered for device kind {device_kind!r}; expected one of "
                f"{', '.join(DEVICE_KINDS)} (register it once per kind it runs on)"
            )
        if not callable(planner):
            raise pytest.UsageError(f"pytest-mgpu: engine {name!r} on {device_kind}: the planner {planner!r} "
                                    "is not callable; expected a function LaunchRequest -> LaunchPlan")
        old = self._entries.get((name, device_kind))
        if old is not None:
            raise pytest.UsageError(
                f"pytest-mgpu: engine {name!r} on {device_kind} is registered twice: by {old.origin} and by "
                f"{_origin(planner)}. Give the new engine another name, or remove one registration."
            )
        self._entries[(name, device_kind)] = _Entry(planner, _origin(planner))

    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for name, _ in self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def check_name(self, name: str, where: str = "--mgpu-engine, env PYTEST_MGPU_ENGINE or ini mgpu_engine") -> None:
        if name not in self:
            raise pytest.UsageError(
                f"pytest-mgpu: unknown engine {name!r} ({where}); registered engines: {', '.join(self.names())}. "
                "A plugin or the rootdir conftest.py adds one with the hook pytest_mgpu_engines(registry)."
            )

    def plan(self, request: LaunchRequest) -> LaunchPlan:
        name, kind = request.spec.engine, request.spec.device_kind
        entry = self._entries.get((name, kind))
        if entry is None:
            known = ", ".join(f"{e} on {k}" for e, k in self._entries)
            raise EngineStartError(f"no launcher for engine {name!r} on {kind}; known: {known}")
        try:
            plan = entry.planner(request)
        except EngineStartError as exc:
            raise EngineStartError(f"engine {name!r}: {exc}") from None
        except Exception as exc:
            raise EngineStartError(
                f"engine {name!r}: its planner {entry.origin} raised {type(exc).__name__}: {exc}; expected a "
                "LaunchPlan. Fix the plugin or conftest that registered it."
            ) from exc
        if not isinstance(plan, LaunchPlan):
            raise EngineStartError(
                f"engine {name!r}: its planner {entry.origin} returned {type(plan).__name__}; expected a LaunchPlan "
                "(from pytest_mgpu.engines import LaunchPlan)"
            )
        return plan


def builtin_registry() -> EngineRegistry:
    """The built-in engines alone (what a pool gets outside a pytest run)."""
    from pytest_mgpu.engines import launchers

    registry = EngineRegistry()
    launchers.pytest_mgpu_engines(registry)
    return registry
