"""Our load generator against vLLM's own `vllm bench serve` client: same engine, same workload.

Alternates the clients (vLLM first on even rounds, ours first on odd ones, so drift in the
engine cancels), each round with a fresh seed for all (no prefix-cache replays), and prints
every tool's numbers and the ratios. Ours runs three times per round: with token-id prompts (its
default: exact lengths, nothing for the server to tokenize), with its random prompts as text, and
with the prompts vLLM's own random dataset makes (`get_samples`, as text: runs of consecutive
vocabulary ids, so the server tokenizes the same kind of text for both clients). The verdict
compares like with like, that last run: output throughput and median TPOT within 2%, median
TTFT within 3%.

The ratio behind a verdict is balanced against drift: rounds go in pairs, one in each order, and a
pair's ratio is the geometric mean of its two rounds' ours/vLLM ratios; the verdict takes the median
over pairs. On an H200 (round 4) TTFT rose through each round by 1-2 ms at c=1 (first run
lowest, last highest) and moved by 30% between rounds: with 3 rounds vLLM's client went first
twice, and an unpaired median of per-round ratios read 1.11 where the raw medians differed by 1%.
An odd --rounds is rounded up to an even number.

Each verdict carries a 90% bootstrap interval over the pairs (`ratio_interval`, from 4 pairs on) and
reads agree (the whole interval inside the limit), DISAGREE (the ratio beyond the limit, the interval
clear of 1) or unresolved (`judge`); the exit status is 0, 1, or 3 when nothing disagrees but something
is unresolved. At c=16 on an H200 one run's median TTFT moved 6-11% for every client, vLLM's own
included, so a bare point from 8 pairs read 0.947 where the runs' medians differed by 0.5%.
`--replay FILE...` judges the rounds earlier --out runs saved, without an engine; several files of one
workload pool their pairs (each pair was measured on one engine, so hosts can add up).

TTFT, both numbers: vLLM's client spends time of its own between starting its clock and the
request reaching the server (its `trust_env=True` session looks up proxy variables and ~/.netrc
on every request: ~1.3 ms on an idle 2-core box, 5-6 ms on a loaded one). Each round measures
that extra against the scripted server (`ttft_oracle.py`) and reports vLLM's median TTFT both as
it printed it and less that extra (`median_ttft_ms_less_client`); the TTFT verdict is on the latter.

`--vllm-no-env` adds a run of vLLM's client with its session's `trust_env` off (nothing else changed):
the direct measurement of what its send path costs on the engine. At concurrency 16 the extra is not
one request's ~1 ms: with equal output lengths the requests finish, and are sent again, in waves, and
the per-request lookups run one after another on the client's one event loop, so a wave reaches the
engine spread over ~16x that time and its late requests miss the first prefill step. When that run
is there, the TTFT verdict is against it (both ratios are printed).

Prompts that repeat: vLLM's random prompts are windows of one cyclic id sequence, so on a small vocabulary
(the tiny model's 1024 ids) they repeat and the engine's prefix cache serves 7-20% of their tokens, ours
none; at c=8 on the CPU box that lowered vLLM's TTFT by up to 35% against our default. Each run records the
share (`prefix_cache_hit_share`, from the engine's /metrics); `--engine-arg=--no-enable-prefix-caching`
compares the clients without it.

TTFT on the engine's own clock (`engine_clock.py`): at c=16 on an H200 a run's median TTFT moved 12-15%
from run to run at any number of waves (equal output lengths keep the requests in lockstep for the whole run,
and the phase it starts in decides its TTFT), so runs' medians compare engines, not clocks. Each run also reads
the engine's Prometheus counters as its measured requests start and after they end: the engine's mean TTFT
over exactly those requests, from their arrival in its API server (tokenization included) to their first
token. A client's mean less the engine's is what its clock adds (`ttft_over_engine_ms`: send path, network,
receive path). When every run has it, the TTFT verdict compares clients on one engine: the engine's part of a
median TTFT plus each run's offset (`engine_referenced`); the runs' medians are still printed, with their own
verdict, uncounted; and the engine's own mean TTFT under each client shows whether they load it differently.
Median TPOT likewise, from the engine's per-request TPOT (`tpot_over_engine_ms`), and output throughput from
the engine's mean end-to-end latency (`engine_referenced`).

It starts vLLM's CPU build on the bundled tiny model (every engine process on core 0; clients
unpinned, as in a user's test, unless --client-cpu) unless --base-url names a running server.
Run it under the engine lock:

    flock /tmp/mgpu-engine.lock python benchmarks/compare_vllm_client.py --out reports/compare.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pytest_mgpu, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_clock  # type: ignore[import-not-found]
from ttft_oracle import measure as measure_clocks  # type: ignore[import-not-found]
from ttft_oracle import vllm_extra_ms

from pytest_mgpu import Workload
from pytest_mgpu.bench.results import BenchResult
from pytest_mgpu.bench.runner import external_server, run_bench
from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.engines.process import EngineProcess, LaunchPlan, free_port
from pytest_mgpu.gate.store import write_atomic
from pytest_mgpu.redact import redact_args
from pytest_mgpu.telemetry.procfs import host_load

COMPARED = (  # metric, allowed relative difference of the medians (vLLM's TTFT less its client's own send time)
    ("output_throughput", 0.02),
    ("median_tpot_ms", 0.02),
    ("median_ttft_ms_less_client", 0.03),
)
SHOWN = ("output_throughput", "median_tpot_ms", "median_ttft_ms", "median_ttft_ms_less_client",
         "median_itl_ms", "median_e2el_ms",
         "p99_tpot_ms", "p99_ttft_ms", "request_throughput", "duration", "completed", "failed")


@contextlib.contextmanager
def engine(port: int, log_dir: Path, cpus: str, extra: tuple[str, ...] = ()) -> Iterator[tuple[str, int]]:
    """vLLM's CPU build on the tiny model, with the flags tested on these machines.

    Every engine process is confined to `cpus` (taskset), not just its OpenMP threads: vLLM's
    EngineCore and API server processes otherwise float onto the client's core and, on this
    2-core box, starved the client for ~4 s at a time (seen as 4 s event-loop lag, TPOT 0).
    """
    argv = ("taskset", "-c", cpus, sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(TINY_MODEL), "--load-format", "dummy", "--host", "127.0.0.1", "--port", str(port),
            "--dtype", "bfloat16", "--max-model-len", "2048", *extra)
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": cpus}
    process = EngineProcess(LaunchPlan(argv, env, f"http://127.0.0.1:{port}/health"), log_dir / "engine.log")
    t0 = time.monotonic()
    process.start(timeout_s=1200)  # a shared 2-core box compiling several engines took over 600 s
    print(f"engine up in {time.monotonic() - t0:.0f} s (log {process.log_path})", flush=True)
    try:
        assert process.pid is not None
        yield f"http://127.0.0.1:{port}", process.pid  # the engine leads its own session
    finally:
        process.stop()


def others_cpu_s(engine_sid: int) -> float:
    """CPU seconds used so far by every process outside this one and the engine's session."""
    return host_load({engine_sid}, exclude_pids={os.getpid()}).others_cpu_s


