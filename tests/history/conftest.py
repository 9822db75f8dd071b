"""A real PostgreSQL server for the history tests, started here and stopped at the end; a scripted engine.

The server is PostgreSQL 15's own `initdb` + `pg_ctl`, run as the `postgres` user (initdb refuses
root) in a temporary directory, listening only on a Unix socket there. Missing binaries FAIL the
tests that need them, with what to install: they are never skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.testing import Behavior, Script, ScriptedServer


def _load_database_layer() -> None:
    """Import SQLAlchemy, both drivers and the schema now, before any `pytester` snapshots sys.modules.

    pytester removes modules first imported during a test; SQLAlchemy imported again beside its
    surviving submodules no longer recognises its own Column objects.
    """
    import psycopg  # noqa: F401
    from sqlalchemy import create_engine, text
    from sqlalchemy.dialects.postgresql import psycopg as _pg  # noqa: F401

    import pytest_mgpu.history.schema
    import pytest_mgpu.history.store

    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        pytest_mgpu.history.schema.metadata.create_all(conn)
        conn.execute(text("SELECT 1"))
    engine.dispose()


_load_database_layer()

PG_BIN = Path(os.environ.get("PYTEST_MGPU_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"


def _as_postgres(*argv: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *argv]
    return list(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """`postgresql://postgres@/postgres?host=<socket dir>&port=N` of a fresh server, stopped after the session."""
    with running_postgres() as url:
        yield url


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A fresh PostgreSQL server on a Unix socket for the duration of the block; nothing of it is left after."""
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / b).exists()]
    if missing:
        pytest.fail(f"PostgreSQL 15 server binaries not found in {PG_BIN} (missing {', '.join(missing)}): install "
                    "the postgresql-15 package, or set PYTEST_MGPU_PG_BIN to the directory holding initdb and pg_ctl",
                    pytrace=False)
    # Not under pytest's basetemp: every pytest that starts (pytester's inner runs too) resets
    # /tmp/pytest-of-<user> to 0700, which locked the postgres user out of its own data directory,
    # so `pg_ctl stop` failed and the server outlived the session.
    base = Path(tempfile.mkdtemp(prefix="pytest-mgpu-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, PG_USER)
        shutil.chown(sock, PG_USER)
    try:
        subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                                    "-E", "UTF8", "--no-sync"), check=True, capture_output=True, timeout=120)
        port = free_port()
        opts = f"-c listen_addresses='' -c unix_socket_directories={sock} -p {port} -c fsync=off"
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "pg.log"),
                                    "-w", "-t", "60", "start"), check=True, capture_output=True, timeout=90)
        yield f"postgresql://{PG_USER}@/postgres?host={sock}&port={port}"
    finally:
        _stop_postgres(data)
        shutil.rmtree(base, ignore_errors=True)


def _stop_postgres(data: Path) -> None:
    """pg_ctl stop; should it fail, SIGKILL the postmaster (its pid is the first line of postmaster.pid)."""
    stop = subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"),
                          capture_output=True, text=True, timeout=60, check=False)
    pid_file = data / "postmaster.pid"
    if stop.returncode != 0 and pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


@pytest.fixture
def pg_database(postgres_url: str) -> str:
    """A fresh, empty database on the session's server (one per test: tests never see each other's rows)."""
    return new_database(postgres_url)


def new_database(server_url: str) -> str:
    """Create an empty database on the server at `server_url`; its URL."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.replace("/postgres?", f"/{name}?")


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    """A scripted OpenAI-compatible server (no engine needed to make measurements here)."""
    with ScriptedServer(Script(Behavior(ttft_s=0.01, itl_s=0.002)), root=str(TINY_MODEL)) as server:
        yield server
