//! Fused host kernels for the CPU backend (flex, f32) where burn would run a memory-bound chain
//! of whole-tensor passes. GroupNorm + SiLU is ten passes over the activation as burn ops
//! (mean, subtract, square, mean, add, sqrt, divide, scale, shift, sigmoid·x); here it is two
//! reads for the statistics and one read-write for normalise, affine and activation. Other
//! backends and dtypes take the generic burn path, which stays the reference.

use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

/// Whether `x` lives on the flex CPU backend in f32, where these kernels apply.
pub(crate) fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "flex")]
    {
        x.dtype() == DType::F32 && x.device() == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = x;
        false
    }
}

fn host_vec<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    // Zero-copy when `x` is contiguous and not shared; the caller checked the dtype.
    x.into_data()
        .try_into_vec::<f32>()
        .expect("applies() checked the tensor is f32")
}

/// `f` applied to every element of `x`, in place when `x` is not shared: one pass where burn's
/// composite activations (tanh-GELU, SiLU, QuickGELU) take three to eight. Only call where
/// [`applies`].
pub(crate) fn map<const D: usize>(x: Tensor<D>, f: impl Fn(f32) -> f32 + Sync) -> Tensor<D> {
    let dims = x.dims();
    let device = x.device();
    let mut v = host_vec(x);
    v.par_chunks_mut(1 << 14).for_each(|c| c.iter_mut().for_each(|a| *a = f(*a)));
    Tensor::from_data(TensorData::new(v, dims.to_vec()), &device)
}

/// `x·σ(x)`, as torch computes it.
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + (K * (x + 0.044715 * x * x * x)).tanh())
}

/// `x·σ(1.702·x)`.
pub(crate) fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + (-1.702 * x).exp())
}

/// `silu(group_norm(x))` (or just the norm) over `x` `[B, C, ...]` with `groups` groups and
/// per-channel `weight`/`bias`, statistics accumulated in f64. Only call where [`applies`].
pub(crate) fn group_norm<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<1>,
    bias: Tensor<1>,
    groups: usize,
    eps: f64,
    silu: bool,
) -> Tensor<D> {
    let dims = x.dims();
    let device = x.device();
    let (b, c) = (dims[0], dims[1]);
    let spatial: usize = dims[2..].iter().product();
    let w = host_vec(weight);
    let s = host_vec(bias);
    let mut v = host_vec(x);
    let per_group = c / groups * spatial;
    let stats: Vec<(f32, f32)> = v
        .par_chunks(per_group.max(1))
        .map(|g| {
            let n = g.len().max(1) as f64;
            let mean = g.iter().map(|&a| a as f64).sum::<f64>() / n;
            let var = g.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / n;
            (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
        })
        .collect();
    let cpg = c / groups;
    v.par_chunks_mut(spatial.max(1)).enumerate().for_each(|(bc, plane)| {
        let ch = bc % c;
        let (mean, rstd) = stats[(bc / c) * groups + ch / cpg];
        let scale = w[ch] * rstd;
        let shift = s[ch] - mean * scale;
        if silu {
            for a in plane.iter_mut() {
                *a = self::silu(*a * scale + shift);
            }
        } else {
            for a in plane.iter_mut() {
                *a = *a * scale + shift;
            }
        }
    });
    debug_assert_eq!(stats.len(), b * groups);
    Tensor::from_data(TensorData::new(v, dims.to_vec()), &device)
}
