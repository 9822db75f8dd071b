"""Liveness during a measurement: a process of the engine's group that dies ends it within seconds.

vLLM serves through an API server, an engine core and one worker per rank. When a worker dies
the API server may keep answering /health and accept requests that never finish, so waiting for
request timeouts would hold the box-wide measuring lock for the whole workload. Instead the
members of the engine's session are recorded when the measurement starts, and a member that is
gone (or a zombie) later is named, with its command line and the engine log's last lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LIVENESS_POLL_S = 1.0


@dataclass(frozen=True)
class Member:
    pid: int
    cmdline: str


def _cmdline(pid: int) -> str:
    from pytest_mgpu.redact import redact_args

    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    return " ".join(redact_args(argv))[:300] or "?"


@dataclass(frozen=True)
class GroupWatch:
    """The engine's session members at the start; `check()` names the first one gone since."""

    label: str
    sid: int
    members: tuple[Member, ...]
    log_path: Path | None

    @classmethod
    def start(cls, label: str, sid: int, log_path: Path | None) -> GroupWatch:
        from pytest_mgpu.engines.process import session_members

        return cls(label, sid, tuple(Member(p, _cmdline(p)) for p in sorted(session_members(sid))), log_path)

    def check(self) -> str | None:
        """None while every recorded member lives; else a message naming the engine and the dead process."""
        from pytest_mgpu.engines.process import log_tail, session_members

        alive = set(session_members(self.sid))  # zombies are left out: dead, not yet reaped
        for m in self.members:
            if m.pid not in alive:
                tail = log_tail(self.log_path) if self.log_path is not None else "(no log)"
                return (
                    f"the engine {self.label} lost a process during the measurement: pid {m.pid} ({m.cmdline}) "
                    f"died; {len(alive)} of its {len(self.members)} processes are left. The measurement was "
                    f"stopped (an engine missing a process answers nothing useful).\n"
                    f"Last lines of its log {self.log_path}:\n{tail}"
                )
        return None
