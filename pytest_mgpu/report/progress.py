"""Live progress in the terminal: engine start-up (elapsed, phase) and long measurements (requests done).

On a TTY one line is rewritten in place; elsewhere (CI logs) a plain line is written every
PLAIN_EVERY_S seconds. Nothing under -q. Output capture is suspended only for the write.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

PLAIN_EVERY_S = 15.0
TTY_EVERY_S = 1.0


class Progress:
    """`update(text)` as often as you like (it rate-limits itself); `done(text)` ends the line."""

    def __init__(self, config: pytest.Config, clock: Callable[[], float] = time.monotonic,
                 plain_every_s: float = PLAIN_EVERY_S) -> None:
        self._config = config
        self._clock = clock
        self._tr: pytest.TerminalReporter | None = config.pluginmanager.get_plugin("terminalreporter")
        self.enabled = self._tr is not None and config.get_verbosity() >= 0
        self.tty = bool(self.enabled and self._tr is not None and self._tr.isatty)
        self._every = TTY_EVERY_S if self.tty else plain_every_s
        self._last: float | None = None
        self._open = False  # an in-place line is on screen

    def _write(self, write: Callable[[pytest.TerminalReporter], None]) -> None:
        assert self._tr is not None
        capman = self._config.pluginmanager.get_plugin("capturemanager")
        if capman is None:
            write(self._tr)
            return
        with capman.global_and_fixture_disabled():
            write(self._tr)

    def update(self, text: str, *, first_after_s: float | None = None) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if self._last is None:
            self._last = now - (self._every if first_after_s is None else self._every - first_after_s)
        if now - self._last < self._every:
            return
        self._last = now
        if self.tty:
            self._open = True
            self._write(lambda tr: tr.rewrite("pytest-mgpu: " + text, erase=True))
        else:
            self._write(lambda tr: tr.write_line("pytest-mgpu: " + text))

    def done(self, text: str | None = None) -> None:
        if not self.enabled:
            return
        if self._open or text:
            def finish(tr: pytest.TerminalReporter) -> None:
                if self._open:  # replace the in-place line, and end it
                    tr.rewrite("pytest-mgpu: " + text if text else "", erase=True)
                    tr.write("\n" if text else "\r")
                elif text:
                    tr.write_line("pytest-mgpu: " + text)
            self._write(finish)
        self._open = False
        self._last = None


def engine_start_progress(config: pytest.Config) -> Callable[[str, float, str], None]:
    """A pool's `on_wait(label, elapsed_s, phase)`: one progress line per engine start."""
    progress = Progress(config)

    def on_wait(label: str, elapsed_s: float, phase: str) -> None:
        if phase in ("healthy", "failed"):
            progress.done(f"engine {label}: {phase} after {elapsed_s:.0f} s")
            return
        progress.update(f"engine {label}: starting, {elapsed_s:.0f} s, {phase}", first_after_s=1.0)

    return on_wait


def measurement_progress(config: pytest.Config, label: str) -> Callable[[int, int], None]:
    """run_bench's `progress(done, total)`: requests done of total, ended (and cleared on a TTY) at the last."""
    progress = Progress(config)

    def on_done(done: int, total: int) -> None:
        if done >= total:
            progress.done()
            return
        progress.update(f"measuring {label}: {done}/{total} requests", first_after_s=1.0)

    return on_done
