"""`python -m pytest_mgpu <command>`: see `pytest_mgpu.cli`."""

from __future__ import annotations

from pytest_mgpu.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
