"""What an engine is asked to be (`EngineSpec`) and what a running one offers (`EngineServer`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mgpu.gate.measured import config_label
from pytest_mgpu.redact import redact_args


@dataclass(frozen=True)
class EngineSpec:
    """Everything that decides an engine's performance and identity.

    Two tests asking for an equal spec share one running engine; baselines are keyed by it
    (never by engine version: catching a regression across an upgrade is the point).
    """

    engine: str  # "vllm", "trtllm", "external"
    model: str
    tp: int = 1
    pp: int = 1
    n_devices: int = 1  # devices allocated to the engine (>= tp*pp, or more to reproduce idle devices)
    device_kind: str = "cpu"  # "cuda" or "cpu"
    extra_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    nodes: int = 1  # multi-node (engines/multinode.py): n_devices and tp*pp are split evenly over the nodes

    @property
    def world_size(self) -> int:
        return self.tp * self.pp

    def key(self) -> dict[str, Any]:
        """The spec as baselines key it (model by name, not by path; secret arg values masked, env left out)."""
        return {
            "engine": self.engine,
            "model": Path(self.model).name if Path(self.model).is_absolute() else self.model,
            "tp": self.tp,
            "pp": self.pp,
            "n_devices": self.n_devices,
            "device_kind": self.device_kind,
            "extra_args": list(redact_args(self.extra_args)),
            **({"nodes": self.nodes} if self.nodes > 1 else {}),  # multi-node: absent on one node (old keys hold)
        }

    def label(self) -> str:
        """For people: reports, summaries, error messages (secret arg values masked, env never shown)."""
        return config_label(self.key())


def endpoint_overrides(args: tuple[str, ...]) -> list[str]:
    """`--host`/`--port` among a user's engine args: they would win over where pytest-mgpu has the engine listen."""
    return [flag for flag in ("--host", "--port") if any(a == flag or a.startswith(flag + "=") for a in args)]


@dataclass(frozen=True)
class EngineNode:
    """One node of a multi-node engine: where it ran, on which devices (indices on that host), its log."""

    rank: int
    host: str
    devices: tuple[int, ...]
    log_path: Path | None = None
    pid: int | None = None  # of the local process (the launcher's, e.g. ssh, for a remote node)


@dataclass(frozen=True)
class EngineServer:
    """A running OpenAI-compatible server, as tests and the load generator see it."""

    spec: EngineSpec
    base_url: str  # "http://127.0.0.1:PORT"
    model_name: str  # the name the server answers to in requests
    devices: tuple[int, ...]  # indices into the topology, allocated to this engine
    log_path: Path | None = None
    pid: int | None = None
    versions: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    startup_s: float | None = None
    tokenizer_path: str | None = None  # local tokenizer directory, for exact-length prompts
    compile_cache_warm: bool | None = field(default=None, compare=False)  # from its log (engines/phases.py)
    nodes: tuple[EngineNode, ...] = ()  # multi-node: every node, head first (empty on one node)
    node_link: str | None = None  # multi-node: what joins the nodes ("gloo/TCP loopback", "NCCL NET/IB")
    # Sent as `Authorization: Bearer` by every client; never printed (left out of repr and comparisons).
    api_key: str | None = field(default=None, repr=False, compare=False, hash=False)

    @property
    def n_devices(self) -> int:
        """Devices the engine runs on, every node's counted (per-device metrics divide by this)."""
        return sum(len(n.devices) for n in self.nodes) if self.nodes else len(self.devices)
