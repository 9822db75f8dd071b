"""`run_bench`: a workload against a running server, repeated, into a `BenchResult`.

Synchronous on the outside (it runs its own event loop, in a helper thread when the caller is
already inside one), so the pytest fixture and the command line share it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import threading
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pytest_mgpu import probe_http
from pytest_mgpu.bench import datasets
from pytest_mgpu.bench.client import make_session
from pytest_mgpu.bench.compute import compute_metrics, summarize
from pytest_mgpu.bench.endpoints import ENDPOINTS
from pytest_mgpu.bench.errors import BenchError
from pytest_mgpu.bench.health import ClientHealth, HealthLimits, assess
from pytest_mgpu.bench.load import Prepared, RunRecords, arrival_offsets_s, drive, drive_processes
from pytest_mgpu.bench.records import RequestRecord
from pytest_mgpu.bench.results import BenchResult, now_stamp
from pytest_mgpu.bench.workload import Workload
from pytest_mgpu.engines.spec import EngineServer, EngineSpec
from pytest_mgpu.findings import Finding, Severity

_T = TypeVar("_T")
_WARMUP_SEED_OFFSET = 1_000_003  # warm-up prompts differ from every repeat's (no prefix-cache hits)
DEFAULT_REQUEST_TIMEOUT_S = 300.0
DEADLINE_SLACK_S = 60.0  # connection setup, prompt preparation, a slow event loop


def measurement_deadline_s(workload: Workload, repeats: int, request_timeout_s: float) -> float:
    """The longest a whole measurement may take before it is an error, not a slow result.

    Every request ends within `request_timeout_s` (it is a failure after that), so a run of
    n prompts at concurrency c takes at most ceil(n / c) such waves (one wave when unbounded),
    plus the arrival spread n / rate of an open loop. Warm-up is one wave (sent all at once):
        deadline = (1 + repeats * waves) * request_timeout_s + repeats * n / rate + DEADLINE_SLACK_S
    Generous by design: it bounds a stuck client or server, it does not judge speed.
    """
    c = workload.max_concurrency
    waves = math.ceil(workload.num_prompts / c) if c else 1
    spread_s = workload.num_prompts / workload.request_rate if math.isfinite(workload.request_rate) else 0.0
    return (1 + repeats * waves) * request_timeout_s + repeats * spread_s + DEADLINE_SLACK_S


def run_bench(
    server: EngineServer,
    workload: Workload | None = None,
    *,
    repeats: int = 1,
    hardware: dict[str, Any] | None = None,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    max_failed_fraction: float = 0.05,
    max_mismatch_fraction: float = 0.01,
    health_limits: HealthLimits | None = None,
    seed_offset: int = 0,
    progress: Callable[[int, int], object] | None = None,
    deadline_s: float | None = None,
    liveness: Callable[[], str | None] | None = None,
    client_processes: int = 1,
) -> BenchResult:
    """Warm up once, then run `workload` `repeats` times against `server`.

    Raises `BenchError` (with the server's error texts) when a repeat completes no request or
    more than `max_failed_fraction` of them fail; a request that takes longer than
    `request_timeout_s` counts as failed. Output-length mismatches above
    `max_mismatch_fraction` and a client that could not keep up become findings.
    `client_processes` > 1 splits the load over that many client processes (load.drive_processes).
    `seed_offset` shifts every prompt seed (not the workload's identity): an engine that
    already served a run's prompts would answer from its prefix cache, halving TTFT.
    `progress(done, total)` is told as each repeat starts, before its first request (after the warm-up:
    an observer can read the engine's counters there), and of each finished measured request.

    Bounded waits: the failures of each repeat are checked as soon as it ends (a broken engine
    stops the measurement after the first repeat, not the last); the whole measurement ends
    with a `BenchError` after `deadline_s` (default: `measurement_deadline_s`); `liveness`,
    polled every second, returns a reason when the engine is dead, and ends it at once.
    """
    workload = workload or Workload()
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not (isinstance(request_timeout_s, int | float) and math.isfinite(request_timeout_s)
            and request_timeout_s > 0):
        raise ValueError(f"request_timeout_s must be a positive number of seconds, got {request_timeout_s!r}")
    if deadline_s is None:
        deadline_s = measurement_deadline_s(workload, repeats, request_timeout_s)
    endpoint = ENDPOINTS[workload.endpoint]
    tok = _tokenizer(server) if datasets.needs_tokenizer(workload, endpoint.accepts_token_ids) else None
    run_id = uuid.uuid4().hex[:8]
    first_seed = workload.seed + seed_offset
    plans = [_prepare(server, workload, first_seed + r, workload.num_prompts, tok, f"mgpu-{run_id}-r{r}-")
             for r in range(repeats)]
    warm = _prepare(server, workload, workload.seed + _WARMUP_SEED_OFFSET, workload.warmup_requests, tok,
                    f"mgpu-{run_id}-w-")
    url = server.base_url.rstrip("/") + endpoint.path
    if client_processes < 1:
        raise ValueError(f"client_processes must be >= 1, got {client_processes}")

    def check(run: RunRecords, r: int) -> None:
        _check_failures(run.records, r, repeats, url, max_failed_fraction)

    bench = _bench(url, warm, plans, workload, request_timeout_s, check, progress, client_processes, server.api_key)
    runs = _run_sync(_bounded(bench, url, deadline_s, request_timeout_s, liveness))

    repeat_metrics: list[dict[str, float]] = []
    findings: list[Finding] = []
    for run in runs:
        metrics = compute_metrics(run.records, run.duration_s, n_devices=server.n_devices,
                                  goodput_ms=workload.goodput or None)
        repeat_metrics.append(metrics)
        findings += assess(run.health, metrics, health_limits or HealthLimits())
        findings += _token_findings(metrics, max_mismatch_fraction)
    return BenchResult(
        metrics=summarize(repeat_metrics),
        n_devices=server.n_devices,
        repeats=tuple(repeat_metrics),
        spec=server.spec.key(),
        workload=workload,
        hardware=dict(hardware or {}),
        versions=_versions(server),
        client=ClientHealth.worst(run.health for run in runs),
        findings=tuple(dict.fromkeys(findings)),
        model=server.model_name,
        date=now_stamp(),
        requests=tuple(run.records for run in runs),
    )


def external_server(base_url: str, *, model: str | None = None, n_devices: int = 1,
                    tokenizer: str | None = None, timeout_s: float = 10.0,
                    api_key: str | None = None) -> EngineServer:
    """An `EngineServer` for a server someone else runs (engine "external").

    Without `model`, asks the server's /v1/models; its `root` (vLLM: the model path) serves as
    the tokenizer directory when it is a local directory and `tokenizer` is not given.
    """
    base_url = base_url.rstrip("/")
    root = None
    if model is None:
        try:
            with probe_http.get(base_url + "/v1/models", timeout_s=timeout_s, api_key=api_key) as resp:
                first = json.load(resp)["data"][0]
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise BenchError(
                f"could not ask {base_url}/v1/models which model it serves ({exc}); "
                "is the server up? Pass the model name explicitly (CLI: --model NAME)"
            ) from None
        model, root = str(first["id"]), first.get("root")
    if tokenizer is None:
        for candidate in (root, model):
            if candidate and (Path(candidate) / "tokenizer.json").is_file():
                tokenizer = str(candidate)
                break
    spec = EngineSpec(engine="external", model=model, n_devices=n_devices)
    return EngineServer(spec=spec, base_url=base_url, model_name=model, devices=tuple(range(n_devices)),
                        tokenizer_path=tokenizer, api_key=api_key)


def _tokenizer(server: EngineServer) -> datasets.Tokenizer:
    for candidate in (server.tokenizer_path, server.spec.model):
        if candidate and (Path(candidate) / "tokenizer.json").is_file():
            return datasets.load_tokenizer(candidate)
    raise ValueError(
        f"this workload needs the model's tokenizer, but the server ({server.base_url}, model "
        f"{server.model_name!r}) names no local tokenizer directory; set EngineServer.tokenizer_path "
        "(CLI: --tokenizer DIR)"
    )


def _prepare(server: EngineServer, w: Workload, seed: int, n: int, tok: datasets.Tokenizer | None,
             id_prefix: str) -> list[Prepared]:
    if n == 0:
        return []
    endpoint = ENDPOINTS[w.endpoint]
    samples = datasets.load(w, seed, n, tok)
    if not datasets.sends_ids(w, endpoint.accepts_token_ids):
        samples = datasets.as_text(samples, tok, seed)
    return [
        Prepared(json.dumps(endpoint.body(server.model_name, s), separators=(",", ":")).encode(),
                 s.prompt_len, s.output_len, f"{id_prefix}{i}")
        for i, s in enumerate(samples)
    ]


async def _bounded(bench: Coroutine[Any, Any, list[RunRecords]], url: str, deadline_s: float,
                   request_timeout_s: float, liveness: Callable[[], str | None] | None) -> list[RunRecords]:
    """`bench`, ended early by the deadline or by `liveness` reporting a dead engine."""
    work = asyncio.ensure_future(bench)
    tasks: set[asyncio.Future[Any]] = {work}
    watch: asyncio.Future[str] | None = None
    if liveness is not None:
        watch = asyncio.ensure_future(_watch(liveness))
        tasks.add(watch)
    try:
        done, _ = await asyncio.wait(tasks, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            exc = work.exception()
            if isinstance(exc, BenchError) and liveness is not None:
                reason = await asyncio.to_thread(liveness)  # a dead engine process explains failed requests
                if reason is not None:
                    raise BenchError(f"measurement against {url} stopped: {reason}\nThe requests failed: {exc}")
            return work.result()
        if watch is not None and watch in done:
            raise BenchError(f"measurement against {url} stopped: {watch.result()}")
        raise BenchError(
            f"the measurement against {url} did not finish within its deadline of {deadline_s:.0f} s "
            f"(derived from the workload and the request timeout of {request_timeout_s:g} s, "
            "--mgpu-request-timeout); the engine or the client is stuck. See the engine's log.")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _watch(liveness: Callable[[], str | None]) -> str:
    from pytest_mgpu.bench.liveness import LIVENESS_POLL_S

    while True:
        reason = await asyncio.to_thread(liveness)  # reads /proc: off the event loop that times requests
        if reason is not None:
            return reason
        await asyncio.sleep(LIVENESS_POLL_S)


async def _bench(url: str, warm: Sequence[Prepared], plans: Sequence[Sequence[Prepared]], w: Workload,
                 timeout_s: float, check: Callable[[RunRecords, int], None],
                 progress: Callable[[int, int], object] | None = None,
                 client_processes: int = 1, api_key: str | None = None) -> list[RunRecords]:
    runs = []
    total, done = sum(len(p) for p in plans), [0]

    def one_done() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    session = make_session(w.max_concurrency, api_key)
    gc.collect()
    gc.freeze()  # long-lived objects out of the collector's way: shorter pauses mid-run (as vLLM does)
    try:
        async with session:
            if warm:
                warmed = await drive(session, url, warm, [0.0] * len(warm), None, timeout_s)
                if not any(r.success for r in warmed.records):
                    raise BenchError(
                        f"every warm-up request to {url} failed, so the workload was not run (each request "
                        f"may take {timeout_s:g} s: --mgpu-request-timeout); check the errors below and the "
                        "engine's log",
                        errors=_distinct_errors(warmed.records), failed=len(warm), total=len(warm))
            for r, plan in enumerate(plans):
                offsets = arrival_offsets_s(len(plan), w.request_rate, w.burstiness, w.seed + r)
                if progress is not None:  # a repeat starts (the warm-up is over): an observer may mark it
                    progress(done[0], total)
                if client_processes > 1:  # progress is per run here: the processes report at their end
                    run = await asyncio.to_thread(drive_processes, url, plan, offsets, w.max_concurrency,
                                                  timeout_s, client_processes)
                else:
                    run = await drive(session, url, plan, offsets, w.max_concurrency, timeout_s,
                                      one_done if progress else None)
                check(run, r)  # a broken engine fails the first repeat, not after every repeat
                runs.append(run)
    finally:
        gc.unfreeze()
    return runs


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """asyncio.run, or in a helper thread when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="mgpu-bench")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _distinct_errors(records: Sequence[RequestRecord], limit: int = 5) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r.error for r in records if not r.success))[:limit]


