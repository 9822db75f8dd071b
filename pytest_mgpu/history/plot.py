"""`history plot`: one PNG per series and metric: the runs, the noise band, the pinned baseline, change points.

Needs matplotlib (the `plot` extra), imported here only; drawn with the object API (no pyplot).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pytest_mgpu.gate.store import safe_name
from pytest_mgpu.history.store import Series, Stored


class PlotUnavailable(RuntimeError):
    pass


def draw(series: Series, metric: str, runs: list[Stored], out_dir: Path) -> Path:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("history plot needs matplotlib: pip install 'pytest-mgpu[plot]'") from None
    from pytest_mgpu.history.changepoint import detect_changes
    from pytest_mgpu.history.noise import check_against_history
    from pytest_mgpu.metrics import judged

    values = [s.row.summary[metric] for s in runs]
    higher = judged(metric).direction.value == "higher"
    fig = Figure(figsize=(8, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(1, len(values) + 1))
    ax.plot(xs, values, "o-", color="tab:blue", label="run median")
    recent = values[:-1]
    if recent:
        check = check_against_history(recent, values[-1:], higher_is_better=higher, metric=metric)
        if check.enough:
            lo, hi = check.center * (1 - check.band_rel), check.center * (1 + check.band_rel)
            ax.axhspan(lo, hi, color="tab:blue", alpha=0.12, label=f"noise band ±{check.band_rel * 100:.1f}%")
    pinned = [s.row.summary[metric] for s in runs if (s.row.verdict or {}).get("outcome") == "recorded"]
    if pinned:
        ax.axhline(pinned[-1], color="tab:green", linestyle="--", label="pinned baseline")
    for i, cp in enumerate(detect_changes(values, higher_is_better=higher)):
        ax.axvline(cp.index + 0.5, color="tab:red", linestyle=":", label="change point" if i == 0 else None)
    ax.set_xlabel("run")
    ax.set_ylabel(metric)
    ax.set_title(f"{series.nodeid} | {series.spec_label}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    digest = hashlib.sha256(f"{series.fingerprint}|{series.nodeid}|{series.spec_key}".encode()).hexdigest()[:8]
    path = out_dir / safe_name(f"{series.nodeid.replace('::', '.')}-{series.spec_key[:8]}-{digest}-{metric}.png")
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
