"""The history database: open (and migrate), append a run's measurements, read series, prune.

Many writers append at once (xdist workers, several CI runners): each run is one transaction,
each measurement has a unique uuid (a second insert of the same uuid is skipped, never doubled).
SQLite runs in WAL mode with a busy timeout, every transaction takes the write lock up front
(`BEGIN IMMEDIATE`), and a "database is locked" that outlasts the timeout is retried. On
PostgreSQL, opening takes a transaction-scoped advisory lock before it looks at the schema, so
runners that open a new store at once create it once. Every failure is a `HistoryError` naming
the store with its password masked.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_mgpu.history.rows import MeasurementRow, RunInfo, to_json_text
from pytest_mgpu.history.url import HistoryUrl
from pytest_mgpu.redact import redact_text

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

T = TypeVar("T")
SQLITE_BUSY_MS = 30_000
_RETRIES = 8
_PG_CONNECT_TIMEOUT_S = 5
# pg_advisory_xact_lock key held while a PostgreSQL store's schema is read, created or migrated
# (advisory locks are per database, so one constant serves every store on a server).
_PG_SCHEMA_LOCK = 0x6D677075  # "mgpu"


class HistoryError(Exception):
    """The history store cannot be used; the message names it (password masked) and says what to do."""


@dataclass(frozen=True)
class Series:
    fingerprint: str
    nodeid: str
    spec_key: str
    spec_label: str
    runs: int
    first_utc: str
    last_utc: str


@dataclass(frozen=True)
class Stored:
    """A measurement as read back, with its run's facts (what `show` and `detect` print)."""

    row: MeasurementRow
    git_commit: str | None
    ci_run_id: str | None


