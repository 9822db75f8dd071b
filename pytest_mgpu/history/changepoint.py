"""Change-point detection over a series of run medians: steps, and slow creeps.

Steps: `ruptures`' Pelt (exact optimal segmentation under a penalty, l2 cost) proposes where the
level changed, on the series standardised by its own noise; each proposed change must then pass
a test of its own before it is reported (the role the permutation test plays in MongoDB's
E-Divisive and the t-test in Otava and Perfherder):
- both sides last at least `MIN_SEGMENT` runs (a change must persist, as in vLLM's nightly
  report: one slow run is an outlier, two are a level);
- the medians of the two sides differ by at least `STEP_Z` noise sigmas of the difference
  (sigma * sqrt(1/n1 + 1/n2)) and by at least `MIN_CHANGE_REL` (Perfherder's 2%).
Proposals that fail are merged with their neighbour, weakest first, and the rest re-tested.
The noise sigma comes from the series itself: 1.4826 * MAD of successive differences / sqrt(2),
which a step (one large difference) or a creep (all differences shifted) hardly moves.

Creeps (e.g. 1% slower every night, each night inside any band): a Mann-Kendall trend test
(Kendall's tau against run order, exact for small windows) over the last `CREEP_WINDOW` runs,
scanned run by run; a creep is reported at the first run where the trend is significant at
`CREEP_ALPHA`, its Theil-Sen slope adds up to at least `MIN_CHANGE_REL` over the window, and a
straight line fits the window better than any single step (so a step is never called a creep).
Step proposals inside a reported creep are dropped: a staircase is what a creep looks like
to a step detector.

Why these constants: set by hand from the field's values (2% floor, 2 runs of persistence) and
checked with `python benchmarks/history_rates.py --trials 1000 --cp-trials 300 --creep-trials 100
--history 5,8,20` (table in perf-runs/history-rates.md; series of H unchanged runs + 3 after):
- flat series raise a change in 0% (0.3% noise), 1-2.3% (2%) and 0.3-3% (10%, t(3) tails) of
  whole series, every cell under the 1-in-20 target;
- a 3% step at 0.3% noise is named within +-1 run in 96.7% (H=5) to 100% (H=20) of series, a
  10% step at 2% noise in 64-95%; a 1% per run creep at 0.3% noise is found 100% of the time,
  at the 3rd run after it began (median);
- before CREEP_Z was added, 2 of 20 flat 25-run series at 2% and 10% noise showed a "creep"
  (a chance run of 8 drifting values); with it, 2% of 300 series. A wild run once made a 2-run
  segment look like a 10% step, which SIDE_AGREEMENT now rejects
  (tests/history/test_changepoint.py::test_one_slow_run_is_not_a_change).

With `higher_is_better` given only harmful changes are reported (regressions); with None both
directions are. Non-finite values (runs without the metric) are skipped; indices always refer to
positions in the series as given.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIN_SEGMENT = 2  # runs on each side of a step
STEP_Z = 5.0  # sigmas of the difference of two segment medians
MIN_CHANGE_REL = 0.02  # smallest change reported, relative to the level before it
PENALTY_BETA = 3.0  # Pelt penalty = PENALTY_BETA * log(n) on the noise-standardised series
CREEP_WINDOW = 8  # runs a creep is tested over
CREEP_MIN_RUNS = 5  # the shortest window a creep can be called on
CREEP_ALPHA = 0.005  # one-sided Mann-Kendall significance (two-sided when no direction is given)
CREEP_Z = 3.0  # the trend line must move by this many noise sigmas over its window
SIDE_AGREEMENT = 0.75  # share of each side's runs that must lie on its side of the midpoint
_MAD_TO_SIGMA = 1.4826
_SIGMA_FLOOR_REL = 1e-6  # a perfectly constant series still has a defined (tiny) noise


@dataclass(frozen=True)
class ChangePoint:
    index: int  # 0-based index of the first run after the change
    before: float  # level before (median of the segment; for a creep, the trend line at its start)
    after: float  # level after (median of the segment; for a creep, the trend line at `index`)
    change_rel: float  # (after - before) / |before|, raw sign
    kind: str  # "step" | "creep"
    start: int = -1  # creep: the first run of the window the trend was found over; step: == index


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def noise_sigma(xs: Sequence[float]) -> float:
    """Robust run-to-run sigma from successive differences (immune to one step, and to a trend)."""
    center = abs(_median(xs))
    floor = _SIGMA_FLOOR_REL * (center or 1.0)
    if len(xs) < 3:
        return floor
    diffs = [b - a for a, b in itertools.pairwise(xs)]
    mid = _median(diffs)
    mad = _median([abs(d - mid) for d in diffs])
    return max(_MAD_TO_SIGMA * mad / math.sqrt(2), floor)


def _harmful(change: float, higher_is_better: bool | None) -> bool:
    if higher_is_better is None:
        return True
    return change < 0 if higher_is_better else change > 0


def _rel(before: float, after: float) -> float:
    return (after - before) / abs(before) if before else math.copysign(math.inf, after - before) if after else 0.0


def _step_strength(xs: Sequence[float], a: int, b: int, c: int, sigma: float) -> tuple[float, float, float, float]:
    """(z, change_rel, before, after) of a step at b between [a, b) and [b, c); z = 0 if the sides overlap."""
    before, after = _median(xs[a:b]), _median(xs[b:c])
    z = abs(after - before) / (sigma * math.sqrt(1 / (b - a) + 1 / (c - b)))
    mid = (before + after) / 2
    up = after > before
    agree_before = sum((x < mid) == up for x in xs[a:b]) / (b - a)
    agree_after = sum((x > mid) == up for x in xs[b:c]) / (c - b)
    if min(agree_before, agree_after) < SIDE_AGREEMENT:
        z = 0.0  # e.g. one wild run made a 2-run segment: its median (a mean of two) is not a level
    return z, _rel(before, after), before, after


def _prefix_l2_cost() -> Any:
    """ruptures' l2 cost in O(1) per segment from prefix sums (its own recomputes a variance each time)."""
    import ruptures as rpt

    class PrefixL2(rpt.base.BaseCost):  # type: ignore[misc]  # ruptures is untyped
        model = "l2-prefix"
        min_size = MIN_SEGMENT

        def fit(self, signal: Any) -> PrefixL2:
            self.signal = signal  # ruptures reads its length from here
            values = [float(v) for v in signal.reshape(-1)]
            self.sums, self.squares = [0.0], [0.0]
            for v in values:
                self.sums.append(self.sums[-1] + v)
                self.squares.append(self.squares[-1] + v * v)
            return self

        def error(self, start: int, end: int) -> float:
            total = self.sums[end] - self.sums[start]
            return self.squares[end] - self.squares[start] - total * total / (end - start)

    return PrefixL2()


