"""Test helpers for users of pytest-mgpu: a scripted OpenAI-compatible streaming server."""

from __future__ import annotations

from pytest_mgpu.testing.scripted_server import Behavior, Script, ScriptedServer, ServerStats

__all__ = ["Behavior", "Script", "ScriptedServer", "ServerStats"]
