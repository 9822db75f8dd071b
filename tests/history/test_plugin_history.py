"""The history as users run it: pytest in a subprocess measuring a scripted server, rows in a real store."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from pytest_mgpu.history.store import HistoryStore
from pytest_mgpu.history.url import parse
from pytest_mgpu.testing import ScriptedServer

from .conftest import free_port

TEST = """
import pytest
from pytest_mgpu import Workload

@pytest.mark.parametrize("i", range({n}))
def test_measure(mgpu_engine, mgpu_bench, mgpu_baseline, i):
    server = mgpu_engine(tp=1)
    result = mgpu_bench(server, Workload(input_len=8, output_len=8, num_prompts=4, max_concurrency=2), repeats=2)
    mgpu_baseline.check(result)
"""


def args(server: ScriptedServer, p: pytest.Pytester, *extra: str) -> list[str]:
    return ["--mgpu-engine=external", f"--mgpu-base-url={server.base_url}", "--mgpu-external-devices=1",
            f"--mgpu-lock-dir={p.path / 'locks'}", "-p", "no:cacheprovider", "--mgpu-report=report.json", *extra]


def open_store(p: pytest.Pytester, value: str = "sqlite:///.pytest-mgpu/history.db") -> HistoryStore:
    url = parse(value, p.path)
    assert url is not None
    return HistoryStore.open(url)


def report(p: pytest.Pytester) -> dict[str, object]:
    data: dict[str, object] = json.loads((p.path / "report.json").read_text())
    return data


def seed(p: pytest.Pytester, scale: list[float]) -> None:
    """Earlier runs of the stored series: its first row's medians times each factor (throughput up, TPOT down)."""
    from pytest_mgpu.history.rows import RunInfo

    with open_store(p) as store:
        [first] = store.measurements()
        rows = []
        for i, f in enumerate(scale):
            summary = {k: (v * f if k == "output_throughput_per_gpu" else v / f) for k, v in first.row.summary.items()}
            rows.append(dataclasses.replace(first.row, uuid=str(uuid.uuid4()), summary=summary,
                                            recorded_utc=f"2020-01-01T00:00:{i:02d}+00:00"))
        store.append(RunInfo(uuid=str(uuid.uuid4()), started_utc="2020-01-01T00:00:00+00:00", source="import"), rows)


def test_every_measurement_is_stored_with_its_verdict(pytester: pytest.Pytester, scripted: ScriptedServer) -> None:
    pytester.makepyfile(test_hist=TEST.format(n=2))
    pytester.runpytest_subprocess(*args(scripted, pytester)).assert_outcomes(passed=2)
    with open_store(pytester) as store:
        stored = store.measurements()
    assert sorted(s.row.nodeid for s in stored) == ["test_hist.py::test_measure[0]", "test_hist.py::test_measure[1]"]
    assert all(s.row.outcome == "new" and len(s.row.samples["output_throughput_per_gpu"]) == 2 for s in stored)
    assert stored[0].row.spec_label.startswith("external tp=1")
    [record, _] = report(pytester)["records"]  # type: ignore[misc]
    [history, *_] = record["verdict"]["history"]
    assert (history["enough"], history["runs"]) == (False, 0)
    result = pytester.runpytest_subprocess(*args(scripted, pytester))
    result.assert_outcomes(passed=2)
    [record, _] = report(pytester)["records"]  # type: ignore[misc]
    assert record["verdict"]["history"][0]["runs"] == 1
    with open_store(pytester) as store:
        assert [s.runs for s in store.series()] == [2, 2]


def test_history_regression_fails_the_test_and_shows_both_tables(pytester: pytest.Pytester,
                                                                 scripted: ScriptedServer) -> None:
    pytester.makepyfile(test_hist=TEST.format(n=1))
    pytester.runpytest_subprocess(*args(scripted, pytester, "--mgpu-update-baselines")).assert_outcomes(passed=1)
    seed(pytester, [3.0] * 12)  # the series used to be three times as fast: now is a regression vs history
    result = pytester.runpytest_subprocess(*args(scripted, pytester, "--mgpu-tolerance=0.9"))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pytest-mgpu: regression:*", "*vs pinned baseline:*",
                                 "*vs history (13 runs, band*", "*output_throughput_per_gpu*regression*",
                                 "*regressed vs history: output_throughput_per_gpu -*"])
    [record] = report(pytester)["records"]  # type: ignore[misc]
    assert record["outcome"] == "regression"
    assert any(h["regressed"] for h in record["verdict"]["history"])
    assert all(m["outcome"] != "regression" for m in record["verdict"]["metrics"])  # the pinned one alone passed


