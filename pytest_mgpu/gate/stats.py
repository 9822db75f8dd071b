"""The statistics behind a verdict: medians, oriented change, and a one-sided rank test.

Why these defaults, with the three repeats a nightly GPU job can afford:

- The summary is the median: one stalled repeat (a compaction, a page-cache miss) moves a
  mean but not a median of three.
- A metric is judged a regression only when BOTH its median moved beyond the tolerance
  (10% for the gated metrics) AND a one-sided Mann-Whitney U test says the new samples are
  worse than the baseline's at `ALPHA` (asv's two-part rule, research note A3/A10).
- `ALPHA = 0.05`, because with 3 samples on each side the smallest p-value the exact test
  can produce is 1 / C(6, 3) = 0.05: it is reached only when every new sample is worse
  than every baseline sample. A stricter alpha (asv's 0.002) could never fire at n = 3, and
  a looser one would accept overlapping samples. Under "nothing changed" the chance of such
  a complete separation in the bad direction is exactly 5%, and the tolerance must be
  exceeded as well, so when run-to-run noise is small next to the tolerance the joint
  false-alarm rate is far below 5% (measured: benchmarks/gate_error_rates.py).
- The test is exact and counts ties against a regression (scipy's exact method), so equal
  numbers never look significant.
- With fewer than 2 samples on a side no rank test is possible; the tolerance alone
  decides (asv does the same for single-repeat results) and the table shows "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_mgpu.metrics import Direction

ALPHA = 0.05
MIN_SAMPLES_FOR_TEST = 2
_EXACT_MAX_SAMPLES = 30  # beyond this the exact null distribution gets slow; normal approximation


@dataclass(frozen=True)
class Change:
    """How one metric moved from a baseline to now."""

    baseline_median: float
    current_median: float
    relative: float  # (now - baseline) / |baseline|, raw sign
    improvement: float  # the same, oriented by direction: positive = better
    p_worse: float | None  # one-sided p-value that now is worse; None when not testable


def finite(samples: Sequence[float]) -> tuple[float, ...]:
    """The samples that are numbers (vLLM reports NaN TPOT for one-token outputs)."""
    return tuple(float(x) for x in samples if x is not None and math.isfinite(float(x)))


def median(samples: Sequence[float]) -> float:
    values = sorted(finite(samples))
    if not values:
        raise ValueError("median of no finite samples")
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def relative_change(before: float, after: float) -> float:
    if before == 0:
        return 0.0 if after == 0 else math.copysign(math.inf, after)
    return (after - before) / abs(before)


def p_worse(baseline: Sequence[float], current: Sequence[float], direction: Direction) -> float | None:
    """One-sided Mann-Whitney U p-value for "current is worse than baseline"; None if untestable."""
    base, now = finite(baseline), finite(current)
    if direction is Direction.NONE or min(len(base), len(now)) < MIN_SAMPLES_FOR_TEST:
        return None
    from scipy import stats

    # Worse means smaller for higher-is-better metrics, larger for lower-is-better ones.
    alternative = "less" if direction is Direction.HIGHER else "greater"
    method = "exact" if len(base) + len(now) <= _EXACT_MAX_SAMPLES else "asymptotic"
    result = stats.mannwhitneyu(now, base, alternative=alternative, method=method)
    p = float(result.pvalue)
    return 1.0 if math.isnan(p) else p


def significant(p: float | None, alpha: float = ALPHA) -> bool:
    """Whether a p-value clears alpha; an untestable comparison (None) counts as significant.

    The small epsilon keeps the exact 3-vs-3 minimum (0.05, computed as 1/20) on the
    significant side of an alpha of 0.05.
    """
    return p is None or p <= alpha * (1 + 1e-9)


def change(baseline: Sequence[float], current: Sequence[float], direction: Direction) -> Change:
    before, after = median(baseline), median(current)
    rel = relative_change(before, after)
    oriented = 0.0 if direction is Direction.NONE else (rel if direction is Direction.HIGHER else -rel)
    return Change(before, after, rel, oriented, p_worse(baseline, current, direction))
