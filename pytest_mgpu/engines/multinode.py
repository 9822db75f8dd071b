"""Multi-node engines: ranks split over nodes, each node's command line, and their joint lifecycle.

pytest-mgpu drives the engines' own multi-node launch rather than inventing one. vLLM: every
node runs `vllm serve ... --nnodes K --node-rank i --master-addr A --master-port Q`, the head
(rank 0) serves the API and the others add `--headless`. SGLang: `--nnodes K --node-rank i
--dist-init-addr A:Q`. The head runs where pytest runs; the others are started through a node
launcher (`node_launchers`), each in its own process group with its own watchdog and log.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_mgpu.engines.node_launchers import LOCAL, wrap_for_node
from pytest_mgpu.engines.process import EngineProcess, EngineStartError, EngineTeardownError, LaunchPlan, log_tail

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
VLLM_API_MODULE = "vllm.entrypoints.openai.api_server"
VLLM_SERVE_MODULE = "pytest_mgpu.engines.vllm_serve"  # `vllm serve` without the console script (see there)


def check_nodes(tp: int, pp: int, nodes: int) -> None:
    """tp*pp ranks must split evenly over the nodes (each node runs the same number of ranks)."""
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise ValueError(f"mgpu_engine(nodes={nodes!r}): expected an integer >= 1")
    if (tp * pp) % nodes:
        raise ValueError(
            f"mgpu_engine(tp={tp}, pp={pp}, nodes={nodes}): tp*pp={tp * pp} ranks do not split evenly over "
            f"{nodes} nodes; expected tp*pp divisible by nodes (e.g. nodes={_divisors_hint(tp * pp)})"
        )


def _divisors_hint(n: int) -> str:
    return " or ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def split_devices(devices: Sequence[int], nodes: int) -> tuple[tuple[int, ...], ...]:
    """Consecutive, equal shares of `devices`, one per node (node 0, the head, first)."""
    if nodes < 1 or len(devices) % nodes:
        raise ValueError(f"{len(devices)} devices do not split evenly over {nodes} nodes")
    per = len(devices) // nodes
    return tuple(tuple(devices[i * per:(i + 1) * per]) for i in range(nodes))


@dataclass(frozen=True)
class NodeSetup:
    """Where the nodes of one engine run and how the non-head ones are started."""

    hosts: tuple[str, ...]  # one per node, head first
    launcher: str = LOCAL  # "local", "ssh", "slurm" or a template such as "ssh {host}"

    @property
    def is_local(self) -> bool:
        return self.launcher == LOCAL

    @property
    def master_addr(self) -> str:
        head = self.hosts[0]
        return "127.0.0.1" if self.is_local or head in LOCAL_HOSTS else head


def node_setup(n: int, hosts: Sequence[str], launcher: str) -> NodeSetup:
    """The setup for an n-node engine from --mgpu-nodes/--mgpu-node-launcher; a clear error when hosts are short."""
    if launcher == LOCAL and not hosts:
        return NodeSetup(("localhost",) * n, LOCAL)
    if len(hosts) < n:
        raise EngineStartError(
            f"the engine asks for {n} nodes but --mgpu-nodes names {len(hosts)} ({', '.join(hosts) or 'none'}); "
            f"expected at least {n} hosts, head first. Name more, or mark the test "
            f"@pytest.mark.mgpu_nodes({n}) so it is skipped where they are missing."
        )
    return NodeSetup(tuple(hosts[:n]), launcher)


def vllm_node_argv(argv: Sequence[str], *, nnodes: int, rank: int, master_addr: str,
                   master_port: int) -> tuple[str, ...]:
    """A single-node vLLM command line made into node `rank`'s: `serve` form, node flags, `--headless` off the head.

    `--headless` works only through `vllm serve` (the api_server module fails on a follower with
    "collective_rpc should not be called on follower node"), so the module form is rewritten.
    """
    out = list(argv)
    if VLLM_API_MODULE in out:
        i = out.index(VLLM_API_MODULE)
        out[i] = VLLM_SERVE_MODULE
        if "--model" in out:
            j = out.index("--model")
            model = out[j + 1]
            del out[j:j + 2]
            out.insert(i + 1, model)
    out += ["--nnodes", str(nnodes), "--node-rank", str(rank),
            "--master-addr", master_addr, "--master-port", str(master_port)]
    if rank > 0:
        out.append("--headless")
    return tuple(out)


def sglang_node_args(*, nnodes: int, rank: int, dist_init_addr: str, dist_init_port: int) -> tuple[str, ...]:
    """SGLang's multi-node flags for node `rank` (every node, head included, gets the same address)."""
    host = f"[{dist_init_addr}]" if ":" in dist_init_addr else dist_init_addr
    return ("--nnodes", str(nnodes), "--node-rank", str(rank), "--dist-init-addr", f"{host}:{dist_init_port}")


# NCCL's INFO lines name the transport: "... via NET/IB/0/GDRDMA", "... via NET/Socket/0", "Using network IB".
_NCCL_VIA = re.compile(r"\bvia (NET/[A-Za-z]+|P2P/[A-Za-z]+|SHM)")
_NCCL_USING = re.compile(r"NCCL INFO Using network (\w+)")
_GDR = re.compile(r"via NET/IB/\d+/GDRDMA")


