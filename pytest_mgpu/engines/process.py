"""Engine process lifecycle: its own session, health polling with crash detection, group teardown.

vLLM starts an API server, an engine core and one worker per rank; a teardown that kills only
the first leaves the rest holding memory and devices (vLLM PR #37230). So the engine runs as
the leader of a new session, teardown signals the whole process group, waits, kills, and
then verifies through /proc that nothing of that session survives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_mgpu import probe_http
from pytest_mgpu.redact import api_key_arg, redact_args, redact_text, secret_values

if TYPE_CHECKING:
    from pytest_mgpu.engines.reaper import Reaper


class EngineError(Exception):
    """An engine could not be started or stopped; the message says what to do."""


class EngineStartError(EngineError):
    pass


class EngineTeardownError(EngineError):
    pass


LOG_TAIL_LINES = 25


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, secrets: Iterable[str] = ()) -> str:
    """The last lines of an engine log, secrets masked (an engine may echo its argv or env)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return redact_text("\n".join(text[-lines:]), secrets)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out as free (bind to 0), for the engine to take next."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise EngineStartError(
                f"port {port} on {host} is already in use ({exc.strerror}); expected a free port for the engine. "
                "Stop whatever listens there, or let pytest-mgpu pick a port (do not pass one)."
            ) from None


def _live_pids() -> Iterator[tuple[int, list[str]]]:
    """(pid, the /proc/PID/stat fields after the command) of every process but zombies."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # fields after the parenthesised command: state ppid pgrp session ...
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 3 and fields[0] != "Z":
            yield int(entry), fields


def session_members(sid: int) -> list[int]:
    """Pids whose session id is `sid` (the engine and every descendant that did not setsid)."""
    return [pid for pid, fields in _live_pids() if int(fields[3]) == sid]


def listening_inodes(port: int) -> set[int] | None:
    """Socket inodes listening on TCP `port` (IPv4 and IPv6); None where /proc/net cannot be read."""
    found: set[int] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            cols = line.split()  # sl local_address rem_address st ... inode (10th)
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                found.add(int(cols[9]))
    return found if readable else None


def socket_holders(inodes: set[int], pids: Iterable[int]) -> list[int]:
    """Which of `pids` hold an open descriptor on one of the sockets `inodes`."""
    wanted = {f"socket:[{i}]" for i in inodes}
    holders = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    holders.append(pid)
                    break
    return holders


def _describe_pid(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    return f"pid {pid} ({' '.join(redact_args(cmd.split()))[:200]})"


def session_cores(sid: int) -> list[int]:
    """Every core any live process of session `sid` may run on."""
    cores: set[int] = set()
    for pid in session_members(sid):
        with contextlib.suppress(OSError):
            cores |= os.sched_getaffinity(pid)
    return sorted(cores)


def kill_session(sid: int, term_wait_s: float, kill_wait_s: float = 10.0,
                 on_wait: Callable[[], object] = lambda: None) -> list[int]:
    """SIGTERM session `sid` (its group, and members that moved to another group), wait, then SIGKILL.

    Returns the members that survived both. `on_wait` runs while waiting (e.g. reaping our own child).
    """
    for sig, wait_s in ((signal.SIGTERM, term_wait_s), (signal.SIGKILL, kill_wait_s)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, sig)
        for pid in session_members(sid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and session_members(sid):
            on_wait()
            time.sleep(0.1)
        if not session_members(sid):
            break
    return session_members(sid)


@dataclass(frozen=True)
class LaunchPlan:
    """What to run for one engine: argv, extra environment, and where its health answers."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    health_url: str
    cwd: str | None = None