def wait_quiet(engine_sid: int, max_cores: float, timeout_s: float) -> float:
    """Wait (up to timeout_s) until other processes use under max_cores; returns the last load seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        before = others_cpu_s(engine_sid)
        time.sleep(1.0)
        load = others_cpu_s(engine_sid) - before
        if load <= max_cores or time.monotonic() > deadline:
            return load


def _vllm_args(base_url: str, model: str, tokenizer: str, a: argparse.Namespace, seed: int) -> argparse.Namespace:
    from vllm.benchmarks.serve import add_cli_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    return parser.parse_args([
        "--base-url", base_url, "--model", model, "--tokenizer", tokenizer, "--dataset-name", "random",
        "--random-input-len", str(a.input_len), "--random-output-len", str(a.output_len),
        "--num-prompts", str(a.num_prompts), "--max-concurrency", str(a.max_concurrency),
        "--num-warmups", str(a.max_concurrency), "--seed", str(seed), "--ignore-eos", "--disable-tqdm",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "90,99",
        "--save-detailed",  # keeps every request's TTFT in the result (nothing is written without --save-result)
    ])


AtStart = Callable[[], object]  # told once, just before a run's measured requests (after its warm-up)


class _Console(io.StringIO):
    """vLLM's client's console, kept to ourselves; `at_start` runs when it announces its measured run (its
    warm-up is over then, and its clock has not started)."""

    MARK = "Starting main benchmark run"

    def __init__(self, at_start: AtStart) -> None:
        super().__init__()
        self._at_start: AtStart | None = at_start

    def write(self, text: str) -> int:
        if self._at_start is not None and self.MARK in text:
            self._at_start()
            self._at_start = None
        return super().write(text)


def run_vllm_client(base_url: str, model: str, tokenizer: str, a: argparse.Namespace, seed: int,
                    at_start: AtStart = lambda: None) -> dict[str, Any]:
    from vllm.benchmarks.serve import main_async

    args = _vllm_args(base_url, model, tokenizer, a, seed)
    with contextlib.redirect_stdout(_Console(at_start)):  # its console table; we print our own
        result: dict[str, Any] = asyncio.run(main_async(args))
    return result


def run_vllm_client_no_env(base_url: str, model: str, tokenizer: str, a: argparse.Namespace,
                           seed: int, at_start: AtStart = lambda: None) -> dict[str, Any]:
    """vLLM's client with `trust_env=False` on its aiohttp session: no proxy or ~/.netrc lookup per request."""
    import aiohttp

    real_init = aiohttp.ClientSession.__init__

    def init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        kwargs["trust_env"] = False
        real_init(self, *args, **kwargs)

    aiohttp.ClientSession.__init__ = init  # type: ignore[method-assign]
    try:
        return run_vllm_client(base_url, model, tokenizer, a, seed, at_start)
    finally:
        aiohttp.ClientSession.__init__ = real_init  # type: ignore[method-assign]


