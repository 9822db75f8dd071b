"""Options, resolved once at configure time into a frozen `Settings`.

Every option exists three ways, with this precedence: command line `--mgpu-x`, then the
environment `PYTEST_MGPU_X`, then ini `mgpu_x`, then the default. Each option's help text
is written once, here, and reused for the ini key. A bad value is a `pytest.UsageError`
that names where the value came from.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest

BUILTIN_ENGINES = ("vllm", "sglang", "trtllm", "external")  # = engines.launchers.BUILTIN_ENGINES (kept light)
DEVICE_MODES = ("auto", "cuda", "cpu")
MISSING_POLICIES = ("warn", "skip", "fail")


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def _engine_name(value: str) -> str:
    """Any name: which engines exist is known only after plugins registered theirs (checked at configure)."""
    if not value.strip():
        raise ValueError(f"expected an engine name: {', '.join(BUILTIN_ENGINES)}, or one a plugin adds")
    return value.strip()


def _positive_float(value: str) -> float:
    x = float(value)
    if not math.isfinite(x) or x <= 0:
        raise ValueError("expected a positive number")
    return x


def _fraction(value: str) -> float:
    x = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
    if not 0 < x < 10:
        raise ValueError("expected a relative tolerance such as 0.1 or 10%")
    return x


def _positive_int(value: str) -> int:
    x = int(value)
    if x < 1:
        raise ValueError("expected an integer >= 1")
    return x


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _finding_codes(value: str) -> tuple[str, ...]:
    from pytest_mgpu.diagnose.policy import parse_fail_on

    return parse_fail_on(value)


def _hosts(value: str) -> tuple[str, ...]:
    from pytest_mgpu.engines.node_launchers import parse_hosts

    return parse_hosts(value)


def _node_launcher(value: str) -> str:
    from pytest_mgpu.engines.node_launchers import parse_launcher

    return parse_launcher(value)


def _split_args(value: str) -> tuple[str, ...]:
    import shlex

    return tuple(shlex.split(value))


def _history_url(value: str) -> str:
    from pytest_mgpu.history.url import parse

    parse(value, Path("."))  # HistoryUrlError is a ValueError that says what is expected
    return value


@dataclass(frozen=True)
class Option:
    name: str  # settings field; CLI --mgpu-<name with dashes>, ini mgpu_<name>, env PYTEST_MGPU_<NAME>
    help: str
    parse: Callable[[str], Any]
    default: Any
    metavar: str | None = None
    flag: bool = False  # store_true on the command line
    masked: bool = False  # the value may hold a password: error messages show it masked

    def shown(self, raw: Any) -> str:
        if self.masked:
            from pytest_mgpu.history.url import mask

            return repr(mask(str(raw)))
        return repr(raw)

    @property
    def cli(self) -> str:
        return "--mgpu-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "mgpu_" + self.name

    @property
    def env(self) -> str:
        return "PYTEST_MGPU_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("engine", f"Inference engine the fixtures start: {', '.join(BUILTIN_ENGINES)} (see --mgpu-base-url), "
           "and any engine a plugin adds (hook pytest_mgpu_engines)", _engine_name, "vllm", "NAME"),
    Option("model", "Model directory or hub id (default: the tiny model bundled with pytest-mgpu)",
           str, None, "MODEL"),
    Option("device", "Device kind: cuda, cpu (one core group per rank), or auto (cuda when NVML sees GPUs)",
           _choice(DEVICE_MODES), "auto", "KIND"),
    Option("base_url", "URL of an externally run OpenAI-compatible server (with --mgpu-engine external)",
           str, None, "URL"),
    Option("external_devices", "Number of devices the external server uses, for per-device metrics",
           _positive_int, 1, "N"),
    Option("engine_args", "Extra arguments for every engine, e.g. '--load-format dummy' (part of the spec)",
           _split_args, (), "ARGS"),
    Option("baselines", "Directory of stored baselines", Path, Path("baselines"), "DIR"),
    Option("update_baselines", "Record measurements as the new baselines instead of comparing",
           _bool, False, flag=True),
    Option("missing_baseline", "What a missing baseline means: warn (pass, say so), skip, or fail",
           _choice(MISSING_POLICIES), "warn", "POLICY"),
    Option("tolerance", "Relative change tolerated on gated metrics, e.g. 0.1 or 10% (default: per metric)",
           _fraction, None, "FRACTION"),
    Option("repeats", "Repeats of each workload for gated measurements", _positive_int, 3, "N"),
    Option("report", "Write a JSON report of every measurement and verdict to PATH", Path, None, "PATH"),
    Option("summary", "Write a Markdown summary to PATH (default: $GITHUB_STEP_SUMMARY when set)",
           Path, None, "PATH"),
    Option("topology_file", "Use a recorded topology (JSON or `nvidia-smi topo -m` text) instead of this machine",
           Path, None, "PATH"),
    Option("lock_dir", "Directory of per-device lock files shared by every pytest process on this machine",
           Path, None, "DIR"),
    Option("start_timeout", "Seconds an engine may take to become healthy", _positive_float, 600.0, "SECONDS"),
    Option("history", "Run history store: sqlite:///PATH (default .pytest-mgpu/history.db under the rootdir), "
           "postgresql://USER@HOST:PORT/DB, or none", _history_url, None, "URL", masked=True),
    Option("request_timeout", "Seconds one request may take before it counts as failed; a measurement's "
           "deadline is derived from it and the workload (see docs/deadlines.md)", _positive_float, 300.0,
           "SECONDS"),
    Option("fail_on", "Finding codes that fail the test instead of only flagging it (comma-separated, or 'none')",
           _finding_codes, (), "CODES"),
    # multi-node engines (engines/multinode.py)
    Option("nodes", "Hosts for multi-node engines, comma-separated, head (this machine) first "
           "(default with the local launcher: every node on this machine)", _hosts, (), "HOST,HOST"),
    Option("node_launcher", "How non-head nodes are started: local, ssh, slurm, or a template such as "
           "'ssh {host}' ({cmd}: the remote command as one word)", _node_launcher, "local", "LAUNCHER"),
    Option("api_key", "API key sent as 'Authorization: Bearer KEY' to the engine (never printed; an engine's own "
           "--api-key argument wins)", str, None, "KEY"),
    Option("client_processes", "Load-generator processes; more than 1 spreads a high-concurrency load (tens of "
           "thousands of tokens/s) over that many event loops (docs/measurement-fidelity.md)", _positive_int, 1, "N"),
    Option("allow_host_override", "Let engine args carry --host/--port (the server may then listen beyond "
           "127.0.0.1; the summary warns)", _bool, False, flag=True),
)


@dataclass(frozen=True)
class Settings:
    engine: str
    model: str | None
    device: str
    base_url: str | None
    external_devices: int
    engine_args: tuple[str, ...]
    baselines: Path
    update_baselines: bool
    missing_baseline: str
    tolerance: float | None
    repeats: int
    report: Path | None
    summary: Path | None
    topology_file: Path | None
    lock_dir: Path | None
    start_timeout: float
    request_timeout: float = 300.0
    fail_on: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()  # multi-node
    node_launcher: str = "local"  # multi-node
    history: str | None = None  # resolved against the rootdir by pytest_mgpu.history.gate.get_history
    api_key: str | None = field(default=None, repr=False)  # a secret: never in repr, reports or logs
    allow_host_override: bool = False
    client_processes: int = 1

    def describe(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("mgpu", "multi-GPU LLM inference performance (pytest-mgpu)")
    for opt in OPTIONS:
        env_help = f" [env {opt.env}, ini {opt.ini}]"
        cli_help = (opt.help + env_help).replace("%", "%%")  # argparse expands % in help
        if opt.flag:
            group.addoption(opt.cli, action="store_true", default=None, dest="mgpu_" + opt.name,
                            help=cli_help)
        else:
            group.addoption(opt.cli, default=None, dest="mgpu_" + opt.name, metavar=opt.metavar,
                            help=cli_help)
        parser.addini(opt.ini, opt.help, type="string", default=None)


def resolve(config: pytest.Config) -> Settings:
    """Resolve every option with CLI > env > ini > default precedence."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw: Any = config.getoption("mgpu_" + opt.name)
        where = f"command line {opt.cli}"
        if raw is None and opt.env in os.environ:
            raw, where = os.environ[opt.env], f"environment variable {opt.env}"
        if raw is None:
            ini = config.getini(opt.ini)
            if ini not in (None, "", []):
                raw, where = ini, f"ini option {opt.ini} in {config.inipath}"
        if raw is None:
            values[opt.name] = opt.default
            continue
        if opt.flag and raw is True:
            values[opt.name] = True
            continue
        try:
            values[opt.name] = opt.parse(str(raw))
        except ValueError as exc:
            raise pytest.UsageError(f"pytest-mgpu: invalid value {opt.shown(raw)} for {where}: {exc}") from None
    settings = Settings(**values)
    _check_combinations(settings)
    return settings


def _check_combinations(s: Settings) -> None:
    if s.engine == "external" and not s.base_url:
        raise pytest.UsageError(
            "pytest-mgpu: --mgpu-engine external needs --mgpu-base-url (the server to measure), "
            "e.g. --mgpu-base-url http://127.0.0.1:8000"
        )
    if s.base_url and s.engine != "external":
        raise pytest.UsageError(
            f"pytest-mgpu: --mgpu-base-url is only used with --mgpu-engine external (engine is {s.engine!r}); "
            "add --mgpu-engine external or drop --mgpu-base-url"
        )
