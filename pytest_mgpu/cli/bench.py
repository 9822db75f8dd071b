"""`python -m pytest_mgpu bench`: the plugin's load generator against any running server."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

HELP = "measure a running OpenAI-compatible server with the plugin's load generator"


def _goodput(value: str) -> tuple[str, float]:
    key, sep, ms = value.partition(":")
    try:
        if not sep:
            raise ValueError
        return key, float(ms)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KEY:MILLISECONDS such as ttft:2000, got {value!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", help="model name in requests (default: the first of the server's /v1/models)")
    parser.add_argument("--tokenizer", help="local model directory with tokenizer.json (default: the server's "
                                            "model root, when it is a local directory)")
    parser.add_argument("--devices", type=int, default=1, help="devices the server uses, for per-device metrics")
    w = parser.add_argument_group("workload (pytest_mgpu.Workload)")
    w.add_argument("--input-len", type=int, default=128)
    w.add_argument("--output-len", type=int, default=128, help="0: the dataset's own lengths")
    w.add_argument("--num-prompts", type=int, default=200)
    w.add_argument("--max-concurrency", type=int, default=None)
    w.add_argument("--request-rate", type=float, default=math.inf, help="requests/s (default inf: all at once)")
    w.add_argument("--burstiness", type=float, default=1.0)
    w.add_argument("--dataset", default="random", help="random, fixed, sharegpt, or a .jsonl path")
    w.add_argument("--dataset-path", default=None, help="the ShareGPT JSON file")
    w.add_argument("--endpoint", default="completions", choices=("completions", "chat"))
    w.add_argument("--warmup", type=int, default=None, help="warm-up requests (default: one concurrency wave)")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--range-ratio", type=float, default=0.0)
    w.add_argument("--prefix-len", type=int, default=0)
    w.add_argument("--text-prompts", action="store_true",
                   help="send synthetic prompts as text (as vLLM's client does) instead of token ids")
    w.add_argument("--goodput", type=_goodput, nargs="+", default=[], metavar="KEY:MS",
                   help="objectives for request goodput, e.g. ttft:2000 tpot:100 e2el:20000")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--request-timeout", type=float, default=300.0, help="seconds before a request fails")
    parser.add_argument("--json", type=Path, default=None, help="write the BenchResult JSON here")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `bench` subcommand to `python -m pytest_mgpu`'s subcommand table."""
    parser: argparse.ArgumentParser = subparsers.add_parser("bench", help=HELP, description=HELP)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pytest_mgpu.bench.errors import BenchError
    from pytest_mgpu.bench.runner import external_server, run_bench
    from pytest_mgpu.bench.workload import Workload

    try:
        workload = Workload(
            input_len=args.input_len, output_len=args.output_len or None, num_prompts=args.num_prompts,
            max_concurrency=args.max_concurrency, request_rate=args.request_rate, burstiness=args.burstiness,
            dataset=args.dataset, endpoint=args.endpoint, warmup=args.warmup, seed=args.seed,
            dataset_path=args.dataset_path, range_ratio=args.range_ratio, prefix_len=args.prefix_len,
            goodput_ms=dict(args.goodput), text_prompts=args.text_prompts,
        )
        server = external_server(args.base_url, model=args.model, n_devices=args.devices, tokenizer=args.tokenizer,
                                 api_key=os.environ.get("PYTEST_MGPU_API_KEY"))  # not a flag: argv is public
        result = run_bench(server, workload, repeats=args.repeats, request_timeout_s=args.request_timeout)
    except (BenchError, ValueError, FileNotFoundError) as exc:
        print(f"pytest-mgpu bench: error: {exc}", file=sys.stderr)
        return 2
    print(render(result.to_json()))
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    return 0


_ROWS = (
    ("Successful requests", "completed", "{:.0f}"), ("Failed requests", "failed", "{:.0f}"),
    ("Benchmark duration (s)", "duration", "{:.2f}"), ("Total input tokens", "total_input_tokens", "{:.0f}"),
    ("Total generated tokens", "total_output_tokens", "{:.0f}"),
    ("Request throughput (req/s)", "request_throughput", "{:.2f}"),
    ("Request goodput (req/s)", "request_goodput", "{:.2f}"),
    ("Output token throughput (tok/s)", "output_throughput", "{:.2f}"),
    ("Total token throughput (tok/s)", "total_token_throughput", "{:.2f}"),
    ("Output tok/s per device", "output_throughput_per_gpu", "{:.2f}"),
    ("Interactivity (tok/s/user)", "interactivity", "{:.2f}"),
    ("Output length mismatches", "output_len_mismatches", "{:.0f}"),
)


def render(data: dict[str, Any]) -> str:
    """A `vllm bench serve`-style table of a BenchResult JSON."""
    s = data["summary"]
    lines = ["{:=^60}".format(" pytest-mgpu serving benchmark ")]
    lines += [f"{label + ':':<44}{fmt.format(s[key])}" for label, key, fmt in _ROWS if key in s]
    for lat, title in (("ttft", "Time to First Token"), ("tpot", "Time per Output Token (excl. 1st)"),
                       ("itl", "Inter-token Latency"), ("e2el", "End-to-end Latency")):
        lines.append(f"{' ' + title + ' ':-^60}")
        lines += [f"{stat.capitalize() + ' ' + lat.upper() + ' (ms):':<44}{s[f'{stat}_{lat}_ms']:.2f}"
                  for stat in ("mean", "median", "p90", "p99")]
    repeats = len(data["repeats"])
    lines.append("=" * 60 + (f"\n(median of {repeats} repeats)" if repeats > 1 else ""))
    lines += [f"finding [{f['code']}]: {f['message']}" for f in data["findings"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_mgpu bench", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