def run_ours(base_url: str, model: str, tokenizer: str, a: argparse.Namespace, seed: int,
             at_start: AtStart = lambda: None, text_prompts: bool = False) -> dict[str, Any]:
    server = external_server(base_url, model=model, tokenizer=tokenizer)
    w = Workload(input_len=a.input_len, output_len=a.output_len, num_prompts=a.num_prompts,
                 max_concurrency=a.max_concurrency, seed=seed, text_prompts=text_prompts)
    return _ours_json(run_bench(server, w, progress=_once_at_start(at_start)))


def _once_at_start(at_start: AtStart) -> Callable[[int, int], None]:
    """run_bench's `progress`, which it tells at the start of the measured requests (done 0)."""
    def progress(done: int, total: int) -> None:
        if done == 0:
            at_start()
    return progress


def _ours_json(result: BenchResult) -> dict[str, Any]:
    """Our result's metrics, client health, findings and every successful request's TTFT (as vLLM's "ttfts")."""
    ttfts = [r.ttft_s for rep in result.requests for r in rep if r.success]
    return {**result.metrics, "client": result.client.to_json(), "findings": [str(f) for f in result.findings],
            "ttfts": ttfts}


def run_ours_text(base_url: str, model: str, tokenizer: str, a: argparse.Namespace, seed: int,
                  at_start: AtStart = lambda: None) -> dict[str, Any]:
    """Ours with text prompts, as vLLM's client sends them: the same requests, so the same work."""
    return run_ours(base_url, model, tokenizer, a, seed, at_start, text_prompts=True)


