#!/bin/bash
# The multi-GPU run (2+ GPUs, e.g. nvidia-h200-x2): everything run_gpu.sh does, plus
#   - `topo --probe`: NCCL all-reduce bus bandwidth per GPU pair;
#   - tools/gpu/lease_check.py: two concurrent pytest processes get different GPUs, a SIGKILLed
#     holder frees its GPU (lock at once, engine reaped by its watchdog);
#   - the whole perf_tests/ suite (test_tp2_beats_tp1, test_tp1_all_gpus_visible, test_tp_scaling,
#     test_pp_vs_tp as far as the GPU count allows, each configuration gated), pass 1 recording
#     baselines for the host's fingerprint, pass 2 gated against them.
# NVLink multicast stays off (run_gpu.sh exports NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1,
# NVSHMEM_DISABLE_NVLS=1; the engine fixture passes them to every engine process).
# usage: tools/gpu/run_multi_gpu.sh STASH RESULTS      (long: run it detached, poll RESULTS/progress.log)
# After: commit RESULTS/nvidia-smi-topo-m.txt and RESULTS/topo.json under tests/data/ as fixtures, and
# RESULTS/baselines/<fingerprint>/ under baselines/.
set -uo pipefail
export MGPU_GPU_SUITE=${MGPU_GPU_SUITE:-perf_tests} MGPU_GPU_PROBE=${MGPU_GPU_PROBE:-1}
export MGPU_GPU_LEASE_CHECK=${MGPU_GPU_LEASE_CHECK:-1}
exec "$(dirname "$0")/run_gpu.sh" "$@"
