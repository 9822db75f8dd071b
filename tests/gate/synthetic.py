"""Synthetic BenchResults for gate and report tests.

The numbers are made up, but the objects are real `BenchResult`s: the gate never talks to
an engine, so nothing engine-like is mocked. This file doubles as a pytester conftest
(`pytester.makeconftest(CONFTEST)`): the `measured` fixture there records results the way
`mgpu_bench` does, slowed by `$MGPU_SLOWDOWN` (1.2 = every repeat 20% slower).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_mgpu.bench.results import BenchResult
from pytest_mgpu.bench.workload import Workload
from pytest_mgpu.findings import Finding

FP = "2xCPU-1core-NODE-3f2a9c"
BASE_TPUT = (1000.0, 1010.0, 990.0)
BASE_TPOT = (4.0, 4.1, 3.9)


def make_result(
    tput: tuple[float, ...] = BASE_TPUT,
    tpot: tuple[float, ...] = BASE_TPOT,
    *,
    tp: int = 1,
    fingerprint: str = FP,
    vllm: str = "0.32.0",
    scale: float = 1.0,
    findings: tuple[Finding, ...] = (),
    facts: dict[str, Any] | None = None,
) -> BenchResult:
    """A result whose repeats are `tput` tok/s/device and `tpot` ms, both slowed by `scale`."""
    repeats = tuple(
        {"output_throughput_per_gpu": t / scale, "output_throughput": t * tp / scale,
         "median_tpot_ms": p * scale, "p99_ttft_ms": 50.0 * scale, "completed": 8.0, "n_devices": float(tp)}
        for t, p in zip(tput, tpot, strict=True)
    )
    metrics = {k: float(statistics.median(r[k] for r in repeats)) for k in repeats[0]}
    return BenchResult(
        metrics=metrics, n_devices=tp, repeats=repeats,
        spec={"engine": "vllm", "model": "tiny_model", "tp": tp, "pp": 1, "n_devices": tp,
              "device_kind": "cpu", "extra_args": ["--load-format", "dummy"]},
        workload=Workload(num_prompts=8, max_concurrency=4),
        hardware={"fingerprint": fingerprint, "label": "2x cpu-cores linked by NODE", **(facts or {})},
        versions={"vllm": vllm},
        findings=findings,
    )


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Callable[..., BenchResult]:
    from pytest_mgpu.session import Record, get_session

    def make(**kwargs: Any) -> BenchResult:
        kwargs.setdefault("scale", float(os.environ.get("MGPU_SLOWDOWN", "1.0")))
        kwargs.setdefault("vllm", os.environ.get("MGPU_VLLM", "0.32.0"))
        kwargs.setdefault("tp", int(os.environ.get("MGPU_TP", "1")))
        result = make_result(**kwargs)
        get_session(request.config).records.append(Record(request.node.nodeid, result))
        return result

    return make


CONFTEST = Path(__file__).read_text()