class EngineProcess:
    """One engine process group. Use `start()`, then `stop()` on every path (it is idempotent)."""

    def __init__(self, plan: LaunchPlan, log_path: Path, *, api_key: str | None = None,
                 hold_fds: Sequence[int] = ()) -> None:
        """`api_key`: sent to the health URL (the engine's own `--api-key` or VLLM_API_KEY wins); `hold_fds`: lock
        descriptors (the device lease) the watchdog keeps open until the engine's group is gone."""
        self.plan = plan
        self.log_path = log_path
        self.api_key = api_key_arg(plan.argv) or plan.env.get("VLLM_API_KEY") or api_key
        self.hold_fds = tuple(hold_fds)
        self._secrets = secret_values(plan.argv, plan.env)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reaper: Reaper | None = None
        self.startup_s: float | None = None
        self.stop_s: float | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float, on_wait: Callable[[float], object] | None = None) -> None:
        """Spawn and wait until healthy; on any failure the group is torn down before raising.

        `on_wait(elapsed_s)` runs at every health poll (progress display).
        """
        t0 = self.spawn()
        try:
            self._wait_healthy(t0, timeout_s, on_wait)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0

    def spawn(self) -> float:
        """Start the group and its watchdog without waiting for health (multi-node followers); returns t0."""
        from pytest_mgpu.redact import redact_args, redact_text, secret_values

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.plan.env}
        t0 = time.monotonic()
        shown = redact_text(" ".join(redact_args(self.plan.argv)), secret_values(self.plan.argv, self.plan.env))
        with open(self.log_path, "ab") as log:
            log.write(f"$ {shown}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.plan.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.plan.cwd, start_new_session=True,
            )
        from pytest_mgpu.engines.reaper import Reaper  # (a cycle at import time otherwise)

        try:
            # kills the group if pytest itself is killed, and holds the lease until the group is gone
            self._reaper = Reaper(self._proc.pid, self.log_path, hold_fds=self.hold_fds)
        except BaseException:
            self.stop()
            raise
        return t0

    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def check_companions(self) -> None:
        """Raise EngineStartError if a process the engine needs besides its own died (multi-node followers)."""

    def _wait_healthy(self, t0: float, timeout_s: float, on_wait: Callable[[float], object] | None = None) -> None:
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise EngineStartError(
                    f"the engine exited with code {code} while starting, after {time.monotonic() - t0:.0f} s; "
                    f"expected it to answer {self.plan.health_url}.\n"
                    f"Last lines of its log {self.log_path}:\n{log_tail(self.log_path, secrets=self._secrets)}"
                )
            self.check_companions()
            if self._healthy():
                self._check_listener_is_ours()
                return
            if time.monotonic() - t0 > timeout_s:
                raise EngineStartError(
                    f"the engine did not become healthy within {timeout_s:.0f} s (--mgpu-start-timeout); "
                    f"it is still running but {self.plan.health_url} does not answer 200.\n"
                    f"Last lines of its log {self.log_path}:\n{log_tail(self.log_path, secrets=self._secrets)}"
                )
            if on_wait is not None:
                on_wait(time.monotonic() - t0)
            time.sleep(0.5)

    def _check_listener_is_ours(self) -> None:
        """Raise unless the socket listening on the health port belongs to the engine's session.

        Any HTTP 200 is not proof: a foreign server on the port (taken between choosing and
        binding it, or an old engine nobody stopped) would be measured instead. Failing at once
        is better than waiting out the start timeout: our engine cannot bind a port already taken.
        """
        assert self._proc is not None
        port = urllib.parse.urlsplit(self.plan.health_url).port
        inodes = listening_inodes(port) if port else None
        if inodes is None:  # no /proc/net here: nothing to check against
            return
        if socket_holders(inodes, session_members(self._proc.pid)):
            return
        others = socket_holders(inodes, (pid for pid, _ in _live_pids()))
        who = ", ".join(map(_describe_pid, others)) or "a process this user cannot inspect"
        # "address already in use" lets the pool retry on another port
        raise EngineStartError(
            f"someone else answers on port {port}: {who}; expected the engine (process group {self._proc.pid}) "
            f"to listen there (address already in use by another process). Stop that process, or let pytest-mgpu "
            f"pick another port; the engine's log: {self.log_path}"
        )

    def _healthy(self) -> bool:
        try:
            with probe_http.get(self.plan.health_url, timeout_s=2, api_key=self.api_key) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def healthy(self) -> bool:
        return self.alive() and self._healthy()

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the group, wait, SIGKILL it, then verify that no member survives."""
        if self._proc is None:
            return
        t0 = time.monotonic()
        proc = self._proc
        sid = proc.pid  # a session leader's pid is its session id and its group id

        def reap_leader() -> None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)

        kill_session(sid, grace_s, on_wait=reap_leader)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
        survivors = session_members(sid)
        self._proc = None
        if self._reaper is not None and not survivors:
            self._reaper.dismiss()
            self._reaper = None
        self.stop_s = time.monotonic() - t0
        if survivors:
            raise EngineTeardownError(
                f"engine processes {survivors} survived SIGKILL of their process group {sid}; expected none. "
                f"Kill them by hand (kill -9 {' '.join(map(str, survivors))}) and see {self.log_path}."
            )


def argv_str(argv: Sequence[str]) -> str:
    """A command line for people to read: secret flag values masked."""
    return " ".join(redact_args(argv))
