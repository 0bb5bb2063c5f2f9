#!/usr/bin/env bash
# The prepared GPU check: fixture parity, the demo generations and component timings on GPU
# backends.
#
#   bash benches/gpu-check.sh [wgpu|vulkan|cuda ...]        (default: wgpu)
#
# For each backend named, in turn:
#   1. builds `parity`, `compare` and `faceclip` (release) with that backend compiled in
#      (`--features faceclip-pipeline/B`), unless FACECLIP_BIN names a folder holding them
#      already built: then nothing is built, downloaded or installed;
#   2. `parity tests/fixtures tests/manifests --backend B`: every fixture and manifest in f32
#      under the fixtures' tolerances (the first line names the adapter it runs on);
#   3. the demo generations `faceclip sdxl|flux --demo --backend B` in f32, each compared pixel
#      by pixel with the same run on the CPU (flex) (`imgdiff`);
#   4. the same in each of $GPU_CHECK_DTYPES (f16, bf16) and `parity --dtype` in them: a
#      measurement (the fixtures' tolerances are float32's), never a failure of the check;
#   5. component timings, `compare --backend B --only $GPU_CHECK_COMPARE` (weights zero-filled:
#      building 12 B random parameters is CPU time, not GPU time).
# Ends with one `RESULT` line per backend and a per-fixture table. Everything goes to stdout
# and to files under $OUT. Exit status: 0 when every f32 fixture passed and every f32 demo ran on
# every backend named; 1 otherwise; a backend that cannot come up (no driver, not compiled in)
# counts as a failure and says why.
#
# Environment:
#   FACECLIP_BIN=DIR        prebuilt parity/compare/faceclip/imgdiff; no cargo at all. Build them where
#                           cargo works: CARGO_TARGET_DIR=T cargo build --release
#                           -p faceclip-examples -p faceclip-benches -p faceclip-pipeline --bins
#                           --features faceclip-pipeline/wgpu   and copy T/release/{parity,
#                           compare,faceclip,imgdiff}. A `vulkan` build is wgpu plus SPIR-V kernels: its
#                           binaries run --backend vulkan and --backend wgpu (then also on SPIR-V
#                           where the adapter is Vulkan); a `wgpu` build runs WGSL kernels only.
#   FACECLIP_BIN_wgpu, FACECLIP_BIN_vulkan, FACECLIP_BIN_cuda=DIR   the same, per backend
#                           (they win over FACECLIP_BIN)
#   CARGO_TARGET_DIR        where to build (default ~/.cache/faceclip-rs/target-B)
#   OUT=DIR                 logs and images (default /tmp/faceclip-gpu-check)
#   GPU_CHECK_DTYPES        reduced precisions to try (default "f16 bf16"; "" for none)
#   GPU_CHECK_COMPARE       components to time (default all; "none" skips; see compare --list)
#   GPU_CHECK_REPS          repetitions per timed component (default 5)
#
# Backends: wgpu picks the graphics API itself (Vulkan first, then GL); vulkan pins Vulkan and
# compiles kernels to SPIR-V where the driver allows. Both need the Vulkan loader (libvulkan1)
# and a driver's ICD: on a headless NVIDIA machine the one the NVIDIA driver installs; without a
# GPU, Mesa's lavapipe (`apt-get install mesa-vulkan-drivers libvulkan1`, see
# benches/wgpu-check.sh). The cuda backend (cubecl-cuda) downloads an LLVM bundle from github.com
# while it builds (crate tracel-llvm-bundler): build it where that is reachable, or bring it
# with FACECLIP_BIN.
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || set -- wgpu
out="${OUT:-/tmp/faceclip-gpu-check}"
mkdir -p "$out"
dtypes="${GPU_CHECK_DTYPES-f16 bf16}"
only="${GPU_CHECK_COMPARE:-all}"
reps="${GPU_CHECK_REPS:-5}"
status=0
summary=()

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "== $*" | tee -a "$out/check.log"; }

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
fi
if command -v vulkaninfo >/dev/null; then
    vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName|apiVersion" | tee "$out/vulkan.txt"
fi

# Builds (or finds) the binaries for backend $1; sets $bin.
binaries() {
    local b="$1" feature="${1%%:*}"
    local per="FACECLIP_BIN_$feature"
    if [ -n "${!per:-${FACECLIP_BIN:-}}" ]; then
        bin="${!per:-$FACECLIP_BIN}"
        log "$b: prebuilt binaries in $bin (no build)"
    else
        local target="${CARGO_TARGET_DIR:-${HOME}/.cache/faceclip-rs/target-$feature}"
        local t0
        t0=$(now)
        log "$b: cargo build --release (target $target)"
        CARGO_TARGET_DIR="$target" cargo build --release -p faceclip-examples -p faceclip-benches \
            -p faceclip-pipeline --bins --features "faceclip-pipeline/$feature" 2>&1 | tail -3 \
            | tee -a "$out/check.log" || return 1
        log "$b: build took $(since "$t0") s"
        bin="$target/release"
    fi
    local p
    for p in parity compare faceclip imgdiff; do
        [ -x "$bin/$p" ] || { log "$b: $bin/$p is missing"; return 1; }
    done
}

