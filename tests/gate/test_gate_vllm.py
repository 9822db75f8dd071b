"""The gate end to end on real vLLM (CPU build): record, three unchanged re-runs pass, a shared engine fails.

One engine serves every inner run (`--mgpu-engine external`), so the five pytest sessions
cost one engine start. The model is the tiny tokenizer with a Llama-768 shape and dummy
weights: with the 4-layer tiny model the Python client, not the engine, sets the pace on a
2-core box and repeats scatter by +-30%, which no gate should be asked to judge.

One wave of 8 short requests: the engine sits on one core at ~130 ms a decode step, so this
was 13 minutes of `make test` at 16 x 64/32 tokens and is 5 at 8 x 32/16. Unchanged runs still
read within 5% of each other (21.1-22.2 tok/s/device over 8 runs) and the hogged one -76%.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mgpu.engines.process import session_cores
from pytest_mgpu.fixtures import EngineFactory

from .cpuhog import hogs, small_llama

pytestmark = pytest.mark.engine

INNER = """
from pytest_mgpu.bench.workload import Workload

def test_small_llama(mgpu_engine, mgpu_bench, mgpu_baseline):
    server = mgpu_engine(tp=1)
    result = mgpu_bench(server, Workload(input_len=32, output_len=16, num_prompts=8, max_concurrency=8))
    mgpu_baseline.check(result)
"""


def test_record_pass_pass_pass_then_a_shared_engine_fails(pytester: pytest.Pytester, mgpu_engine: EngineFactory,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    model = small_llama(tmp_path_factory.mktemp("model") / "llama768")
    server = mgpu_engine(tp=1, model=str(model), extra_args=("--load-format", "dummy"))
    pytester.makepyfile(test_perf=INNER)
    # a 30% band: this test is about record/pass/fail wiring, not the box's steadiness. With the default 10%, an
    # unchanged run on a noisy CI box read TPOT +10.7% and failed (2026-12-03); three hogs on the engine's core
    # leave it about a quarter of the core, far beyond 30%
    args = ("-p", "no:cacheprovider", "--mgpu-engine=external", f"--mgpu-base-url={server.base_url}",
            f"--mgpu-model={model}", "--mgpu-tolerance=30%")

    recorded = pytester.runpytest_subprocess(*args, "--mgpu-update-baselines", timeout=600)
    recorded.assert_outcomes(passed=1)
    assert list(Path(pytester.path, "baselines").rglob("test_small_llama.json"))

    for _ in range(3):
        again = pytester.runpytest_subprocess(*args, timeout=600)
        again.assert_outcomes(passed=1)
        # unchanged: never a regression. `improvement` is allowed: under a busy neighbour (the acceptance run's
        # nice-10 loop) the recorded run itself can be the slow one, and a re-run then reads 12% faster.
        [row] = [line for line in again.stdout.lines
                 if "test_perf.py::test_small_llama" in line and "external tp=1 pp=1 devices=1" in line]
        assert row.rstrip().endswith("pass") or " improvement (" in row, row

    with hogs(session_cores(server.pid), per_core=3):
        shared = pytester.runpytest_subprocess(*args, timeout=600)
    shared.assert_outcomes(failed=1)
    shared.stdout.fnmatch_lines([
        "*pytest-mgpu: regression: external tp=1 pp=1 devices=1 on *",
        "*output_throughput_per_gpu ?tok/s/device?*worse*regression",
    ])