def run_ours_vllm_prompts(base_url: str, model: str, tokenizer: str, a: argparse.Namespace,
                          seed: int, at_start: AtStart = lambda: None) -> dict[str, Any]:
    """Ours sending the very prompts vLLM's random dataset makes (consecutive vocabulary runs from a random
    offset, as text): a pure client-against-client comparison, since the server then does the same work.

    Warm-up as vLLM's client does it: `max_concurrency` copies of the first prompt, then the measured run
    (our own JSONL warm-up would draw other prompts of the same file and turn measured requests into
    prefix-cache hits). Without any warm-up, SGLang at c=64 on an H200 read 7% lower throughput and
    2.3x the p99 TTFT in 2 of 3 rounds (gpu-runs/2026-12-02-h200-round3).
    """
    from vllm.benchmarks.datasets import get_samples
    from vllm.tokenizers import get_tokenizer

    samples = get_samples(_vllm_args(base_url, model, tokenizer, a, seed), get_tokenizer(tokenizer))
    server = external_server(base_url, model=model, tokenizer=tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        def jsonl(name: str, prompts: list[str]) -> str:
            path = Path(tmp) / name
            path.write_text("".join(json.dumps({"prompt": p, "output_tokens": a.output_len}) + "\n" for p in prompts))
            return str(path)

        warm = jsonl("warmup.jsonl", [samples[0].prompt] * a.max_concurrency)
        run_bench(server, Workload(dataset=warm, output_len=a.output_len, num_prompts=a.max_concurrency,
                                   max_concurrency=a.max_concurrency, seed=seed, warmup=0))
        w = Workload(dataset=jsonl("vllm-random.jsonl", [s.prompt for s in samples]), output_len=a.output_len,
                     num_prompts=a.num_prompts, max_concurrency=a.max_concurrency, seed=seed, warmup=0)
        result = run_bench(server, w, progress=_once_at_start(at_start))
    return _ours_json(result)


VARIANTS = {"ours": run_ours, "ours-text": run_ours_text, "ours-vllm-prompts": run_ours_vllm_prompts}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", help="a running vLLM server (default: start one)")
    p.add_argument("--model", default=str(TINY_MODEL), help="served model name (and tokenizer directory)")
    p.add_argument("--tokenizer", help="tokenizer directory when --model is a served name (default: --model)")
    p.add_argument("--rounds", type=int, default=8,
                   help="alternating rounds; odd numbers are rounded up (the verdict pairs each round with the next); "
                        f"from {2 * MIN_PAIRS} on, verdicts carry a bootstrap interval")
    p.add_argument("--seed-base", type=int, default=int(time.time()) % 1_000_000,
                   help="round k, run j uses seed base+10k+j (default: fresh, so no prompt is in the prefix "
                        "cache of an engine that served earlier runs)")
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--max-concurrency", type=int, default=16)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--vllm-no-env", action="store_true",
                   help="also run vLLM's client with trust_env off on its session; the TTFT verdict is then against it")
    p.add_argument("--engine-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for the engine this script starts, e.g. --engine-arg=--no-enable-prefix-"
                        "caching (vLLM's random prompts are windows of one cyclic id sequence: on a small vocabulary "
                        "they hit the prefix cache; repeat the option for more)")
    p.add_argument("--client-cpu", type=int, default=-1,
                   help="pin both clients to this CPU (default -1: no pinning, as a user's test runs)")
    p.add_argument("--engine-cpus", default="0", help="CPUs for every engine process (taskset -c list)")
    p.add_argument("--quiet-cores", type=float, default=0.1,
                   help="before each run, wait until other processes use less than this many cores")
    p.add_argument("--quiet-timeout", type=float, default=60.0)
    p.add_argument("--out", type=Path, help="write every number as JSON here")
    p.add_argument("--replay", type=Path, nargs="+", metavar="JSON",
                   help="judge the rounds earlier --out runs wrote, with today's verdict rules; several files of "
                        "one workload and the same clients pool their pairs; runs nothing")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="which of our runs to make each round, comma-separated (default: all of "
                        f"{', '.join(VARIANTS)}); 'ours' always runs. Fewer runs per round leave device time for "
                        "more rounds, which the TTFT verdict needs at high concurrency")
    a = p.parse_args()
    if a.replay:
        return replay(a.replay)
    if a.rounds < 2:
        p.error(f"--rounds: expected at least 2 (one pair of opposite orders), got {a.rounds}")
    a.rounds += a.rounds % 2
    chosen = {v.strip() for v in a.variants.split(",") if v.strip()} | {"ours"}
    if unknown := chosen - set(VARIANTS):
        p.error(f"--variants: expected names from {', '.join(VARIANTS)}, got {', '.join(sorted(unknown))}")
    if a.client_cpu >= 0:
        os.sched_setaffinity(0, {a.client_cpu})
    with contextlib.ExitStack() as stack:
        sid = -1  # with --base-url the engine is just another process: "others" then includes it
        if a.base_url:
            base_url = a.base_url
        else:
            base_url, sid = stack.enter_context(
                engine(free_port(), Path(stack.enter_context(tempfile.TemporaryDirectory())), a.engine_cpus,
                       tuple(a.engine_arg)))
        rounds: list[dict[str, dict[str, Any]]] = []
        for k in range(a.rounds):
            refs = (("vllm", run_vllm_client),) + ((("vllm-noenv", run_vllm_client_no_env),) if a.vllm_no_env else ())
            order = (*refs, *((v, fn) for v, fn in VARIANTS.items() if v in chosen))
            this: dict[str, dict[str, Any]] = {}
            extra_ms = vllm_extra_ms(measure_clocks())  # vLLM's client's own send time, this round
            for j, (name, fn) in enumerate(order if k % 2 == 0 else order[::-1]):
                if sid > 0:
                    wait_quiet(sid, a.quiet_cores, a.quiet_timeout)
                marks: list[dict[str, float] | None] = []  # the engine's counters as the measured run starts
                mark = functools.partial(_mark, marks, base_url)
                cpu0, own0, t0 = others_cpu_s(sid), time.process_time(), time.monotonic()
                # a seed of its own for every run: "ours-text" sends the detokenized token-id prompts, which a
                # word-level tokenizer re-encodes exactly; sharing a seed made the second run a prefix-cache hit
                this[name] = fn(base_url, a.model, a.tokenizer or a.model, a, seed=a.seed_base + 10 * k + j,
                                at_start=mark)
                # a lower bound: processes that exit during the run take their CPU time with them
                this[name]["others_cores"] = max(0.0, others_cpu_s(sid) - cpu0) / (time.monotonic() - t0)
                # every client runs in this process: its CPU is what the client took from a shared box
                this[name]["client_cores"] = (time.process_time() - own0) / (time.monotonic() - t0)
                end = engine_clock.read(base_url)
                if not marks and end is not None:  # vLLM's client changed its console text, say: no offsets
                    print(f"round {k + 1} {name}: the start of its measured requests was not marked; no engine "
                          "clock for this run (the report falls back to the runs' medians)", flush=True)
                this[name].update(over_engine(this[name], engine_clock.window(marks[0] if marks else None, end)))
                this[name]["vllm_client_extra_ms"] = extra_ms
                this[name]["ttfts_ms"] = [round(t * 1e3, 3) for t in this[name].get("ttfts", ()) if t > 0]
                this[name]["median_ttft_ms_less_client"] = float(this[name]["median_ttft_ms"]) - (
                    extra_ms if name == "vllm" else 0.0)  # (vllm-noenv: none of the extra is left to take off)
                print(f"round {k + 1} {name:>9}: " + "  ".join(f"{m}={this[name][m]:.2f}" for m in SHOWN[:4])
                      + f"  (other processes: {this[name]['others_cores']:.2f} cores; vLLM's client adds "
                      f"{extra_ms:.2f} ms before its requests leave)", flush=True)
            rounds.append(this)
            if a.out:  # every finished round is on disk: a machine lost mid-run keeps what it measured
                save(rounds, a, finished=False)
    return report(rounds, a)


def _mark(marks: list[dict[str, float] | None], base_url: str) -> None:
    marks.append(engine_clock.read(base_url))


def over_engine(run: dict[str, Any], window: engine_clock.EngineWindow | None) -> dict[str, Any]:
    """The engine's numbers over a run's measured requests, and what the client's clock adds to each mean
    (`ttft_over_engine_ms`: client mean TTFT less the engine's, its send, network and receive paths)."""
    if window is None:
        return {}
    out: dict[str, Any] = window.to_json()
    if window.prefix_hit_share is not None:  # the name earlier --out files used (warm-up included there)
        out["prefix_cache_hit_share"] = window.prefix_hit_share
    for metric in ("ttft", "tpot", "e2el"):
        engine_ms, client_ms = getattr(window, f"mean_{metric}_ms"), run.get(f"mean_{metric}_ms")
        if engine_ms is not None and client_ms is not None:
            out[f"{metric}_over_engine_ms"] = float(client_ms) - engine_ms
    return out