# Pixel difference of two images (the `imgdiff` example program).
imgdiff() {
    "$bin/imgdiff" "$1" "$2" 2>&1
}

check_backend() {
    local b="$1" t0 rc line
    binaries "$b" || { summary+=("RESULT $b: FAIL no binaries"); return 1; }

    # f32 parity: the gate.
    t0=$(now)
    "$bin/parity" tests/fixtures tests/manifests --backend "$b" >"$out/parity_$b.txt" 2>"$out/parity_$b.err"
    rc=$?
    grep -v "XDG_RUNTIME_DIR" "$out/parity_$b.err" | tail -5
    cat "$out/parity_$b.txt"
    local parity_s
    parity_s=$(since "$t0")
    if ! grep -q "^parity: backend" "$out/parity_$b.txt"; then
        summary+=("RESULT $b: UNAVAILABLE $(grep -v XDG_RUNTIME_DIR "$out/parity_$b.err" | tail -1)")
        return 1
    fi
    local pass fail
    pass=$(grep -c "^PASS" "$out/parity_$b.txt")
    fail=$(grep -c "^FAIL\|^UNSUPPORTED" "$out/parity_$b.txt")
    log "$b: parity f32 $pass passed, $fail failed (exit $rc) in $parity_s s"
    local ok=1
    [ "$rc" -eq 0 ] && [ "$fail" -eq 0 ] || ok=0

    # Demo generations: f32 (gate), then the reduced precisions (measured).
    local m dt img ref demo=""
    for dt in f32 $dtypes; do
        for m in sdxl flux; do
            img="$out/demo-$m-$b-$dt.png"
            ref="$out/demo-$m-cpu-$dt.png"
            t0=$(now)
            if "$bin/faceclip" "$m" --demo --backend "$b" --dtype "$dt" --out "$img" \
                >"$out/demo-$m-$b-$dt.log" 2>&1; then
                line="$m $dt ok $(since "$t0") s"
                if "$bin/faceclip" "$m" --demo --backend flex --dtype "$dt" --out "$ref" \
                    >/dev/null 2>&1; then
                    line="$line, vs cpu: $(imgdiff "$img" "$ref")"
                fi
            else
                line="$m $dt FAILED: $(grep -v XDG_RUNTIME_DIR "$out/demo-$m-$b-$dt.log" | tail -1)"
                [ "$dt" = f32 ] && ok=0
            fi
            log "$b: demo $line"
            demo="$demo; $line"
        done
    done

    # Parity in reduced precision: the error it makes, measured against float32 tolerances.
    for dt in $dtypes; do
        t0=$(now)
        "$bin/parity" tests/fixtures --backend "$b" --dtype "$dt" \
            >"$out/parity_${b}_$dt.txt" 2>"$out/parity_${b}_$dt.err"
        pass=$(grep -c "^PASS" "$out/parity_${b}_$dt.txt")
        fail=$(grep -c "^FAIL" "$out/parity_${b}_$dt.txt")
        cat "$out/parity_${b}_$dt.txt"
        log "$b: parity $dt (measured, f32 tolerances) $pass within, $fail outside in $(since "$t0") s$(
            grep -q "^parity: backend" "$out/parity_${b}_$dt.txt" \
                || echo ": $(grep -v XDG_RUNTIME_DIR "$out/parity_${b}_$dt.err" | tail -1)")"
    done

    if [ "$only" != none ]; then
        t0=$(now)
        "$bin/compare" --backend "$b" --only "$only" --reps "$reps" --weights zeros 2>&1 \
            | grep -v XDG_RUNTIME_DIR | tee "$out/compare_$b.txt"
        log "$b: compare ($only) took $(since "$t0") s"
    fi

    local verdict=PASS
    [ "$ok" -eq 1 ] || verdict=FAIL
    summary+=("RESULT $b: $verdict parity f32 $(grep "^parity: [0-9]" "$out/parity_$b.txt" | cut -d' ' -f2-) in $parity_s s$demo")
    [ "$ok" -eq 1 ]
}

for b in "$@"; do
    check_backend "$b" || status=1
done

# One row per check, one column per backend (parity prints them in the same order everywhere).
echo
cols=()
for b in "$@"; do
    f="$out/parity_$b.txt"
    [ -s "$f" ] || f=/dev/null
    grep -E "^(PASS|FAIL|UNSUPPORTED) " "$f" | sed -E 's/^([A-Z]+) [^ ]+ ?/\1 /; s/ max_rel=[^ ]*//; s/ rtol=[^ ]*//' >"$out/col_$b.txt"
    cols+=("$out/col_$b.txt")
done
{
    echo "check | $(printf '%s f32 | ' "$@")"
    grep -hE "^(PASS|FAIL|UNSUPPORTED) " "$out/parity_$1.txt" 2>/dev/null | cut -d' ' -f2 \
        | paste -d'|' - "${cols[@]}" | sed 's/|/ | /g'
} | tee "$out/table.txt"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
exit "$status"
