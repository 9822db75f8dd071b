"""`python -m pytest_mgpu <command>`: the plugin's tools outside pytest.

Each command is a module with `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the default. Adding a command is one line in `COMMANDS`. Command
modules import heavy things (torch, pynvml) inside their functions, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

# command name -> module that registers it (in the order `--help` lists them)
COMMANDS: dict[str, str] = {
    "topo": "pytest_mgpu.cli.topo",
    "bench": "pytest_mgpu.cli.bench",
    "history": "pytest_mgpu.cli.history",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_mgpu",
        description="pytest-mgpu tools: inspect this machine's devices, drive a load outside pytest, "
        "read the run history.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args))
