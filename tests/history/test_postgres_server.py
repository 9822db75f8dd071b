"""The tests' own PostgreSQL server never outlives them (a leaked one was found after a CI run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import running_postgres


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie is gone, only not yet reaped (PID 1 of a container may never reap it)


def test_the_server_stops_even_after_another_pytest_ran_meanwhile(tmp_path: Path) -> None:
    """Any pytest that starts resets /tmp/pytest-of-<user> to 0700; a server kept under it could not be
    stopped by the postgres user, and stayed up after the session."""
    with running_postgres() as url:
        match = re.search(r"host=([^&]+)", url)
        assert match
        base = Path(match.group(1)).parent
        pid = int((base / "data" / "postmaster.pid").read_text().split()[0])
        assert _alive(pid)
        (tmp_path / "test_inner.py").write_text("def test_inner():\n    pass\n")
        inner = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_inner.py"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert inner.returncode == 0, inner.stdout + inner.stderr
    assert not _alive(pid), f"the PostgreSQL server {pid} outlived its fixture"
    assert not base.exists()
