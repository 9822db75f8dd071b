"""The noise-aware gate: judge this run against the series' own run-to-run spread.

A fixed tolerance cannot fit every machine: an H200 re-runs within 0.3% (10% lets a 5% co-tenant
slowdown through), a shared 2-core CPU box swings by 20% (10% cries wolf). So, for a series with
enough history on one fingerprint, each metric gets a band from its own recent runs:

    center    = median of the last `window` runs' medians
    spread    = 1.4826 * MAD(those medians) / |center|   (a robust relative sigma: one odd run
                moves neither the center nor the spread much)
    band_rel  = max(floor_rel, k * spread)

and this run regresses when the median of its repeats is worse than the center by more than the
band, in the harmful direction only. The median of three repeats is beyond the band only when
at least two of them are, so a single stalled repeat cannot fail a run. With fewer than `min_runs`
earlier runs the band itself is too uncertain: `enough` is False, nothing is judged, and the
caller falls back to the pinned-baseline rule (`pytest_mgpu.gate.compare`).

Why these constants (DEFAULT_GATE), measured with
`python benchmarks/history_rates.py --sweep --trials 1000 --history 5,8,12,20 --ks 3,4,5,6 --floors 0.01,0.02`
on synthetic series (R=3 repeats per run, run-to-run noise 0.3%/2%/10% with within-run noise half
of that, Gaussian or heavy-tailed Student-t(3) run noise; "false alarms" is the worst of those six
cells; sweep table and the full rates in perf-runs/history-rates.md):
- min_runs=8: with 5 earlier runs the MAD of five medians is too uncertain: false alarms 4.6% at
  k=5 (5.8% at k=4) on heavy-tailed 10% noise, and a 3% step at 0.3% noise only just caught
  (95.6%). With 8 runs, k=5 gives 1.8% false alarms and catches that step in 98.5%.
- k=5: with 8 runs k=3 gave 5.4% false alarms (over the 1-in-20 target), k=4 3.0%, k=5 1.8%, k=6
  1.2% but the 3% step at 0.3% noise fell to 94.7%. k=5 keeps every cell under 2% (a real box is
  messier than t(3) noise, and 20 unchanged real runs should raise nothing) at the price of
  catching a 10% step at 2% noise in 58% of single runs (k=4: 76%); change-point detection
  over the following runs catches what one run cannot. Real noise can be worse than t(3): on a
  2-core AVX2 CPU box, unchanged vLLM runs were 5-20% slow in 2-6 of 21 (TPOT more than
  throughput, with no other process or steal time to show), which k=5 sigmas of MAD do not
  cover (perf-runs/2026-12-02-round3-cpu; benchmarks/gate_band_rules.py replays other rules).
- window=20: false alarms keep falling with more runs (k=5: 1.8% at 8, 1.2% at 12, 0.6% at 20);
  20 nightly runs is also short enough for a machine's slow drift to age out within a month.
- floor_rel=0.02: in stationary synthetic noise the floor never causes a false alarm, so the
  synthetic rates cannot set it; it guards against day-to-day drift the window has not seen.
  It is the field's value (Perfherder's minimum change is 2%), and costs little: a 3% step at
  0.3% noise is caught in 98.5% either way, a 2% step in 42% (floor 1%: 81%).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826  # MAD * this estimates a normal distribution's standard deviation


@dataclass(frozen=True)
class NoiseGate:
    """How much history is enough, and how wide the band is (see the module docstring for why)."""

    min_runs: int  # earlier runs needed before the history judges anything
    window: int  # the most recent runs used for the center and the spread
    k: float  # band = k * robust relative spread ...
    floor_rel: float  # ... but never narrower than this (0.02 = 2%)

    def __post_init__(self) -> None:
        if self.min_runs < 3:
            raise ValueError(f"NoiseGate.min_runs must be >= 3 (a spread needs runs to measure), got {self.min_runs}")
        if self.window < self.min_runs:
            raise ValueError(f"NoiseGate.window ({self.window}) must be >= min_runs ({self.min_runs})")
        if not (math.isfinite(self.k) and self.k > 0):
            raise ValueError(f"NoiseGate.k must be a positive number of sigmas, got {self.k!r}")
        if not (math.isfinite(self.floor_rel) and self.floor_rel >= 0):
            raise ValueError(f"NoiseGate.floor_rel must be a relative change >= 0 (0.02 = 2%), got {self.floor_rel!r}")


DEFAULT_GATE = NoiseGate(min_runs=8, window=20, k=5.0, floor_rel=0.02)


@dataclass(frozen=True)
class HistoryCheck:
    """One metric of one run against its recent history."""

    metric: str
    enough: bool  # False: too little (finite) history or no finite sample now; nothing was judged
    runs_used: int  # earlier runs that made the center and the spread
    center: float  # median of those runs' medians (nan when not enough)
    band_rel: float  # the tolerated harmful change, relative (nan when not enough)
    change_rel: float  # (this run's median - center) / |center|, raw sign (nan when not judged)
    regressed: bool
    reason: str
    spread_rel: float = math.nan  # robust run-to-run sigma of the window, relative to the center
    current: float = math.nan  # median of this run's finite repeats


def _finite(values: Sequence[float]) -> list[float]:
    out = []
    for x in values:
        if x is None:
            continue
        f = float(x)
        if math.isfinite(f):
            out.append(f)
    return out


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def robust_spread_rel(values: Sequence[float], center: float) -> float:
    """1.4826 * MAD around `center`, relative to |center|: a normal sigma that ignores odd runs."""
    return MAD_TO_SIGMA * _median([abs(x - center) for x in values]) / abs(center)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def check_against_history(
    history: Sequence[float],
    current: Sequence[float],
    *,
    higher_is_better: bool,
    metric: str = "",
    gate: NoiseGate = DEFAULT_GATE,
) -> HistoryCheck:
    """Judge this run's repeats (`current`) against earlier runs' medians (`history`, oldest first).

    Non-finite values are skipped on both sides (vLLM reports NaN TPOT for one-token outputs); they
    do not count as runs. Too little history, no finite sample now, or a zero center: `enough` is
    False and `reason` says why, so the caller falls back to the pinned-baseline rule.
    """
    name = metric or "metric"
    past = _finite(history)
    now = _finite(current)
    nan = math.nan
    if len(past) < gate.min_runs:
        return HistoryCheck(metric, False, len(past), nan, nan, nan, False,
                            f"{name}: {len(past)} runs of history, need {gate.min_runs}: judged by the pinned "
                            "baseline only")
    recent = past[-gate.window:]
    center = _median(recent)
    if not now:
        return HistoryCheck(metric, False, len(recent), center, nan, nan, False,
                            f"{name}: no finite sample in this run ({len(current)} given): nothing to judge")
    if center == 0:
        return HistoryCheck(metric, False, len(recent), center, nan, nan, False,
                            f"{name}: the last {len(recent)} runs' median is 0, so a relative band is undefined: "
                            "judged by the pinned baseline only")
    spread = robust_spread_rel(recent, center)
    band = max(gate.floor_rel, gate.k * spread)
    value = _median(now)
    change = (value - center) / abs(center)
    harmful = -change if higher_is_better else change
    regressed = harmful > band
    word = "worse" if harmful > 0 else "better"
    why = (f"floor {_pct(gate.floor_rel)}" if band == gate.floor_rel
           else f"{gate.k:g} x spread {_pct(spread)}")
    reason = (f"{name}: {value:.6g} is {_pct(abs(change))} {word} than the median {center:.6g} of the last "
              f"{len(recent)} runs; band {_pct(band)} ({why}): {'regression' if regressed else 'within'}")
    return HistoryCheck(metric, True, len(recent), center, band, change, regressed, reason, spread, value)
