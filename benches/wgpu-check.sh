#!/usr/bin/env bash
# The GPU code path without a GPU: wgpu (and vulkan) on Mesa's lavapipe, a Vulkan 1.3 driver
# that runs on the CPU. Same checks as benches/gpu-check.sh (whose code this runs): every
# fixture and manifest through `parity`, the SDXL and FLUX demo generations, f16/bf16.
#
#   bash benches/wgpu-check.sh [wgpu] [vulkan]       (default: wgpu vulkan)
#
# Installs nothing. Needs, once (Debian/Ubuntu, as root):
#   apt-get install -y mesa-vulkan-drivers libvulkan1     (lavapipe + the Vulkan loader)
#   apt-get install -y vulkan-tools                       (optional: vulkaninfo)
#
# The wgpu build is slow (about 45 minutes from scratch on 2 cores, then about 2 minutes
# per change) and kept out of the default `.ci/run`. Builds go to $CARGO_TARGET_DIR (default
# ~/.cache/faceclip-rs/target-wgpu, shared by both backends: the `vulkan` build is the `wgpu`
# build plus SPIR-V kernels, so building it recompiles the cubecl crates once more).
# FACECLIP_BIN=DIR uses prebuilt binaries instead (see gpu-check.sh). Logs and images go to
# $OUT (default /tmp/faceclip-wgpu-check). Component timings are off by default here (a
# full-size UNet on a software rasterizer takes hours); GPU_CHECK_COMPARE=clip_l_text,... turns
# some on.
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || set -- wgpu vulkan

if ! compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null \
    && ! compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null \
    || ! ldconfig -p 2>/dev/null | grep "libvulkan.so.1" >/dev/null; then
    echo "wgpu-check: no Vulkan driver found (no ICD in /usr/share/vulkan/icd.d, or no libvulkan.so.1)." >&2
    echo "wgpu-check: install one: apt-get install -y mesa-vulkan-drivers libvulkan1" >&2
    exit 2
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/faceclip-rs/target-wgpu}"
export OUT="${OUT:-/tmp/faceclip-wgpu-check}"
export GPU_CHECK_COMPARE="${GPU_CHECK_COMPARE:-none}"
export GPU_CHECK_REPS="${GPU_CHECK_REPS:-2}"
exec bash benches/gpu-check.sh "$@"