def save(rounds: list[dict[str, dict[str, Any]]], a: argparse.Namespace, finished: bool) -> None:
    """--out: the args (engine args redacted) and every round's numbers (not the per-request lists, but the
    TTFTs in ms).

    Written atomically after each round (`finished` False) and once more after the verdicts, so
    `--replay` can judge the rounds of a run that never finished.
    """
    keep = [{tool: {k: v for k, v in res.items() if isinstance(v, int | float | str | dict | list)
                    and k not in ("input_lens", "output_lens", "ttfts", "itls", "start_times", "errors",
                                  "generated_texts", "latencies", "queue_times")}
             for tool, res in r.items()} for r in rounds]
    args = vars(a) | {"out": str(a.out), "engine_arg": list(redact_args(getattr(a, "engine_arg", [])))}
    write_atomic(a.out, json.dumps({"args": args, "finished": finished, "rounds": keep}, indent=2, default=str))


def balanced_ratio(rounds: list[dict[str, dict[str, Any]]], tool: str, metric: str, base: str = "vllm") -> float:
    """tool/base for `metric`, balanced against drift: the median over round pairs (k, k+1), which run in
    opposite orders, of the geometric mean of the pair's two per-round ratios.

    Within a round the clients run one after another, so a steady drift of the engine (warming, clocks)
    favours whichever goes first; a pair puts every client first once and last once, so a drift that is
    linear over the pair cancels in the geometric mean. A trailing unpaired round stands alone.
    """
    def ratio(r: dict[str, dict[str, Any]]) -> float:
        of = float(r[base][metric])
        return float(r[tool][metric]) / of if of else float("nan")

    per_pair = [math.sqrt(ratio(rounds[k]) * ratio(rounds[k + 1])) if k + 1 < len(rounds) else ratio(rounds[k])
                for k in range(0, len(rounds), 2)]
    return statistics.median(per_pair)


LEVEL = 0.90  # the bootstrap interval behind a verdict
# fewer pairs give no interval: resampling 2 or 3 pairs just spans their range (two H200 pairs read 0.968-0.971
# for a ratio whose 8-pair interval was 0.94-1.02), which would call agreement on luck
MIN_PAIRS = 4


def ratio_interval(rounds: list[dict[str, dict[str, Any]]], tool: str, metric: str, base: str = "vllm",
                   level: float = LEVEL, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A `level` bootstrap interval of `balanced_ratio`: the pairs of rounds resampled with replacement.

    At concurrency 16 on an H200 one run's median TTFT moved 6-11% from run to run for every client, vLLM's
    own included (gpu-runs/2026-12-03-h200-round6): 8 pairs then put the balanced ratio anywhere in
    0.89-1.02 with no difference between the clients, so a verdict must know how far its rounds can see.
    (nan, nan) below MIN_PAIRS pairs.
    """
    pairs = [rounds[k:k + 2] for k in range(0, len(rounds) - 1, 2)]
    if len(pairs) < MIN_PAIRS:
        return math.nan, math.nan
    rng = random.Random(seed)
    stats = sorted(x for x in (balanced_ratio([r for p in rng.choices(pairs, k=len(pairs)) for r in p],
                                              tool, metric, base) for _ in range(resamples)) if not math.isnan(x))
    if not stats:
        return math.nan, math.nan
    tail = (1 - level) / 2
    return stats[int(tail * (len(stats) - 1))], stats[int((1 - tail) * (len(stats) - 1))]


def judge(ratio: float, interval: tuple[float, float], limit: float) -> str:
    """'agree', 'DISAGREE' or 'unresolved' for a ratio that should be 1 within `limit`.

    agree: the whole interval is within the limit (an equivalence test, not just a point that landed
    inside); DISAGREE: the point is beyond the limit and the interval clear of 1 (a difference the rounds
    can see); unresolved: neither, the rounds' own spread is too wide to tell. Without an interval (fewer
    than MIN_PAIRS pairs) the point decides alone, and the report says so.
    """
    low, high = interval
    if math.isnan(ratio):
        return "unresolved"
    if math.isnan(low):
        return "agree" if abs(ratio - 1) <= limit else "DISAGREE"
    if 1 - limit <= low and high <= 1 + limit:
        return "agree"
    if abs(ratio - 1) > limit and (low > 1 or high < 1):
        return "DISAGREE"
    return "unresolved"


def rounds_to_resolve(ratio: float, interval: tuple[float, float], limit: float, n_pairs: int) -> int | None:
    """Rounds that would shrink the interval inside the limit if the ratio and the spread hold (1/sqrt(n))."""
    margin = limit - abs(ratio - 1)
    if math.isnan(interval[0]) or margin <= 0:
        return None
    half = (interval[1] - interval[0]) / 2
    return 2 * max(n_pairs, math.ceil(n_pairs * (half / margin) ** 2))


def engine_referenced(rounds: list[dict[str, dict[str, Any]]], tools: tuple[str, ...],
                      concurrency: int = 1) -> list[dict[str, dict[str, Any]]] | None:
    """The rounds with each run's median TTFT put on one engine: the engine's part of a median TTFT (the
    median over every run of its median TTFT less its client's offset) plus that run's own offset.

    `clock_ttft_ms` then differs between two clients only by what their clocks add to the engine's (its
    run-to-run phase is gone), `clock_ttft_ms_less_client` also takes vLLM's own send time off its run.
    None unless every run carries its offset (an engine without the counters, or older --out files).

    Output throughput likewise, where the engine gives its mean end-to-end latency: in a closed loop of
    `concurrency` slots each request takes duration x c / n of a run, the engine's mean e2e latency of it
    and the client the rest (its send and receive paths, and the gap before a slot sends again);
    `clock_output_throughput` is the run's throughput with the engine's part replaced by the median one.
    """
    runs = [r[t] for r in rounds for t in tools]
    if not runs or not all(isinstance(x.get("ttft_over_engine_ms"), int | float) for x in runs):
        return None
    part = statistics.median(float(x["median_ttft_ms"]) - float(x["ttft_over_engine_ms"]) for x in runs)
    # TPOT alike, where the engine exports its per-request TPOT: both clients read it within 0.005 ms on the
    # CPU box while the engine's own TPOT moved 10% between runs
    tpot = all(isinstance(x.get("tpot_over_engine_ms"), int | float) for x in runs)
    tpot_part = statistics.median(float(x["median_tpot_ms"]) - float(x["tpot_over_engine_ms"]) for x in runs) \
        if tpot else math.nan
    e2el = all(isinstance(x.get("engine_mean_e2el_ms"), int | float) and x.get("completed") for x in runs)
    e2el_part = statistics.median(float(x["engine_mean_e2el_ms"]) for x in runs) if e2el else math.nan
    out = []
    for r in rounds:
        this = {}
        for t, x in r.items():
            clock = part + float(x.get("ttft_over_engine_ms", math.nan))
            less = clock - (float(x.get("vllm_client_extra_ms", 0.0)) if t == "vllm" else 0.0)
            this[t] = {**x, "engine_part_ms": part, "clock_ttft_ms": clock, "clock_ttft_ms_less_client": less}
            if tpot:
                this[t]["clock_tpot_ms"] = tpot_part + float(x.get("tpot_over_engine_ms", math.nan))
            if e2el:
                per_request_ms = _per_request_ms(x, concurrency)
                this[t]["client_per_request_ms"] = per_request_ms - float(x["engine_mean_e2el_ms"])
                this[t]["clock_output_throughput"] = float(x["output_throughput"]) * per_request_ms / (
                    e2el_part + this[t]["client_per_request_ms"])
        out.append(this)
    return out


def _per_request_ms(run: dict[str, Any], concurrency: int) -> float:
    """A request's share of a closed-loop run: duration x concurrency / completed requests."""
    return 1000.0 * float(run["duration"]) * concurrency / float(run["completed"])


