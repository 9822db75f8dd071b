#!/usr/bin/env bash
# Poll a detached run_round3.sh from a device call, and bring back what it has so far.
# usage (in one device call): bash tools/gpu/poll_round.sh RESULTS MAX_SECONDS   e.g. /root/results/r8 290
# Exits 9 at once when RESULTS is not there: the call landed on a fresh host (the last one went back between
# calls, with no error; round 7 lost 550 s polling for a file that no longer existed). Otherwise waits until
# RESULTS.done appears or MAX_SECONDS pass, prints progress.log, and tars RESULTS (less databases) to
# $OUT/NAME-partial.tgz, so every call returns every finished round (compare_vllm_client writes per round).
set -uo pipefail
results=${1:?usage: poll_round.sh RESULTS MAX_SECONDS}
max_s=${2:-290}
if [ ! -d "$results" ]; then
  echo "no $results on this host: a fresh machine (the last one went back); stop polling, nothing is running" >&2
  exit 9
fi
end=$(( $(date +%s) + max_s ))
while [ ! -f "$results.done" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
cat "$results/progress.log"
tail -n 3 "$results"/compare-c*/compare_vllm_client_c*.log 2>/dev/null | cut -c1-160
tar -C "$(dirname "$results")" -czf "${OUT:-/tmp}/$(basename "$results")-partial.tgz" --exclude='*.db' \
  --exclude='vllm-engine.log' "$(basename "$results")"
[ -f "$results.done" ] && echo "DONE" || echo "still running"