def _find_steps(xs: Sequence[float], sigma: float) -> list[tuple[int, float, float, float]]:
    """Confirmed steps as (index, before, after, change_rel), both directions."""
    n = len(xs)
    if n < 2 * MIN_SEGMENT:
        return []
    import numpy as np
    import ruptures as rpt

    center = _median(xs)
    signal = ((np.asarray(xs, dtype=float) - center) / sigma).reshape(-1, 1)
    algo = rpt.Pelt(custom_cost=_prefix_l2_cost(), min_size=MIN_SEGMENT, jump=1).fit(signal)
    bounds = [0, *[int(b) for b in algo.predict(pen=PENALTY_BETA * math.log(n))]]  # ends with n
    if bounds[-1] != n:
        bounds.append(n)
    while True:
        tested = []
        for j in range(1, len(bounds) - 1):
            z, rel, before, after = _step_strength(xs, bounds[j - 1], bounds[j], bounds[j + 1], sigma)
            ok = z >= STEP_Z and abs(rel) >= MIN_CHANGE_REL
            tested.append((ok, z, j, before, after, rel))
        failing = [t for t in tested if not t[0]]
        if not failing:
            return [(bounds[j], before, after, rel) for _, _, j, before, after, rel in tested]
        weakest = min(failing, key=lambda t: t[1])
        del bounds[weakest[2]]


def _linear_beats_step(w: Sequence[float], slope: float, intercept: float) -> bool:
    sse_line = sum((y - (intercept + slope * i)) ** 2 for i, y in enumerate(w))
    best_step = math.inf
    for b in range(MIN_SEGMENT, len(w) - MIN_SEGMENT + 1):
        left, right = w[:b], w[b:]
        ml, mr = sum(left) / len(left), sum(right) / len(right)
        best_step = min(best_step, sum((y - ml) ** 2 for y in left) + sum((y - mr) ** 2 for y in right))
    return sse_line < best_step


