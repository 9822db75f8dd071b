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

    names = [_tick(r) for r in shown]
    fig = Figure(figsize=(max(6.0, 2.2 * len(shown) + 1.5), 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(PANELS), 1, squeeze=False)[:, 0]
    width = 0.38
    xs = list(range(len(shown)))
    for ax, (metric, title) in zip(axes, PANELS, strict=True):
        now = [r.metrics.get(metric, float("nan")) for r in shown]
        base = [r.baseline_of(metric) for r in shown]
        ax.bar([x - width / 2 for x in xs], [b if b is not None else float("nan") for b in base], width,
               label="baseline", color="tab:gray")
        bars = ax.bar([x + width / 2 for x in xs], now, width, label="now", color="tab:blue")
        for bar, r in zip(bars, shown, strict=True):
            outcome = next((m.outcome.value for m in (r.verdict.metrics if r.verdict else ()) if m.metric == metric),
                           None)
            if outcome in ("regression", "improvement", "noise"):
                color = {"regression": "tab:red", "improvement": "tab:green"}.get(outcome, "tab:orange")
                ax.annotate(outcome, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", color=color, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(xs, names, fontsize=8)
        ax.margins(y=0.15)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("pytest-mgpu: baseline vs now", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return True


def _tick(row: Row) -> str:
    spec = getattr(row.result, "spec", {}) or {}
    config = f"tp={spec.get('tp', '?')} pp={spec.get('pp', '?')} dev={spec.get('n_devices', '?')}"
    return f"{row.nodeid.split('::', 1)[-1]}\n{config}"
