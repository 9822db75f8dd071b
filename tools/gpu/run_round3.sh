#!/bin/bash
# What round 2 still owed on a GPU, in one detached run (issues 13, 14, 15), from the repo root:
#   1. vLLM 0.26 installed from VSTASH, the history store's wheels from WHEELS; one vLLM engine started once;
#   2. the history series on it (issue 13): MGPU_SERIES_RUNS unchanged pytest sessions (the first records
#      the pinned baselines), then one per MGPU_COTENANT_DUTIES with tools/gpu/cotenant.py on the GPU
#      (cotenant.py now paces by its burst time alone; the wall-time pacing of round 3's run, at duties
#      0.3 and 0.5, slowed decode by 13-16% and 27-40%, and 0.05 by nothing measurable);
#   3. vLLM's own client beside ours on the same engine (issue 14): c=1, 16, 64, the like-for-like run
#      on vLLM's own prompts, more rounds and waves at 16 and 64 (their per-round TTFT jumps);
#   4. SGLang 0.5.17 (parts in SSTASH, installed while vLLM starts, when no measurement runs) through
#      the plugin's own launcher (issue 15): session 1 records c=1/16/64 + vLLM's client at c=64,
#      session 2, with a fresh engine, gates c=1/16/64 against session 1.
# Uploads of SSTASH may still be arriving when this starts: it waits for SSTASH/SHA256SUMS.
# The work tree is copied first: later device calls re-sync it under a running script.
# usage: tools/gpu/run_round3.sh VSTASH SSTASH WHEELS RESULTS   (run detached; poll RESULTS/progress.log)
# Knobs: MGPU_DEADLINE_S (default 1350): a phase that would end after this many seconds is skipped;
#   MGPU_SKIP_SGLANG=1: no SGLang phases (round 3 got them), so the comparisons need not leave them room;
#   MGPU_SERIES_RUNS (8), MGPU_COTENANT_DUTIES ("0.03 0.03 0.06 0.06"), MGPU_COMPARE_FIRST=1 (comparisons
#   before the series), MGPU_COMPARE_ROUNDS (8; per concurrency: MGPU_COMPARE_ROUNDS_C1/_C16/_C64),
#   MGPU_COMPARE_WAVES_C1 (prompts at c=1, 16), MGPU_COMPARE_WAVES_C16/_C64 (waves of c prompts, 6),
#   MGPU_COMPARE_NO_ENV=1 (vLLM's client with trust_env off too),
#   MGPU_COMPARE_CONCURRENCIES ("1 16 64", in this order), MGPU_COMPARE_VARIANTS (ours,ours-vllm-prompts),
#   MGPU_SERIES_SEED (a directory with history.db and baselines/ of an earlier run: continue its series).
# Comparisons only (no series, no warm-up session, no history commands): MGPU_SKIP_SGLANG=1 MGPU_COMPARE_FIRST=1
#   MGPU_SERIES_RUNS=0 MGPU_COTENANT_DUTIES=" " (a space: empty means the default duties).
set -uo pipefail
vstash=${1:?usage: run_round3.sh VSTASH SSTASH WHEELS RESULTS}
sstash=${2:?}
wheels=${3:?}
results=${4:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$results"
t0=$(date +%s)
log() { echo "$(date -u +%H:%M:%S) +$(( $(date +%s) - t0 ))s $*" | tee -a "$results/progress.log"; }
fits() {  # fits SECONDS: would a phase of that length end before the deadline?
  if [ $(( $(date +%s) - t0 + $1 )) -le "${MGPU_DEADLINE_S:-1350}" ]; then return 0; fi
  log "skipped: $2 (needs ${1}s, deadline ${MGPU_DEADLINE_S:-1350}s)"; return 1
}
repo=$(mktemp -d /root/mgpu-repo.XXXXXXXX)
(cd "$src" && tar --exclude='./.g[0-9]' --exclude='./.s[0-9]' --exclude='./.h[0-9]' --exclude=./.whl --exclude=./.git -cf - .) \
  | tar -xf - -C "$repo"
cd "$repo"
vsite=$(mktemp -d)
ssite=$(mktemp -d)
hsite=$(mktemp -d)
log "install vllm -> $vsite, history wheels -> $hsite"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$hsite" "$wheels"/*.whl \
  > "$results/install-wheels.log" 2>&1
bash tools/gpu/install_bundle.sh "$vstash" "$vsite" > "$results/install-vllm.log" 2>&1
tail -n 2 "$results/install-vllm.log" | tee -a "$results/progress.log"
source tools/gpu/lib.sh
gpu_host_prep
single=perf_tests/gpu/test_gpu_single.py

# SGLang's install only while vLLM starts (CPU work; no measurement runs then)
sgl_install=
if [ -z "${MGPU_SKIP_SGLANG:-}" ]; then
  (
    for _ in $(seq 900); do [ -f "$sstash/SHA256SUMS" ] && break; sleep 1; done
    if [ -f "$sstash/SHA256SUMS" ]; then
      bash tools/gpu/install_sglang_bundle.sh "$sstash" "$ssite" > "$results/install-sglang.log" 2>&1 \
        && touch "$results/.sglang-ok"
    fi
  ) &
  sgl_install=$!
fi

port=18123
log "vllm engine start (external to pytest: one engine for the whole series)"
PYTHONPATH="$vsite" setsid python3 -m vllm.entrypoints.openai.api_server --model "$model" --load-format dummy \
  --host 127.0.0.1 --port $port > "$results/vllm-engine.log" 2>&1 < /dev/null &
vpid=$!
for _ in $(seq 900); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
log "vllm engine healthy: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")"
if [ -n "$sgl_install" ]; then
  for _ in $(seq 150); do kill -0 "$sgl_install" 2>/dev/null || break; sleep 1; done
  if kill -0 "$sgl_install" 2>/dev/null; then log "sglang install still running: the series starts beside it"
  else log "sglang install: $(tail -n 1 "$results/install-sglang.log" 2>/dev/null)"; fi