def test_noisy_history_passes_and_the_summary_shows_a_trend(pytester: pytest.Pytester,
                                                            scripted: ScriptedServer) -> None:
    pytester.makepyfile(test_hist=TEST.format(n=1))
    pytester.runpytest_subprocess(*args(scripted, pytester)).assert_outcomes(passed=1)
    seed(pytester, [0.6, 1.5, 0.7, 1.4, 0.65, 1.45, 0.75, 1.35, 1.0, 0.8])  # ±40% run to run: a wide band
    result = pytester.runpytest_subprocess(*args(scripted, pytester, "--mgpu-summary=summary.md"))
    result.assert_outcomes(passed=1)
    [record] = report(pytester)["records"]  # type: ignore[misc]
    history = record["verdict"]["history"]
    assert history and all(h["enough"] and not h["regressed"] for h in history)
    summary = (pytester.path / "summary.md").read_text()
    assert "### Trend" in summary and "`test_hist.py::test_measure[0]`" in summary


def test_corrupt_store_is_a_warning_and_the_measurement_reaches_the_report(pytester: pytest.Pytester,
                                                                           scripted: ScriptedServer) -> None:
    pytester.makepyfile(test_hist=TEST.format(n=1))
    db = pytester.path / "broken.db"
    db.write_bytes(b"garbage, not SQLite " * 200)
    result = pytester.runpytest_subprocess(*args(scripted, pytester, f"--mgpu-history=sqlite:///{db}"))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*run history: could not open the history store sqlite:///{db}*not a database*"])
    data = report(pytester)
    assert len(data["records"]) == 1  # type: ignore[arg-type]
    assert any("not a database" in w and "not stored" in w for w in data["warnings"])  # type: ignore[union-attr]


def test_unreachable_postgres_never_prints_its_password(pytester: pytest.Pytester, scripted: ScriptedServer) -> None:
    pytester.makepyfile(test_hist=TEST.format(n=1))
    url = f"postgresql://mgpu:Hunter2Secret@127.0.0.1:{free_port()}/hist"
    result = pytester.runpytest_subprocess(*args(scripted, pytester, f"--mgpu-history={url}", "--mgpu-summary=s.md"))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*run history: could not open the history store postgresql+psycopg://mgpu:***@*"])
    outputs = result.stdout.str() + result.stderr.str() + (pytester.path / "report.json").read_text()
    outputs += (pytester.path / "s.md").read_text()
    assert "Hunter2Secret" not in outputs
    assert len(report(pytester)["records"]) == 1  # type: ignore[arg-type]


def test_bad_history_url_is_a_usage_error_without_the_password(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess("--mgpu-history=mysql://u:TopSecretPw@h/db", "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*invalid value 'mysql://u:***@h/db' for command line --mgpu-history: expected*"])
    assert "TopSecretPw" not in result.stderr.str() + result.stdout.str()


def test_history_none_stores_nothing(pytester: pytest.Pytester, scripted: ScriptedServer) -> None:
    pytester.makepyfile(test_hist=TEST.format(n=1))
    pytester.runpytest_subprocess(*args(scripted, pytester, "--mgpu-history=none")).assert_outcomes(passed=1)
    assert not (pytester.path / ".pytest-mgpu").exists()
    [record] = report(pytester)["records"]  # type: ignore[misc]
    assert record["verdict"]["history"] == []


def test_unwritable_directory_is_a_clear_warning(pytester: pytest.Pytester, scripted: ScriptedServer) -> None:
    """/sys refuses new directories even to root (this suite runs as root in CI, where chmod stops nothing)."""
    pytester.makepyfile(test_hist=TEST.format(n=1))
    where = "/sys/pytest-mgpu-history"
    result = pytester.runpytest_subprocess(*args(scripted, pytester, f"--mgpu-history=sqlite:///{where}/h.db"))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*run history: could not open the history store sqlite:///{where}/h.db: "
                                 f"cannot create {where}*make {where}/h.db writable*"])
    assert len(report(pytester)["records"]) == 1  # type: ignore[arg-type]