class HistoryStore:
    def __init__(self, url: HistoryUrl, engine: Engine) -> None:
        self.url = url
        self.engine = engine

    # --- opening ---

    @classmethod
    def open(cls, url: HistoryUrl) -> HistoryStore:
        """Connect and bring the schema up to date, or raise a `HistoryError`."""
        engine = _engine(url)
        store = cls(url, engine)
        store._guard("open", store._migrate)
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        from sqlalchemy import insert, inspect, select, text, update

        from pytest_mgpu.history import schema

        with self._begin() as conn:
            if self.url.dialect == "postgresql":
                # Without it two runners could both see no table; the later one's CREATE then found
                # the tables made and skipped, and both inserted a version row (CI saw "Multiple rows").
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
            if not inspect(conn).has_table(schema.schema_version.name):
                schema.MIGRATIONS[1](conn)
                conn.execute(insert(schema.schema_version).values(version=1))
            version = conn.execute(select(schema.schema_version.c.version)).scalar_one()
            if version > schema.SCHEMA_VERSION:
                raise HistoryError(f"history store {self.url.masked()} has schema version {version}, but this "
                                   f"pytest-mgpu reads up to {schema.SCHEMA_VERSION}: upgrade pytest-mgpu")
            while version < schema.SCHEMA_VERSION:
                version += 1
                schema.MIGRATIONS[version](conn)
                conn.execute(update(schema.schema_version).values(version=version))

    def version(self) -> int:
        from sqlalchemy import select

        from pytest_mgpu.history import schema

        with self._begin() as conn:
            return int(conn.execute(select(schema.schema_version.c.version)).scalar_one())

    # --- writing ---

    def append(self, run: RunInfo, rows: Sequence[MeasurementRow]) -> int:
        """Add `run` and its measurements in one transaction; returns how many measurements were new."""
        return self._guard("append to", lambda: self._append(run, rows))

    def _append(self, run: RunInfo, rows: Sequence[MeasurementRow]) -> int:
        from sqlalchemy import insert, select

        from pytest_mgpu.history.schema import measurements, runs

        with self._begin() as conn:
            run_id = conn.execute(select(runs.c.id).where(runs.c.uuid == run.uuid)).scalar_one_or_none()
            if run_id is None:
                key = conn.execute(insert(runs).values(
                    uuid=run.uuid, started_utc=run.started_utc, finished_utc=run.finished_utc,
                    git_commit=run.git_commit, host=run.host, pytest_mgpu=run.pytest_mgpu, source=run.source,
                    ci_run_id=run.ci_run_id)).inserted_primary_key
                assert key is not None  # an INSERT of one row always has one
                run_id = key[0]
            uuids = [r.uuid for r in rows]
            have = set(conn.execute(select(measurements.c.uuid).where(measurements.c.uuid.in_(uuids))).scalars())
            new = [r for r in {r.uuid: r for r in rows}.values() if r.uuid not in have]
            if new:
                conn.execute(insert(measurements), [_values(run_id, r) for r in new])
            return len(new)

    def prune(self, *, keep_days: float | None = None, keep: int | None = None, now_utc: str | None = None) -> int:
        """Delete measurements older than `keep_days`, or all but the newest `keep` per series; returns the count."""
        return self._guard("prune", lambda: self._prune(keep_days, keep, now_utc))

    def _prune(self, keep_days: float | None, keep: int | None, now_utc: str | None) -> int:
        import datetime

        from sqlalchemy import delete, select

        from pytest_mgpu.history.schema import measurements, runs

        m = measurements.c
        doomed: set[int] = set()
        with self._begin() as conn:
            if keep_days is not None:
                now = datetime.datetime.fromisoformat(now_utc) if now_utc else datetime.datetime.now(datetime.UTC)
                cutoff = (now - datetime.timedelta(days=keep_days)).isoformat()
                doomed |= set(conn.execute(select(m.id).where(m.recorded_utc < cutoff)).scalars())
            if keep is not None:
                seen: dict[tuple[str, str, str], int] = {}
                order = select(m.id, m.fingerprint, m.nodeid, m.spec_key).order_by(m.recorded_utc.desc(), m.id.desc())
                for row_id, fp, nodeid, key in conn.execute(order):
                    n = seen[(fp, nodeid, key)] = seen.get((fp, nodeid, key), 0) + 1
                    if n > keep:
                        doomed.add(row_id)
            ids = sorted(doomed)
            for i in range(0, len(ids), 500):
                conn.execute(delete(measurements).where(m.id.in_(ids[i:i + 500])))
            orphan = select(measurements.c.run_id).where(measurements.c.run_id == runs.c.id).exists()
            conn.execute(delete(runs).where(~orphan))
            return len(ids)

    # --- reading ---

    def series(self) -> list[Series]:
        return self._guard("read", self._series)

    def _series(self) -> list[Series]:
        from sqlalchemy import func, select

        from pytest_mgpu.history.schema import measurements

        m = measurements.c
        query = (select(m.fingerprint, m.nodeid, m.spec_key, func.max(m.spec_label), func.count(),
                        func.min(m.recorded_utc), func.max(m.recorded_utc))
                 .group_by(m.fingerprint, m.nodeid, m.spec_key).order_by(m.nodeid, m.fingerprint, m.spec_key))
        with self._begin() as conn:
            return [Series(*row) for row in conn.execute(query)]

    def measurements(self, *, fingerprint: str | None = None, nodeid: str | None = None,
                     spec_key: str | None = None, newest: int | None = None) -> list[Stored]:
        """Matching measurements, oldest first (the newest `newest` of them when given)."""
        return self._guard("read", lambda: self._measurements(fingerprint, nodeid, spec_key, newest))

    def _measurements(self, fingerprint: str | None, nodeid: str | None, spec_key: str | None,
                      newest: int | None) -> list[Stored]:
        from sqlalchemy import select

        from pytest_mgpu.history.schema import measurements, runs

        m = measurements.c
        query = select(measurements, runs.c.git_commit, runs.c.ci_run_id).join(runs, runs.c.id == m.run_id)
        for column, value in ((m.fingerprint, fingerprint), (m.nodeid, nodeid), (m.spec_key, spec_key)):
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(m.recorded_utc.desc(), m.id.desc())
        if newest is not None:
            query = query.limit(newest)
        with self._begin() as conn:
            found = [Stored(_row(r._mapping), r.git_commit, r.ci_run_id) for r in conn.execute(query)]
        return found[::-1]

    def medians(self, fingerprint: str, nodeid: str, spec_key: str, metric: str, newest: int) -> list[float]:
        """The series' per-run medians of `metric`, oldest first (the newest `newest` runs)."""
        stored = self.measurements(fingerprint=fingerprint, nodeid=nodeid, spec_key=spec_key, newest=newest)
        return [s.row.summary[metric] for s in stored if metric in s.row.summary]

    # --- plumbing ---

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _guard(self, action: str, work: Callable[[], T]) -> T:
        """Run `work`, retrying a locked SQLite database; any database failure becomes a `HistoryError`."""
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        for attempt in range(_RETRIES):
            try:
                return work()
            except HistoryError:
                raise
            except DBAPIError as exc:
                text = str(exc.orig)
                if attempt + 1 < _RETRIES and _transient(text, exc):
                    time.sleep(0.05 * 2 ** attempt * (1 + random.random()))
                    continue
                raise self._error(action, text) from None
            except (SQLAlchemyError, OSError) as exc:
                raise self._error(action, str(exc)) from None
        raise AssertionError("unreachable")

    def _error(self, action: str, problem: str) -> HistoryError:
        problem = redact_text(problem.strip().splitlines()[0] if problem.strip() else problem, self.url.secrets())
        fix = _fix(self.url, problem)
        return HistoryError(f"could not {action} the history store {self.url.masked()}: {problem}; {fix}")


