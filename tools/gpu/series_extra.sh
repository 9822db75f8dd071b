#!/bin/bash
# Extra co-tenant runs for the history series, slipped in while run_round3.sh's vLLM engine is still up:
# waits for its last compare session to start, stops the pipeline's shell (SIGSTOP; its running pytest
# child finishes), then runs one pytest session per DUTY against the same engine with tools/gpu/cotenant.py
# at that duty, then lets the pipeline go on (SIGCONT), which stops the engine. Why: at duty 0.05 the
# co-tenant slowed nothing measurable on an H200 (round 3's series-11..13), so stronger duties are needed
# to see the gate flag a slowdown of a few percent.
# usage: series_extra.sh RESULTS VSITE HSITE REPO DUTY...
set -uo pipefail
results=$1 vsite=$2 hsite=$3 repo=$4; shift 4
log() { echo "$(date -u +%H:%M:%S) extra: $*" | tee -a "$results/progress.log"; }
pipe=$(pgrep -o -f "run_round3.sh /root/stash")
[ -n "$pipe" ] || { log "no pipeline"; exit 1; }
for _ in $(seq 900); do grep -q "compare-c64 start\|vllm engine stopped" "$results/progress.log" && break; sleep 1; done
grep -q "vllm engine stopped" "$results/progress.log" && { log "too late: engine stopped"; exit 1; }
kill -STOP "$pipe"; trap 'kill -CONT "$pipe"; [ -n "${co:-}" ] && kill -- -"$co" 2>/dev/null' EXIT
while pgrep -f 'test_vllm_client_agrees\[64\]' > /dev/null; do sleep 1; done
log "pipeline paused after compare-c64; extra co-tenant runs at duties $*"
cd "$repo"
export PYTHONUNBUFFERED=1
n=13 last=
for duty in "$@"; do
  n=$((n + 1)) name=series-$((n))
  if [ "$duty" != "$last" ]; then
    [ -n "${co:-}" ] && kill -- -"$co" 2>/dev/null && sleep 1
    PYTHONPATH="$vsite" setsid python3 tools/gpu/cotenant.py --duty "$duty" > "$results/cotenant-$duty.log" 2>&1 < /dev/null &
    co=$!; last=$duty; sleep 5
  fi
  mkdir -p "$results/$name"
  MGPU_SERIES_PHASE=cotenant-$duty MGPU_RESULTS_DIR="$results/$name" PYTHONPATH="$vsite:$hsite:$repo" \
    python3 -m pytest perf_tests/gpu/test_history_series.py -p pytest_mgpu.plugin -p no:cacheprovider -ra -s \
    --mgpu-device cuda --mgpu-model /root/models/llama-3.1-8b-dummy "--mgpu-engine-args=--load-format dummy" \
    --mgpu-baselines "$results/baselines" --mgpu-history "sqlite:///$results/history.db" --mgpu-engine external \
    --mgpu-base-url http://127.0.0.1:18123 --mgpu-external-devices 1 \
    --mgpu-report "$results/$name.json" --mgpu-summary "$results/$name.md" > "$results/$name.log" 2>&1
  log "$name (duty $duty) exit $?"
  grep -h "series run\|test_series " "$results/$name.log" | head -n 3 >> "$results/progress.log"
done
log "done; pipeline continues"
