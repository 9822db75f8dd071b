"""benchmarks/compare_vllm_client.py's verdict ratio cancels drift within a round (pairs of opposite order)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    saved = list(sys.path)  # the script puts the checkout and benchmarks/ first on sys.path: put it back
    try:
        script = REPO / "benchmarks" / "compare_vllm_client.py"
        spec = importlib.util.spec_from_file_location("compare_vllm_client", script)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved


def rounds_with_drift(true_ratio: float, drift: float, n: int) -> list[dict[str, dict[str, float]]]:
    """Runs in order vllm, ours on even rounds and reversed on odd ones; each later run in a round reads
    `drift` higher, and every round has its own level (the engine's round-to-round swing)."""
    out = []
    for k in range(n):
        level = 10.0 + 3.0 * k
        order = ["vllm", "ours"] if k % 2 == 0 else ["ours", "vllm"]
        values = {"vllm": level, "ours": level * true_ratio}
        out.append({name: {"median_ttft_ms": values[name] * (1 + drift * order.index(name))} for name in values})
    return out


def test_pairs_of_opposite_order_cancel_drift(compare: ModuleType) -> None:
    rounds = rounds_with_drift(1.02, drift=0.08, n=4)
    assert compare.balanced_ratio(rounds, "ours", "median_ttft_ms") == pytest.approx(1.02, rel=1e-12)
    # what the unpaired median of per-round ratios read with an odd number of rounds: the drift, not the clients
    per_round = sorted(r["ours"]["median_ttft_ms"] / r["vllm"]["median_ttft_ms"] for r in rounds[:3])
    assert abs(per_round[1] - 1.02) > 0.05


def test_another_reference_and_a_trailing_round(compare: ModuleType) -> None:
    rounds = rounds_with_drift(0.9, drift=0.0, n=3)
    for r in rounds:
        r["vllm-noenv"] = {"median_ttft_ms": r["vllm"]["median_ttft_ms"] * 0.96}
    assert compare.balanced_ratio(rounds, "ours", "median_ttft_ms", base="vllm-noenv") == pytest.approx(0.9 / 0.96)
    rounds[0]["vllm"]["median_ttft_ms"] = 0.0  # a zero reference is no ratio, not a crash
    assert math.isnan(compare.balanced_ratio(rounds[:2], "ours", "median_ttft_ms"))
