"""Write every requested report file. A failure to write one is a warning, never a changed outcome."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from pytest_mgpu.gate.store import dumps, write_atomic
from pytest_mgpu.report import benchmark, json_report, markdown, plot
from pytest_mgpu.report.model import Row, rows
from pytest_mgpu.session import MgpuSession

GITHUB_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def sibling(report: Path, suffix: str) -> Path:
    """`reports/perf.json` -> `reports/perf<suffix>` (e.g. `.benchmark.json`, `.png`)."""
    return report.with_name(report.stem + suffix)


def _resolve(session: MgpuSession, path: Path) -> Path:
    return path if path.is_absolute() else session.config.invocation_params.dir / path


def write_reports(session: MgpuSession, exit_status: int) -> list[str]:
    """Write what the settings ask for; returns the paths written. Problems become session warnings."""
    settings = session.settings
    data = rows(session)
    written: list[str] = []

    def attempt(kind: str, path: Path, write: Callable[[Path], bool]) -> None:
        try:
            if write(path):
                written.append(str(path))
        except Exception as exc:  # a report must never mask the test results
            session.warnings.append(f"could not write the {kind} {path}: {type(exc).__name__}: {exc}")

    if settings.report is not None:
        report = _resolve(session, settings.report)
        attempt("JSON report", report, lambda p: _json(p, data, session, exit_status))
        attempt("pytest-benchmark export", sibling(report, ".benchmark.json"), lambda p: _bench(p, data))
        if plot.available():
            attempt("plot", sibling(report, ".png"), lambda p: plot.draw(data, p))
    summary_path, append = _summary_target(session, bool(data))
    if summary_path is not None:
        attempt("Markdown summary", summary_path, lambda p: _markdown(p, data, session, append))
    return written


def _summary_target(session: MgpuSession, measured: bool) -> tuple[Path | None, bool]:
    if session.settings.summary is not None:
        return _resolve(session, session.settings.summary), False
    github = os.environ.get(GITHUB_SUMMARY_ENV)
    if github and measured:  # a step summary is shared by the whole job: append, and only with news
        return Path(github), True
    return None, False


def _json(path: Path, data: list[Row], session: MgpuSession, exit_status: int) -> bool:
    settings = {"baselines": str(session.settings.baselines), "tolerance": session.settings.tolerance,
                "repeats": session.settings.repeats, "missing_baseline": session.settings.missing_baseline,
                "update_baselines": session.settings.update_baselines}
    report = json_report.build(data, session.warnings, exit_status, settings)
    report["engines"] = [dataclasses.asdict(t) for t in session.engine_timings]  # start-up (s) of every engine
    write_atomic(path, dumps(report))
    return True


def _engines_markdown(session: MgpuSession) -> str:
    if not session.engine_timings:
        return ""
    cache = {True: "warm", False: "cold", None: "-"}
    lines = ["", "| engine | start-up s | compile cache | stop s |", "|---|---|---|---|"]
    lines += [f"| {t.label} | {t.startup_s:.1f} | {cache[t.compile_cache_warm]} | "
              f"{'-' if t.stop_s is None else f'{t.stop_s:.1f}'} |" for t in session.engine_timings]
    return "\n".join(lines) + "\n"


def _bench(path: Path, data: list[Row]) -> bool:
    exported = benchmark.export(data)
    if not exported["benchmarks"]:
        return False
    write_atomic(path, dumps(exported))
    return True


def _markdown(path: Path, data: list[Row], session: MgpuSession, append: bool) -> bool:
    trends = session.history.trends if session.history else ()
    text = markdown.render(data, session.warnings, trends) + _engines_markdown(session)
    if append:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(text)
    else:
        write_atomic(path, text)
    return True