def _transient(text: str, exc: Exception) -> bool:
    """Lock contention, or two writers creating the schema at once (the loser retries and finds it made)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    lowered = text.lower()
    return ("locked" in lowered or "busy" in lowered or "deadlock" in lowered
            or (isinstance(exc, (IntegrityError, ProgrammingError)) and "already exists" in lowered)
            or ("duplicate key" in lowered and "pg_type" in lowered))


def _fix(url: HistoryUrl, problem: str) -> str:
    lowered = problem.lower()
    if url.dialect == "sqlite":
        if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
            return f"the file {url.path} is not a usable SQLite database: move it away (a new one is created)"
        if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered or "permission" in lowered:
            return (f"make {url.path} writable, or point --mgpu-history at a writable sqlite:///PATH "
                    "(or 'none' to keep no history)")
        if "locked" in lowered:
            return "another process holds the database locked for too long: retry, or use PostgreSQL for a fleet"
    elif "connect" in lowered or "refused" in lowered or "timeout" in lowered or "resolve" in lowered:
        return "check that the server is up and reachable, or pass --mgpu-history none to keep no history"
    return "check --mgpu-history (or PYTEST_MGPU_HISTORY), or pass 'none' to keep no history"


def _engine(url: HistoryUrl) -> Engine:
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    if url.dialect == "sqlite":
        assert url.path is not None
        try:
            url.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"could not open the history store {url.masked()}: cannot create {url.path.parent} "
                               f"({exc.strerror}); {_fix(url, 'unable to open')}") from None
        engine = create_engine(url.raw, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_MS / 1000})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's recipe: we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks

        return engine
    return create_engine(url.raw, poolclass=NullPool, connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_S})


def _values(run_id: int, r: MeasurementRow) -> dict[str, Any]:
    return {"uuid": r.uuid, "run_id": run_id, "recorded_utc": r.recorded_utc, "fingerprint": r.fingerprint,
            "nodeid": r.nodeid, "spec_label": r.spec_label, "spec_key": r.spec_key,
            "spec_json": to_json_text(r.spec), "workload_json": to_json_text(r.workload),
            "versions_json": to_json_text(r.versions), "samples_json": to_json_text(r.samples),
            "summary_json": to_json_text(r.summary), "findings_json": to_json_text(r.findings),
            "verdict_json": None if r.verdict is None else to_json_text(r.verdict), "outcome": r.outcome}


def _row(m: Any) -> MeasurementRow:
    def floats(text: str) -> dict[str, Any]:
        return {k: (tuple(float(x) for x in v) if isinstance(v, list) else float(v))
                for k, v in json.loads(text).items()}

    return MeasurementRow(
        uuid=m["uuid"], recorded_utc=m["recorded_utc"], fingerprint=m["fingerprint"], nodeid=m["nodeid"],
        spec_label=m["spec_label"], spec_key=m["spec_key"], spec=json.loads(m["spec_json"]),
        workload=json.loads(m["workload_json"]), versions=json.loads(m["versions_json"]),
        samples=floats(m["samples_json"]), summary=floats(m["summary_json"]),
        findings=json.loads(m["findings_json"]),
        verdict=json.loads(m["verdict_json"]) if m["verdict_json"] else None)