fi

external=(--mgpu-base-url "http://127.0.0.1:$port" --mgpu-external-devices 1)
# vLLM's client beside ours (issue 14): our default, and ours on vLLM's own prompts (the verdict)
compare_phases() {
  export MGPU_COMPARE_VARIANTS=${MGPU_COMPARE_VARIANTS:-ours,ours-vllm-prompts} MGPU_COMPARE_ROUNDS=${MGPU_COMPARE_ROUNDS:-8}
  local sglang_s=${MGPU_SGLANG_RESERVE_S:-500}  # SGLang's two sessions come after: the comparisons leave them room
  [ -n "${MGPU_SKIP_SGLANG:-}" ] && sglang_s=0
  # runs a round: vLLM's client, its trust_env-off run (MGPU_COMPARE_NO_ENV=1), `ours` (always) and the other variants;
  # seconds a run on the H200 (8B dummy, 128/128): c=1 about 0.65 s a prompt + 3 s, c=16 0.75 s a wave + 4 s, c=64 1 s a wave + 5 s
  local runs=$(( 1 + $(tr "," "\n" <<< "ours,$MGPU_COMPARE_VARIANTS" | sort -u | wc -l) ))
  [ -n "${MGPU_COMPARE_NO_ENV:-}" ] && runs=$(( runs + 1 ))
  local c rounds rounds_var waves waves_var run_s
  for c in ${MGPU_COMPARE_CONCURRENCIES:-1 16 64}; do
    rounds_var=MGPU_COMPARE_ROUNDS_C$c; rounds=${!rounds_var:-$MGPU_COMPARE_ROUNDS}
    if [ "$c" = 1 ]; then waves=${MGPU_COMPARE_WAVES_C1:-16}; run_s=$(( waves * 65 / 100 + 3 ))
    else waves_var=MGPU_COMPARE_WAVES_C$c; waves=${!waves_var:-6}; run_s=$(( c <= 16 ? waves * 75 / 100 + 4 : waves + 5 )); fi
    fits $(( rounds * runs * run_s + sglang_s )) "compare c=$c" && MGPU_COMPARE_ROUNDS=$rounds \
      MGPU_COMPARE_TIMEOUT_S=$(( rounds * runs * run_s * 3 / 2 + 300 )) MGPU_COMPARE_WAVES=$waves \
      session "compare-c$c" "$vsite" external "$single::test_vllm_client_agrees[$c]" "${external[@]}"
  done
}
# MGPU_COMPARE_FIRST=1: the comparisons before the series, so a short deadline cuts the series, not them.
# (They do not cure the series' slow first run: round 4's was 10% slow after all three; see gpu-runs/README.md.)
[ -n "${MGPU_COMPARE_FIRST:-}" ] && compare_phases

# A discarded warm-up session first, into a history of its own: in rounds 3 and 4 the series' first session
# was 10% slow (even after three comparison sessions on the same engine), recorded the pinned baseline,
# and made the next runs read as improvements against it.
# MGPU_SERIES_SEED=DIR: continue the series of an earlier run (its history.db and baselines), on the same
# fingerprint: no run records the pinned baseline again.
if [ -n "${MGPU_SERIES_SEED:-}" ]; then
  cp "$MGPU_SERIES_SEED/history.db" "$results/history.db" && cp -r "$MGPU_SERIES_SEED/baselines" "$results/"
  log "series continued from $MGPU_SERIES_SEED: $(ls "$results/baselines")"
