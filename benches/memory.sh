#!/usr/bin/env bash
# Peak memory and speed of FaceT5-FLUX's big models per weight format (issue #21): the
# full-size FLUX.1-dev transformer (11.9 B parameters) and FaceT5's T5-XXL encoder, loaded
# from bfloat16 files with random weights, in f32, bf16, q8 and q4; one FLUX step at 512x512
# with true CFG per format; and a whole FaceT5-FLUX generation (512x512, 1 step) with q8.
#
#   bash benches/memory.sh [MODELS]      (default /tmp/faceclip-random-flux)
#
# MODELS is written first if absent (`benches/make_random_models.py --flux`, numpy, about
# 36 GB of disk). Each case runs in its own process, so each peak is its own; cases whose
# weights alone exceed the memory available are reported as skipped, not run. Prints
#   PEAK <component> quant=<f32|bf16|q8|q4> rss_gb=<peak RSS> weights_gb=<weights held>
#   STEP flux_transformer quant=<q> size=512 seconds=<s> ...
#   PEAK flux_generation quant=q8 rss_gb=<x> weights_gb=<y>
# Set MEMORY_CASES="load step generation" (default: all three) to pick.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="${1:-/tmp/faceclip-random-flux}"
CASES="${MEMORY_CASES:-load step generation}"
GB=1000000000

if [ ! -f "$MODELS/FaceCLIP/model/dit.safetensors" ]; then
    python3 -c "import numpy" 2>/dev/null || { echo "memory.sh: needs numpy (pip install numpy)" >&2; exit 2; }
    python3 benches/make_random_models.py --flux "$MODELS" >&2
fi
cargo build --release -q -p faceclip-benches --bin memory -p faceclip-pipeline --features faceclip-pipeline/cli --bin faceclip
BIN="${CARGO_TARGET_DIR:-target}/release"
LINES="$(mktemp)"
echo "INFO $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads, $(awk '/MemTotal/ {printf "%.1f GB", $2*1024/1e9}' /proc/meminfo); $("$BIN/faceclip" --version)"

if [[ " $CASES " == *" load "* ]]; then
    for c in flux_transformer t5_encoder facet5_encoder; do
        for q in f32 bf16 q8 q4; do
            "$BIN/memory" load "$c" "$MODELS" "$q" | tee -a "$LINES" || echo "PEAK $c quant=$q rss_gb=failed"
        done
    done
fi
if [[ " $CASES " == *" step "* ]]; then
    for q in q8 q4 bf16 f32; do
        "$BIN/memory" step "$MODELS" "$q" 512 || echo "STEP flux_transformer quant=$q seconds=failed"
    done
fi
if [[ " $CASES " == *" generation "* ]]; then
    out="$(mktemp -d)"
    log="$out/time.txt"
    start=$(date +%s)
    /usr/bin/time -v "$BIN/faceclip" flux --models "$MODELS" --face demo/models/face.png \
        --width 512 --height 512 --steps 1 --quant q8 --memory sequential \
        --out "$out/flux-q8.png" >&2 2>"$log" || { tail -5 "$log" >&2; echo "PEAK flux_generation quant=q8 rss_gb=failed"; exit 1; }
    secs=$(( $(date +%s) - start ))
    kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$log")
    # Under --memory sequential the models never coexist: the largest is the transformer.
    grep -q "^PEAK flux_transformer quant=q8 " "$LINES" || "$BIN/memory" load flux_transformer "$MODELS" q8 >>"$LINES"
    w=$(sed -n 's/^PEAK flux_transformer quant=q8 .*weights_gb=\([0-9.]*\).*/\1/p' "$LINES")
    echo "PEAK flux_generation quant=q8 rss_gb=$(awk -v k="$kb" -v g=$GB 'BEGIN {printf "%.2f", k*1024/g}') weights_gb=$w seconds=$secs"
fi
