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
    v.par_chunks_mut(1 << 14)
        .for_each(|c| c.iter_mut().for_each(|a| *a = f(*a)));
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
    v.par_chunks_mut(spatial.max(1))
        .enumerate()
        .for_each(|(bc, plane)| {
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

/// `conv2d` (groups 1, dilation 1) on NCHW `x` `[B, Cin, H, W]` with `weight`
/// `[Cout, Cin, kh, kw]`: one GEMM per band of output rows, `W [Cout, Cin·kh·kw]` times the
/// band's im2col matrix `[Cin·kh·kw, rows·W']`, written straight into the NCHW output.
///
/// Why not burn-flex's own path: it converts the whole input to NHWC and flattens the weight
/// on one thread, then scatters each tile's result back element by element with a
/// channel-sized stride (a sixth of the SDXL VAE decode, by profile). Here the weight is
/// already the GEMM's left operand in its PyTorch layout, the im2col rows are memcpys of
/// input rows (stride 1), and the GEMM's destination is the output itself. Returns `None`
/// when the kernel does not fit the padded input (the caller takes burn's path, which
/// reports it). Only call where [`applies`].
#[cfg(feature = "flex")]
pub(crate) fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Result<Tensor<4>, (Tensor<4>, Tensor<4>, Option<Tensor<1>>)> {
    let [b, ci, h, w] = x.dims();
    let [co, wci, kh, kw] = weight.dims();
    let [sh, sw] = stride;
    let [ph, pw] = padding;
    if wci != ci || sh == 0 || sw == 0 || h + 2 * ph < kh || w + 2 * pw < kw {
        return Err((x, weight, bias));
    }
    let oh = (h + 2 * ph - kh) / sh + 1;
    let ow = (w + 2 * pw - kw) / sw + 1;
    let device = x.device();
    let xv = host_vec(x);
    let wv = host_vec(weight);
    let bv = bias.map(host_vec);
    let k = ci * kh * kw;
    let plane = oh * ow;
    // ~1024 output pixels per GEMM: the weight is packed once per GEMM, so fewer columns
    // would re-pack it too often; more would grow the im2col buffer past the caches' use.
    let band_rows = 1024usize.div_ceil(ow).clamp(1, oh);
    let bands = oh.div_ceil(band_rows);
    let tiles = b * bands;
    let mut out = vec![0f32; b * co * plane];
    let out_ptr = out.as_mut_ptr() as usize;
    let threads = rayon::current_num_threads();
    // Enough bands to share out: one single-threaded GEMM per band; else parallel GEMMs.
    let (outer_parallel, gemm_par) = if tiles >= 2 * threads {
        (true, gemm::Parallelism::None)
    } else {
        (false, gemm::Parallelism::Rayon(0))
    };
    let run_tile = |col: &mut Vec<f32>, t: usize| {
        let (bi, band) = (t / bands, t % bands);
        let r0 = band * band_rows;
        let r1 = (r0 + band_rows).min(oh);
        let n = (r1 - r0) * ow;
        col.clear();
        col.resize(k * n, 0.0);
        let xb = &xv[bi * ci * h * w..(bi + 1) * ci * h * w];
        for c in 0..ci {
            let xc = &xb[c * h * w..(c + 1) * h * w];
            for i in 0..kh {
                for j in 0..kw {
                    let row = &mut col[((c * kh + i) * kw + j) * n..][..n];
                    // Output columns x whose input column x·sw + j − pw lies inside [0, w).
                    let x_lo = pw.saturating_sub(j).div_ceil(sw).min(ow);
                    let x_hi = ((w + pw).saturating_sub(j)).div_ceil(sw).min(ow).max(x_lo);
                    for r in r0..r1 {
                        let dst = &mut row[(r - r0) * ow..][..ow];
                        let y = (r * sh + i) as isize - ph as isize;
                        if y < 0 || y >= h as isize || x_lo == x_hi {
                            continue; // zero padding: the buffer is zeroed
                        }
                        let src = &xc[y as usize * w..][..w];
                        let first = x_lo * sw + j - pw;
                        if sw == 1 {
                            dst[x_lo..x_hi].copy_from_slice(&src[first..first + (x_hi - x_lo)]);
                        } else {
                            for (d, s) in dst[x_lo..x_hi]
                                .iter_mut()
                                .zip(src[first..].iter().step_by(sw))
                            {
                                *d = *s;
                            }
                        }
                    }
                }
            }
        }
        // SAFETY: tile `t` writes only rows `r0..r1` of image `bi`, disjoint from every
        // other tile's; `out` outlives the parallel loop.
        unsafe {
            let dst = (out_ptr as *mut f32).add(bi * co * plane + r0 * ow);
            gemm::gemm(
                co,
                n,
                k,
                dst,
                1,
                plane as isize,
                false,
                wv.as_ptr(),
                1,
                k as isize,
                col.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm_par,
            );
        }
    };
    if outer_parallel {
        (0..tiles)
            .into_par_iter()
            .for_each_init(Vec::new, |col, t| run_tile(col, t));
    } else {
        let mut col = Vec::new();
        (0..tiles).for_each(|t| run_tile(&mut col, t));
    }
    if let Some(bv) = bv {
        out.par_chunks_mut(plane).enumerate().for_each(|(bc, p)| {
            let v = bv[bc % co];
            p.iter_mut().for_each(|a| *a += v);
        });
    }
    Ok(Tensor::from_data(
        TensorData::new(out, vec![b, co, oh, ow]),
        &device,
    ))
}
