"""A PNG beside the report: per-device throughput and TPOT for each configuration, baseline against now.

Needs matplotlib (the `plot` extra); drawn with the object API (no pyplot, no global backend).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pytest_mgpu.report.model import Row

PANELS = (("output_throughput_per_gpu", "output tok/s per device (higher is better)"),
          ("median_tpot_ms", "median TPOT ms (lower is better)"))


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def draw(rows: Sequence[Row], path: Path) -> bool:
    """Write the chart; False (and nothing written) when there is nothing to draw."""
    shown = [r for r in rows if any(m in r.metrics for m, _ in PANELS)]
    if not shown:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [f"{r.nodeid.split('::', 1)[-1]}\n{r.label}" for r in shown]
    fig = Figure(figsize=(max(6.0, 1.6 * len(shown) + 2), 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(PANELS), 1, squeeze=False)[:, 0]
    width = 0.38
    xs = list(range(len(shown)))
    for ax, (metric, title) in zip(axes, PANELS, strict=True):
        now = [r.metrics.get(metric, float("nan")) for r in shown]
        base = [r.baseline_of(metric) for r in shown]
        ax.bar([x + width / 2 for x in xs], now, width, label="now", color="tab:blue")
        ax.bar([x - width / 2 for x in xs], [b if b is not None else float("nan") for b in base], width,
               label="baseline", color="tab:gray")
        for x, r in zip(xs, shown, strict=True):
            if r.verdict is not None and r.verdict.failed:
                ax.annotate("regression", (x, 0), ha="center", va="bottom", color="tab:red", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(xs, names, fontsize=7)
        ax.legend(fontsize=8)
    fig.suptitle("pytest-mgpu: baseline vs now", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return True
