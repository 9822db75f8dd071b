"""`throttled`: the GPU lowered its clocks during the measurement for a reason other than being
idle or following an application-clock setting (power cap, thermal, hardware slowdown, ...)."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_mgpu.diagnose.registry import Context, detector
from pytest_mgpu.findings import Finding, Severity
from pytest_mgpu.telemetry import DeviceTelemetry
from pytest_mgpu.telemetry.nvml_probe import NOT_THROTTLING, reason_names

SUSTAINED = 0.10  # throttled in at least this share of samples: a warning, below it a note
SW_POWER_CAP = 0x4
# A GPU at full load runs at its power limit: SwPowerCap alone, with the mean SM clock within this
# fraction of the GPU's maximum SM clock, is the normal power-managed steady state (seen on a healthy
# H100 serving at concurrency 16 and 64: 21-38% of samples, mean 1932-1972 of 1980 MHz), not a throttled
# GPU. Without a known maximum the finding stays.
POWER_CAP_CLOCK_KEPT = 0.95


def _held_clocks(d: DeviceTelemetry, mask: int) -> bool:
    return (mask == SW_POWER_CAP and d.sm_clock_mhz_mean is not None and bool(d.sm_clock_mhz_max)
            and d.sm_clock_mhz_mean >= POWER_CAP_CLOCK_KEPT * (d.sm_clock_mhz_max or 0))


@detector("throttled", "clock-event reasons other than idle and application clocks during the measurement")
def throttled(ctx: Context) -> Iterable[Finding]:
    for d in ctx.telemetry.devices if ctx.telemetry else ():
        mask = d.clock_event_reasons & ~NOT_THROTTLING
        if not mask or d.throttled_fraction <= 0 or _held_clocks(d, mask):
            continue
        names = ", ".join(reason_names(mask))
        clock = f", mean SM clock {d.sm_clock_mhz_mean:.0f} MHz" if d.sm_clock_mhz_mean else ""
        power = f", mean power {d.power_w_mean:.0f} W" if d.power_w_mean else ""
        yield Finding(
            "throttled", Severity.WARNING if d.throttled_fraction >= SUSTAINED else Severity.INFO,
            f"device {d.index} was throttled ({names}) in {d.throttled_fraction:.0%} of the samples{clock}{power}: "
            f"its clocks were lowered, so this result is not the GPU's full speed. Check cooling and power limits "
            f"(`nvidia-smi -q -d PERFORMANCE`); a run compared with a baseline should be unthrottled.",
            {"device": d.index, "reasons": list(reason_names(mask)), "mask": mask,
             "throttled_fraction": d.throttled_fraction, "sm_clock_mhz_mean": d.sm_clock_mhz_mean,
             "power_w_mean": d.power_w_mean},
        )
