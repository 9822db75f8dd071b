"""Recorded topologies: JSON snapshots (written by `python -m pytest_mgpu topo --json`) and topo-m text.

A recording stands in for the live machine (`--mgpu-topology-file`), so the format is told
by content, not by file name: JSON starts with `{`, anything else must be `nvidia-smi topo -m`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pytest_mgpu.hardware.errors import TopologyFileError
from pytest_mgpu.hardware.topo_text import parse_topo_m
from pytest_mgpu.hardware.topology import Topology

SCHEMA_VERSION = 1


def snapshot_json(topology: Topology) -> dict[str, Any]:
    """The topology as JSON, with the fingerprint alongside for people reading the file."""
    from pytest_mgpu.hardware.fingerprint import fingerprint

    fp = fingerprint(topology)
    return {"schema_version": SCHEMA_VERSION, **topology.to_json(), "fingerprint": fp.to_json()}


def write_snapshot(topology: Topology, path: Path) -> None:
    """Write atomically (temp file + rename), sorted keys, so a snapshot diffs cleanly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(snapshot_json(topology), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_snapshot(text: str, source: str) -> Topology:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TopologyFileError(f"{source}: not valid JSON ({exc})") from None
    except RecursionError:
        raise TopologyFileError(f"{source}: JSON nested too deeply to be a topology snapshot") from None
    if not isinstance(data, dict) or "devices" not in data or "links" not in data:
        raise TopologyFileError(
            f"{source}: expected a topology snapshot with 'devices' and 'links' "
            "(as written by `python -m pytest_mgpu topo --json`)"
        )
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise TopologyFileError(f"{source}: schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise TopologyFileError(
            f"{source}: snapshot schema_version {version} is newer than this pytest-mgpu reads "
            f"({SCHEMA_VERSION}); upgrade pytest-mgpu"
        )
    try:
        return Topology.from_json(data, source=source)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TopologyFileError(f"{source}: malformed topology snapshot: {exc}; expected the shape "
                                "`python -m pytest_mgpu topo --json` writes") from None


def load_topology_file(path: Path) -> Topology:
    """A recorded topology, JSON or `nvidia-smi topo -m` text, told apart by content."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TopologyFileError(
            f"cannot read topology file {path}: {exc.strerror or exc}; expected a JSON snapshot "
            "or the output of `nvidia-smi topo -m`"
        ) from None
    if text.lstrip().startswith("{"):
        return parse_snapshot(text, str(path))
    return parse_topo_m(text, str(path))
