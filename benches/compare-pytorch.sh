#!/usr/bin/env bash
# Rust vs PyTorch, component by component, on the CPU in float32 (issue #8).
#
#   benches/compare-pytorch.sh [--only a,b] [--reps N] [--slow-reps N] [--threads T] [--backend cpu]
#                              [--dtype f32|bf16|both]
#
# Builds the Rust timer (`cargo build --release -p faceclip-benches --bin compare`, into
# $CARGO_TARGET_DIR when set), then for each component runs the Rust side and the PyTorch
# side (benches/torch_reference.py with the `python3` on the PATH) one after the other, so
# that both see the same machine load, and ends with one line per component:
#
#   PEAK gemm dtype=<d> rust_gflops=<x> torch_gflops=<y>          (square GEMMs, best of 1024/2048/4096)
#   RATIO <component> dtype=<d> rust_ms=<x> torch_ms=<y> speedup=<y/x> rust_gflops=<useful FLOPs / rust
#         time> peak_frac=<rust_gflops / the higher PEAK of that dtype>   (speedup > 1: Rust is faster)
#   SELF <component> bf16_over_f32=<f32 ms / bf16 ms>                 (with --dtype both)
#   SKIP <component> side=<rust|torch> reason=...                 (never a made-up number)
# Useful FLOPs are the reference algorithm's multiply-adds x 2 as the Rust forward counts them
# (linear layers, direct convolutions, attention's matmuls; faceclip_core::flops).
#
# Both sides: same thread count (RAYON_NUM_THREADS for Rust, torch.set_num_threads for
# PyTorch; default $FACECLIP_THREADS, else nproc), one warm-up, median of --reps runs.
# PyTorch's OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE unless set): spinning
# OpenMP threads collapse on a machine shared with other work (see benches/README.md).
# --slow-reps sets the runs of unet_sdxl, unet_sdxl_32 and vae_decode (default: --reps).
# FACECLIP_COMPARE_LOG=<file> keeps every raw line (with the load average before each component).
# FaceCLIP's own modules (face_vit, fusion_*) need FACECLIP_REPO=<checkout of
# github.com/bytedance/FaceCLIP>; without it they print SKIP on the PyTorch side.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ONLY="clip_l_text,clip_bigg_text,face_vit,fusion_l,fusion_bigg,t5_layer,flux_double,flux_single,unet_sdxl,vae_decode,scheduler_step"
REPS=3
SLOW_REPS=""
THREADS="${FACECLIP_THREADS:-$(nproc)}"
BACKEND=cpu
DTYPES=f32

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY="$2"; shift 2 ;;
        --only=*) ONLY="${1#*=}"; shift ;;
        --reps) REPS="$2"; shift 2 ;;
        --reps=*) REPS="${1#*=}"; shift ;;
        --slow-reps) SLOW_REPS="$2"; shift 2 ;;
        --slow-reps=*) SLOW_REPS="${1#*=}"; shift ;;
        --threads) THREADS="$2"; shift 2 ;;
        --threads=*) THREADS="${1#*=}"; shift ;;
        --backend) BACKEND="$2"; shift 2 ;;
        --backend=*) BACKEND="${1#*=}"; shift ;;
        --dtype) DTYPES="$2"; shift 2 ;;
        --dtype=*) DTYPES="${1#*=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare-pytorch.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
SLOW_REPS="${SLOW_REPS:-$REPS}"
export RAYON_NUM_THREADS="$THREADS" FACECLIP_THREADS="$THREADS"

cd "$ROOT"
echo "== building the Rust timer (release)" >&2
cargo build --release -p faceclip-benches --bin compare >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/compare"
[ -x "$BIN" ] || { echo "compare-pytorch.sh: $BIN was not built" >&2; exit 1; }
if [ "$ONLY" = all ]; then
    ONLY="$("$BIN" --list | awk '{print $1}' | paste -sd, -)"
fi

TORCH_OK=1
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import torch' >/dev/null 2>&1; then
    TORCH_OK=0
    echo "warning: PyTorch is missing (python3 -c 'import torch' failed): timing the Rust side only" >&2
fi

OUT="${FACECLIP_COMPARE_LOG:-$(mktemp)}"
[ -n "${FACECLIP_COMPARE_LOG:-}" ] || trap 'rm -f "$OUT"' EXIT
: > "$OUT"
echo "INFO machine=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1) cores=$(nproc) threads=$THREADS backend=$BACKEND reps=$REPS slow_reps=$SLOW_REPS date=$(date -u +%Y-%m-%dT%H:%MZ)" | tee -a "$OUT"
RUST_FAILED=0
case "$DTYPES" in f32|bf16) ;; both) DTYPES="f32 bf16" ;; *) echo "compare-pytorch.sh: --dtype f32|bf16|both" >&2; exit 2 ;; esac
IFS=, read -r -a COMPONENTS <<< "$ONLY"
for dt in $DTYPES; do
    echo "== peak GEMM ($dt)" >&2
    "$BIN" --only none --peak --dtype "$dt" --backend "$BACKEND" --threads "$THREADS" 2>/dev/null \
        | grep '^RUST_PEAK' | tee -a "$OUT" || true
    if [ "$TORCH_OK" = 1 ]; then
        python3 "$ROOT/benches/torch_reference.py" --only none --peak --dtype "$dt" --threads "$THREADS" \
            | grep '^TORCH_PEAK' | tee -a "$OUT" || true
    fi
