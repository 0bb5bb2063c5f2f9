#!/usr/bin/env bash
# The prepared GPU check: fixture parity and component timings on a GPU backend.
#
#   bash benches/gpu-check.sh [wgpu|cuda|vulkan]        (default wgpu)
#
# Builds the `parity` and `compare` programs with that backend compiled in, then runs every
# fixture and manifest through `parity --backend B` and times every component with
# `compare --backend B` (weights zero-filled: building 12 B random parameters is CPU time, not
# GPU time). Output goes to stdout and, when $OUT is set, to files under it.
#
# Notes: the cuda backend (cubecl-cuda) downloads an LLVM bundle from github.com while it
# builds (crate tracel-llvm-bundler); a machine without that access can build wgpu/vulkan only.
# On a headless NVIDIA machine wgpu needs the Vulkan loader (libvulkan1) and the driver's ICD.
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-wgpu}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/faceclip-rs/target-$B}"
cargo build --release -p faceclip-examples -p faceclip-benches --bins --features "faceclip-pipeline/$B"
bin="$CARGO_TARGET_DIR/release"
out="${OUT:-/tmp}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
"$bin/parity" tests/fixtures tests/manifests --backend "$B" 2>&1 | tee "$out/parity_$B.txt"
"$bin/compare" --backend "$B" --only all --reps 5 --weights zeros 2>&1 | tee "$out/compare_$B.txt"
