"""History store URLs: parse, default, and mask, without importing a database driver.

`sqlite:///PATH` (relative paths are under the rootdir), `postgresql://user:pw@host:port/db`
(run through psycopg 3), or `none`. Only `masked()` ever reaches a message: the password is
replaced by `***` wherever a URL is shown.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from pytest_mgpu.redact import MASK

DEFAULT_PATH = Path(".pytest-mgpu") / "history.db"
NONE = "none"
_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgres")


class HistoryUrlError(ValueError):
    """A history URL this plugin cannot use (what was expected is in the message)."""


@dataclass(frozen=True)
class HistoryUrl:
    """A resolved store location: `dialect` is "sqlite" or "postgresql"; `raw` keeps the secret, never shown."""

    dialect: str
    raw: str  # what SQLAlchemy gets (driver spelled out, sqlite path absolute)
    path: Path | None = None  # the SQLite file

    def masked(self) -> str:
        return mask(self.raw)

    def secrets(self) -> set[str]:
        """The password in the URL (to scrub from driver error messages)."""
        password = urllib.parse.urlsplit(self.raw).password
        return {password, urllib.parse.unquote(password)} - {""} if password else set()


def mask(url: str) -> str:
    """`postgresql://u:secret@h/db` -> `postgresql://u:***@h/db` (also for `?password=` query parameters)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    has_query_password = any(k.lower() == "password" for k, _ in query)
    if parts.password is None and not has_query_password:
        return url  # nothing secret: shown exactly as given
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}"
    if has_query_password:
        query = [(k, MASK if k.lower() == "password" else v) for k, v in query]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, urllib.parse.urlencode(query, safe="*"),
                                    parts.fragment))


def parse(value: str, rootdir: Path) -> HistoryUrl | None:
    """`value` as a store location (None for `none`); a bad value raises `HistoryUrlError` saying what is expected."""
    text = value.strip()
    if text.lower() == NONE:
        return None
    scheme = text.split(":", 1)[0].lower() if "://" in text else ""
    if scheme not in _SCHEMES:
        raise HistoryUrlError(f"expected sqlite:///PATH, postgresql://USER@HOST:PORT/DB or none, got {mask(text)!r}")
    if scheme == "sqlite":
        rest = text[len("sqlite://"):]
        if not rest.startswith("/") or rest == "/":
            raise HistoryUrlError(f"expected sqlite:///PATH (three slashes, then a file path), got {text!r}")
        path = Path(rest[1:])
        path = path if path.is_absolute() else rootdir / path
        return HistoryUrl("sqlite", f"sqlite:///{path}", path)
    rest = text.split("://", 1)[1]
    if not urllib.parse.urlsplit(text).hostname and "host=" not in text:
        raise HistoryUrlError(f"expected postgresql://USER@HOST:PORT/DB (or ?host=/socket/dir), got {mask(text)!r}")
    return HistoryUrl("postgresql", "postgresql+psycopg://" + rest)


def default(rootdir: Path) -> HistoryUrl:
    path = rootdir / DEFAULT_PATH
    return HistoryUrl("sqlite", f"sqlite:///{path}", path)
