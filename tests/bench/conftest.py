"""Fixtures for the load-generator tests: one scripted server per module, the tiny tokenizer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.testing import Script, ScriptedServer


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer(root=str(TINY_MODEL)) as server:
        yield server


@pytest.fixture
def server(scripted: ScriptedServer) -> ScriptedServer:
    """The module's scripted server with the default script and an empty request log."""
    scripted.set_script(Script())
    scripted.reset()
    return scripted


@pytest.fixture(scope="session")
def tok_path() -> str:
    return str(TINY_MODEL)
