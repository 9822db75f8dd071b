"""The history gate's GPU evidence (issue 13): one engine, unchanged nightly-style runs, then a co-tenant.

Each run is its own pytest session against one long-lived engine (`--mgpu-engine external`), the
way nightly CI runs look to the history store: one series (this node id, one spec, one fingerprint)
that grows by one measurement per session. tools/gpu/run_round2.sh starts the engine once, runs
this file MGPU_SERIES_RUNS times on an idle GPU, then MGPU_SERIES_SLOWED times while
tools/gpu/cotenant.py takes a few percent of the GPU. The history gate judges each run against the
runs before it; afterwards `python -m pytest_mgpu history show/detect` reads the series back.
(A node id repeated on one command line runs once: pytest de-duplicates it, which is why the first
design, one session with the id given twelve times, measured once.)
"""

from __future__ import annotations

import os

import pytest

from pytest_mgpu import Workload

SERIES = Workload(input_len=128, output_len=128, num_prompts=128, max_concurrency=32)


@pytest.mark.mgpu_gpus(1)
def test_series(mgpu_engine, mgpu_bench, mgpu_baseline) -> None:  # type: ignore[no-untyped-def]
    result = mgpu_bench(mgpu_engine(tp=1), SERIES)
    phase = os.environ.get("MGPU_SERIES_PHASE", "unchanged")
    print(f"\nseries run ({phase}): tok/s/GPU={result.metrics['output_throughput_per_gpu']:.1f} "
          f"median_tpot_ms={result.metrics['median_tpot_ms']:.3f} findings={[str(f) for f in result.findings]}")
    assert result.failed == 0
    mgpu_baseline.check(result)
