# Shared by tools/gpu/run_round*.sh (sourced, never run): host preparation and one pytest session per call.
# Expects: results (output folder), repo (the work tree to run), vsite (vLLM's site, whose `vllm bench serve`
# the comparisons use), optionally hsite (extra wheels), and a log function.

# the dummy 8B model, the multicast-off variables every GPU program here must see, nvidia-smi and topology
gpu_host_prep() {
  export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  model=/root/models/llama-3.1-8b-dummy
  [ -f "$model/config.json" ] || python3 tools/gpu/make_dummy_llama.py "$model" 8b >> "$results/install.log" 2>&1
  nvidia-smi > "$results/nvidia-smi.txt" 2>&1
  PYTHONPATH=$repo python3 -m pytest_mgpu topo > "$results/topo.txt" 2>&1
  common=(-p pytest_mgpu.plugin -p no:cacheprovider -ra -s --mgpu-device cuda --mgpu-model "$model"
          "--mgpu-engine-args=--load-format dummy" --mgpu-baselines "$results/baselines" --mgpu-start-timeout 900
          --mgpu-history "sqlite:///$results/history.db")
}

# session NAME SITE ENGINE ARGS...: one pytest session; its report, summary, JUnit and log land in RESULTS,
# the engine logs it wrote in RESULTS/NAME
session() {
  local name=$1 site=$2 engine=$3; shift 3
  log "$name start"
  mkdir -p "$results/$name"
  touch "$results/$name/.start"
  MGPU_RESULTS_DIR="$results/$name" PYTHONPATH="$site:${hsite:+$hsite:}$repo" \
    MGPU_VLLM_CLIENT_PYTHONPATH="$vsite${hsite:+:$hsite}" \
    python3 -m pytest "$@" "${common[@]}" --mgpu-engine "$engine" \
    --mgpu-report "$results/$name.json" --mgpu-summary "$results/$name.md" --junitxml "$results/$name.junit.xml" \
    > "$results/$name.log" 2>&1
  log "$name exit $?: $(grep -E "passed|failed|error" "$results/$name.log" | tail -n 1)"
  find /tmp/pytest-of-*/ -name 'engine-*.log' -newer "$results/$name/.start" -exec cp {} "$results/$name/" \; \
    2>/dev/null
}