def with_interval(rounds: list[dict[str, dict[str, Any]]], tool: str, metric: str, digits: int = 3) -> str:
    """'ratio (low-high)': `balanced_ratio` of tool over vLLM's client with its `ratio_interval`, for a report line."""
    low, high = ratio_interval(rounds, tool, metric)
    return f"{balanced_ratio(rounds, tool, metric):.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def pooled_median(rounds: list[dict[str, dict[str, Any]]], tool: str) -> float:
    """The median TTFT over every request of every round (nan when a run kept no per-request TTFTs)."""
    values = [x for r in rounds for x in r[tool].get("ttfts_ms", ())]
    return statistics.median(values) if values and all(r[tool].get("ttfts_ms") for r in rounds) else math.nan


def report(rounds: list[dict[str, dict[str, Any]]], a: argparse.Namespace) -> int:
    """Medians of each tool, and verdicts on drift-balanced ratios (`balanced_ratio`) with their interval.

    Exit status: 1 when a compared metric disagrees, 3 when none does but one is unresolved, else 0.
    A pair of rounds where other processes took more than 0.25 cores during any run is left out of
    the verdict when a clean pair remains.
    """
    pairs = [rounds[k:k + 2] for k in range(0, len(rounds), 2)]
    clean = [p for p in pairs if max(x["others_cores"] for r in p for x in r.values()) <= 0.25]
    judged = [r for p in (clean or pairs) for r in p]
    n_pairs = len(judged) // 2

    def med(tool: str, metric: str) -> float:
        return statistics.median(float(r[tool][metric]) for r in rounds)

    tools = [t for t in ("vllm-noenv", "ours", "ours-text", "ours-vllm-prompts") if t in rounds[0]]
    judge_tool = tools[-1]  # like with like: vLLM's own prompts when that run is there, else our text prompts
    verdicts: list[str] = []

    referenced = engine_referenced(judged, ("vllm", *tools), a.max_concurrency)
    tpot_clock = bool(referenced) and "clock_tpot_ms" in referenced[0]["vllm"]
    tput_clock = bool(referenced) and "clock_output_throughput" in referenced[0]["vllm"]

    def verdict(metric: str, limit: float, base: str, of: list[dict[str, dict[str, Any]]] | None = None,
                counted: bool = True) -> str:
        of = judged if of is None else of
        ratio = balanced_ratio(of, judge_tool, metric, base=base)
        interval = ratio_interval(of, judge_tool, metric, base=base)
        v = judge(ratio, interval, limit)
        if counted:
            verdicts.append(v)
        else:
            v = f"runs' medians: {v}"
        text = f"{v} (limit {limit:.0%}"
        if not math.isnan(interval[0]):
            text += f"; {LEVEL:.0%} interval {interval[0]:.3f}-{interval[1]:.3f}"
        else:
            text += f"; point only: {n_pairs} pairs, an interval needs {MIN_PAIRS}"
        if v == "unresolved" and (need := rounds_to_resolve(ratio, interval, limit, n_pairs)):
            text += f"; about {need} rounds would settle it"
        return text + ")"

    print(f"\nrandom {a.input_len}/{a.output_len}, {a.num_prompts} prompts, max concurrency {a.max_concurrency}, "
          f"{len(rounds)} alternating rounds. ours: token-id prompts (the default); ours-text: our random prompts "
          f"as text; ours-vllm-prompts: the prompts vLLM's random dataset makes, as text (the same requests vLLM's "
          f"client sends). Values: medians over rounds; ratios (x/vllm): median over {n_pairs} "
          f"{'clean ' if clean else ''}pairs of opposite-order rounds of each pair's geometric mean ratio; "
          f"verdict on {judge_tool}, with a {LEVEL:.0%} bootstrap interval over the pairs")
    print(f"{'metric':<28}{'vllm':>9}" + "".join(f"{t:>19}" for t in tools) + "".join(f"{t + '/v':>21}" for t in tools)
          + "  verdict")
    limits = dict(COMPARED)
    ttft_limit = limits["median_ttft_ms_less_client"]
    no_env = "vllm-noenv" in rounds[0]
    if no_env:  # TTFT against vLLM's clock without its own per-request lookups (module docstring)
        del limits["median_ttft_ms_less_client"]
    for metric in SHOWN:
        ratios = {t: balanced_ratio(judged, t, metric) for t in tools}
        # TTFT and TPOT: the verdict is on the engine's clock when the engine has one (`engine_referenced`)
        on_clock = bool(referenced) and ("ttft" in metric or (metric == "median_tpot_ms" and tpot_clock)
                                         or (metric == "output_throughput" and tput_clock))
        text = verdict(metric, limits[metric], "vllm", counted=not on_clock) if metric in limits else ""
        print(f"{metric:<28}{med('vllm', metric):>9.2f}" + "".join(f"{med(t, metric):>19.2f}" for t in tools)
              + "".join(f"{ratios[t]:>21.3f}" for t in tools) + f"  {text}")
    if no_env:
        print(f"against vLLM's client with trust_env off (vllm-noenv), the same balanced ratios; "
              f"TTFT verdict on {judge_tool}")
        for metric in ("output_throughput", "median_tpot_ms", "median_ttft_ms", "p99_ttft_ms"):
            ratios = {t: balanced_ratio(judged, t, metric, base="vllm-noenv") for t in tools if t != "vllm-noenv"}
            text = verdict(metric, ttft_limit, "vllm-noenv", counted=not referenced) \
                if metric == "median_ttft_ms" else ""
            print(f"{metric:<28}" + "".join(f"{t + '/noenv':>24}={r:.3f}" for t, r in ratios.items()) + f"  {text}")
    # the TTFT each client printed, no correction: what a user reads off the two reports side by side
    print("median TTFT as printed, x/vllm with its " f"{LEVEL:.0%} interval: " + "  ".join(
        f"{t}={with_interval(judged, t, 'median_ttft_ms')}" for t in tools))
    if referenced:
        print("against the engine's own clock (engine_clock.py), what each client's mean adds to the engine's, ms, "
              "median over runs (range): " + "  ".join(
                  f"{t}: TTFT {statistics.median(v):+.2f} ({min(v):+.2f} to {max(v):+.2f})"
                  + (f", TPOT {statistics.median(w):+.3f}" if w else "")
                  for t in ("vllm", *tools) for v in [[float(r[t]["ttft_over_engine_ms"]) for r in judged]]
                  for w in [[float(r[t]["tpot_over_engine_ms"]) for r in judged if "tpot_over_engine_ms" in r[t]]]))
        print("TTFT on one engine, x/vllm with its 90% interval, as printed | less vLLM's send time: " + "  ".join(
            f"{t}={with_interval(referenced, t, 'clock_ttft_ms')} | "
            f"{with_interval(referenced, t, 'clock_ttft_ms_less_client')}" for t in tools))
        base, metric = ("vllm-noenv", "clock_ttft_ms") if no_env else ("vllm", "clock_ttft_ms_less_client")
        part = referenced[0][base]["engine_part_ms"]
        print(f"median TTFT with both clients on one engine (the engine's part, {part:.2f} ms, plus each client's "
              f"offset), {judge_tool}/{base}: "
              f"as printed {balanced_ratio(referenced, judge_tool, 'clock_ttft_ms', base=base):.3f}; "
              f"{metric} {balanced_ratio(referenced, judge_tool, metric, base=base):.3f}  "
              + verdict(metric, ttft_limit, base, of=referenced))
        for metric, on, limit in (("clock_tpot_ms", tpot_clock, limits["median_tpot_ms"]),
                                  ("clock_output_throughput", tput_clock, limits["output_throughput"])):
            if on:
                print(f"{metric.replace('clock_', '')} with both clients on one engine, x/vllm: " + "  ".join(
                    f"{t}={with_interval(referenced, t, metric, digits=4)}" for t in tools)
                      + f"; on {judge_tool}: " + verdict(metric, limit, "vllm", of=referenced))
        if tput_clock:
            print("a request's time outside the engine (client paths and the gap before its slot sends again), "
                  "ms, median over runs: " + "  ".join(
                      f"{t}={statistics.median(float(r[t]['client_per_request_ms']) for r in referenced):.2f}"
                      for t in ("vllm", *tools)))
        # the clocks agreeing is half of it: a client that paces its requests differently changes the engine's
        # TTFT itself. That shows here, but through the engine's run-to-run noise, which is what the clock
        # verdict removes; not counted (4 pairs of 15% noise read DISAGREE about as often as the runs' medians)
        load = {t: (balanced_ratio(judged, t, "engine_mean_ttft_ms"), ratio_interval(judged, t, "engine_mean_ttft_ms"))
                for t in tools}
        print("the engine's own mean TTFT while each client ran (how the clients load it, through the engine's "
              "noise; not counted), x/vllm: " + "  ".join(
                  f"{t}={r:.3f} ({lo:.3f}-{hi:.3f}) {judge(r, (lo, hi), ttft_limit)}"
                  for t, (r, (lo, hi)) in load.items()))
        if all("engine_mean_tpot_ms" in r[t] for r in judged for t in ("vllm", *tools)):
            print("the engine's own mean TPOT while each client ran, x/vllm: " + "  ".join(
                f"{t}={with_interval(judged, t, 'engine_mean_tpot_ms')}" for t in tools))
    pooled = {t: pooled_median(judged, t) for t in ("vllm", *tools)}
    if not math.isnan(pooled["vllm"]):
        print("pooled median TTFT (every request of the judged rounds), ms: "
              + "  ".join(f"{t}={v:.2f} ({v / pooled['vllm']:.3f})" for t, v in pooled.items()))
    shares = {t: [r[t]["prefix_cache_hit_share"] for r in rounds if "prefix_cache_hit_share" in r[t]]
              for t in ("vllm", *tools)}
    if any(shares.values()):  # vLLM's random prompts are windows of one cyclic id sequence: few ids, repeats
        print("prompt tokens served by the engine's prefix cache (median over runs): "
              + "  ".join(f"{t}={statistics.median(v):.1%}" for t, v in shares.items() if v))
    if all("client_cores" in r[t] for r in rounds for t in ("vllm", *tools)):
        print("client CPU, cores (median over runs; the client process, prompt making included): "
              + "  ".join(f"{t}={statistics.median(r[t]['client_cores'] for r in rounds):.3f}"
                          for t in ("vllm", *tools)))
    for k, r in enumerate(rounds):
        c = r["ours"]["client"]
        print(f"round {k + 1}: our client cpu {c['cpu_util']:.0%}, p99 loop lag {c['loop_lag_p99_ms']:.2f} ms, "
              f"p99 dispatch lag {c['dispatch_lag_p99_ms']:.2f} ms; findings: {r['ours']['findings'] or 'none'}")
    if a.out:
        save(rounds, a, finished=True)
        print(f"wrote {a.out}")
    return 1 if "DISAGREE" in verdicts else 3 if "unresolved" in verdicts else 0