def nccl_transport(text: str) -> str | None:
    """The cross-node transport NCCL reported in a log (needs NCCL_DEBUG=INFO): 'NET/IB', 'NET/Socket', ...

    'NET/IB+GDRDMA' when GPUDirect RDMA was used; None when the log does not say.
    """
    nets = {m.group(1) for m in _NCCL_VIA.finditer(text) if m.group(1).startswith("NET/")}
    nets |= {f"NET/{m.group(1)}" for m in _NCCL_USING.finditer(text)}
    if not nets:
        return None
    label = "+".join(sorted(nets))
    return label + ("+GDRDMA" if _GDR.search(text) else "")


def describe_link(device_kind: str, setup: NodeSetup, logs: Sequence[Path]) -> str:
    """What joins the nodes, for the fingerprint facts and the summary."""
    if device_kind == "cpu":
        return "gloo/TCP loopback" if setup.is_local else "gloo/TCP"
    for path in logs:
        try:
            found = nccl_transport(path.read_text(errors="replace"))
        except OSError:
            continue
        if found:
            return f"NCCL {found}"
    return "NCCL (transport not logged; set NCCL_DEBUG=INFO)"


@dataclass(frozen=True)
class NodePlan:
    rank: int
    host: str
    devices: tuple[int, ...]  # indices here (local), or the same indices on the remote host
    plan: LaunchPlan
    log_path: Path


def node_log_path(head_log: Path, rank: int) -> Path:
    return head_log if rank == 0 else head_log.with_name(f"{head_log.stem}-node{rank}{head_log.suffix}")


def node_cache_root(env: Mapping[str, str], rank: int) -> Path:
    """A follower's own vLLM cache when every node shares this machine.

    Each node's first rank is local rank 0, so all nodes write torch.compile's artefacts to
    the same `rank_0_0` directory and race (seen here: "ImportError: ... .so: file too short").
    """
    base = env.get("VLLM_CACHE_ROOT") or os.environ.get("VLLM_CACHE_ROOT")
    root = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vllm"
    return root / f"pytest-mgpu-node{rank}"


def plan_nodes(
    setup: NodeSetup,
    devices: Sequence[int],
    plan_one: Callable[[tuple[int, ...]], LaunchPlan],
    *,
    master_port: int,
    head_log: Path,
    cwd: str | None = None,
) -> tuple[NodePlan, ...]:
    """Every node's plan: `plan_one(node_devices)` is the engine's single-node plan, made multi-node here.

    With the local launcher `devices` are all nodes' devices (leased here) and split among them;
    otherwise they are the head's, and each remote node uses the same indices on its own host.
    """
    n = len(setup.hosts)
    shares = split_devices(devices, n) if setup.is_local else (tuple(devices),) * n
    plans = []
    for rank, (host, share) in enumerate(zip(setup.hosts, shares, strict=True)):
        one = plan_one(share)
        argv = vllm_node_argv(one.argv, nnodes=n, rank=rank, master_addr=setup.master_addr, master_port=master_port)
        env = dict(one.env)
        if setup.is_local and rank > 0:
            env["VLLM_CACHE_ROOT"] = str(node_cache_root(env, rank))
        if rank > 0:
            argv, env = wrap_for_node(setup.launcher, host, argv, env, cwd=cwd)
        plans.append(NodePlan(rank, host, share, LaunchPlan(argv=tuple(argv), env=env, health_url=one.health_url,
                                                             cwd=one.cwd), node_log_path(head_log, rank)))
    return tuple(plans)


class MultiNodeProcess(EngineProcess):
    """The head (this object, serving the API) plus one process group per follower node.

    Followers start first; while the head comes up, a follower that exits fails the start at
    once with its log tail. Teardown stops the head, then every follower, and checks each group.
    """

    def __init__(self, nodes: Sequence[NodePlan]) -> None:
        head, *rest = nodes
        super().__init__(head.plan, head.log_path)
        self.nodes = tuple(nodes)
        self.followers = [EngineProcess(n.plan, n.log_path) for n in rest]

    @property
    def log_paths(self) -> tuple[Path, ...]:
        return tuple(n.log_path for n in self.nodes)

    @property
    def pids(self) -> tuple[int | None, ...]:
        return (self.pid, *(f.pid for f in self.followers))

    def start(self, timeout_s: float, on_wait: Callable[[float], object] | None = None) -> None:
        try:
            for f in self.followers:
                f.spawn()
        except BaseException:
            self.stop()
            raise
        try:
            super().start(timeout_s, on_wait)
        except EngineStartError as exc:
            if str(exc).startswith("node "):  # a follower's own failure already shows its log
                raise
            tails = "".join(f"\nLast lines of node {n.rank}'s log {n.log_path}:\n{log_tail(n.log_path)}"
                            for n in self.nodes[1:])
            raise EngineStartError(f"{exc}{tails}") from None

    def check_companions(self) -> None:
        for node, f in zip(self.nodes[1:], self.followers, strict=True):
            code = f.exit_code()
            if code is not None:
                raise EngineStartError(
                    f"node {node.rank} of {len(self.nodes)} (on {node.host}) exited with code {code} while the "
                    f"engine was starting; expected it to join the head at {self.nodes[0].host}.\n"
                    f"Last lines of its log {node.log_path}:\n{log_tail(node.log_path)}"
                )

    def healthy(self) -> bool:
        return super().healthy() and all(f.alive() for f in self.followers)

    def stop(self, grace_s: float = 15.0) -> None:
        errors: list[EngineTeardownError] = []
        t0 = time.monotonic()
        try:
            super().stop(grace_s)
        except EngineTeardownError as exc:
            errors.append(exc)
        for f in self.followers:
            try:
                f.stop(grace_s)
            except EngineTeardownError as exc:
                errors.append(exc)
        self.stop_s = time.monotonic() - t0
        if errors:
            raise EngineTeardownError("\n".join(str(e) for e in errors))
