"""A watchdog per engine that kills the engine's process group if pytest dies without stopping it.

Fixture finalizers, `pytest_sessionfinish` and `atexit` all run only if pytest gets to run
Python: a SIGKILL (a CI job's hard timeout, the OOM killer) skips them all and would leave
vLLM holding the GPUs, the port and the memory. The watchdog runs in its own session, reading
a pipe whose only writer is pytest: a byte means "stopped properly, go", end-of-file means
pytest is gone, so it kills the engine's session (TERM, then KILL) and exits.

It also holds the engine's device lease: it inherits the lock descriptors, and flock locks live
as long as any descriptor of them is open. The kernel frees pytest's copy the moment pytest is
SIGKILLed, but the watchdog's copy stays until the engine's group is gone, so the next run
cannot lease devices an orphaned engine still occupies.

    python -m pytest_mgpu.engines.reaper SID [GRACE_S]
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_mgpu.engines.process import kill_session, session_members

DISMISS = b"x"


class Reaper:
    """pytest's end of one engine's watchdog: `dismiss()` once the engine was stopped properly."""

    def __init__(self, sid: int, log_path: Path, grace_s: float = 5.0, hold_fds: Sequence[int] = ()) -> None:
        """`hold_fds`: the lease's lock descriptors, kept open by the watchdog until the engine is gone."""
        with open(log_path, "ab") as log:  # the watchdog's words go into the engine's own log
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pytest_mgpu.engines.reaper", str(sid), str(grace_s)],
                stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True,
                pass_fds=tuple(fd for fd in hold_fds if fd >= 0),
            )

    def dismiss(self) -> None:
        """The engine is gone: tell the watchdog to exit without touching anything."""
        if self._proc.stdin is None or self._proc.stdin.closed:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.write(DISMISS)
            self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def main(argv: list[str]) -> int:
    sid = int(argv[0])
    grace_s = float(argv[1]) if len(argv) > 1 else 5.0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is pytest's to handle; we wait for its verdict
    if sys.stdin.buffer.read(1) == DISMISS:
        return 0
    members = session_members(sid)
    if members:  # said first: whoever sees the engine gone can read why
        print(f"pytest-mgpu reaper: pytest exited without stopping engine session {sid}; "
              f"killing {' '.join(map(str, members))}", flush=True)
        left = kill_session(sid, grace_s)
        if left:
            print(f"pytest-mgpu reaper: {' '.join(map(str, left))} survived SIGKILL", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
