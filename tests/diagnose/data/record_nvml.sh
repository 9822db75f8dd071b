#!/bin/bash
# How the NVML recordings in this folder were made, on one real GPU (an H100 80GB HBM3 VM):
#   bash tests/diagnose/data/record_nvml.sh OUTDIR
# Each recording is `python -m pytest_mgpu.telemetry.nvml_probe` output while a known load ran.
# The load is a PyTorch process (the stand-in for an engine): a bf16 matmul loop (compute-bound) or a
# device-to-device copy loop (memory-bound), so utilization, power, clocks, energy and the compute
# process list are what the GPU really reported under that load.
set -uo pipefail
out=${1:?usage: record_nvml.sh OUTDIR}
mkdir -p "$out"
export PYTHONPATH=$(cd "$(dirname "$0")/../../.." && pwd):${PYTHONPATH:-}
rec() { python3 -m pytest_mgpu.telemetry.nvml_probe --interval 0.2 "$@"; }
load() {  # load KIND SECONDS: a GPU process in the background ($! is its pid)
  python3 - "$1" "$2" >&2 <<'PY' &
import sys, time, torch
kind, seconds = sys.argv[1], float(sys.argv[2])
end = time.time() + seconds
if kind == "matmul":
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    while time.time() < end:
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
else:
    n = 2 * 1024**3 // 2  # 2 GiB of bf16
    src = torch.empty(n, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    torch.cuda.synchronize()
    t0, copies = time.time(), 0
    while time.time() < end:
        for _ in range(20):
            dst.copy_(src)
        copies += 20
        torch.cuda.synchronize()
    bw = copies * 2 * src.numel() * 2 / (time.time() - t0)
    print(f"copy bandwidth (read+write): {bw / 1e12:.3f} TB/s", file=sys.stderr)
PY
}
await() { for p in "$@"; do while kill -0 "$p" 2>/dev/null; do sleep 0.2; done; done; }
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
nvidia-smi -q -d PERFORMANCE,CLOCK,POWER > "$out/nvidia-smi-q.txt" 2>&1

# 1. idle: nothing on the GPU; the "engine" is this shell (a process with no GPU context)
rec --seconds 3 --pid $$ --note "idle GPU; engine pid is a CPU-only process" --out "$out/h100-idle.json"

# 2. compute-bound load, recorded once it runs
load matmul 20; pid=$!; sleep 8
rec --seconds 6 --pid "$pid" --note "bf16 matmul loop (pid $pid) is the engine" --out "$out/h100-matmul.json"
await "$pid"

# 3. memory-bound load (copy), reporting the achieved copy bandwidth
load copy 18; pid=$!; sleep 8
rec --seconds 5 --pid "$pid" --note "device-to-device copy loop (pid $pid) is the engine" --out "$out/h100-copy.json"
await "$pid"

# 4. two processes on one GPU: the engine and a stranger
load matmul 20; a=$!; load copy 20; b=$!; sleep 9
rec --seconds 5 --pid "$a" --note "engine = matmul pid $a; another process (copy, pid $b) shares the GPU" \
    --out "$out/h100-shared.json"
await "$a" "$b"
ls -la "$out"
