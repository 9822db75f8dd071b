"""`BenchResult`: one measurement, with everything needed to judge and reproduce it.

`to_json()` writes `vllm bench serve`'s result keys at the top level (so its comparison
scripts read our files) plus our own sections; it refuses NaN and infinity rather than writing
something that reads back differently (vLLM writes unserialisable values as strings).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from pytest_mgpu.bench.health import ClientHealth
from pytest_mgpu.bench.records import RequestRecord
from pytest_mgpu.bench.workload import Workload
from pytest_mgpu.findings import Finding

SCHEMA_VERSION = 1

# Top-level keys of a `vllm bench serve --save-result` file that we can fill.
_VLLM_METRIC_KEYS = (
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
    "request_throughput", "request_goodput", "output_throughput", "total_token_throughput",
    "max_output_tokens_per_s", "max_concurrent_requests",
)
_INTEGER_METRICS = frozenset({"completed", "failed", "total_input_tokens", "total_output_tokens",
                              "max_concurrent_requests", "output_len_mismatches", "usage_missing", "n_devices"})


@dataclass(frozen=True)
class BenchResult:
    """Summary metrics (median over repeats), each repeat's metrics, and the run's context.

    Every metric is also an attribute: `result.output_throughput`, `result.median_tpot_ms`.
    """

    metrics: dict[str, float]
    n_devices: int
    repeats: tuple[dict[str, float], ...]
    spec: dict[str, Any]  # EngineSpec.key()
    workload: Workload
    hardware: dict[str, Any] = field(default_factory=dict)  # fingerprint facts, from the caller
    versions: dict[str, str] = field(default_factory=dict)
    client: ClientHealth = field(default_factory=ClientHealth)
    findings: tuple[Finding, ...] = ()
    model: str = ""  # the name the server answered to
    date: str = ""  # when it was measured (UTC, vLLM's %Y%m%d-%H%M%S)
    # every request of every repeat (vLLM's --save-detailed data); written by to_json(detailed=True)
    requests: tuple[tuple[RequestRecord, ...], ...] = field(default=(), compare=False, repr=False)

    schema_version: ClassVar[int] = SCHEMA_VERSION

    def __getattr__(self, name: str) -> float:
        metrics = self.__dict__.get("metrics")
        if metrics is None or name.startswith("__"):
            raise AttributeError(name)
        try:
            value: float = metrics[name]
        except KeyError:
            raise AttributeError(
                f"BenchResult has no metric {name!r}; it has: {', '.join(sorted(metrics))}"
            ) from None
        return value

    def samples(self, metric: str) -> tuple[float, ...]:
        """The metric's value in each repeat, in order (what a statistical gate compares)."""
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r}; known: {', '.join(sorted(self.metrics))}")
        return tuple(r[metric] for r in self.repeats)

    def with_findings(self, *findings: Finding) -> BenchResult:
        """A copy with more findings (topology and other diagnoses added after the run)."""
        return replace(self, findings=self.findings + tuple(f for f in findings if f not in self.findings))

    def to_json(self, *, detailed: bool = False) -> dict[str, Any]:
        """The result as JSON; `detailed` adds every request's record (large)."""
        w = self.workload
        data: dict[str, Any] = {
            # vLLM bench serve's keys
            "date": self.date,
            "endpoint_type": "openai-chat" if w.endpoint == "chat" else "openai",
            "backend": "openai-chat" if w.endpoint == "chat" else "openai",
            "label": "pytest-mgpu",
            "model_id": self.model or self.spec.get("model", ""),
            "tokenizer_id": self.spec.get("model", ""),
            "num_prompts": w.num_prompts,
            "request_rate": w.request_rate if math.isfinite(w.request_rate) else "inf",
            "burstiness": w.burstiness if math.isfinite(w.burstiness) else "inf",
            "max_concurrency": w.max_concurrency,
            "tensor_parallel_size": self.spec.get("tp"),
            "pipeline_parallel_size": self.spec.get("pp"),
        }
        for key, value in self.metrics.items():
            if key in _VLLM_METRIC_KEYS or key.endswith("_ms"):
                data[key] = _number(key, value)
        data.update({
            "schema_version": SCHEMA_VERSION,
            "summary": {k: _number(k, v) for k, v in self.metrics.items()},
            "repeats": [{k: _number(k, v) for k, v in r.items()} for r in self.repeats],
            "n_devices": self.n_devices,
            "engine_spec": self.spec,
            "workload": w.to_json(),
            "hardware": self.hardware,
            "versions": self.versions,
            "client": self.client.to_json(),
            "findings": [f.to_json() for f in self.findings],
        })
        if detailed:
            data["requests"] = [[r.to_json() for r in run] for run in self.requests]
        _check_finite(data, "BenchResult")
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchResult:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"BenchResult schema_version {version!r} is not supported (expected {SCHEMA_VERSION})")
        return cls(
            metrics={k: float(v) for k, v in data["summary"].items()},
            n_devices=int(data["n_devices"]),
            repeats=tuple({k: float(v) for k, v in r.items()} for r in data["repeats"]),
            spec=dict(data["engine_spec"]),
            workload=Workload.from_json(data["workload"]),
            hardware=dict(data.get("hardware", {})),
            versions=dict(data.get("versions", {})),
            client=ClientHealth.from_json(data.get("client", {})),
            findings=tuple(Finding.from_json(f) for f in data.get("findings", ())),
            model=str(data.get("model_id", "")),
            date=str(data.get("date", "")),
            requests=tuple(tuple(RequestRecord.from_json(r) for r in run) for run in data.get("requests", ())),
        )


def now_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")


def _number(key: str, value: float) -> float | int:
    return int(value) if key in _INTEGER_METRICS and float(value).is_integer() else value


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} holds a non-finite number ({value}); JSON would not read it back the same")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")
