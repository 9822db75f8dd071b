"""The measurement pipeline behind `mgpu_bench`: quiet time, telemetry, load, enrichment, findings, record.

Kept out of the fixture so each step has one place: the fixture only resolves arguments, and
every later concern (deadlines, history, progress) is a step here rather than a branch there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_mgpu.engines.hooks import QUIET_TIMEOUT_S, get_leaser
from pytest_mgpu.session import MgpuSession, Record

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_mgpu.bench.workload import Workload
    from pytest_mgpu.engines.spec import EngineServer

# Each run on an engine draws fresh prompts, so none is answered from the prefix cache of an earlier run.
RUN_SEED_STRIDE = 1000


def hardware_facts(session: MgpuSession, server: EngineServer) -> dict[str, Any]:
    """The fingerprint and the names of the devices this engine used, as stored with every result."""
    from pytest_mgpu.hardware.fingerprint import fingerprint

    fp = fingerprint(session.topology)
    from pytest_mgpu.hardware.fingerprint import node_facts

    return {"fingerprint": fp.dirname, "label": fp.label, "digest": fp.digest, **fp.facts,
            "devices_used": [session.topology.devices[i].name for i in server.devices], **node_facts(server)}


def next_seed_offset(session: MgpuSession, server: EngineServer) -> int:
    """A per-engine prompt-seed shift, so no run is answered from an earlier run's prefix cache."""
    done = session.bench_runs.get(server.base_url, 0)
    session.bench_runs[server.base_url] = done + 1
    return RUN_SEED_STRIDE * done


def measure(session: MgpuSession, server: EngineServer, workload: Workload, *, repeats: int,
            nodeid: str) -> Record:
    """Measure `workload` on `server` and append the record to the session (the caller gates it)."""
    from pytest_mgpu.bench.runner import run_bench
    from pytest_mgpu.diagnose import diagnose
    from pytest_mgpu.diagnose.enrich import enrich
    from pytest_mgpu.report.progress import measurement_progress
    from pytest_mgpu.telemetry import start_telemetry

    hardware = hardware_facts(session, server)
    earlier = tuple(r.result for r in session.records)
    offset = next_seed_offset(session, server)
    # Measurements on one box take turns, and no neighbour starts an engine meanwhile (see Leaser.quiet).
    with get_leaser(session).quiet(measuring=True, timeout_s=QUIET_TIMEOUT_S, holder=nodeid) as quiet:
        sampler = start_telemetry(session.topology, server)  # telemetry over the measurement window
        try:
            result = run_bench(server, workload, repeats=repeats, hardware=hardware, seed_offset=offset,
                               progress=measurement_progress(session.config, server.spec.label()),
                               request_timeout_s=session.settings.request_timeout,
                               client_processes=session.settings.client_processes,
                               liveness=liveness_of(session, server))
        except Exception as exc:
            raise explain_engine_death(session, server, exc) from exc
        finally:
            telemetry = sampler.stop() if sampler is not None else None
    result = enrich(result, server, session.topology, telemetry)
    result = result.with_findings(*diagnose(session.topology, server, result, telemetry, earlier))
    notes = [f"telemetry: {n}" for n in telemetry.notes] if telemetry else []
    if quiet.waited_s >= 1.0:
        notes.append(f"waited {quiet.waited_s:.1f} s for other processes on this machine to finish measuring "
                     "or starting engines")
    record = Record(nodeid, result, notes=notes)
    session.records.append(record)
    from pytest_mgpu.report.xdist import spool

    spool(session)  # under xdist: on disk at once, so a worker that crashes later loses nothing
    return record


def liveness_of(session: MgpuSession, server: EngineServer) -> Callable[[], str | None] | None:
    """A watch over every process of the engine's group (None for an engine this session did not start)."""
    from pytest_mgpu.bench.liveness import GroupWatch

    process = session.pool.process_of(server) if session.pool is not None else None
    if process is None or process.pid is None:
        return None
    return GroupWatch.start(server.spec.label(), process.pid, server.log_path).check


def explain_engine_death(session: MgpuSession, server: EngineServer, exc: Exception) -> Exception:
    """A bench that failed because the engine died says so, with the engine's own last words."""
    from pytest_mgpu.engines.process import EngineError, log_tail

    process = session.pool.process_of(server) if session.pool is not None else None
    if process is not None and not process.alive() and server.log_path is not None:
        return EngineError(
            f"the engine {server.spec.label()} died during the measurement ({exc}).\n"
            f"Last lines of its log {server.log_path}:\n{log_tail(server.log_path)}"
        )
    return exc