@functools.cache
def _inversion_counts(n: int) -> tuple[int, ...]:
    """How many permutations of n distinct values have 0, 1, 2, ... inversions (Mahonian numbers)."""
    counts = [1]
    for m in range(2, n + 1):
        nxt = [0] * (len(counts) + m - 1)
        for inv, c in enumerate(counts):
            for extra in range(m):
                nxt[inv + extra] += c
        counts = nxt
    return tuple(counts)


def mann_kendall_p(values: Sequence[float], decreasing: bool) -> float:
    """One-sided Mann-Kendall p-value for a trend down (`decreasing`) or up over run order.

    Exact (the permutation distribution of the inversion count) when there are no ties; with ties,
    the normal approximation with the tie-corrected variance.
    """
    n = len(values)
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            s += (values[j] > values[i]) - (values[j] < values[i])
    if decreasing:
        s = -s
    if len(set(values)) == n:
        counts = _inversion_counts(n)
        pairs = n * (n - 1) // 2
        # S = pairs - 2 * inversions (of the oriented order); P(S >= s) = P(inversions <= (pairs - s) / 2)
        limit = (pairs - s) // 2
        return sum(counts[: limit + 1]) / math.factorial(n)
    ties: dict[float, int] = {}
    for v in values:
        ties[v] = ties.get(v, 0) + 1
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties.values())) / 18
    if var <= 0:
        return 1.0
    z = (s - 1) / math.sqrt(var) if s > 0 else 0.0
    return 0.5 * math.erfc(z / math.sqrt(2))


def theil_sen(values: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) over run order 0..n-1: the median pairwise slope, robust to odd runs."""
    n = len(values)
    slope = _median([(values[j] - values[i]) / (j - i) for i in range(n) for j in range(i + 1, n)])
    return slope, _median(values) - slope * (n - 1) / 2


def _find_creep(xs: Sequence[float], higher_is_better: bool | None, sigma: float) -> ChangePoint | None:
    if len(xs) < CREEP_MIN_RUNS:
        return None
    for end in range(CREEP_MIN_RUNS, len(xs) + 1):
        start = max(0, end - CREEP_WINDOW)
        w = list(xs[start:end])
        if max(w) == min(w):
            continue
        if higher_is_better is None:
            p = 2 * min(mann_kendall_p(w, True), mann_kendall_p(w, False))
        else:
            p = mann_kendall_p(w, decreasing=higher_is_better)
        if not (p <= CREEP_ALPHA):
            continue
        slope, intercept = theil_sen(w)
        before, after = intercept, intercept + slope * (len(w) - 1)
        rel = _rel(before, after)
        if abs(rel) < MIN_CHANGE_REL or abs(after - before) < CREEP_Z * sigma or not _harmful(rel, higher_is_better):
            continue
        if not _linear_beats_step(w, slope, intercept):
            continue
        return ChangePoint(end - 1, before, after, rel, "creep", start)
    return None


def detect_changes(values: Sequence[float], *, higher_is_better: bool | None = None) -> list[ChangePoint]:
    """Steps and creeps in `values` (run medians, oldest first), in order of index.

    Fewer than 2 * MIN_SEGMENT finite values: no change can be confirmed, the result is [].
    A constant series has no change. A series whose median is 0 has no relative scale: ValueError.
    """
    positions = [i for i, v in enumerate(values) if v is not None and math.isfinite(float(v))]
    xs = [float(values[i]) for i in positions]
    if len(xs) < 2 * MIN_SEGMENT:
        return []
    if _median(xs) == 0:
        raise ValueError(f"detect_changes: the series' median is 0 ({len(xs)} finite values), so relative changes "
                         "are undefined: pass a metric measured on a non-zero scale")
    if max(xs) == min(xs):
        return []
    sigma = noise_sigma(xs)
    creep = _find_creep(xs, higher_is_better, sigma)
    found: list[ChangePoint] = []
    for index, before, after, rel in _find_steps(xs, sigma):
        if creep is not None and index >= creep.start:
            continue  # a staircase inside a creep is the creep
        if _harmful(rel, higher_is_better):
            found.append(ChangePoint(positions[index], before, after, rel, "step", positions[index]))
    if creep is not None:
        found.append(ChangePoint(positions[creep.index], creep.before, creep.after, creep.change_rel, "creep",
                                 positions[creep.start]))
    return sorted(found, key=lambda c: c.index)
