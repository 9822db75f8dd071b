"""Re-judge recorded gate_error_rates runs (.jsonl) under other history-band rules, offline.

The noise-aware gate's band is max(floor, k * robust sigma) (pytest_mgpu.history.noise). On the
AVX2 CPU box of 2026-12-02 its false alarms came from heavy tails (unchanged runs 5-20% slow now
and then, with no other process or steal time to show for it) that a MAD-based sigma ignores by
design. This replays each recorded run against the unchanged runs before it (the gate's window and
min_runs), as benchmarks/gate_error_rates.py does, under rules that also cover the history's worst
harmful deviation, and prints false alarms and detections per rule: a rule can be tried on real
rows before it goes near the gate.
usage: python benchmarks/gate_band_rules.py RUNS.jsonl [...]
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pytest_mgpu, installed or not

from pytest_mgpu import metrics as registry
from pytest_mgpu.history.noise import DEFAULT_GATE, robust_spread_rel

METRICS = ("output_throughput_per_gpu", "median_tpot_ms")
Rule = Callable[[float, Sequence[float]], float]  # (robust sigma, sorted harmful deviations) -> band
RULES: dict[str, Rule] = {
    "k=5, floor 2% (the gate today)": lambda s, h: max(0.02, 5 * s),
    "... or the worst harmful deviation": lambda s, h: max(0.02, 5 * s, h[-1]),
    "... or 1.25x the worst": lambda s, h: max(0.02, 5 * s, 1.25 * h[-1]),
    "... or 1.25x the second worst": lambda s, h: max(0.02, 5 * s, 1.25 * h[-2]),
}


def replay(rows: list[dict], rule: Rule, metrics: Sequence[str] = METRICS) -> tuple[int, int, dict[float, str]]:
    """(false alarms, unchanged runs judged, {load: 'detected/runs'}) under `rule`."""
    false_alarms = judged = 0
    levels: dict[float, list[int]] = {}
    for i in range(1, len(rows)):
        history = [r for r in rows[:i] if r["load"] == 0][-DEFAULT_GATE.window:]
        if len(history) < DEFAULT_GATE.min_runs:
            continue
        regressed = False
        for m in metrics:
            higher = registry.judged(m).direction is registry.Direction.HIGHER
            xs = [statistics.median(r["samples"][m]) for r in history]
            c = statistics.median(xs)
            harm = sorted((c - x) / c if higher else (x - c) / c for x in xs)
            sigma = robust_spread_rel(xs, c)
            now = statistics.median(rows[i]["samples"][m])
            regressed |= ((c - now) / c if higher else (now - c) / c) > rule(sigma, harm)
        if rows[i]["load"] == 0:
            judged += 1
            false_alarms += regressed
        else:
            hit = levels.setdefault(rows[i]["load"], [0, 0])
            hit[0] += regressed
            hit[1] += 1
    return false_alarms, judged, {k: f"{v[0]}/{v[1]}" for k, v in sorted(levels.items())}


def main(paths: Sequence[str]) -> int:
    for path in paths:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        print(path)
        for name, rule in RULES.items():
            fa, n, det = replay(rows, rule)
            fa_t, _, det_t = replay(rows, rule, METRICS[:1])
            print(f"  {name:<38} false alarms {fa}/{n}, caught {det or '-'};"
                  f" throughput alone: {fa_t}/{n}, {det_t or '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
