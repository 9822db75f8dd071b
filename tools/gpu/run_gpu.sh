#!/bin/bash
# The whole GPU run, on a GPU host with PyTorch 2.11, Python 3.12 and no registry, from the repo root:
#   1. install vLLM 0.26.0's CUDA build from the bundle parts in STASH (tools/gpu/build_bundle.sh made them);
#   2. write the Llama-3.1-8B-shaped dummy model (config + tokenizer, no weights);
#   3. record the topology (nvidia-smi topo -m, `python -m pytest_mgpu topo`, its JSON);
#   4. run perf_tests/gpu with --mgpu-device cuda, that model and --load-format dummy: pass 1 records the
#      baselines, pass 2 is gated against them;
#   5. leave every report in RESULTS (and RESULTS.tgz).
# usage: tools/gpu/run_gpu.sh STASH RESULTS      (long: run it detached and poll RESULTS/progress.log)
# Knobs (tools/gpu/run_multi_gpu.sh sets them for a 2+ GPU host):
#   MGPU_GPU_PASSES  "1 2" (default) records then gates; "2" only gates against the committed baselines
#   MGPU_GPU_ENGINE  --mgpu-engine (default vllm; for sglang see tools/gpu/run_round2.sh and docs/engines.md)
#   MGPU_GPU_SUITE   what pytest runs (default perf_tests/gpu; the whole suite: perf_tests)
#   MGPU_GPU_PROBE=1 also `topo --probe` (NCCL all-reduce bandwidth per GPU pair)
#   MGPU_GPU_LEASE_CHECK=1  also tools/gpu/lease_check.py (two pytest processes, SIGKILLed holder)
# A dry run on a CPU box (no bundle): MGPU_DEVICE=cpu MGPU_GPU_MODEL=/tmp/m tools/gpu/run_gpu.sh none /tmp/r
set -uo pipefail
stash=${1:?usage: run_gpu.sh STASH RESULTS}
results=${2:?usage: run_gpu.sh STASH RESULTS}
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$results"
log() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$results/progress.log"; }
cd "$repo"

site=""  # a fresh private directory per run: never a fixed shared path that someone else could plant
if [ "$stash" != none ]; then
  log "install bundle"
  site=$(mktemp -d "${TMPDIR:-/tmp}/mgpu-site.XXXXXXXX")
  bash tools/gpu/install_bundle.sh "$stash" "$site" >> "$results/install.log" 2>&1 || { log "install FAILED"; exit 1; }
  log "installed into $site"
fi
export PYTHONPATH=${site:+$site:}$repo PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
model=${MGPU_GPU_MODEL:-/root/models/llama-3.1-8b-dummy}
[ -f "$model/config.json" ] || python3 tools/gpu/make_dummy_llama.py "$model" 8b >> "$results/install.log" 2>&1

log "topology"
if [ "${MGPU_DEVICE:-cuda}" = cuda ]; then
  nvidia-smi > "$results/nvidia-smi.txt" 2>&1
  nvidia-smi topo -m > "$results/nvidia-smi-topo-m.txt" 2>&1
fi
python3 -m pytest_mgpu topo > "$results/topo.txt" 2>&1
python3 -m pytest_mgpu topo --json > "$results/topo.json" 2>> "$results/topo.txt"
if [ "${MGPU_GPU_PROBE:-0}" = 1 ]; then
  log "topology probe"
  python3 -m pytest_mgpu topo --probe > "$results/topo-probe.txt" 2>&1
  log "topology probe exit $?"
fi

plugin=()  # the package is on PYTHONPATH, not installed: load the plugin by module unless an entry point exists
python3 -c "import importlib.metadata as m, sys; sys.exit(any(e.name == 'mgpu' for e in m.entry_points(group='pytest11')))" \
  && plugin=(-p pytest_mgpu.plugin)
common=("${plugin[@]}" -p no:cacheprovider -ra -s --mgpu-device "${MGPU_DEVICE:-cuda}" --mgpu-model "$model"
        --mgpu-engine "${MGPU_GPU_ENGINE:-vllm}"
        "--mgpu-engine-args=--load-format dummy" --mgpu-baselines "$repo/baselines" --mgpu-start-timeout 900)
if [ "${MGPU_GPU_LEASE_CHECK:-0}" = 1 ]; then
  log "lease check"
  python3 tools/gpu/lease_check.py "$results" "${plugin[@]}" --mgpu-model "$model" \
    "--mgpu-engine-args=--load-format dummy" --mgpu-start-timeout 900 > "$results/lease_check.log" 2>&1
  log "lease check exit $?"
fi
suite=${MGPU_GPU_SUITE:-perf_tests/gpu}
for pass in ${MGPU_GPU_PASSES:-1 2}; do
  extra=()
  [ "$pass" = 1 ] && extra=(--mgpu-update-baselines)
  log "pass $pass start"; mkdir -p "$results/pass$pass"
  MGPU_RESULTS_DIR="$results/pass$pass" python3 -m pytest $suite "${common[@]}" "${extra[@]}" \
    --mgpu-report "$results/pass$pass.json" --mgpu-summary "$results/pass$pass.md" \
    --junitxml "$results/pass$pass.junit.xml" > "$results/pass$pass.log" 2>&1
  log "pass $pass exit $?"
done
cp -r baselines "$results/baselines"
find /tmp/pytest-of-*/ -name 'engine-*.log' -exec cp {} "$results/" \; 2>/dev/null
tar -C "$(dirname "$results")" -czf "$results.tgz" "$(basename "$results")"
log "done"