fi
runs=${MGPU_SERIES_RUNS:-8}
read -r -a duties <<< "${MGPU_COTENANT_DUTIES:-0.03 0.03 0.06 0.06}"
# no series at all (MGPU_SERIES_RUNS=0 MGPU_COTENANT_DUTIES=" "): no warm-up for it either
if [ $(( runs + ${#duties[@]} )) -gt 0 ] && fits 30 "series warm-up"; then
  series_history=${common[-1]}
  common[-1]="sqlite:///$results/warmup-history.db"
  MGPU_SERIES_PHASE=warmup session series-warmup "$vsite" external perf_tests/gpu/test_history_series.py \
    "${external[@]}"
  grep -h "series run" "$results/series-warmup.log" | head -n 1 >> "$results/progress.log"
  common[-1]=$series_history
fi
for k in $(seq $(( runs + ${#duties[@]} ))); do
  fits 30 "series run $k" || break
  phase=unchanged
  if [ "$k" -gt "$runs" ]; then
    duty=${duties[$((k - runs - 1))]}
    phase=cotenant-$duty
    if [ "${cotenant_duty:-}" != "$duty" ]; then
      [ -n "${cotenant:-}" ] && { kill -- -"$cotenant"; wait "$cotenant" 2>/dev/null; }
      log "cotenant start (duty $duty)"
      PYTHONPATH="$vsite" setsid python3 tools/gpu/cotenant.py --duty "$duty" \
        > "$results/cotenant-$duty.log" 2>&1 < /dev/null &
      cotenant=$! cotenant_duty=$duty; sleep 5
    fi
  fi
  record=(); [ "$k" = 1 ] && [ -z "${MGPU_SERIES_SEED:-}" ] && record=(--mgpu-update-baselines)
  MGPU_SERIES_PHASE=$phase session "series-$k" "$vsite" external perf_tests/gpu/test_history_series.py \
    "${external[@]}" "${record[@]}"
  grep -h "series run\|test_series " "$results/series-$k.log" | head -n 3 >> "$results/progress.log"
done
[ -n "${cotenant:-}" ] && { kill -- -"$cotenant"; wait "$cotenant" 2>/dev/null; log "cotenant stopped"; }

[ -z "${MGPU_COMPARE_FIRST:-}" ] && compare_phases
kill -- -"$vpid"; sleep 5; kill -9 -- -"$vpid" 2>/dev/null
log "vllm engine stopped; GPU memory used: $(nvidia-smi --query-gpu=memory.used --format=csv,noheader)"

# SGLang through the plugin's launcher (issue 15): record, then gate on a fresh engine
if [ -n "${MGPU_SKIP_SGLANG:-}" ]; then
  log "sglang skipped (MGPU_SKIP_SGLANG)"
elif wait "$sgl_install"; [ -f "$results/.sglang-ok" ]; then
  export MGPU_COMPARE_ROUNDS=3 MGPU_COMPARE_WAVES=4
  fits 290 "sglang record" && session sglang-record "$ssite" sglang \
    "$single::test_tp1_concurrency" "$single::test_vllm_client_agrees[64]" --mgpu-update-baselines
  fits 210 "sglang gate" && session sglang-gate "$ssite" sglang "$single::test_tp1_concurrency"
else
  log "sglang not installed: $(tail -n 3 "$results/install-sglang.log" 2>/dev/null)"
fi

if [ -f "$results/history.db" ]; then  # a compare-only run has no series history
  PYTHONPATH="$hsite:$repo" python3 -m pytest_mgpu history show --history "sqlite:///$results/history.db" \
    > "$results/history-show.txt" 2>&1
  for what in list detect; do
    PYTHONPATH="$hsite:$repo" python3 -m pytest_mgpu history "$what" --history "sqlite:///$results/history.db" \
      --json > "$results/history-$what.json" 2> "$results/history-$what.err"
  done
  PYTHONPATH="$hsite:$repo" python3 -m pytest_mgpu history plot --history "sqlite:///$results/history.db" \
    --out "$results/plots" > "$results/history-plot.log" 2>&1
fi
rm -f "$results/.sglang-ok"
tar -C "$(dirname "$results")" -czf "$results.tgz" "$(basename "$results")"
log "done"
touch "$results.done"