done
for dt in $DTYPES; do
for c in "${COMPONENTS[@]}"; do
    reps="$REPS"
    case "$c" in unet_sdxl|unet_sdxl_32|unet_sdxl_step|vae_decode) reps="$SLOW_REPS" ;; esac
    echo "== $c $dt (reps $reps)" >&2
    echo "INFO $c dtype=$dt loadavg_before=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo ?)" >> "$OUT"
    echo "DTYPE $dt" >> "$OUT"
    "$BIN" --only "$c" --reps "$reps" --backend "$BACKEND" --threads "$THREADS" --dtype "$dt" | tee -a "$OUT" || RUST_FAILED=1
    if [ "$TORCH_OK" = 1 ]; then
        python3 "$ROOT/benches/torch_reference.py" --only "$c" --reps "$reps" --threads "$THREADS" --dtype "$dt" \
            | grep -v '^INFO' | tee -a "$OUT" || true
    else
        echo "SKIP $c reason=PyTorch is missing" >> "$OUT"
    fi
done
done
if [ "$TORCH_OK" = 1 ]; then
    python3 "$ROOT/benches/torch_reference.py" --only none --threads "$THREADS" | grep '^INFO' | tee -a "$OUT" || true
fi

echo
echo "== summary (speedup = torch_ms / rust_ms; > 1 means Rust is faster)"
awk -v only="$ONLY" -v dtypes="$DTYPES" '
    $1 == "DTYPE" { dt = $2 }
    $1 == "INFO" && $2 ~ /^rust_kernels=/ && !kern { kern = $0; sub(/^INFO /, "", kern) }
    $1 == "RUST_PEAK" { split($3, d, "="); split($4, g, "="); rpeak[d[2]] = g[2] }
    $1 == "TORCH_PEAK" { split($3, d, "="); split($4, g, "="); tpeak[d[2]] = g[2] }
    ($1 == "RUST" || $1 == "TORCH") && $3 ~ /^ms=/ {
        v = substr($3, 4)
        if ($1 == "RUST") { rust[$2, dt] = v; for (i = 4; i <= NF; i++) if ($i ~ /^gflop=/) gflop[$2] = substr($i, 7) }
        else torch[$2, dt] = v
    }
    $1 == "SKIP" { r = $0; sub(/^SKIP [^ ]+ /, "", r); skip[$2, dt] = (skip[$2, dt] == "" ? r : skip[$2, dt] "; " r) }
    END {
        if (kern != "") print "INFO " kern
        nd = split(dtypes, dts, " ")
        for (j = 1; j <= nd; j++) {
            t = dts[j]
            printf "PEAK gemm dtype=%s rust_gflops=%s torch_gflops=%s\n", t, (t in rpeak ? rpeak[t] : "n/a"), (t in tpeak ? tpeak[t] : "n/a")
        }
        n = split(only, names, ",")
        for (j = 1; j <= nd; j++) {
            t = dts[j]
            peak = (rpeak[t] + 0 > tpeak[t] + 0) ? rpeak[t] : tpeak[t]
            for (i = 1; i <= n; i++) {
                c = names[i]
                if (((c, t) in rust) && ((c, t) in torch)) {
                    rg = (c in gflop) ? gflop[c] / (rust[c, t] / 1000) : 0
                    printf "RATIO %s dtype=%s rust_ms=%.3f torch_ms=%.3f speedup=%.2f rust_gflops=%.1f peak_frac=%s\n", c, t, rust[c, t], torch[c, t], torch[c, t] / rust[c, t], rg, (peak + 0 > 0 ? sprintf("%.2f", rg / peak) : "n/a")
                } else {
                    side = ((c, t) in rust) ? "torch" : "rust"
                    printf "SKIP %s dtype=%s side=%s %s\n", c, t, side, (skip[c, t] == "" ? "reason=no figure" : skip[c, t])
                }
            }
        }
        if (nd == 2) for (i = 1; i <= n; i++) {
            c = names[i]
            if (((c, "f32") in rust) && ((c, "bf16") in rust))
                printf "SELF %s bf16_over_f32=%.2f\n", c, rust[c, "f32"] / rust[c, "bf16"]
        }
    }' "$OUT"

if [ "$TORCH_OK" = 0 ]; then
    echo "PyTorch is missing (python3 -c 'import torch' failed): pip install torch diffusers transformers open_clip_torch timm omegaconf  (see benches/README.md)" >&2
    exit 3
fi
exit "$RUST_FAILED"
