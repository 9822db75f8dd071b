"""Detection and false-alarm rates of the history gate, change-point detection and today's rule.

Synthetic, seeded series of one higher-is-better metric (throughput) at a level of 1000:
- a run's level is the true level times (1 + d), d the run-to-run noise (sigma = 0.3%, 2% or 10%;
  Gaussian, or Student-t with 3 degrees of freedom scaled to the same sigma: rare big swings);
- each run has R=3 repeats around its level, with within-run noise of half the run-to-run sigma
  (Gaussian): that is what a run's repeats look like on a real box (they agree more with each
  other than with another night's run);
- a step of 2, 3, 5 or 10% multiplies the true level by (1 - step) from one run on; a creep
  makes every run 1% slower than the one before.

Judged three ways:
(a) the noise-aware gate, `pytest_mgpu.history.noise.check_against_history`: the run right
    after the change against the H earlier runs' medians; false alarms: an unchanged run;
(b) change-point detection, `pytest_mgpu.history.changepoint.detect_changes`: over H unchanged
    runs plus 3 runs after the change (a change must persist 2 runs to be called); caught when a
    harmful change is named within +-1 run of the true index; false alarm: any change named in an
    unchanged series of H + 3 runs (per series, so stricter than per run);
(c) today's fixed rule, `pytest_mgpu.gate.compare.judge_metric` (10% tolerance AND one-sided
    Mann-Whitney p <= 0.05 on the repeats) with the first run as the pinned baseline.
Creep: runs after H unchanged ones get 1% slower each; (a) judges each against all earlier runs
(the creep enters its own history, as it would), (b) re-runs detection after every run, (c)
compares each with the pinned baseline. Reported: caught within 5 runs (5% slower) and the
median number of creep runs until the first alarm (">10": not within 10).

    python benchmarks/history_rates.py                 # the table, also written to perf-runs/history-rates.md
    python benchmarks/history_rates.py --sweep         # the constant sweep behind noise.DEFAULT_GATE
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pytest_mgpu.gate import compare
from pytest_mgpu.gate.compare import Outcome
from pytest_mgpu.history.changepoint import detect_changes
from pytest_mgpu.history.noise import DEFAULT_GATE, NoiseGate, check_against_history

LEVEL = 1000.0
REPEATS = 3
WITHIN = 0.5  # within-run sigma / run-to-run sigma
NOISES = (0.003, 0.02, 0.10)
STEPS = (0.02, 0.03, 0.05, 0.10)
CREEP = 0.01
CREEP_RUNS = 10
AFTER = 3  # runs after a step that change-point detection sees
METRIC = "output_throughput_per_gpu"  # higher is better, gated, 10% tolerance by default
DISTS = ("normal", "t3")


def draw(rng: random.Random, dist: str) -> float:
    """A unit-sigma draw: Gaussian, or Student-t(3) scaled to unit variance (heavier tails)."""
    if dist == "normal":
        return rng.gauss(0, 1)
    z = rng.gauss(0, 1)
    chi2 = sum(rng.gauss(0, 1) ** 2 for _ in range(3))
    return z / math.sqrt(chi2 / 3) / math.sqrt(3)


def run(rng: random.Random, level: float, noise: float, dist: str) -> list[float]:
    """One run's repeats: the run's own level (run-to-run noise), then repeats around it."""
    mean = level * (1 + noise * draw(rng, dist))
    return [mean * (1 + WITHIN * noise * rng.gauss(0, 1)) for _ in range(REPEATS)]


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def levels_for(effect: str, history: int, extra: int) -> list[float]:
    """True levels of `history` unchanged runs followed by `extra` runs under the effect."""
    out = [LEVEL] * history
    for j in range(1, extra + 1):
        if effect == "none":
            out.append(LEVEL)
        elif effect == "creep":
            out.append(LEVEL * (1 - CREEP) ** j)
        else:
            out.append(LEVEL * (1 - float(effect)))
    return out


def fixed_rule(baseline: Sequence[float], now: Sequence[float]) -> bool:
    tol = compare.resolve_tolerances([METRIC], None, None)[METRIC]
    return compare.judge_metric(METRIC, tuple(baseline), tuple(now), tol).outcome is Outcome.REGRESSION


def gate_rule(gate: NoiseGate) -> Callable[[Sequence[Sequence[float]], Sequence[float]], bool]:
    def judge(history: Sequence[Sequence[float]], now: Sequence[float]) -> bool:
        check = check_against_history([med(r) for r in history], now, higher_is_better=True, gate=gate)
        return check.enough and check.regressed
    return judge


def cp_caught(medians: Sequence[float], true_index: int | None) -> bool:
    found = detect_changes(medians, higher_is_better=True)
    if true_index is None:
        return bool(found)
    return any(abs(c.index - true_index) <= 1 for c in found)


def rates_single(rng: random.Random, judge: Callable[[Sequence[Sequence[float]], Sequence[float]], bool],
                 noise: float, dist: str, history: int, effect: str, trials: int) -> float:
    """(a)/(c): share of trials in which the run after `history` runs is flagged."""
    hits = 0
    for _ in range(trials):
        runs = [run(rng, lv, noise, dist) for lv in levels_for(effect, history, 1)]
        hits += judge(runs[:-1], runs[-1])
    return hits / trials


def rates_cp(rng: random.Random, noise: float, dist: str, history: int, effect: str, trials: int) -> float:
    hits = 0
    for _ in range(trials):
        medians = [med(run(rng, lv, noise, dist)) for lv in levels_for(effect, history, AFTER)]
        hits += cp_caught(medians, None if effect == "none" else history)
    return hits / trials


def creep_runs_to_alarm(rng: random.Random, method: str, noise: float, dist: str, history: int,
                        gate: NoiseGate) -> int | None:
    runs = [run(rng, lv, noise, dist) for lv in levels_for("creep", history, CREEP_RUNS)]
    for j in range(1, CREEP_RUNS + 1):
        upto = history + j
        if method == "gate":
            hit = gate_rule(gate)(runs[:upto - 1], runs[upto - 1])
        elif method == "fixed":
            hit = fixed_rule(runs[0], runs[upto - 1])
        else:
            hit = any(c.index >= history - 1 for c in detect_changes([med(r) for r in runs[:upto]],
                                                                      higher_is_better=True))
        if hit:
            return j
    return None


def creep_summary(rng: random.Random, method: str, noise: float, dist: str, history: int, trials: int,
                  gate: NoiseGate) -> tuple[float, str]:
    found = [creep_runs_to_alarm(rng, method, noise, dist, history, gate) for _ in range(trials)]
    within5 = sum(1 for f in found if f is not None and f <= 5) / trials
    ranked = sorted(CREEP_RUNS + 1 if f is None else f for f in found)
    mid = ranked[len(ranked) // 2]
    return within5, (f">{CREEP_RUNS}" if mid > CREEP_RUNS else str(mid))


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def table(args: argparse.Namespace) -> str:
    rng = random.Random(args.seed)
    gate = DEFAULT_GATE
    head = ("| method | noise | dist | history | false alarms | step 2% | step 3% | step 5% | step 10% "
            "| creep 1%/run caught <= 5 runs | creep: runs to alarm (median) |")
    lines = [head, "|" + "---|" * 11]
    for method in args.methods:
        for dist in DISTS:
            for noise in NOISES:
                for history in args.history:
                    trials = args.trials if method != "changepoint" else args.cp_trials
                    if method == "changepoint":
                        cells = [rates_cp(rng, noise, dist, history, e, trials) for e in ("none", *map(str, STEPS))]
                    else:
                        judge = gate_rule(gate) if method == "gate" else (lambda h, n: fixed_rule(h[0], n))
                        cells = [rates_single(rng, judge, noise, dist, history, e, trials)
                                 for e in ("none", *map(str, STEPS))]
                    within5, median_runs = creep_summary(rng, method, noise, dist, history, args.creep_trials, gate)
                    name = {"gate": "(a) history gate", "changepoint": "(b) change points",
                            "fixed": "(c) fixed 10% + MWU"}[method]
                    lines.append(f"| {name} | {pct(noise)} | {dist} | {history} | "
                                 + " | ".join(pct(c) for c in cells) + f" | {pct(within5)} | {median_runs} |")
                    print(lines[-1], flush=True)
    return "\n".join(lines)


def sweep(args: argparse.Namespace) -> str:
    """False alarms and detection of the gate over a grid of (history, k, floor): how DEFAULT_GATE was chosen."""
    lines = ["| history | k | floor | worst false alarms (noise, dist) | step 3% @0.3% | step 2% @0.3% "
             "| step 10% @2% | step 10% @10% |", "|" + "---|" * 8]
    for history in args.history:
        for k in args.ks:
            for floor in args.floors:
                gate = NoiseGate(min_runs=history, window=max(history, DEFAULT_GATE.window), k=k, floor_rel=floor)
                judge = gate_rule(gate)
                rng = random.Random(args.seed)
                fa = [(rates_single(rng, judge, n, d, history, "none", args.trials), n, d)
                      for n in NOISES for d in DISTS]
                worst = max(fa)
                det = [rates_single(rng, judge, n, "normal", history, s, args.trials)
                       for n, s in ((0.003, "0.03"), (0.003, "0.02"), (0.02, "0.1"), (0.10, "0.1"))]
                lines.append(f"| {history} | {k:g} | {pct(floor)} | {pct(worst[0])} ({pct(worst[1])}, {worst[2]}) | "
                             + " | ".join(pct(d) for d in det) + " |")
                print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--trials", type=int, default=2000, help="trials per cell for the gate and the fixed rule")
    ap.add_argument("--cp-trials", type=int, default=400, help="trials per cell for change-point detection")
    ap.add_argument("--creep-trials", type=int, default=200, help="trials per creep cell")
    ap.add_argument("--history", type=lambda s: [int(x) for x in s.split(",")], default=[5, 8, 12, 20],
                    help="history lengths (earlier runs), comma-separated")
    ap.add_argument("--methods", type=lambda s: s.split(","), default=["gate", "changepoint", "fixed"],
                    help="which of gate,changepoint,fixed to measure (default all)")
    ap.add_argument("--out", type=Path, default=Path("perf-runs/history-rates.md"))
    ap.add_argument("--sweep", action="store_true", help="sweep the gate's k and floor instead")
    ap.add_argument("--ks", type=lambda s: [float(x) for x in s.split(",")], default=[3.0, 4.0, 5.0, 6.0])
    ap.add_argument("--floors", type=lambda s: [float(x) for x in s.split(",")], default=[0.01, 0.015, 0.02])
    args = ap.parse_args(argv)
    started = time.monotonic()
    if args.sweep:
        print(sweep(args))
        print(f"\n{time.monotonic() - started:.0f} s")
        return 0
    body = table(args)
    gate = DEFAULT_GATE
    header = (f"# History gate, change points and the fixed rule on synthetic series\n\n"
              f"`python benchmarks/history_rates.py --seed {args.seed} --trials {args.trials} "
              f"--cp-trials {args.cp_trials} --creep-trials {args.creep_trials} "
              f"--history {','.join(map(str, args.history))} --methods {','.join(args.methods)}` "
              f"({time.monotonic() - started:.0f} s). "
              f"Gate: {gate}. Model and definitions: the benchmark's docstring. 'history' is the number of "
              f"earlier runs; with fewer than min_runs={gate.min_runs} the gate judges nothing (it falls back "
              f"to the pinned rule), so its rates there are 0 by construction.\n\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + body + "\n")
    print(f"\nwritten to {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
