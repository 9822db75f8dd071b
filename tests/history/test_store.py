"""The history store on a real SQLite file and a real PostgreSQL server: append, read, migrate, prune, fail clearly."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_mgpu.history import schema
from pytest_mgpu.history.rows import MeasurementRow, RunInfo, redacted_spec
from pytest_mgpu.history.store import HistoryError, HistoryStore
from pytest_mgpu.history.url import HistoryUrl, mask, parse

from .conftest import free_port, new_database


def make_row(value: float, i: int, *, nodeid: str = "t.py::test_a", when: str | None = None,
             verdict: dict[str, object] | None = None) -> MeasurementRow:
    return MeasurementRow(
        uuid=str(uuid.uuid4()), recorded_utc=when or f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
        fingerprint="1xCPU-test", nodeid=nodeid, spec_label="vllm tp=1 pp=1 devices=1", spec_key="k1",
        spec={"engine": "vllm", "tp": 1}, workload={"num_prompts": 4}, versions={"vllm": "0.1"},
        samples={"output_throughput_per_gpu": (value, value * 1.01), "median_tpot_ms": (1000 / value,)},
        summary={"output_throughput_per_gpu": value, "median_tpot_ms": 1000 / value}, findings=[],
        verdict=verdict)


def run_info(tag: str = "") -> RunInfo:
    return RunInfo(uuid=str(uuid.uuid4()), started_utc="2026-01-01T00:00:00+00:00", source="pytest",
                   git_commit="abc" + tag, ci_run_id="42")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> HistoryUrl:
    if request.param == "sqlite":
        url = parse("sqlite:///history.db", tmp_path)
    else:
        url = parse(request.getfixturevalue("pg_database"), tmp_path)
    assert url is not None
    return url


def test_append_and_read_back_oldest_first(store_url: HistoryUrl) -> None:
    with HistoryStore.open(store_url) as store:
        rows = [make_row(100.0 + i, i, verdict={"outcome": "pass"}) for i in range(5)]
        assert store.append(run_info(), rows[:3]) == 3
        assert store.append(run_info(), rows[3:]) == 2
        assert store.append(run_info(), rows) == 0  # same uuids: nothing doubled
        assert store.version() == schema.SCHEMA_VERSION
        assert store.medians("1xCPU-test", "t.py::test_a", "k1", "output_throughput_per_gpu", newest=3) == [
            102.0, 103.0, 104.0]
        stored = store.measurements(nodeid="t.py::test_a")
        assert [s.row.summary["output_throughput_per_gpu"] for s in stored] == [100.0 + i for i in range(5)]
        assert stored[0].row.samples["output_throughput_per_gpu"] == (100.0, 101.0)
        assert stored[0].git_commit == "abc" and stored[0].ci_run_id == "42"
        assert stored[0].row.outcome == "pass"
        [series] = store.series()
        assert (series.nodeid, series.runs, series.spec_key) == ("t.py::test_a", 5, "k1")


def test_prune_by_count_and_by_age(store_url: HistoryUrl) -> None:
    with HistoryStore.open(store_url) as store:
        store.append(run_info(), [make_row(100.0, i) for i in range(6)])
        store.append(run_info(), [make_row(100.0, i, nodeid="t.py::test_b") for i in range(2)])
        assert store.prune(keep=4) == 2
        assert [s.runs for s in store.series()] == [4, 2]
        store.append(run_info(), [make_row(100.0, 0, nodeid="t.py::new", when="2026-03-01T00:00:00+00:00")])
        assert store.prune(keep_days=10, now_utc="2026-03-05T00:00:00+00:00") == 6
        assert [(s.nodeid, s.runs) for s in store.series()] == [("t.py::new", 1)]


def test_v1_file_is_migrated_to_v2_keeping_its_rows(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, insert

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # what pytest-mgpu with schema version 1 wrote
        schema.MIGRATIONS[1](conn)
        conn.execute(insert(schema.schema_version).values(version=1))
        conn.exec_driver_sql("INSERT INTO mgpu_runs (uuid, started_utc, source) VALUES ('r1', '2026', 'pytest')")
        conn.exec_driver_sql(
            "INSERT INTO mgpu_measurements (uuid, run_id, recorded_utc, fingerprint, nodeid, spec_label, spec_key, "
            "spec_json, workload_json, versions_json, samples_json, summary_json, findings_json, verdict_json) "
            "VALUES ('m1', 1, '2026', 'fp', 'n', 'l', 'k', '{}', '{}', '{}', '{\"x\": [1.0]}', '{\"x\": 1.0}', "
            "'[]', '{\"outcome\": \"regression\"}')")
    engine.dispose()
    columns = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(mgpu_measurements)")}
    assert "outcome" not in columns
    url = parse(f"sqlite:///{path}", tmp_path)
    assert url is not None
    with HistoryStore.open(url) as store:
        assert store.version() == 2
        [stored] = store.measurements()
        assert stored.row.uuid == "m1" and stored.row.summary == {"x": 1.0}
        assert stored.ci_run_id is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT outcome FROM mgpu_measurements").fetchall() == [("regression",)]
        assert conn.execute("SELECT version FROM mgpu_schema_version").fetchall() == [(2,)]


def test_newer_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    url = parse("sqlite:///h.db", tmp_path)
    assert url is not None
    HistoryStore.open(url).close()
    with sqlite3.connect(tmp_path / "h.db") as conn:
        conn.execute("UPDATE mgpu_schema_version SET version = 99")
    with pytest.raises(HistoryError, match=r"schema version 99.*upgrade pytest-mgpu"):
        HistoryStore.open(url)


def test_corrupt_sqlite_file_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "h.db").write_bytes(b"this is not a database, it is a text file" * 100)
    url = parse("sqlite:///h.db", tmp_path)
    assert url is not None
    with pytest.raises(HistoryError) as err:
        HistoryStore.open(url)
    text = str(err.value)
    assert str(tmp_path / "h.db") in text and "not a database" in text and "move it away" in text


def test_unreachable_postgres_names_the_store_without_its_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = parse(f"postgresql://mgpu:Sup3rSecretPw@127.0.0.1:{port}/hist", tmp_path)
    assert url is not None
    with pytest.raises(HistoryError) as err:
        HistoryStore.open(url)
    text = str(err.value)
    assert "Sup3rSecretPw" not in text
    assert f"postgresql+psycopg://mgpu:***@127.0.0.1:{port}/hist" in text
    assert "reachable" in text


def test_mask_hides_passwords_in_user_info_and_query() -> None:
    assert mask("postgresql://u:pw%40x@h:5/d") == "postgresql://u:***@h:5/d"
    assert "pwq" not in mask("postgresql://u@h/d?password=pwq&sslmode=require")
    assert mask("sqlite:////abs/h.db") == "sqlite:////abs/h.db"


def test_bad_url_says_what_is_expected(tmp_path: Path) -> None:
    from pytest_mgpu.history.url import HistoryUrlError

    with pytest.raises(HistoryUrlError, match=r"expected sqlite:///PATH.*got 'mysql://u:\*\*\*@h/d'"):
        parse("mysql://u:pw@h/d", tmp_path)
    assert parse("none", tmp_path) is None
    url = parse("sqlite:///rel/h.db", tmp_path)
    assert url is not None and url.path == tmp_path / "rel" / "h.db"


def test_importing_the_plugin_loads_no_database_layer() -> None:
    code = ("import sys, pytest_mgpu, pytest_mgpu.plugin, pytest_mgpu.history.hooks, pytest_mgpu.cli.history; "
            "bad = [m for m in ('sqlalchemy', 'psycopg', 'sqlite3') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().replace("'", '"')) == []


def test_redacted_spec_masks_secret_flags_and_drops_env() -> None:
    spec = redacted_spec({"engine": "vllm", "extra_args": ["--api-key", "sk-123456", "--hf-token=hf_abcdef"],
                          "env": [["HF_TOKEN", "hf_abcdef"]]})
    assert spec == {"engine": "vllm", "extra_args": ["--api-key", "***", "--hf-token=***"]}


def test_a_multi_node_measurement_becomes_a_row_named_with_its_node_link() -> None:
    """The history row's label is the report's label: nodes and what joins them (CI once lost these rows)."""
    from pytest_mgpu import BenchResult, Workload
    from pytest_mgpu.history.rows import row_from_result

    reps = ({"output_throughput_per_gpu": 90.0, "median_tpot_ms": 20.0},)
    result = BenchResult(metrics=dict(reps[0]), n_devices=2, repeats=reps,
                         spec={"engine": "vllm", "model": "tiny_model", "tp": 2, "pp": 1, "n_devices": 2, "nodes": 2,
                               "extra_args": ["--api-key", "sk-123456"]},
                         workload=Workload(), hardware={"fingerprint": "cpu-x", "node_link": "gloo/TCP loopback"},
                         date="20261202-120000")
    row = row_from_result("t.py::test_two_nodes", result, None)
    assert row.spec_label == "vllm tp=2 pp=1 devices=2 nodes=2 over gloo/TCP loopback --api-key ***"
    assert (row.fingerprint, row.recorded_utc) == ("cpu-x", "2026-12-02T12:00:00+00:00")


def _open_at(url: HistoryUrl, go: Any, results: Any) -> None:
    go.wait()
    try:
        HistoryStore.open(url).close()
    except HistoryError as exc:
        results.put(str(exc))
    else:
        results.put("")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_runners_opening_a_new_store_at_once_make_one_schema(backend: str, tmp_path: Path,
                                                             request: pytest.FixtureRequest) -> None:
    """Eight processes open each of ten new stores at the same instant: one schema, one version row, no failure.

    CI caught two pytest processes creating one new PostgreSQL store: both saw no table, the later
    one's CREATE found the tables made and skipped, and both inserted a version row, so an open
    failed on "Multiple rows were found". Threads never hit it (the GIL spaced them out); forked
    processes did in 3 of 20 stores before the fix.
    """
    import multiprocessing

    from sqlalchemy import func, select

    fork = multiprocessing.get_context("fork")
    for n in range(10):
        raw = f"sqlite:///h{n}.db" if backend == "sqlite" else new_database(request.getfixturevalue("postgres_url"))
        url = parse(raw, tmp_path)
        assert url is not None
        go, results = fork.Event(), fork.Queue()
        runners = [fork.Process(target=_open_at, args=(url, go, results)) for _ in range(8)]
        try:
            for r in runners:
                r.start()
            time.sleep(0.3)  # every runner waiting on the event
            go.set()
            errors = [e for e in (results.get(timeout=120) for _ in runners) if e]
        finally:
            go.set()  # no runner waits forever should a start fail
            for r in runners:
                r.join(timeout=30)
                if r.is_alive():
                    r.kill()
        assert errors == [], f"store {n}"
        with HistoryStore.open(url) as store:
            assert store.version() == schema.SCHEMA_VERSION
            with store.engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(schema.schema_version)).scalar_one() == 1

