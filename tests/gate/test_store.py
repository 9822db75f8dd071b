"""The baseline store: layout, deterministic atomic writes, locking, migration, bad files."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest

from pytest_mgpu.gate import store
from pytest_mgpu.gate.store import BaselineError, BaselineStore, Entry

FP = "2xCPU-1core-NODE-3f2a9c"
DATA = Path(__file__).parent / "data"


def entry(tp: int = 1, tput: tuple[float, ...] = (1000.0, 1010.0, 990.0)) -> Entry:
    return Entry(
        spec={"engine": "vllm", "model": "tiny_model", "tp": tp, "pp": 1, "n_devices": tp,
              "device_kind": "cpu", "extra_args": ["--load-format", "dummy"]},
        workload={"input_len": 128, "output_len": 128, "request_rate": float("inf"), "seed": 0},
        samples={"output_throughput_per_gpu": tput, "median_tpot_ms": (4.0, float("nan"), 4.2)},
        summary={"output_throughput_per_gpu": sorted(tput)[1], "median_tpot_ms": 4.1},
        versions={"vllm": "0.32.0"},
        repeats=3,
    )


def test_layout_and_safe_names(tmp_path: Path) -> None:
    s = BaselineStore(tmp_path)
    rel = store.relative_test_path(tmp_path / "perf" / "test_tp.py", tmp_path)
    assert rel == Path("perf/test_tp")
    p = s.path_for(FP, rel, "test_x[tp=2/pp:1 a b]")
    assert p == tmp_path / FP / "perf" / "test_tp" / "test_x[tp=2_pp_1_a_b].json"
    long = store.safe_name("t[" + "x" * 500 + "]")
    assert len(long) <= 120
    assert long != store.safe_name("t[" + "x" * 499 + "y]")


def test_round_trip_is_deterministic_and_lossless(tmp_path: Path) -> None:
    s = BaselineStore(tmp_path, lock_dir=tmp_path / "locks")
    path = s.path_for(FP, Path("t"), "test_a")
    s.record(path, {"fingerprint": FP, "label": "x"}, entry())
    first = path.read_bytes()
    s.record(path, {"fingerprint": FP, "label": "x"}, entry())
    assert path.read_bytes() == first  # same data, same bytes
    text = first.decode()
    assert '"schema_version": 2' in text
    assert "NaN" not in text  # strict JSON
    assert "Infinity" not in text
    json.loads(text)
    got = s.lookup(path, entry().key)
    assert got is not None
    assert got.samples["output_throughput_per_gpu"] == (1000.0, 1010.0, 990.0)
    assert got.workload["request_rate"] == "inf"
    assert got.key == entry().key
    assert not list(path.parent.glob("*.tmp"))  # no temp files left behind


def test_entries_are_keyed_by_spec_and_workload_not_versions(tmp_path: Path) -> None:
    s = BaselineStore(tmp_path, lock_dir=tmp_path / "locks")
    path = s.path_for(FP, Path("t"), "test_a")
    s.record(path, {"fingerprint": FP}, entry(tp=1))
    s.record(path, {"fingerprint": FP}, entry(tp=2))
    loaded = s.load(path)
    assert loaded is not None
    assert len(loaded.entries) == 2
    upgraded = Entry(**{**entry().__dict__, "versions": {"vllm": "9.9"}})
    assert upgraded.key == entry().key


def _writer(root: str, tp: int, n: int) -> None:
    s = BaselineStore(Path(root) / "baselines", lock_dir=Path(root) / "locks")
    path = s.path_for(FP, Path("t"), "test_shared")
    for i in range(n):
        e = entry(tp=tp * 1000 + i)
        s.record(path, {"fingerprint": FP}, e)


def test_two_processes_writing_at_once_keep_every_entry(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tp, 25)) for tp in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = BaselineStore(tmp_path / "baselines")
    loaded = s.load(s.path_for(FP, Path("t"), "test_shared"))
    assert loaded is not None
    assert len(loaded.entries) == 50


def test_v1_file_is_migrated_on_load(tmp_path: Path) -> None:
    s = BaselineStore(tmp_path, lock_dir=tmp_path / "locks")
    path = s.path_for(FP, Path("t"), "test_old")
    path.parent.mkdir(parents=True)
    shutil.copy(DATA / "v1_baseline.json", path)
    loaded = s.load(path)
    assert loaded is not None
    assert loaded.hardware["fingerprint"] == FP
    (old,) = loaded.entries.values()
    assert old.samples["output_throughput_per_gpu"] == (3323.0, 3301.0, 3350.0)
    assert old.summary["median_tpot_ms"] == pytest.approx(4.4)
    assert old.versions == {"vllm": "0.31.0"}
    assert old.repeats == 3
    # Recording another entry rewrites the file as v2 and keeps the migrated one.
    s.record(path, {"fingerprint": FP}, entry())
    data = json.loads(path.read_text())
    assert data["schema_version"] == store.SCHEMA_VERSION
    assert set(data["entries"]) == {old.key, entry().key}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ("", "is not valid JSON"),
        ('{"machine_info": {}, "benchmarks": []}', "is not a pytest-mgpu baseline"),
        ("[1, 2]", "is not a pytest-mgpu baseline"),
        ('{"schema_version": 99}', "has schema_version 99 but this pytest-mgpu reads up to 2"),
        ('{"schema_version": 0}', "which no migration reads"),
        ('{"schema_version": 2, "hardware": {"fingerprint": "F"}}', "missing field 'entries'"),
        ('{"schema_version": 2, "hardware": {"fingerprint": "F"}, "entries": {"k": {"spec": {}}}}',
         "does not have the shape of schema_version 2"),
        ('{"schema_version": 1, "fingerprint": "F"}', "does not have the shape of schema_version 1"),
        ('{"schema_version": true, "fingerprint": "F"}', "no integer schema_version"),  # bool is not int
        ('{"a":' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_corrupt_or_foreign_file_names_the_file_and_the_fix(tmp_path: Path, text: str, problem: str) -> None:
    s = BaselineStore(tmp_path)
    path = s.path_for(FP, Path("t"), "test_bad")
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(BaselineError) as info:
        s.load(path)
    message = str(info.value)
    assert str(path) in message
    assert problem in message
    assert "--mgpu-update-baselines" in message or "upgrade pytest-mgpu" in message


def test_file_from_other_hardware_is_refused(tmp_path: Path) -> None:
    s = BaselineStore(tmp_path, lock_dir=tmp_path / "locks")
    src = s.path_for("1xH100-SXM-abc", Path("t"), "test_a")
    s.record(src, {"fingerprint": "1xH100-SXM-abc"}, entry())
    dst = s.path_for(FP, Path("t"), "test_a")
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    with pytest.raises(BaselineError, match=r"recorded on hardware '1xH100-SXM-abc'.*never compared"):
        s.load(dst)


def test_unstorable_values_are_refused_not_stringified() -> None:
    with pytest.raises(TypeError, match="cannot store object"):
        store.dumps({"x": object()})
