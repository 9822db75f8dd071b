"""How many streamed tokens per second can one client core ingest? Ours against vLLM's client.

A fast scripted server (no think time; `--events-per-write` token events per socket write)
runs pinned to one core; each client runs pinned to the other, in its own process, against the
same server with the same load. The client's core is the bottleneck when the server's CPU use
stays under one core: the script prints both processes' CPU use so that can be checked.

    python benchmarks/client_capacity.py --out reports/client_capacity.json

`--processes 1 4` instead measures our client with 1 vs N client processes (run_bench's
`client_processes`) at `--concurrencies 64 256 1024` against a paced oracle (first token after
50 ms, then one every `--itl-ms`): output tokens/s, p99 event-loop lag (worst process), and the
p99 ITL error: the client's p99 ITL minus the p99 of the gaps between the server's own writes.
Nothing is pinned there (the processes share whatever cores the box has).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pytest_mgpu, installed or not

from pytest_mgpu.engines.launchers import TINY_MODEL
from pytest_mgpu.testing import Behavior, Script, ScriptedServer

_OURS = """
import json, os, sys
sys.path.insert(0, {root!r})
os.sched_setaffinity(0, {{{cpu}}})
from pytest_mgpu import Workload
from pytest_mgpu.bench.runner import external_server, run_bench
a = json.loads(sys.argv[1])
w = Workload(input_len=a["input_len"], output_len=a["output_len"], num_prompts=a["num_prompts"],
             max_concurrency=a["concurrency"], warmup=a["concurrency"])
r = run_bench(external_server(a["base_url"], model="scripted", tokenizer=a["tokenizer"]), w)
print(json.dumps({{"output_throughput": r.output_throughput, "completed": r.completed, "duration": r.duration,
                  "cpu_util": r.client.cpu_util, "loop_lag_p99_ms": r.client.loop_lag_p99_ms}}))
"""

_VLLM = """
import asyncio, contextlib, io, json, os, sys
os.sched_setaffinity(0, {{{cpu}}})
from vllm.benchmarks.serve import add_cli_args, main_async
from vllm.utils.argparse_utils import FlexibleArgumentParser
a = json.loads(sys.argv[1])
p = FlexibleArgumentParser()
add_cli_args(p)
args = p.parse_args(["--base-url", a["base_url"], "--model", "scripted", "--tokenizer", a["tokenizer"],
    "--dataset-name", "random", "--random-input-len", str(a["input_len"]),
    "--random-output-len", str(a["output_len"]), "--num-prompts", str(a["num_prompts"]),
    "--max-concurrency", str(a["concurrency"]), "--num-warmups", str(a["concurrency"]),
    "--ignore-eos", "--disable-tqdm"])
with contextlib.redirect_stdout(io.StringIO()):
    r = asyncio.run(main_async(args))
print(json.dumps({{"output_throughput": r["output_throughput"], "completed": r["completed"],
                  "duration": r["duration"]}}))
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def measure(tool: str, srv: ScriptedServer, a: argparse.Namespace) -> dict[str, Any]:
    code = (_OURS if tool == "ours" else _VLLM).format(root=str(Path(__file__).resolve().parents[1]),
                                                       cpu=a.client_cpu)
    params = {"base_url": srv.base_url, "tokenizer": str(TINY_MODEL), "input_len": a.input_len,
              "output_len": a.output_len, "num_prompts": a.num_prompts, "concurrency": a.concurrency}
    assert srv.pid is not None
    server_cpu0 = cpu_seconds(srv.pid)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{tool} client failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    # the server idles while a client starts, so its CPU time over the measured duration is its load
    result["server_cpu_util"] = (cpu_seconds(srv.pid) - server_cpu0) / result["duration"]
    return result