def _check_failures(records: Sequence[RequestRecord], r: int, repeats: int, url: str, max_fraction: float) -> None:
    failed = sum(not rec.success for rec in records)
    total = len(records)
    where = f"repeat {r + 1} of {repeats} against {url}"
    if failed == total:
        raise BenchError(f"all {total} requests failed ({where}); this is an error, not a measurement",
                         errors=_distinct_errors(records), failed=failed, total=total)
    if failed / total > max_fraction:
        raise BenchError(
            f"{failed} of {total} requests failed ({failed / total:.1%}, more than the {max_fraction:.1%} "
            f"tolerated; {where}); fix the failures or raise max_failed_fraction",
            errors=_distinct_errors(records), failed=failed, total=total)


def _token_findings(m: dict[str, float], max_fraction: float) -> list[Finding]:
    out = []
    completed = max(m["completed"], 1.0)
    if m["output_len_mismatches"] / completed > max_fraction:
        out.append(Finding(
            "output-length-mismatch", Severity.WARNING,
            f"{m['output_len_mismatches']:.0f} of {m['completed']:.0f} requests returned a different number of "
            "output tokens than asked for (max_tokens with ignore_eos); the engine may ignore ignore_eos, "
            "stop at a stop string or have hit its max model length. Throughput counts the tokens the server reported.",
            {"output_len_mismatches": m["output_len_mismatches"], "completed": m["completed"]}))
    if m["usage_missing"]:
        out.append(Finding(
            "usage-missing", Severity.WARNING,
            f"{m['usage_missing']:.0f} streams carried no usage chunk, so their output tokens were counted as "
            "token events (wrong when events bundle tokens); the server ignores stream_options.include_usage.",
            {"usage_missing": m["usage_missing"]}))
    return out


def _versions(server: EngineServer) -> dict[str, str]:
    import platform

    import aiohttp

    from pytest_mgpu import __version__

    return {**server.versions, "pytest_mgpu": __version__, "aiohttp": aiohttp.__version__,
            "python": platform.python_version()}
