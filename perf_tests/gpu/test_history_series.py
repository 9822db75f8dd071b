"""The history gate's GPU evidence (issue 13): one engine, unchanged runs, then a co-tenant slows it.

Run by tools/gpu/run_round2.sh with --mgpu-history and `--keep-duplicates`, the node id given
MGPU_SERIES_RUNS + MGPU_SERIES_SLOWED times, so every run belongs to one history series (one node
id) on one engine: the first MGPU_SERIES_RUNS on an idle GPU, the rest while tools/gpu/cotenant.py
takes a few percent of the GPU. The history gate judges each run against the runs before it;
afterwards `python -m pytest_mgpu history show/detect` reads the series back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_mgpu import Workload

RUNS = int(os.environ.get("MGPU_SERIES_RUNS", "8"))
DUTY = float(os.environ.get("MGPU_COTENANT_DUTY", "0.05"))
SERIES = Workload(input_len=128, output_len=128, num_prompts=128, max_concurrency=32)
COUNT = pytest.StashKey[int]()


def _start_cotenant(config: pytest.Config) -> None:
    script = Path(__file__).resolve().parents[2] / "tools" / "gpu" / "cotenant.py"
    proc = subprocess.Popen([sys.executable, str(script), "--duty", str(DUTY)], start_new_session=True)
    config.add_cleanup(lambda: (proc.kill(), proc.wait()))
    time.sleep(5)  # CUDA context and first kernels
    print(f"\nco-tenant started (pid {proc.pid}, duty {DUTY})")


@pytest.mark.mgpu_gpus(1)
def test_series(mgpu_engine, mgpu_bench, mgpu_baseline, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    config = request.config
    n = config.stash.get(COUNT, 0)
    config.stash[COUNT] = n + 1
    if n == RUNS:
        _start_cotenant(config)
    server = mgpu_engine(tp=1)
    result = mgpu_bench(server, SERIES)
    print(f"\nseries run {n + 1} ({'co-tenant' if n >= RUNS else 'unchanged'}): "
          f"tok/s/GPU={result.metrics['output_throughput_per_gpu']:.1f} "
          f"median_tpot_ms={result.metrics['median_tpot_ms']:.3f} findings={[str(f) for f in result.findings]}")
    assert result.failed == 0
    mgpu_baseline.check(result)
