"""The history tables and their migrations (imported only when a store is opened: it imports SQLAlchemy).

`schema_version` holds one row, the version the tables have. `MIGRATIONS[v]` takes the tables
from version v-1 to v inside one transaction; opening a store runs the missing ones in order, so a
file written by an older pytest-mgpu is upgraded in place and a newer one is refused.
Version 1: runs + measurements. Version 2: `runs.ci_run_id` and `measurements.outcome` (the
verdict's outcome as a column, so `list` and `prune` need not parse JSON), backfilled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
    update,
)

SCHEMA_VERSION = 2

def _run_columns(version: int) -> list[Column[Any]]:
    cols: list[Column[Any]] = [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("uuid", String(36), nullable=False, unique=True),
        Column("started_utc", String(32), nullable=False),
        Column("finished_utc", String(32)),
        Column("git_commit", String(64)),
        Column("host", String(255)),
        Column("pytest_mgpu", String(64)),
        Column("source", String(32), nullable=False),  # "pytest", "import"
    ]
    if version >= 2:
        cols.append(Column("ci_run_id", String(255)))
    return cols


def _measurement_columns(version: int) -> list[Column[Any]]:
    cols: list[Column[Any]] = [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("uuid", String(36), nullable=False, unique=True),
        Column("run_id", Integer, ForeignKey("mgpu_runs.id", ondelete="CASCADE"), nullable=False),
        Column("recorded_utc", String(32), nullable=False),
        Column("fingerprint", String(255), nullable=False),
        Column("nodeid", Text, nullable=False),
        Column("spec_label", Text, nullable=False),
        Column("spec_key", String(32), nullable=False),  # gate.store.entry_key(spec, workload): the series
        Column("spec_json", Text, nullable=False),  # redacted
        Column("workload_json", Text, nullable=False),
        Column("versions_json", Text, nullable=False),
        Column("samples_json", Text, nullable=False),  # metric -> per-repeat values
        Column("summary_json", Text, nullable=False),  # metric -> median
        Column("findings_json", Text, nullable=False),
        Column("verdict_json", Text),
    ]
    if version >= 2:
        cols.append(Column("outcome", String(32)))
    return cols


def _tables(md: MetaData, version: int) -> tuple[Table, Table, Table]:
    return (Table("mgpu_schema_version", md, Column("version", Integer, nullable=False)),
            Table("mgpu_runs", md, *_run_columns(version)),
            Table("mgpu_measurements", md, *_measurement_columns(version),
                  Index("ix_mgpu_series", "fingerprint", "nodeid", "spec_key", "recorded_utc")))


metadata = MetaData()
schema_version, runs, measurements = _tables(metadata, SCHEMA_VERSION)


def _v1(conn: Connection) -> None:
    """The first schema: both tables without the v2 columns."""
    v1 = MetaData()
    _tables(v1, 1)
    v1.create_all(conn)


def _v2(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE mgpu_runs ADD COLUMN ci_run_id VARCHAR(255)"))
    conn.execute(text("ALTER TABLE mgpu_measurements ADD COLUMN outcome VARCHAR(32)"))
    rows = conn.execute(select(measurements.c.id, measurements.c.verdict_json)
                        .where(measurements.c.verdict_json.is_not(None))).all()
    for row_id, verdict in rows:
        outcome = json.loads(verdict).get("outcome")
        conn.execute(update(measurements).where(measurements.c.id == row_id).values(outcome=outcome))


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2}
