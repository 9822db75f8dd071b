"""The `--mgpu-summary` Markdown (a GitHub step summary by default when `$GITHUB_STEP_SUMMARY` is set)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_mgpu.gate.table import verdict_table
from pytest_mgpu.report.model import KEY_METRICS, Row

if TYPE_CHECKING:
    from pytest_mgpu.history.state import Trend

_BARS = "▁▂▃▄▅▆▇█"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def trend_lines(trends: Sequence[Trend]) -> list[str]:
    """One line per configuration with history: the last medians of the headline metric, oldest first."""
    from pytest_mgpu.gate.table import number

    if not trends:
        return []
    lines = ["", f"### Trend (last runs, {trends[0].metric}, oldest first)"]
    for t in trends:
        lo, hi = min(t.medians), max(t.medians)
        bars = "".join(_BARS[0 if hi == lo else round((x - lo) / (hi - lo) * (len(_BARS) - 1))] for x in t.medians)
        lines.append(f"- `{_cell(t.nodeid)}` {_cell(t.label)}: {bars} " + ", ".join(number(x) for x in t.medians))
    return lines


def render(rows: Sequence[Row], warnings: Sequence[str], trends: Sequence[Trend] = ()) -> str:
    failed = sum(1 for r in rows if r.verdict and r.verdict.failed)
    head = f"## pytest-mgpu: {len(rows)} measurement{'s' * (len(rows) != 1)}"
    head += f", {failed} regression{'s' * (failed != 1)}" if failed else ""
    lines = [head, ""]
    for fp, hw in sorted({r.fingerprint: r.hardware for r in rows}.items()):
        lines.append(f"Hardware `{fp}`" + (f": {hw.get('label')}" if hw.get("label") else ""))
    if rows:
        titles = [title for title, _ in KEY_METRICS]
        lines += ["", "| test | configuration | " + " | ".join(titles) + " | verdict |",
                  "|---|---|" + "---:|" * len(titles) + "---|"]
        for r in rows:
            verdict = r.verdict_text()
            verdict = f"**{verdict}**" if r.verdict and r.verdict.failed else verdict
            cells = [f"`{r.nodeid}`", r.label, *r.key_numbers(), verdict]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    for r in rows:
        if r.verdict and r.verdict.outcome.value in ("regression", "noise", "improvement"):
            lines += ["", f"<details><summary>{_cell(r.nodeid)}: {r.verdict.outcome.value}</summary>", "",
                      "```", verdict_table(r.verdict), "```", "</details>"]
    lines += trend_lines(trends)
    findings = [(r.nodeid, f) for r in rows for f in r.findings]
    if findings:
        lines += ["", "### Findings", *(f"- `{n}`: {_cell(str(f))}" for n, f in findings)]
    if warnings:
        lines += ["", "### Warnings", *(f"- {_cell(w)}" for w in warnings)]
    return "\n".join(lines) + "\n"
