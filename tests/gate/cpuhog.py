"""CPU hogs that really compete with an engine: one busy loop per slot, each in a session of its own.

Linux's autogroup scheduling (on by default) shares CPU time fairly between sessions, so a
busy loop started in the test's own session competes with the test's client, not with the
engine (which `mgpu_engine` starts in a session of its own). Measured on a 2-core box with
the Llama-768 model below: one hog per core in the client's session slowed the engine 0%,
one in its own session 7%, two 22%, four 76%.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_mgpu.engines.launchers import TINY_MODEL

# Spins until its parent (the test) is gone: a pytest killed by SIGTERM or SIGKILL runs no finalizer,
# and a hog left behind (in a session of its own) ate a core for an hour here.
_HOG = ("import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nparent = os.getppid()\n"
        "while os.getppid() == parent:\n    for _ in range(200_000):\n        pass\n")


@contextmanager
def hogs(cores: list[int], per_core: int) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", _HOG, str(c)], start_new_session=True)
             for c in cores for _ in range(per_core)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def small_llama(dst: Path, hidden: int = 768, layers: int = 8) -> Path:
    """The tiny model's tokenizer with a shape whose decode steps, not the Python client, set the pace."""
    shutil.copytree(TINY_MODEL, dst)
    heads = hidden // 64
    config = json.loads((dst / "config.json").read_text())
    config.update(hidden_size=hidden, intermediate_size=hidden * 8 // 3 // 64 * 64, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=heads // 2, head_dim=64)
    (dst / "config.json").write_text(json.dumps(config, indent=1))
    return dst
