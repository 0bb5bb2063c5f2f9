//! The packed-weight GEMM kernels (`faceclip_core::packed`) against a plain f64 product, on
//! shapes that hit every edge: partial row tiles, partial panels, `k` not a multiple of the
//! slice or of the bf16 pair, one row, one column. Kernels this CPU lacks are skipped with a
//! printed reason (the AVX-512 ones on AVX2-only machines).

use faceclip_core::half::bf16;
use faceclip_core::packed::{CpuKernel, Lhs, PackedMatrix};

mod common;
use common::values;

fn round_bf16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect()
}

/// `x · wᵀ + bias` in f64.
fn reference(x: &[f32], w: &[f32], bias: Option<&[f32]>, [m, n, k]: [usize; 3]) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|c| x[i * k + c] as f64 * w[j * k + c] as f64).sum();
            out[i * n + j] = dot + bias.map_or(0.0, |b| b[j] as f64);
        }
    }
    out
}

fn supported(kernel: CpuKernel) -> bool {
    if !kernel.supported() {
        println!("skipped {kernel:?}: this CPU lacks its instructions");
        return false;
    }
    true
}

const SHAPES: &[[usize; 3]] = &[
    // [m, n, k]
    [1, 1, 1],
    [1, 17, 3],
    [5, 16, 7],
    [6, 32, 256],
    [7, 33, 257],
    [13, 47, 300],
    [77, 96, 129],
    [145, 40, 513],
    [200, 130, 64],
];

#[test]
fn every_kernel_matches_the_reference_product_on_edge_shapes() {
    for kernel in CpuKernel::ALL {
        if !supported(kernel) {
            continue;
        }
        for (s, &[m, n, k]) in SHAPES.iter().enumerate() {
            let x = values(m * k, 2 * s as u64);
            let w = values(n * k, 2 * s as u64 + 1);
            let bias = values(n, 100 + s as u64);
            let packed = PackedMatrix::pack(kernel, n, k, &w).unwrap();
            assert_eq!(packed.dims(), [n, k]);
            // The bf16 kernels multiply bf16-rounded weights (and, for VDPBF16PS, inputs)
            // exactly and accumulate in f32: compare with the f64 product of those values.
            let (xr, wr) = if kernel.is_bf16() {
                let xr = if kernel == CpuKernel::Avx512Bf16 { round_bf16(&x) } else { x.clone() };
                (xr, round_bf16(&w))
            } else {
                (x.clone(), w.clone())
            };
            for b in [None, Some(&bias[..])] {
                let got = packed.matmul_t(Lhs::F32(&x), m, b);
                let want = reference(&xr, &wr, b, [m, n, k]);
                assert_eq!(got.len(), m * n);
                // f32 accumulation over k terms of size <= 1: error <= k · 2^-23 · |terms|.
                let tol = 4.0 * k as f64 * f32::EPSILON as f64;
                for (i, (&g, &r)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g as f64 - r).abs() <= tol,
                        "{kernel:?} [m {m}, n {n}, k {k}] bias {}: element {i} = {g}, expected {r}",
                        b.is_some()
                    );
                }
            }
        }
    }
}

#[test]
fn bf16_activations_give_what_their_f32_widening_gives() {
    let [m, n, k] = [9, 35, 131];
    let x = round_bf16(&values(m * k, 7));
    let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let w = values(n * k, 8);
    for kernel in CpuKernel::ALL {
        if !supported(kernel) {
            continue;
        }
        let packed = PackedMatrix::pack(kernel, n, k, &w).unwrap();
        assert_eq!(
            packed.matmul_t(Lhs::Bf16(&xb), m, None),
            packed.matmul_t(Lhs::F32(&x), m, None),
            "{kernel:?}"
        );
    }
}

#[test]
fn unpack_returns_the_weight() {
    let [n, k] = [37, 19];
    let w = values(n * k, 3);
    for kernel in CpuKernel::ALL {
        if !supported(kernel) {
            continue;
        }
        let packed = PackedMatrix::pack(kernel, n, k, &w).unwrap();
        let want = if kernel.is_bf16() { round_bf16(&w) } else { w.clone() };
        assert_eq!(packed.unpack(), want, "{kernel:?}");
        let per = if kernel.is_bf16() { 2 } else { 4 };
        assert!(packed.nbytes() >= n * k * per, "{kernel:?}");
    }
}

#[test]
fn packing_refuses_wrong_lengths_and_missing_instructions() {
    for kernel in CpuKernel::ALL {
        let err = PackedMatrix::pack(kernel, 4, 4, &[0.0; 15]).unwrap_err().to_string();
        if kernel.supported() {
            assert!(err.contains("[4, 4]") && err.contains("15"), "{err}");
        } else {
            assert!(err.contains("not supported"), "{err}");
        }
    }
}

#[test]
fn detection_names_the_kernel_that_runs() {
    match CpuKernel::detect(false) {
        Some(k) => {
            assert!(k.supported() && !k.is_bf16());
            println!("f32 kernel: {}", k.name());
        }
        None => println!("no packed f32 kernel on this CPU: linear layers take burn-flex's matmul"),
    }
    if let Some(k) = CpuKernel::detect(true) {
        assert!(k.supported() && k.is_bf16());
        println!("bf16 kernel: {}", k.name());
    }
}
