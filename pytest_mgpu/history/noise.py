"""PLACEHOLDER (history-store): a tiny stand-in until branch `history-stats` lands the real noise gate.

Same API as the contract; the constants here are NOT measured. Replace wholesale.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class NoiseGate:
    min_runs: int
    window: int
    k: float
    floor_rel: float


DEFAULT_GATE = NoiseGate(min_runs=5, window=20, k=4.0, floor_rel=0.02)


@dataclass(frozen=True)
class HistoryCheck:
    metric: str
    enough: bool
    runs_used: int
    center: float
    band_rel: float
    change_rel: float
    regressed: bool
    reason: str


def check_against_history(history: Sequence[float], current: Sequence[float], *, higher_is_better: bool,
                          metric: str = "", gate: NoiseGate = DEFAULT_GATE) -> HistoryCheck:
    recent = [float(x) for x in history][-gate.window:]
    now = statistics.median(current) if current else float("nan")
    if len(recent) < gate.min_runs or not current:
        return HistoryCheck(metric, False, len(recent), float("nan"), float("nan"), float("nan"), False,
                            f"history: {len(recent)} runs, need {gate.min_runs}")
    center = statistics.median(recent)
    mad = statistics.median(abs(x - center) for x in recent)
    band = max(gate.k * 1.4826 * mad / abs(center), gate.floor_rel) if center else gate.floor_rel
    change = (now - center) / abs(center) if center else 0.0
    worse = -change if higher_is_better else change
    regressed = worse > band
    return HistoryCheck(metric, True, len(recent), center, band, change, regressed,
                        f"{change * 100:+.1f}% vs band ±{band * 100:.1f}%")
