"""TP=1, 2, 4, 8 as far as the box allows: per-GPU throughput relative to TP=1 (the TP scaling efficiency).

In the memory-bound regime ideal TP keeps per-GPU throughput constant (TPOT ~ 1/TP), so the
efficiency is 1.0; the seeds measured more than 1 at TP=2 over NVLink. With NVLink every TP size
must keep at least `MIN_NVLINK_TP_EFFICIENCY`; elsewhere the table is the result.
"""

from __future__ import annotations

import pytest

from pytest_mgpu import LinkClass

from .plan import MIN_NVLINK_TP_EFFICIENCY, TP_SIZES, Config


@pytest.mark.mgpu_gpus(2)
def test_tp_scaling(measure, mgpu_topology, perf_book) -> None:
    from pytest_mgpu.gate.table import aligned, number

    sizes = [tp for tp in TP_SIZES if tp <= mgpu_topology.n_devices]
    results = {tp: measure(Config(tp)) for tp in sizes}
    base = results[1].metrics["output_throughput_per_gpu"]
    efficiency = {tp: r.metrics["output_throughput_per_gpu"] / base for tp, r in results.items()}
    links = {tp: mgpu_topology.worst_link(perf_book.devices[Config(tp).id]) for tp in results}
    table = [[f"TP={tp}", number(r.metrics["output_throughput_per_gpu"]), number(r.metrics["median_tpot_ms"]),
              f"{efficiency[tp]:.2f}", links[tp].label] for tp, r in results.items()]
    lines = aligned(("config", "tok/s/device", "TPOT ms", "per-GPU efficiency vs TP=1", "link"), table).splitlines()
    perf_book.add_table("TP scaling (per-GPU throughput / TP=1's)", lines)
    print("\n".join(lines))
    low = {tp: e for tp, e in efficiency.items()
           if links[tp] is LinkClass.NVLINK and e < MIN_NVLINK_TP_EFFICIENCY}
    assert not low, (f"TP over NVLink kept less than {MIN_NVLINK_TP_EFFICIENCY:.0%} of TP=1's per-GPU throughput: "
                     + ", ".join(f"TP={tp}: {e:.2f}" for tp, e in low.items()) + "\n" + "\n".join(lines))

