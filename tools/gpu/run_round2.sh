#!/bin/bash
# The second round's whole GPU run on one H200 (issues 13, 14, 15), from the repo root:
#   1. install vLLM 0.26 (parts in VSTASH) and SGLang 0.5.17 (parts in SSTASH) into fresh private directories;
#   2. vLLM session 1 records: perf_tests/gpu/test_gpu_single.py (c=1,16,64 + vLLM-client cross-check);
#   3. vLLM session 2 gates the same; the history series: one engine, 8 unchanged pytest sessions against it,
#      then 4 with a co-tenant (perf_tests/gpu/test_history_series.py); the telemetry on/off benchmark;
#   4. SGLang session 1 records (c=1,16,64 + vLLM-client cross-check), session 2 gates (if time is left).
# Every session keeps its JSON/Markdown/log in RESULTS, and all share RESULTS/history.db.
# usage: tools/gpu/run_round2.sh VSTASH SSTASH RESULTS     (run detached; poll RESULTS/progress.log)
# Knobs: MGPU_DEADLINE_S (default 1080): skip what would start after this many seconds.
set -uo pipefail
vstash=${1:?usage: run_round2.sh VSTASH SSTASH RESULTS}
sstash=${2:?}
results=${3:?}
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$results"
t0=$(date +%s)
log() { echo "$(date -u +%H:%M:%S) +$(( $(date +%s) - t0 ))s $*" | tee -a "$results/progress.log"; }
left() { [ $(( $(date +%s) - t0 )) -lt "${MGPU_DEADLINE_S:-1080}" ]; }
cd "$repo"
vsite=$(mktemp -d)
ssite=$(mktemp -d)
log "install vllm -> $vsite, sglang -> $ssite"
bash tools/gpu/install_bundle.sh "$vstash" "$vsite" > "$results/install-vllm.log" 2>&1 &
bash tools/gpu/install_sglang_bundle.sh "$sstash" "$ssite" > "$results/install-sglang.log" 2>&1 &
wait
tail -n 2 "$results/install-vllm.log" "$results/install-sglang.log" | tee -a "$results/progress.log"
source tools/gpu/lib.sh
gpu_host_prep
single=perf_tests/gpu/test_gpu_single.py
series() {  # one vLLM engine, then one pytest session per run against it (the way nightly runs look)
  local port=18123 pid k phase
  log "series engine start"
  PYTHONPATH="$vsite" setsid python3 -m vllm.entrypoints.openai.api_server --model "$model" --load-format dummy \
    --host 127.0.0.1 --port $port > "$results/series-engine.log" 2>&1 < /dev/null &
  pid=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
  log "series engine healthy: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")"
  for k in $(seq $(( ${MGPU_SERIES_RUNS:-8} + ${MGPU_SERIES_SLOWED:-4} ))); do
    left || break
    phase=unchanged
    if [ "$k" -gt "${MGPU_SERIES_RUNS:-8}" ]; then
      phase=cotenant
      if [ -z "${cotenant:-}" ]; then
        PYTHONPATH="$vsite" setsid python3 tools/gpu/cotenant.py --duty "${MGPU_COTENANT_DUTY:-0.05}" \
          > "$results/cotenant.log" 2>&1 < /dev/null &
        cotenant=$!; sleep 5
      fi
    fi
    MGPU_SERIES_PHASE=$phase session "series-$k" "$vsite" external perf_tests/gpu/test_history_series.py \
      --mgpu-base-url "http://127.0.0.1:$port" --mgpu-external-devices 1
  done
  [ -n "${cotenant:-}" ] && kill -- -"$cotenant"
  kill -- -"$pid"; sleep 5; kill -9 -- -"$pid" 2>/dev/null
  log "series done"
}
session vllm-record "$vsite" vllm "$single" --mgpu-update-baselines
left && session vllm-gate "$vsite" vllm "$single::test_tp1_concurrency"
left && series
if left && [ -f benchmarks/telemetry_cost.py ]; then
  log "telemetry on/off"
  PYTHONPATH="$vsite:$repo" timeout 300 python3 benchmarks/telemetry_cost.py --device cuda --model "$model" \
    --out "$results/telemetry_cost.json" > "$results/telemetry_cost.log" 2>&1
  log "telemetry exit $?"
fi
left && session sglang-record "$ssite" sglang "$single" --mgpu-update-baselines
left && session sglang-gate "$ssite" sglang "$single::test_tp1_concurrency"
# baselines live in $results/baselines: a re-synced work tree on the device would delete them from the repo
PYTHONPATH=$repo python3 -m pytest_mgpu history list --history "sqlite:///$results/history.db" --json \
  > "$results/history-list.json" 2>&1
PYTHONPATH=$repo python3 -m pytest_mgpu history detect --history "sqlite:///$results/history.db" --json \
  > "$results/history-detect.json" 2>&1
tar -C "$(dirname "$results")" -czf "$results.tgz" "$(basename "$results")"
log "done"
