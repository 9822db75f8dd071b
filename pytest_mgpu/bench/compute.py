"""Serving metrics from request records, with `vllm bench serve`'s definitions and names.

- TTFT, E2EL: per successful request. TPOT = (E2EL - TTFT) / (output tokens - 1), only for
  requests with more than one output token. ITL: every gap between token events, pooled over
  all requests (so long requests weigh more; with multi-token chunks mean ITL != mean TPOT).
- Statistics as numpy computes them for vLLM: mean, median, population std, linear
  percentiles; an empty list gives 0.
- Throughputs divide by the duration from first dispatch to last response (ramp-up and drain
  included, as vLLM does). Per-device throughputs divide by the devices allocated to the
  engine, so an engine that leaves devices idle pays for them.
- Output tokens come from the server's usage; a request whose count differs from what was asked
  for (`ignore_eos`, `max_tokens`) is counted in `output_len_mismatches`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_mgpu.bench.records import RequestRecord

LATENCIES = ("ttft", "tpot", "itl", "e2el")
STATISTICS = ("mean", "median", "std", "p90", "p99")
_PER_DEVICE = ("output_throughput", "total_token_throughput", "request_throughput")


def _stats(name: str, values_s: Sequence[float]) -> dict[str, float]:
    import numpy as np

    v: Any = np.asarray(values_s if len(values_s) else [0.0], dtype=float) * 1000
    return {
        f"mean_{name}_ms": float(np.mean(v)),
        f"median_{name}_ms": float(np.median(v)),
        f"std_{name}_ms": float(np.std(v)),
        f"p90_{name}_ms": float(np.percentile(v, 90)),
        f"p99_{name}_ms": float(np.percentile(v, 99)),
    }


def compute_metrics(records: Sequence[RequestRecord], duration_s: float, *, n_devices: int,
                    goodput_ms: Mapping[str, float] | None = None) -> dict[str, float]:
    """Every metric of one run, keyed by the names in `pytest_mgpu.metrics`."""
    ok = [r for r in records if r.success]
    ttfts = [r.ttft_s for r in ok]
    e2els = [r.e2el_s for r in ok]
    itls = [gap for r in ok for gap in r.itl_s]
    all_tpots = [(r.e2el_s - r.ttft_s) / (r.output_tokens - 1) if r.output_tokens > 1 else 0.0 for r in ok]
    tpots = [t for t, r in zip(all_tpots, ok, strict=True) if r.output_tokens > 1]
    total_in = sum(r.prompt_tokens for r in ok)
    total_out = sum(r.output_tokens for r in ok)
    m: dict[str, float] = {
        "duration": duration_s,
        "completed": float(len(ok)),
        "failed": float(len(records) - len(ok)),
        "total_input_tokens": float(total_in),
        "total_output_tokens": float(total_out),
        "request_throughput": len(ok) / duration_s,
        "output_throughput": total_out / duration_s,
        "total_token_throughput": (total_in + total_out) / duration_s,
        "output_len_mismatches": float(sum(r.output_tokens != r.requested_output_tokens for r in ok)),
        "usage_missing": float(sum(not r.usage_reported for r in ok)),
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        m.update(_stats(name, values))
    if goodput_ms:
        m["request_goodput"] = _good(ok, all_tpots, goodput_ms) / duration_s
    m.update(_peaks(ok))
    m["n_devices"] = float(n_devices)
    for name in _PER_DEVICE:
        m[f"{name}_per_gpu"] = m[name] / n_devices
    m["interactivity"] = 1000.0 / m["median_tpot_ms"] if m["median_tpot_ms"] > 0 else 0.0
    return m


def _good(ok: Sequence[RequestRecord], all_tpots: Sequence[float], objectives_ms: Mapping[str, float]) -> int:
    """Requests meeting every objective (a one-token request's TPOT counts as 0, as in vLLM)."""
    good = 0
    for r, tpot in zip(ok, all_tpots, strict=True):
        values = {"ttft": r.ttft_s, "tpot": tpot, "e2el": r.e2el_s}
        good += all(values[k] * 1000 <= limit for k, limit in objectives_ms.items())
    return good


def _peaks(ok: Sequence[RequestRecord]) -> dict[str, float]:
    """vLLM's peak output tokens/s and requests in flight, over one-second buckets."""
    import math

    import numpy as np

    if not ok:
        return {"max_output_tokens_per_s": 0.0, "max_concurrent_requests": 0.0}
    t0 = min(r.send_s for r in ok)
    seconds = math.ceil(max(r.send_s + r.e2el_s for r in ok) - t0) + 1
    tokens: Any = np.zeros(seconds)
    in_flight: Any = np.zeros(seconds)
    for r in ok:
        t = r.send_s + r.ttft_s
        stamps = [t]
        for gap in r.itl_s:
            t += gap
            stamps.append(t)
        for stamp in stamps:
            bucket = int(stamp - t0)
            if 0 <= bucket < seconds:
                tokens[bucket] += 1
        in_flight[int(r.send_s - t0): int(r.send_s + r.e2el_s - t0) + 1] += 1
    return {"max_output_tokens_per_s": float(tokens.max()), "max_concurrent_requests": float(in_flight.max())}


def summarize(repeats: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Median over repeats; failures and mismatches take the worst repeat (never hidden)."""
    import numpy as np

    worst = ("failed", "output_len_mismatches", "usage_missing")
    names = list(dict.fromkeys(k for r in repeats for k in r))
    return {k: float(max(r[k] for r in repeats) if k in worst else np.median([r[k] for r in repeats]))
            for k in names}
