#!/bin/bash
# Here (with registry access): vLLM 0.26.0's CUDA build and the wheels it needs at run time (no torch: the GPU
# hosts have torch 2.11.0+cu130, which vLLM 0.26.0 pins), as one tar split into six parts of at most 60 MiB,
# placed in the git-ignored folders .g1/ ... .g6/ so each device call can carry one part.
# usage: tools/gpu/build_bundle.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_34_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$stage/whl" -r tools/gpu/requirements-vllm-0.26-cuda.txt
tar -C "$stage" -cf "$stage.tar" whl
split -b 60M -d "$stage.tar" "$stage/part-"
n=0
for part in "$stage"/part-*; do n=$((n + 1)); rm -rf ".g$n"; mkdir -p ".g$n"; mv "$part" ".g$n/"; done
rm -rf "$stage" "$stage.tar"
du -sh .g*