def processes_table(a: argparse.Namespace) -> list[dict[str, Any]]:
    import itertools

    import numpy as np

    from pytest_mgpu import Workload
    from pytest_mgpu.bench.runner import run_bench

    rows = []
    with ScriptedServer(Script(Behavior(ttft_s=0.05, itl_s=a.itl_ms / 1000)), root=str(TINY_MODEL)) as srv:
        for c in a.concurrencies:
            for k in range(a.rounds):
                for n in a.processes if k % 2 == 0 else a.processes[::-1]:
                    srv.reset()
                    w = Workload(input_len=a.input_len, output_len=a.output_len, num_prompts=2 * c,
                                 max_concurrency=c, warmup=min(c, 16))
                    r = run_bench(srv.engine_server(tokenizer_path=str(TINY_MODEL)), w, client_processes=n)
                    gaps = [b - x for q in srv.stats().requests if "-r0-" in str(q["id"])
                            for x, b in itertools.pairwise(q["write_s"])]  # type: ignore[arg-type]
                    truth_p99_ms = float(np.percentile(gaps, 99)) * 1000
                    row = {"concurrency": c, "processes": n, "round": k, "output_throughput": r.output_throughput,
                           "loop_lag_p99_ms": r.client.loop_lag_p99_ms, "p99_itl_ms": r.metrics["p99_itl_ms"],
                           "server_p99_gap_ms": truth_p99_ms,
                           "p99_itl_error_ms": r.metrics["p99_itl_ms"] - truth_p99_ms}
                    rows.append(row)
                    print(f"c={c:>5} processes={n}  round {k + 1}: {r.output_throughput:>9.0f} tok/s  p99 loop lag "
                          f"{row['loop_lag_p99_ms']:7.2f} ms  p99 ITL {row['p99_itl_ms']:7.2f} ms (server "
                          f"{truth_p99_ms:6.2f}; error {row['p99_itl_error_ms']:+7.2f})", flush=True)
    print(f"\n{'concurrency':>11}{'processes':>10}{'tok/s':>10}{'p99 lag ms':>12}{'p99 ITL err ms':>16}"
          "   (medians over rounds)")
    for c in a.concurrencies:
        for n in a.processes:
            sel = [r for r in rows if r["concurrency"] == c and r["processes"] == n]
            med = {m: float(np.median([r[m] for r in sel])) for m in ("output_throughput", "loop_lag_p99_ms",
                                                                       "p99_itl_error_ms")}
            print(f"{c:>11}{n:>10}{med['output_throughput']:>10.0f}{med['loop_lag_p99_ms']:>12.2f}"
                  f"{med['p99_itl_error_ms']:>16.2f}")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, nargs="+", help="client process counts to compare (our client only)")
    p.add_argument("--concurrencies", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--server-cpu", type=int, default=1)
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--events-per-write", type=int, nargs="+", default=[16, 1])
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--num-prompts", type=int, default=512)
    p.add_argument("--input-len", type=int, default=16)
    p.add_argument("--output-len", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.processes:
        rows = processes_table(a)
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=2))
        return 0
    rows = []
    for epw in a.events_per_write:
        with ScriptedServer(Script(Behavior(events_per_write=epw)), root=str(TINY_MODEL), cpu=a.server_cpu) as srv:
            for k in range(a.rounds):
                for tool in ("vllm", "ours") if k % 2 == 0 else ("ours", "vllm"):
                    r = measure(tool, srv, a)
                    rows.append({"events_per_write": epw, "round": k, "tool": tool, **r})
                    print(f"events/write {epw:>3}  round {k + 1}  {tool:>4}: {r['output_throughput']:>10.0f} tok/s  "
                          f"(server cpu {r['server_cpu_util']:.0%})", flush=True)
                    srv.reset()
    print(f"\n{'events/write':>12}{'vllm tok/s':>14}{'ours tok/s':>14}{'ours/vllm':>11}   (best of {a.rounds} rounds)")
    for epw in a.events_per_write:
        best = {t: max(r["output_throughput"] for r in rows if r["tool"] == t and r["events_per_write"] == epw)
                for t in ("vllm", "ours")}
        print(f"{epw:>12}{best['vllm']:>14.0f}{best['ours']:>14.0f}{best['ours'] / best['vllm']:>11.2f}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=2))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
