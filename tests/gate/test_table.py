"""The failure table, character for character: it is the whole message a regression prints."""

from __future__ import annotations

from pytest_mgpu.gate import compare
from pytest_mgpu.gate.compare import Outcome, Verdict
from pytest_mgpu.gate.table import number, percent, verdict_table


def test_regression_table_text() -> None:
    rows = (
        compare.judge_metric("output_throughput_per_gpu", (1000.0, 1010.0, 990.0), (800.0, 810.0, 790.0), 0.10),
        compare.judge_metric("median_tpot_ms", (4.0, 4.1, 3.9), (4.1, 4.0, 4.2), 0.10),
    )
    verdict = Verdict(Outcome.REGRESSION, "vllm tp=2 pp=1 devices=2", "2xCPU-1core-NODE-3f2a9c", rows,
                      "baselines/2xCPU-1core-NODE-3f2a9c/perf/test_tp/test_tp2.json",
                      ("vllm 0.31.0 -> 0.32.0",))
    assert verdict_table(verdict) == (
        "pytest-mgpu: regression: vllm tp=2 pp=1 devices=2 on 2xCPU-1core-NODE-3f2a9c\n"
        "metric                                    baseline  now   change        tolerance  p-value  verdict\n"
        "output_throughput_per_gpu [tok/s/device]  1000      800   -20.0% worse  ±10%       0.050    regression\n"
        "median_tpot_ms [ms]                       4.00      4.10  +2.5% worse   ±10%       0.200    pass\n"
        "samples: baseline 3, now 3 (medians compared; regression = beyond tolerance and one-sided "
        "Mann-Whitney p <= 0.05)\n"
        "baseline: baselines/2xCPU-1core-NODE-3f2a9c/perf/test_tp/test_tp2.json\n"
        "versions changed since the baseline: vllm 0.31.0 -> 0.32.0"
    )


def test_number_and_percent_formats() -> None:
    assert [number(x) for x in (3323.4, 51.23, 4.404, 0.01234, None)] == ["3323", "51.2", "4.40", "0.0123", "-"]
    assert percent(-0.1234) == "-12.3%"
    assert percent(0.1, signed=False) == "10%"
    assert percent(float("inf")) == "inf"
