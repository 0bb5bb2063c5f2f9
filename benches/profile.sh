#!/usr/bin/env bash
# Where one component's CPU time goes (issue #8): `perf record` (cpu-clock sampling, which
# works without hardware counters, e.g. under KVM) of the Rust `compare` timer, then the
# symbols with the most samples.
#
#   benches/profile.sh <component> [--threads T] [--reps N] [--top K]
#
# Weights are the deterministic random fill `compare` times (the linear layers' weights are
# packed for the CPU kernel as they load; lazily zero-filled weights would take burn's matmul
# instead); the build before the first forward shows up as faceclip_benches' fill.
# gemm_f32::microkernel::* is the GEMM's inner loop, gemm_common::...::imp_fastcall its
# operand packing; burn_flex::ops::* are burn-flex's own kernels; faceclip_core::layers::host
# are this repository's fused CPU kernels. Needs `perf` (linux-tools).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
COMPONENT="$1"; shift
THREADS="${FACECLIP_THREADS:-$(nproc)}"
REPS=3
TOP=25
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) THREADS="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        --top) TOP="$2"; shift 2 ;;
        *) echo "profile.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
command -v perf >/dev/null || { echo "profile.sh: perf is missing (apt install linux-tools-generic)" >&2; exit 3; }

cd "$ROOT"
cargo build --release -p faceclip-benches --bin compare >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/compare"
DATA="$(mktemp /tmp/faceclip-profile-XXXXXX.data)"
trap 'rm -f "$DATA"' EXIT
RAYON_NUM_THREADS="$THREADS" perf record -q -e cpu-clock -o "$DATA" \
    "$BIN" --only "$COMPONENT" --reps "$REPS" --threads "$THREADS" --weights random
perf report -i "$DATA" --no-children --sort symbol --percent-limit 0.3 2>/dev/null \
    | grep -E '^ +[0-9]' | head -n "$TOP" | sed -E 's/ +- +- *$//; s/ +$//'
