"""`Workload`: what load to offer an engine, validated when it is built.

The defaults follow `vllm bench serve` where it has one (seed 0, request rate inf, burstiness
1.0 = Poisson) and otherwise the vLLM CI serving tests (random 128 in / 128 out, 200 prompts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import pytest_mgpu.bench.datasets as datasets
import pytest_mgpu.bench.endpoints as endpoints

GOODPUT_KEYS = ("ttft", "tpot", "e2el")


@dataclass(frozen=True)
class Workload:
    """A serving workload, as `vllm bench serve` would describe it.

    - Closed loop: `max_concurrency` caps requests in flight; open loop: `request_rate`
      (req/s) with gamma-distributed gaps of shape `burstiness` (1 = Poisson, inf = evenly
      spaced), rescaled so the last arrival lands at exactly num_prompts / rate; both together
      is an open loop with a cap.
    - `dataset`: "random" (exact token lengths; `range_ratio` spreads them uniformly by
      +-ratio, `prefix_len` prepends a shared prefix), "fixed" (exact lengths, token ids
      computed without a random generator), "sharegpt" (with `dataset_path`, vLLM's pruning
      rules), or the path of a JSONL file of {"prompt": ..., "output_tokens": ...}.
    - `output_len=None` takes each conversation's own reply length (sharegpt) or the file's
      `output_tokens` (JSONL).
    - `warmup`: requests sent before the measurement, all at once, and excluded from it.
      None means one full concurrency wave: `max_concurrency` requests (at most num_prompts);
      with unbounded concurrency a full wave would be the whole run, so it is one request.
    - `goodput_ms`: service-level objectives in ms, keys "ttft", "tpot", "e2el"
      (vLLM's `--goodput`); a dict is accepted and stored as sorted pairs.
    - `text_prompts`: random and fixed prompts go as token ids where the endpoint takes them
      (exact lengths, no tokenizing on the server); True sends them as text, as vLLM's client
      does, so the server's tokenizing counts in TTFT (the chat endpoint always takes text).
    - Repeat r of a run uses seed `seed + r` (plus 1000 for each earlier run on the same engine
      in the session: `mgpu_bench` counts them), so repeats do not replay identical prompts into
      the engine's prefix cache.
    """

    input_len: int = 128
    output_len: int | None = 128
    num_prompts: int = 200
    max_concurrency: int | None = None
    request_rate: float = float("inf")
    burstiness: float = 1.0
    dataset: str = "random"
    endpoint: str = "completions"
    warmup: int | None = None
    seed: int = 0
    dataset_path: str | None = None
    range_ratio: float = 0.0
    prefix_len: int = 0
    goodput_ms: tuple[tuple[str, float], ...] | Mapping[str, float] = ()
    text_prompts: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.goodput_ms, Mapping):
            object.__setattr__(self, "goodput_ms", tuple(sorted(self.goodput_ms.items())))
        elif not (isinstance(self.goodput_ms, tuple)
                  and all(isinstance(p, tuple) and len(p) == 2 for p in self.goodput_ms)):
            raise TypeError("invalid Workload: goodput_ms must be a dict such as {'ttft': 2000} (ms), "
                            f"got {self.goodput_ms!r}")
        problems = _problems(self)
        if problems:
            raise ValueError("invalid Workload: " + "; ".join(problems))

    @property
    def dataset_kind(self) -> str:
        """The dataset loader's name: a file path ending in .jsonl is "jsonl"."""
        return datasets.kind_of(self.dataset)

    @property
    def warmup_requests(self) -> int:
        if self.warmup is not None:
            return self.warmup
        if self.max_concurrency is None:
            return 1
        return min(self.max_concurrency, self.num_prompts)

    @property
    def goodput(self) -> dict[str, float]:
        """The objectives as a dict, e.g. {"ttft": 2000.0}."""
        g = self.goodput_ms
        return dict(g.items() if isinstance(g, Mapping) else g)

    def label(self) -> str:
        load = f"concurrency={self.max_concurrency}" if self.max_concurrency else "unbounded"
        if math.isfinite(self.request_rate):
            load += f" rate={self.request_rate:g}/s"
        return f"{self.dataset} {self.input_len}/{self.output_len} x{self.num_prompts} {load} {self.endpoint}"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (an infinite rate or burstiness is written "inf", as vLLM writes it)."""
        data = asdict(self)
        data["goodput_ms"] = self.goodput
        for key in ("request_rate", "burstiness"):
            if math.isinf(data[key]):
                data[key] = "inf"
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Workload:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown Workload fields {unknown}; known: {sorted(known)}")
        values = dict(data)
        for key in ("request_rate", "burstiness"):
            if key in values:
                values[key] = float(values[key])
        return cls(**values)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _problems(w: Workload) -> list[str]:
    """Every problem with the fields; the dataset's own checks run only on well-typed fields."""
    p: list[str] = []
    if not _is_int(w.input_len) or w.input_len < 1:
        p.append(f"input_len must be an integer >= 1, got {w.input_len!r}")
    if w.output_len is not None and (not _is_int(w.output_len) or w.output_len < 1):
        p.append(f"output_len must be an integer >= 1 (or None for the dataset's own), got {w.output_len!r}")
    if not _is_int(w.num_prompts) or w.num_prompts < 1:
        p.append(f"num_prompts must be an integer >= 1, got {w.num_prompts!r}")
    if w.max_concurrency is not None and (not _is_int(w.max_concurrency) or w.max_concurrency < 1):
        p.append(f"max_concurrency must be an integer >= 1 or None (unbounded), got {w.max_concurrency!r}")
    if not _is_number(w.request_rate) or math.isnan(w.request_rate) or w.request_rate <= 0:
        p.append(f"request_rate must be > 0 requests/s (inf: all at once), got {w.request_rate!r}")
    if not _is_number(w.burstiness) or math.isnan(w.burstiness) or w.burstiness <= 0:
        p.append(f"burstiness must be > 0 (1 = Poisson, <1 burstier, >1 smoother), got {w.burstiness!r}")
    if w.warmup is not None and (not _is_int(w.warmup) or w.warmup < 0):
        p.append(f"warmup must be an integer >= 0 or None (one concurrency wave), got {w.warmup!r}")
    if not _is_int(w.seed) or w.seed < 0:
        p.append(f"seed must be an integer >= 0, got {w.seed!r}")
    if not _is_number(w.range_ratio) or not 0 <= w.range_ratio < 1:
        p.append(f"range_ratio must be in [0, 1), got {w.range_ratio!r}")
    if not isinstance(w.text_prompts, bool):
        p.append(f"text_prompts must be True or False, got {w.text_prompts!r}")
    if not _is_int(w.prefix_len) or w.prefix_len < 0:
        p.append(f"prefix_len must be an integer >= 0, got {w.prefix_len!r}")
    if w.endpoint not in endpoints.ENDPOINTS:
        p.append(f"endpoint must be one of {sorted(endpoints.ENDPOINTS)}, got {w.endpoint!r}")
    for key, value in w.goodput.items():
        if key not in GOODPUT_KEYS or not _is_number(value) or not math.isfinite(value) or value < 0:
            p.append(f"goodput_ms takes {', '.join(GOODPUT_KEYS)} with finite values >= 0 ms, "
                     f"got {key!r}: {value!r}")
    if w.dataset_path is not None and not isinstance(w.dataset_path, str):
        p.append(f"dataset_path must be a string (a file path) or None, got {w.dataset_path!r}")
    if not isinstance(w.dataset, str):
        p.append(f"dataset must be a string, got {w.dataset!r}")
    if p:  # the dataset checks do arithmetic on the fields: only on fields known to be sound
        return p
    p.extend(datasets.check(w))
    return p
