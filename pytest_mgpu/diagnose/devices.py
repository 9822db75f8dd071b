"""Who is on the allocated devices: `idle-devices` (devices the engine leaves unused) and
`shared-device` (a stranger's process on a device the engine leased)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pytest_mgpu.diagnose.registry import Context, detector
from pytest_mgpu.findings import Finding, Severity

IDLE_BUSY = 0.05  # a device busier than this for the engine is not idle, whatever else is said


def _busy_text(ctx: Context) -> str:
    if ctx.telemetry is None:
        return ""
    parts = [f"device {d.index} {d.busy:.0%}" for d in ctx.telemetry.devices if d.busy is not None]
    return f"; busy for the engine during the measurement: {', '.join(parts)}" if parts else ""


def _same_setup(a: Any, b: Any) -> bool:
    """Two results of the same engine, model, TP/PP, extra args and workload (devices may differ)."""
    keys = ("engine", "model", "tp", "pp", "device_kind", "extra_args")
    return all(a.spec.get(k) == b.spec.get(k) for k in keys) and a.workload == b.workload


def _reference(ctx: Context) -> Any:
    """An earlier result of this session with the same setup on exactly tp*pp devices, if any."""
    for earlier in reversed(ctx.earlier):
        if (earlier.spec.get("n_devices") == ctx.server.spec.world_size and _same_setup(earlier, ctx.result)
                and "output_throughput_per_gpu" in earlier.metrics):
            return earlier
    return None


def _loss(ctx: Context) -> tuple[str, dict[str, Any]]:
    ref = _reference(ctx)
    now = ctx.result.metrics.get("output_throughput_per_gpu")
    if ref is None or not now:
        return "", {}
    before = ref.metrics["output_throughput_per_gpu"]
    loss = 1 - now / before if before else 0.0
    raw_now, raw_before = ctx.result.metrics.get("output_throughput"), ref.metrics.get("output_throughput")
    evidence = {"reference_output_throughput_per_gpu": before, "per_device_loss": round(loss, 4),
                "reference_n_devices": ref.spec.get("n_devices")}
    text = (f" Measured loss: {now:.4g} tok/s/device against {before:.4g} with exactly "
            f"{ctx.server.spec.world_size} device(s) in this session, {loss:.0%} of each device's throughput lost")
    if raw_now and raw_before:
        evidence["raw_throughput_ratio"] = round(raw_now / raw_before, 4)
        text += f" (total throughput {raw_now / raw_before:.2f}x)"
    return text + ".", evidence


@detector("idle-devices", "devices allocated to the engine that it leaves idle (e.g. TP=1 with every GPU visible)")
def idle_devices(ctx: Context) -> Iterable[Finding]:
    """Devices allocated or visible to the engine beyond tp*pp, or leased devices with no engine process on them."""
    spec = ctx.server.spec
    surplus = ctx.server.n_devices - spec.world_size
    absent = [d.index for d in (ctx.telemetry.devices if ctx.telemetry else ())
              if d.engine_present is False and (d.busy is None or d.busy < IDLE_BUSY)]
    if surplus <= 0 and not absent:
        return
    evidence: dict[str, Any] = {
        "allocated": ctx.server.n_devices, "world_size": spec.world_size, "idle": max(surplus, len(absent)),
        "devices": list(ctx.server.devices), "no_engine_process_on": absent,
        "output_throughput_per_gpu": ctx.result.metrics.get("output_throughput_per_gpu"),
    }
    if ctx.telemetry is not None:
        evidence["busy"] = {d.index: d.busy for d in ctx.telemetry.devices}
    where = "no engine process on it" if ctx.telemetry and ctx.telemetry.kind == "cuda" else \
        "no engine thread pinned to its cores"
    if surplus > 0:
        used_share = spec.world_size / ctx.server.n_devices
        message = (f"{ctx.server.n_devices} devices are allocated to an engine of tp*pp={spec.world_size}: "
                   f"{surplus} sit idle, so per-device throughput is at most {used_share:.0%} of what the used "
                   f"devices deliver")
    else:
        message = f"device(s) {absent} are leased to the engine ({spec.label()}) but have {where}"
    if absent and surplus > 0:
        message += f" (device(s) {absent}: {where})"
    message += _busy_text(ctx) + "."
    loss_text, loss_evidence = _loss(ctx)
    evidence.update(loss_evidence)
    yield Finding(
        "idle-devices", Severity.WARNING,
        message + loss_text + " Allocate exactly tp*pp devices (devices=None), or raise tp/pp to use them all.",
        evidence,
    )


@detector("shared-device", "another process runs on a device the engine leased")
def shared_device(ctx: Context) -> Iterable[Finding]:
    """Compute processes that are not the engine's on a leased GPU: they take memory bandwidth and SMs."""
    for d in ctx.telemetry.devices if ctx.telemetry else ():
        if not d.other_pids:
            continue
        yield Finding(
            "shared-device", Severity.WARNING,
            f"device {d.index} ran other processes besides the engine during the measurement "
            f"(PIDs {', '.join(map(str, d.other_pids))}): they compete for its SMs and memory bandwidth, so this "
            f"number is not the engine's alone. Stop them, or lease devices with --mgpu-lock-dir shared by every "
            f"job on this machine.",
            {"device": d.index, "other_pids": list(d.other_pids), "busy": d.busy},
        )
