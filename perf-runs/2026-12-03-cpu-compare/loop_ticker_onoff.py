"""Scratch experiment (not linted, kept as run): ours with the loop-lag ticker on vs off vs vLLM's client, c=1.

From the repo root: flock /tmp/mgpu-engine.lock .venv/bin/python perf-runs/2026-12-03-cpu-compare/loop_ticker_onoff.py 12
(writes loop_ticker_onoff.json beside this file)."""
import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1])); sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
import compare_vllm_client as c

import pytest_mgpu.bench.load as load
from pytest_mgpu.engines.process import free_port


class Off:
    def __init__(self, *a, **k): pass
    def start(self): pass
    async def stop(self): return []
real = load.LoopLagMonitor
def ours_off(*a, **k):
    load.LoopLagMonitor = Off
    try: return c.run_ours(*a, **k)
    finally: load.LoopLagMonitor = real
a = argparse.Namespace(input_len=128, output_len=128, num_prompts=32, max_concurrency=1)
runs = [("vllm", c.run_vllm_client), ("ours-on", c.run_ours), ("ours-off", ours_off)]
rounds = []
with tempfile.TemporaryDirectory() as tmp, c.engine(free_port(), Path(tmp), "0") as (url, sid):
    for k in range(int(sys.argv[1])):
        order = runs[k % 3:] + runs[:k % 3]
        r = {}
        for j, (name, fn) in enumerate(order):
            c.wait_quiet(sid, 0.1, 60)
            res = fn(url, c.TINY_MODEL.as_posix(), c.TINY_MODEL.as_posix(), a, seed=5000 + 10 * k + j)
            r[name] = {m: float(res[m]) for m in ("output_throughput", "median_tpot_ms", "median_ttft_ms")}
            print(k + 1, name, r[name], flush=True)
        rounds.append(r)
(HERE / "loop_ticker_onoff.json").write_text(json.dumps(rounds))
for m in ("output_throughput", "median_tpot_ms"):
    for t in ("ours-on", "ours-off"):
        rat = [r[t][m] / r["vllm"][m] for r in rounds]
        print(m, t, "/vllm median ratio %.3f" % statistics.median(rat))
    rat = [r["ours-on"][m] / r["ours-off"][m] for r in rounds]
    print(m, "on/off median ratio %.3f" % statistics.median(rat), "gm %.3f" % math.exp(statistics.mean(map(math.log, rat))))
