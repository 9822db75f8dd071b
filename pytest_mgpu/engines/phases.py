"""What an engine is doing while it starts, read from its log (vLLM CPU/CUDA and SGLang lines).

Start-up takes a minute on a CPU box and 80-250 s on a fresh GPU; the phase says where the time
goes. The last phase whose line appears in the log wins; an unknown engine stays "starting".
"""

from __future__ import annotations

import re
from pathlib import Path

# (phase, pattern), in start-up order
PHASES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("resolving model", re.compile(r"Resolved architecture|Load (?:model )?config|server_args=")),
    ("initialising engine", re.compile(r"Initializing a V1 LLM engine|Init torch distributed begin")),
    ("loading weights", re.compile(r"Starting to load model|Loading weights|Load weight begin|Loading safetensors")),
    ("compiling", re.compile(r"Warming up model for the compilation|torch\.compile|Compiling a graph|"
                             r"Dynamo bytecode transform|AOT compiled function")),
    ("allocating KV cache", re.compile(r"KV cache size|KV Cache is allocated|GPU KV cache size")),
    ("capturing CUDA graphs", re.compile(r"Capturing CUDA graph|Capture cuda graph begin|Capturing CUDA graphs")),
    ("starting server", re.compile(r"Starting vLLM server|Uvicorn running|Started server process")),
    ("ready", re.compile(r"Application startup complete|The server is fired up and ready to roll")),
)
_WARM = re.compile(r"loaded AOT compiled function|Directly load the compiled graph|[Ll]oad(?:ing|ed)? .*from (?:the )?"
                   r"(?:torch\.compile )?cache")
_COLD = re.compile(r"saved AOT compiled function|Compiling a graph for|torch\.compile takes .* in total")
TAIL_BYTES = 64 * 1024


def read_tail(path: Path, n_bytes: int = TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - n_bytes))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def phase_of(text: str) -> str:
    """The latest start-up phase the log text shows."""
    found, at = "starting", -1
    for phase, pattern in PHASES:
        for m in pattern.finditer(text):
            if m.start() >= at:
                found, at = phase, m.start()
    return found


def compile_cache_warm(text: str) -> bool | None:
    """Whether vLLM's torch.compile cache was warm: True (loaded), False (compiled afresh), None (not said)."""
    if _WARM.search(text):
        return True
    if _COLD.search(text):
        return False
    return None
