"""The baseline store: `<root>/<fingerprint>/<test path>/<test name>.json`.

One file per test, one entry per (engine spec + workload) inside it, so a test that checks
several configurations keeps them together. Files are deterministic JSON (sorted keys,
indent 2, non-finite floats spelled "inf"/"nan"), written atomically (temp file + rename)
and read-modify-written under a `filelock.FileLock`, so two pytest processes recording at
once both keep their entries. Older schema versions are migrated on load; anything else
that is not a baseline is a `BaselineError` that says which file and what to do.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mgpu.gate.measured import Measured, workload_dict

SCHEMA_VERSION = 2
_MAX_NAME = 120
_LOCK_TIMEOUT_S = 120.0
_FIX = "delete it (or restore it from version control) and re-record with --mgpu-update-baselines"


class BaselineError(Exception):
    """A baseline file that cannot be used: corrupt, foreign, or from a newer pytest-mgpu."""

    def __init__(self, path: Path, problem: str, fix: str = _FIX) -> None:
        super().__init__(f"baseline file {path}: {problem}; {fix}")
        self.path = path


@dataclass(frozen=True)
class Entry:
    """One configuration's stored measurement: the key (spec + workload) and its samples."""

    spec: dict[str, Any]
    workload: dict[str, Any]
    samples: dict[str, tuple[float, ...]]  # metric -> per-repeat values
    summary: dict[str, float]  # metric -> median over repeats
    versions: dict[str, str] = field(default_factory=dict)
    repeats: int = 0
    recorded_utc: str = ""

    @property
    def key(self) -> str:
        return entry_key(self.spec, self.workload)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = plain(
            {
                "spec": self.spec,
                "workload": self.workload,
                "samples": {k: list(v) for k, v in self.samples.items()},
                "summary": self.summary,
                "versions": self.versions,
                "repeats": self.repeats,
                "recorded_utc": self.recorded_utc,
            }
        )
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        return cls(
            spec=dict(data["spec"]),
            workload=dict(data["workload"]),
            samples={k: tuple(float(x) for x in v) for k, v in data["samples"].items()},
            summary={k: float(v) for k, v in data["summary"].items()},
            versions={str(k): str(v) for k, v in data.get("versions", {}).items()},
            repeats=int(data.get("repeats", 0)),
            recorded_utc=str(data.get("recorded_utc", "")),
        )


@dataclass(frozen=True)
class BaselineFile:
    path: Path
    hardware: dict[str, Any]
    entries: dict[str, Entry]  # entry key -> entry


