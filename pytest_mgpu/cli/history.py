"""`python -m pytest_mgpu history {list,show,plot,detect,import,prune} [--history URL]`: the run history.

The store is `--history URL`, else $PYTEST_MGPU_HISTORY, else `.pytest-mgpu/history.db` under the
current directory (the rootdir a pytest run here would use). A store that cannot be opened is
exit status 2 with a message naming it (password masked).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_mgpu.history.store import HistoryStore

ENV = "PYTEST_MGPU_HISTORY"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("history", help="list, show, plot, detect changes in, import into, prune the "
                                   "run history", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = verbs.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--history", metavar="URL", help=f"store URL (default: ${ENV}, else "
                       "sqlite:///.pytest-mgpu/history.db)")
        p.set_defaults(func=run)
        return p

    p = verb("list", "one line per series (test, configuration, hardware) with its number of runs")
    p.add_argument("--json", action="store_true")
    p = verb("show", "every run of the matching series: time, commit, medians, verdict")
    _filters(p)
    p.add_argument("--json", action="store_true")
    p = verb("detect", "find step changes and slow creeps, naming the first run after each and what changed")
    _filters(p)
    p.add_argument("--metric", action="append", help="metric to scan (repeatable; default: the gated ones)")
    p.add_argument("--json", action="store_true")
    p = verb("plot", "one PNG per series and metric: runs, noise band, pinned baseline, change points")
    _filters(p)
    p.add_argument("--metric", action="append", help="metric to plot (repeatable; default: the gated ones)")
    p.add_argument("--out", type=Path, default=Path("history-plots"), help="directory for the PNGs")
    p = verb("import", "load baseline files and --mgpu-report JSON reports (files or directories); idempotent")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--baselines-root", type=Path, default=None,
                   help="the baselines directory (to name tests from file paths; default: guessed)")
    p = verb("prune", "delete old runs: older than --keep-days, or all but the newest --keep per series")
    p.add_argument("--keep-days", type=float)
    p.add_argument("--keep", type=int)


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test", help="only this test node id")
    p.add_argument("--fingerprint", help="only this hardware fingerprint")
    p.add_argument("--spec-key", help="only this configuration (the spec_key `list --json` prints)")


def open_store(value: str | None) -> HistoryStore:
    from pytest_mgpu.history.store import HistoryError, HistoryStore
    from pytest_mgpu.history.url import HistoryUrlError, default, parse

    value = value or os.environ.get(ENV)
    try:
        url = default(Path.cwd()) if value is None else parse(value, Path.cwd())
    except HistoryUrlError as exc:
        raise HistoryError(f"--history: {exc}") from None
    if url is None:
        raise HistoryError("--history none: there is no store to read")
    return HistoryStore.open(url)


def run(args: argparse.Namespace) -> int:
    from pytest_mgpu.history.store import HistoryError

    if args.verb == "prune" and (args.keep_days is None) == (args.keep is None):
        print("history prune: give exactly one of --keep-days N or --keep N", file=sys.stderr)
        return 2
    try:
        with open_store(args.history) as store:
            return int(VERBS[args.verb](store, args))
    except HistoryError as exc:
        print(f"pytest-mgpu history: {exc}", file=sys.stderr)
        return 2


def _list(store: HistoryStore, args: argparse.Namespace) -> int:
    series = store.series()
    if args.json:
        print(json.dumps({"series": [{"test": s.nodeid, "spec": s.spec_label, "fingerprint": s.fingerprint,
                                      "runs": s.runs, "spec_key": s.spec_key, "first_utc": s.first_utc,
                                      "last_utc": s.last_utc} for s in series]}, indent=2))
        return 0
    if not series:
        print(f"no runs in {store.url.masked()}")
    for s in series:
        print(f"{s.nodeid}  {s.spec_label}  {s.fingerprint}  runs={s.runs}  key={s.spec_key}  last={s.last_utc}")
    return 0


def _show(store: HistoryStore, args: argparse.Namespace) -> int:
    from pytest_mgpu.gate.table import aligned, number
    from pytest_mgpu.metrics import gated_metrics

    stored = store.measurements(fingerprint=args.fingerprint, nodeid=args.test, spec_key=args.spec_key)
    if args.json:
        print(json.dumps({"runs": [{"test": s.row.nodeid, "spec": s.row.spec_label, "fingerprint": s.row.fingerprint,
                                    "spec_key": s.row.spec_key, "recorded_utc": s.row.recorded_utc,
                                    "git_commit": s.git_commit, "ci_run_id": s.ci_run_id, "summary": s.row.summary,
                                    "samples": s.row.samples, "versions": s.row.versions,
                                    "outcome": s.row.outcome, "uuid": s.row.uuid} for s in stored]}, indent=2))
        return 0
    names = gated_metrics()
    table = [[s.row.recorded_utc, s.row.nodeid, s.row.spec_label, (s.git_commit or "-")[:10],
              *(number(s.row.summary.get(n)) for n in names), s.row.outcome or "measured"] for s in stored]
    print(aligned(("time", "test", "configuration", "commit", *names, "verdict"), table) if table else "no runs")
    return 0


def _detect(store: HistoryStore, args: argparse.Namespace) -> int:
    from pytest_mgpu.history.detect import detect

    found = [f for f in detect(store, args.metric) if _match(args, f.series.nodeid, f.series.fingerprint,
                                                              f.series.spec_key)]
    if args.json:
        print(json.dumps({"change_points": [f.to_json() for f in found]}, indent=2))
        return 0
    if not found:
        print("no change points")
    for f in found:
        what = "; ".join(f.changed) or "no version or commit change recorded"
        print(f"{f.series.nodeid} [{f.series.spec_label}] {f.metric}: {f.kind} at run {f.run} "
              f"({f.at.row.recorded_utc}): {f.before:.4g} -> {f.after:.4g} ({f.change_rel * 100:+.1f}%); {what}")
    return 0


def _plot(store: HistoryStore, args: argparse.Namespace) -> int:
    from pytest_mgpu.history.plot import PlotUnavailable, draw
    from pytest_mgpu.metrics import gated_metrics

    written = 0
    try:
        for s in store.series():
            if not _match(args, s.nodeid, s.fingerprint, s.spec_key):
                continue
            stored = store.measurements(fingerprint=s.fingerprint, nodeid=s.nodeid, spec_key=s.spec_key)
            for metric in args.metric or gated_metrics():
                runs = [r for r in stored if metric in r.row.summary]
                if runs:
                    print(draw(s, metric, runs, args.out))
                    written += 1
    except PlotUnavailable as exc:
        print(f"pytest-mgpu history: {exc}", file=sys.stderr)
        return 2
    if not written:
        print("nothing to plot")
    return 0


def _import(store: HistoryStore, args: argparse.Namespace) -> int:
    from pytest_mgpu.history.importer import ImportError_, files_under, import_file

    total, bad = 0, 0
    for path in files_under(args.paths):
        try:
            added = import_file(store, path, args.baselines_root)
        except ImportError_ as exc:
            print(f"skipped {exc}", file=sys.stderr)
            bad += 1
            continue
        total += added
        print(f"{path}: {added} new measurement(s)")
    print(f"imported {total} new measurement(s) into {store.url.masked()}")
    return 1 if bad else 0


def _prune(store: HistoryStore, args: argparse.Namespace) -> int:
    removed = store.prune(keep_days=args.keep_days, keep=args.keep)
    print(f"pruned {removed} measurement(s) from {store.url.masked()}")
    return 0


def _match(args: argparse.Namespace, nodeid: str, fingerprint: str, spec_key: str) -> bool:
    return all(want is None or want == have for want, have in ((getattr(args, "test", None), nodeid),
                                                                (getattr(args, "fingerprint", None), fingerprint),
                                                                (getattr(args, "spec_key", None), spec_key)))


VERBS = {"list": _list, "show": _show, "detect": _detect, "plot": _plot, "import": _import, "prune": _prune}
