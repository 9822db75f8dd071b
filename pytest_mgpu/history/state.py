"""This session's connection to the history store: opened on first use, its failure remembered once.

Imports no database driver: `store()` does, the first time a measurement needs history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_mgpu.history.url import HistoryUrl, default, parse

if TYPE_CHECKING:
    from pytest_mgpu.history.rows import RunInfo
    from pytest_mgpu.history.store import HistoryStore


@dataclass(frozen=True)
class Trend:
    """The last few medians of one configuration's headline metric (the Markdown summary's trend line)."""

    nodeid: str
    label: str
    metric: str
    medians: tuple[float, ...]


@dataclass
class HistoryState:
    url: HistoryUrl | None  # None: --mgpu-history none
    error: str | None = None  # the first failure; later uses do not retry a dead store
    trends: list[Trend] = field(default_factory=list)
    run: RunInfo | None = None  # this session's run row, made on the first append
    stored: set[int] = field(default_factory=set)  # id() of the session records already appended
    _store: HistoryStore | None = None

    @classmethod
    def from_setting(cls, value: str | None, rootdir: Path) -> HistoryState:
        return cls(default(rootdir) if value is None else parse(value, rootdir))

    def store(self) -> HistoryStore | None:
        """The open store; None when there is none or it failed (then `error` says why)."""
        if self.url is None or self.error is not None:
            return None
        if self._store is None:
            from pytest_mgpu.history.store import HistoryError, HistoryStore

            try:
                self._store = HistoryStore.open(self.url)
            except HistoryError as exc:
                self.error = str(exc)
                return None
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
