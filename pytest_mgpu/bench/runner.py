"""`run_bench`: a workload against a running server, repeated, into a `BenchResult`.

Synchronous on the outside (it runs its own event loop, in a helper thread when the caller is
already inside one), so the pytest fixture and the command line share it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import uuid
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pytest_mgpu import probe_http
from pytest_mgpu.bench import datasets
from pytest_mgpu.bench.client import make_session
from pytest_mgpu.bench.compute import compute_metrics, summarize
from pytest_mgpu.bench.endpoints import ENDPOINTS
from pytest_mgpu.bench.errors import BenchError
from pytest_mgpu.bench.health import ClientHealth, HealthLimits, assess
from pytest_mgpu.bench.load import Prepared, RunRecords, arrival_offsets_s, drive
from pytest_mgpu.bench.records import RequestRecord
from pytest_mgpu.bench.results import BenchResult, now_stamp
from pytest_mgpu.bench.workload import Workload
from pytest_mgpu.diagnose.findings import Finding, Severity
from pytest_mgpu.engines.spec import EngineServer, EngineSpec

_T = TypeVar("_T")
_WARMUP_SEED_OFFSET = 1_000_003  # warm-up prompts differ from every repeat's (no prefix-cache hits)


def run_bench(
    server: EngineServer,
    workload: Workload | None = None,
    *,
    repeats: int = 1,
    hardware: dict[str, Any] | None = None,
    request_timeout_s: float = 600.0,
    max_failed_fraction: float = 0.05,
    max_mismatch_fraction: float = 0.01,
    health_limits: HealthLimits | None = None,
    seed_offset: int = 0,
) -> BenchResult:
    """Warm up once, then run `workload` `repeats` times against `server`.

    Raises `BenchError` (with the server's error texts) when a repeat completes no request or
    more than `max_failed_fraction` of them fail; a request that takes longer than
    `request_timeout_s` counts as failed. Output-length mismatches above
    `max_mismatch_fraction` and a client that could not keep up become findings.
    `seed_offset` shifts every prompt seed (not the workload's identity): an engine that
    already served a run's prompts would answer from its prefix cache, halving TTFT.
    """
    workload = workload or Workload()
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    endpoint = ENDPOINTS[workload.endpoint]
    tok = _tokenizer(server) if datasets.needs_tokenizer(workload, endpoint.accepts_token_ids) else None
    run_id = uuid.uuid4().hex[:8]
    first_seed = workload.seed + seed_offset
    plans = [_prepare(server, workload, first_seed + r, workload.num_prompts, tok, f"mgpu-{run_id}-r{r}-")
             for r in range(repeats)]
    warm = _prepare(server, workload, workload.seed + _WARMUP_SEED_OFFSET, workload.warmup_requests, tok,
                    f"mgpu-{run_id}-w-")
    url = server.base_url.rstrip("/") + endpoint.path
    runs = _run_sync(_bench(url, warm, plans, workload, request_timeout_s, server.api_key))

    repeat_metrics: list[dict[str, float]] = []
    findings: list[Finding] = []
    for r, run in enumerate(runs):
        _check_failures(run.records, r, repeats, url, max_failed_fraction)
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


async def _bench(url: str, warm: Sequence[Prepared], plans: Sequence[Sequence[Prepared]], w: Workload,
                 timeout_s: float, api_key: str | None = None) -> list[RunRecords]:
    runs = []
    session = make_session(w.max_concurrency, api_key)
    gc.collect()
    gc.freeze()  # long-lived objects out of the collector's way: shorter pauses mid-run (as vLLM does)
    try:
        async with session:
            if warm:
                warmed = await drive(session, url, warm, [0.0] * len(warm), None, timeout_s)
                if not any(r.success for r in warmed.records):
                    raise BenchError(
                        f"every warm-up request to {url} failed, so the workload was not run; "
                        "check the errors below and the engine's log",
                        errors=_distinct_errors(warmed.records), failed=len(warm), total=len(warm))
            for r, plan in enumerate(plans):
                offsets = arrival_offsets_s(len(plan), w.request_rate, w.burstiness, w.seed + r)
                runs.append(await drive(session, url, plan, offsets, w.max_concurrency, timeout_s))
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
            "output tokens than asked for (ignore_eos, max_tokens = min_tokens); the engine may ignore those "
            "options or have hit its max model length. Throughput counts the tokens the server reported.",
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
