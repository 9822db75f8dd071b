"""PLACEHOLDER (history-store): a tiny stand-in until branch `history-stats` lands real change-point detection.

Same API as the contract: a single-split mean-shift search, NOT the measured method. Replace wholesale.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ChangePoint:
    index: int  # 0-based index of the first run after the change
    before: float
    after: float
    change_rel: float
    kind: str  # "step" | "creep"


def detect_changes(values: Sequence[float], *, higher_is_better: bool | None = None) -> list[ChangePoint]:
    xs = [float(v) for v in values]
    best: ChangePoint | None = None
    for i in range(3, len(xs) - 2):
        before, after = statistics.median(xs[:i]), statistics.median(xs[i:])
        spread = max(statistics.pstdev(xs[:i]), statistics.pstdev(xs[i:]), 1e-12)
        if before and abs(after - before) > 4 * spread and abs(after - before) / abs(before) > 0.02:
            cp = ChangePoint(i, before, after, (after - before) / abs(before), "step")
            if best is None or abs(cp.change_rel) > abs(best.change_rel):
                best = cp
    return [best] if best else []
