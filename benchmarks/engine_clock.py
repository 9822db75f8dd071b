"""A vLLM engine's own clock over one measured run, from its Prometheus /metrics.

Why: on an H200 one run's median TTFT moved 12-15% from run to run at concurrency 16 for every client
(gpu-runs/2026-12-03-h200-round8): equal output lengths keep the requests in lockstep, and the phase a run
starts in decides its TTFT. Two clients measured in two runs then differ by the engine, not by their clocks.
The engine times each request itself, from its arrival in the API server to its first token
(`vllm:time_to_first_token_seconds`), so a client's mean TTFT less the engine's mean over the same run is
what that client adds: its send path, the network both ways, and its receive path. That offset does not
move with the engine's phase, so a few runs compare two clients' clocks to a fraction of a millisecond.

The counters are read before and after the measured requests only (a run's warm-up requests excluded:
vLLM's client sends c+1 copies of its first prompt first, which the prefix cache serves).
"""

from __future__ import annotations

import dataclasses

from pytest_mgpu import probe_http

SERIES = {  # what a window reads: (sum of seconds or count) -> the Prometheus series, all label sets added
    "prefix_hits": "vllm:prefix_cache_hits_total",
    "prefix_queries": "vllm:prefix_cache_queries_total",
    "ttft_s": "vllm:time_to_first_token_seconds_sum",
    "ttft_n": "vllm:time_to_first_token_seconds_count",
    "tpot_s": "vllm:request_time_per_output_token_seconds_sum",
    "tpot_n": "vllm:request_time_per_output_token_seconds_count",
    "e2el_s": "vllm:e2e_request_latency_seconds_sum",
    "e2el_n": "vllm:e2e_request_latency_seconds_count",
}


def read(base_url: str, timeout_s: float = 10.0) -> dict[str, float] | None:
    """The SERIES values an engine exports now (one line per engine and model: added up); None when it
    exports none of them (SGLang, a plain HTTP server) or cannot be read."""
    try:
        with probe_http.get(base_url.rstrip("/") + "/metrics", timeout_s=timeout_s) as response:
            text = response.read().decode()
    except (OSError, ValueError):
        return None
    by_name = {name: key for key, name in SERIES.items()}
    values: dict[str, float] = {}
    for line in text.splitlines():
        key = by_name.get(line.split("{", 1)[0].split(" ", 1)[0])
        if key is not None:
            values[key] = values.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return values or None


@dataclasses.dataclass(frozen=True)
class EngineWindow:
    """What the engine saw between two reads: requests it finished, and their means on its clock."""

    requests: int
    mean_ttft_ms: float | None
    mean_tpot_ms: float | None
    mean_e2el_ms: float | None
    prefix_hit_share: float | None  # prompt tokens its prefix cache served, of all it was asked for

    def to_json(self) -> dict[str, float | int | None]:
        return {f"engine_{k}": v for k, v in dataclasses.asdict(self).items()}


def window(before: dict[str, float] | None, after: dict[str, float] | None) -> EngineWindow | None:
    """The engine's numbers between two `read`s; None when either read failed, or when no request finished
    and no prompt token was asked of the prefix cache in between."""
    if before is None or after is None:
        return None

    def delta(key: str) -> float | None:
        return after[key] - before[key] if key in after and key in before else None

    def mean_ms(stem: str) -> float | None:
        total, n = delta(stem + "_s"), delta(stem + "_n")
        return 1000.0 * total / n if total is not None and n else None

    queries, hits = delta("prefix_queries"), delta("prefix_hits")
    share = hits / queries if hits is not None and queries else None
    finished = delta("e2el_n")
    if not finished and share is None:
        return None
    return EngineWindow(requests=int(finished or 0), mean_ttft_ms=mean_ms("ttft"), mean_tpot_ms=mean_ms("tpot"),
                        mean_e2el_ms=mean_ms("e2el"), prefix_hit_share=share)