WORKLOAD = ("input_len", "output_len", "num_prompts", "max_concurrency")


def replay(paths: list[Path]) -> int:
    """`report` on the rounds of earlier --out files, pooled pair by pair (nothing is written).

    Each file's rounds pair among themselves (a trailing odd round is dropped), so a pair never spans two
    engines; the files must share the workload and the clients, or their ratios would not be one quantity.
    """
    rounds: list[dict[str, dict[str, Any]]] = []
    first: tuple[Path, dict[str, Any], set[str]] | None = None
    for path in paths:
        try:
            data = json.loads(path.read_text())
            these, workload = data["rounds"], {k: data["args"][k] for k in WORKLOAD}
            tools = set(these[0]) if these else set()
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            print(f"--replay {path}: expected the JSON that --out writes (with 'args' and 'rounds'); "
                  f"could not read it: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        if len(these) < 2:
            print(f"--replay {path}: expected at least 2 rounds (one pair), found {len(these)}", file=sys.stderr)
            return 2
        if first is None:
            first = (path, workload, tools)
        elif (workload, tools) != first[1:]:
            print(f"--replay {path}: expected the workload and clients of {first[0]} "
                  f"({first[1]}, {sorted(first[2])}), found {workload}, {sorted(tools)}: pool only like runs",
                  file=sys.stderr)
            return 2
        rounds += these[:len(these) - len(these) % 2]
    assert first is not None
    try:
        return report(rounds, argparse.Namespace(**first[1], out=None))
    except (KeyError, TypeError) as exc:  # a round without a client or metric the report reads
        print(f"--replay: expected every run of every round to carry the metrics --out writes "
              f"(and 'ours' its 'client'); missing or malformed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
