"""Small clients for engine tests: one streamed completion, and the processes left behind."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from pytest_mgpu.engines.process import session_members
from pytest_mgpu.engines.spec import EngineServer


def stream_completion(server: EngineServer, max_tokens: int = 8) -> tuple[list[str], dict[str, Any]]:
    """Stream one completion of exactly `max_tokens` tokens; return the text chunks and the usage."""
    body = json.dumps({
        "model": server.model_name, "prompt": [11, 12, 13, 14, 15, 16], "max_tokens": max_tokens,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
    }).encode()
    req = urllib.request.Request(f"{server.base_url}/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    chunks: list[str] = []
    usage: dict[str, Any] = {}
    with urllib.request.urlopen(req, timeout=120) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            chunks.extend(c["text"] for c in event.get("choices", []) if c.get("text"))
            usage = event.get("usage") or usage
    return chunks, usage


def engine_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def vllm_processes() -> list[str]:
    """Every vLLM process on this machine, as 'pid cmdline' lines."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "vllm.entrypoints" in cmd or "VLLM::" in cmd or "EngineCore" in cmd:
            found.append(f"{entry} {cmd[:120]}")
    return found


def survivors(pid: int | None) -> list[int]:
    return [] if pid is None else session_members(pid)
