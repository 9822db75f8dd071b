"""Seed: TP=1 on a dual-GPU box with both GPUs visible ran 2.2x slower than on a single-GPU box.

The same TP=1 engine on one device and on every device: the all-visible run must be flagged
`idle-devices` with the loss measured against the one-device run, and pays for its idle devices
in per-device throughput (the per-device normalization counts every allocated device).
"""

from __future__ import annotations

import pytest

from pytest_mgpu import assert_better

from .plan import TP1, TP1_ALL_VISIBLE

# The all-visible run must lose at least this share of the n-fold per-device gap (1/n of the devices work).
# On the 2-core CPU default only the direction is asserted: the two runs are minutes apart on cores shared
# with the load generator, and background load moved one run's total throughput by up to 1.8x there.
EXPECTED_SHARE_OF_GAP = {"cpu": 0.0, "cuda": 0.75}
IDLE_BUSY = 0.05


@pytest.mark.mgpu_gpus(2)
def test_tp1_all_gpus_visible(measure, mgpu_topology, perf_book) -> None:
    one = measure(TP1)
    every = measure(TP1_ALL_VISIBLE)
    n = every.n_devices
    assert n == mgpu_topology.n_devices >= 2
    assert "idle-devices" not in {f.code for f in one.findings}
    [finding] = [f for f in every.findings if f.code == "idle-devices"]
    assert "Measured loss" in finding.message, finding.message  # measured against the one-device run above
    per_device_loss = 1 - every.metrics["output_throughput_per_gpu"] / one.metrics["output_throughput_per_gpu"]
    raw_ratio = every.metrics["output_throughput"] / one.metrics["output_throughput"]
    idle_busy = [every.metrics[f"device_busy_{i}"] for i in range(1, n) if f"device_busy_{i}" in every.metrics]
    perf_book.add_table("TP=1 with every device visible (idle-devices)", [
        f"{n} devices visible to a TP=1 engine: {every.metrics['output_throughput_per_gpu']:.4g} tok/s/device vs "
        f"{one.metrics['output_throughput_per_gpu']:.4g} on one device: {per_device_loss:.0%} per-device loss "
        f"(total throughput {raw_ratio:.2f}x); idle devices busy for the engine: "
        + (", ".join(f"{b:.0%}" for b in idle_busy) or "not sampled"),
    ])
    assert all(b < IDLE_BUSY for b in idle_busy), f"devices beyond rank 0 worked for a TP=1 engine: {idle_busy}"
    assert_better(one, every, "output_throughput_per_gpu",
                  by=1 + (n - 1) * EXPECTED_SHARE_OF_GAP[mgpu_topology.kind])
