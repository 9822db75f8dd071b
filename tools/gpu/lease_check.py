"""Leasing on a real multi-GPU host, through real pytest processes and real engines.

1. Two pytest processes start at once, each running a test that asks `mgpu_engine(tp=1)`; each
   prints the GPU it leased and the GPU its engine's processes run on (NVML). They must differ.
2. A pytest process holding a GPU is killed with SIGKILL; another process must lease that GPU
   within a second of the holder's death, and the killed holder's engine must be reaped.

    python3 tools/gpu/lease_check.py RESULTS_DIR [pytest options for the engine: --mgpu-model ... ]

Writes RESULTS_DIR/lease_check.json and exits non-zero when a check fails. MGPU_LEASE_PHASES=2 runs
only the second check (it needs one GPU, not two); on GPUs it also times how long the killed
holder's engine takes to give its GPU memory back (NVML). MGPU_DEVICE=cpu runs
the same checks on CPU core groups (a dry run of the script; NVML's view is skipped there).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST = '''
import json, os, time
from pytest_mgpu import get_session

def test_tp1(mgpu_engine, pytestconfig):
    server = mgpu_engine(tp=1)
    topo = get_session(pytestconfig).topology
    leased = [topo.devices[i].uuid or f"cpu{i}" for i in server.devices]
    running_on = leased  # CPU dry run: no NVML to ask
    if topo.kind == "cuda":
        import pynvml
        pynvml.nvmlInit()
        running_on = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            pids = {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)}
            if pids & set(_session_pids(server.pid)):
                running_on.append(pynvml.nvmlDeviceGetUUID(h))
    print("LEASE " + json.dumps({"pid": os.getpid(), "engine_pid": server.pid, "leased": leased,
                                 "engine_on": running_on}), flush=True)
    time.sleep(float(os.environ.get("HOLD_S", "20")))

def _session_pids(sid):
    from pytest_mgpu.engines.process import session_members
    return session_members(sid)
'''


def _start(workdir: Path, lock_dir: Path, args: list[str], hold_s: float) -> subprocess.Popen[str]:
    env = {**os.environ, "HOLD_S": str(hold_s)}
    return subprocess.Popen([sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", "-q",
                             f"--mgpu-lock-dir={lock_dir}",
                             f"--mgpu-device={os.environ.get('MGPU_DEVICE', 'cuda')}", *args, str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _lease_line(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, object]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("LEASE "):
            return json.loads(line[6:])  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            break
    raise RuntimeError("no LEASE line; pytest said:\n" + "".join(lines[-40:]))


def main() -> int:
    results = Path(sys.argv[1])
    args = sys.argv[2:]
    results.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lease-check-"))
    (work / "test_lease.py").write_text(TEST)
    lock_dir = work / "locks"
    report: dict[str, object] = {}
    ok = True

    phases = os.environ.get("MGPU_LEASE_PHASES", "1,2").split(",")
    device = os.environ.get("MGPU_DEVICE", "cuda")
    if "1" in phases:  # 1. two concurrent pytest processes, each TP=1
        a, b = _start(work, lock_dir, args, 30), _start(work, lock_dir, args, 30)
        la, lb = _lease_line(a, 900), _lease_line(b, 900)
        report["concurrent"] = [la, lb]
        distinct = (la["leased"] != lb["leased"] and la["engine_on"] == la["leased"]
                    and lb["engine_on"] == lb["leased"])
        report["concurrent_distinct_gpus"] = distinct
        ok &= distinct
        for p in (a, b):
            p.wait(timeout=600)
    if "2" not in phases:
        return _finish(results, report, ok)

    # 2. a SIGKILLed holder frees its GPU at once (the lock) and its engine is reaped (the watchdog)
    holder = _start(work, lock_dir, args, 600)
    lh = _lease_line(holder, 900)
    from pytest_mgpu.hardware import discover
    from pytest_mgpu.hardware.leasing import Leaser
    topo = discover(device, None)
    leaser = Leaser(lock_dir, topo)
    index = next(i for i, d in enumerate(topo.devices)
                 if (d.uuid or f"cpu{i}") in lh["leased"])  # type: ignore[operator]
    uuid = topo.devices[index].uuid
    used_before: int | None = None
    if device == "cuda" and uuid:
        from pytest_mgpu.engines.drain import nvml_memory_used
        used_before = nvml_memory_used([uuid]).get(uuid)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    t0 = time.monotonic()
    lease = leaser.acquire(1, prefer=(index,), timeout_s=10)
    freed_s = time.monotonic() - t0
    got_same = lease.devices == (index,)
    lease.release()
    from pytest_mgpu.engines.process import session_members
    deadline = time.monotonic() + 30
    while session_members(int(lh["engine_pid"])) and time.monotonic() < deadline:  # type: ignore[call-overload]
        time.sleep(0.2)
    reaped_s = time.monotonic() - t0
    left = session_members(int(lh["engine_pid"]))  # type: ignore[call-overload]
    report["sigkill"] = {"holder": lh, "lease_again_s": round(freed_s, 3), "same_gpu": got_same,
                         "engine_reaped_s": round(reaped_s, 1), "engine_left": left}
    ok &= got_same and freed_s < 1.0 and not left
    if used_before is not None and uuid:
        from pytest_mgpu.engines.drain import nvml_memory_used
        used_after = nvml_memory_used([uuid]).get(uuid, 0)
        while used_after > 1 << 30 and time.monotonic() - t0 < 60:  # more than 1 GiB still held
            time.sleep(0.2)
            used_after = nvml_memory_used([uuid]).get(uuid, 0)
        report["sigkill"].update({  # type: ignore[union-attr]
            "gpu_mem_used_with_engine_mib": used_before >> 20, "gpu_mem_used_after_mib": used_after >> 20,
            "gpu_mem_freed_s": round(time.monotonic() - t0, 1)})
        ok &= used_after <= 1 << 30
    return _finish(results, report, ok)


def _finish(results: Path, report: dict[str, object], ok: bool) -> int:
    report["ok"] = bool(ok)
    (results / "lease_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