def plain(obj: Any) -> Any:
    """Convert to plain JSON types, refusing what has no exact JSON form (no lossy fallback)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)  # 'inf', '-inf', 'nan': float() reads them back
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "value") and isinstance(obj.value, (str, int)):  # enums
        return obj.value
    if hasattr(obj, "item"):  # numpy scalars
        return plain(obj.item())
    raise TypeError(f"cannot store {type(obj).__name__} value {obj!r} in a baseline")


def dumps(data: Any) -> str:
    """Deterministic JSON: same data, same bytes (diffable in version control)."""
    return json.dumps(plain(data), sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def entry_key(spec: Mapping[str, Any], workload: Mapping[str, Any]) -> str:
    """A short stable id for (engine spec + workload); never includes engine versions.

    Workload fields left at their defaults are not part of the identity, so a field added to
    `Workload` later (with a default) does not orphan every recorded baseline.
    """
    canonical = json.dumps(plain({"spec": spec, "workload": _non_default(workload)}), sort_keys=True,
                           allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _non_default(workload: Mapping[str, Any]) -> dict[str, Any]:
    from pytest_mgpu.bench.workload import Workload

    defaults = plain(workload_dict(Workload()))
    return {k: v for k, v in plain(dict(workload)).items() if k not in defaults or defaults[k] != v}


def entry_from_result(result: Measured, now: datetime.datetime | None = None) -> Entry:
    samples: dict[str, tuple[float, ...]] = {}
    for name, value in result.metrics.items():
        try:
            per_repeat = tuple(float(x) for x in result.samples(name))
        except (KeyError, ValueError):
            per_repeat = ()
        samples[name] = per_repeat or (float(value),)
    when = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
    return Entry(
        spec=dict(result.spec),
        workload=workload_dict(result.workload),
        samples=samples,
        summary={k: float(v) for k, v in result.metrics.items()},
        versions={str(k): str(v) for k, v in result.versions.items()},
        repeats=max((len(v) for v in samples.values()), default=0),
        recorded_utc=when.isoformat(),
    )


def safe_name(name: str) -> str:
    """A test name (with parametrize ids) as one portable path component."""
    safe = re.sub(r"[^A-Za-z0-9._=+\-\[\]]", "_", name).strip(". ") or "_"
    if len(safe) > _MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        safe = f"{safe[: _MAX_NAME - 11]}-{digest}"
    return safe


def relative_test_path(test_file: Path, rootdir: Path) -> Path:
    """The test file relative to rootdir, without `.py`; each part made filesystem-safe."""
    try:
        rel = test_file.resolve().relative_to(rootdir.resolve())
    except ValueError:
        rel = Path(test_file.name)
    rel = rel.with_suffix("") if rel.suffix == ".py" else rel
    return Path(*(safe_name(p) for p in rel.parts))


# --- schema migrations: each takes the previous version's dict and returns the next one ---


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 (pytest-mgpu 0.0.x) held one configuration per file with samples stored per repeat:
    {"schema_version": 1, "fingerprint", "label", "engine": spec, "engine_versions",
    "workload", "repeats": [{metric: value, ...}, ...]}. v2 holds hardware plus keyed entries
    with per-metric samples and medians."""
    from pytest_mgpu.gate.stats import median

    rows: list[dict[str, Any]] = data["repeats"]
    names = sorted({name for row in rows for name in row})
    samples = {n: tuple(float(row[n]) for row in rows if n in row) for n in names}
    entry = Entry(
        spec=dict(data["engine"]),
        workload=dict(data["workload"]),
        samples=samples,
        summary={n: median(v) if any(math.isfinite(x) for x in v) else math.nan for n, v in samples.items()},
        versions=dict(data.get("engine_versions", {})),
        repeats=len(rows),
    )
    hardware = {"fingerprint": data["fingerprint"], "label": data.get("label", data["fingerprint"])}
    return {"schema_version": 2, "hardware": hardware, "entries": {entry.key: entry.to_json()}}


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def parse(path: Path, text: str) -> BaselineFile:
    """Parse and migrate a baseline file's text, or raise a `BaselineError` naming the file."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(path, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise BaselineError(path, "is JSON nested too deeply to be a baseline file",
                            "move it out of the baselines directory, or delete it and re-record with "
                            "--mgpu-update-baselines") from None
    version_field = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version_field, int) or isinstance(version_field, bool):
        raise BaselineError(
            path,
            "is not a pytest-mgpu baseline (no integer schema_version at the top level)",
            "move it out of the baselines directory, or delete it and re-record with --mgpu-update-baselines",
        )
    version = data["schema_version"]
    if version > SCHEMA_VERSION:
        raise BaselineError(
            path,
            f"has schema_version {version} but this pytest-mgpu reads up to {SCHEMA_VERSION}",
            "upgrade pytest-mgpu to the version that wrote it",
        )
    try:
        while version < SCHEMA_VERSION:
            if version not in MIGRATIONS:
                raise BaselineError(path, f"has schema_version {version}, which no migration reads")
            data = MIGRATIONS[version](data)
            version = data["schema_version"]
        # keyed anew: the key function may have changed since the file was written
        entries = {e.key: e for e in (Entry.from_json(raw) for raw in data["entries"].values())}
        hardware = dict(data["hardware"])
        fingerprint = str(hardware["fingerprint"])
    except BaselineError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise BaselineError(path, f"does not have the shape of schema_version {version} ({what})") from None
    if not fingerprint:
        raise BaselineError(path, "has an empty hardware fingerprint")
    return BaselineFile(path=path, hardware=hardware, entries=entries)


def serialise(hardware: Mapping[str, Any], entries: Mapping[str, Entry]) -> str:
    return dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "hardware": dict(hardware),
            "entries": {key: e.to_json() for key, e in entries.items()},
        }
    )


def write_atomic(path: Path, text: str) -> None:
    """Write through a temp file in the same directory and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class BaselineStore:
    """Baselines under one root directory; the lock files live outside it (in `lock_dir`)."""

    def __init__(self, root: Path, lock_dir: Path | None = None) -> None:
        self.root = root
        self.lock_dir = lock_dir or Path(tempfile.gettempdir()) / "pytest-mgpu-baseline-locks"

    def path_for(self, fingerprint: str, test_path: Path, test_name: str) -> Path:
        return self.root / safe_name(fingerprint) / test_path / f"{safe_name(test_name)}.json"

    def load(self, path: Path) -> BaselineFile | None:
        """The file's contents (migrated), None when it does not exist."""
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):  # nothing recorded there (a writer says why it cannot)
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise BaselineError(path, f"cannot be read ({exc})") from None
        stored = parse(path, text)
        self._check_home(stored)
        return stored

    def _check_home(self, stored: BaselineFile) -> None:
        """Different fingerprints are never compared: a file must live under its own hardware."""
        fingerprint = str(stored.hardware["fingerprint"])
        try:
            home = stored.path.relative_to(self.root).parts[0]
        except (ValueError, IndexError):
            return
        if home != safe_name(fingerprint):
            raise BaselineError(
                stored.path,
                f"was recorded on hardware {fingerprint!r} but is stored under {home!r}; "
                "baselines from different hardware are never compared",
                f"move it under {self.root / safe_name(fingerprint)}, or delete it and re-record on this machine",
            )

    def lookup(self, path: Path, key: str) -> Entry | None:
        stored = self.load(path)
        return None if stored is None else stored.entries.get(key)

    def record(self, path: Path, hardware: Mapping[str, Any], entry: Entry) -> None:
        """Add or replace one entry, keeping the file's other entries (read-modify-write under a lock)."""
        import filelock

        self.lock_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
        with filelock.FileLock(str(self.lock_dir / f"{digest}.lock"), timeout=_LOCK_TIMEOUT_S):
            stored = self.load(path)
            entries = dict(stored.entries) if stored else {}
            entries[entry.key] = entry
            write_atomic(path, serialise(hardware, dict(sorted(entries.items()))))
