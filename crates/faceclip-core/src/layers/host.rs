//! Fused host kernels for the CPU backend (flex, f32) where burn would run a memory-bound chain
//! of whole-tensor passes. GroupNorm + SiLU is ten passes over the activation as burn ops
//! (mean, subtract, square, mean, add, sqrt, divide, scale, shift, sigmoid·x); here it is two
//! reads for the statistics and one read-write for normalise, affine and activation. Other
//! backends and dtypes take the generic burn path, which stays the reference.

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Whether `x` lives on the flex CPU backend in f32, where these kernels apply.
pub(crate) fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "flex")]
    {
        x.dtype() == burn::tensor::DType::F32 && x.device() == burn::tensor::Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = x;
        false
    }
}

pub(crate) fn host_vec<const D: usize>(x: Tensor<D>) -> Vec<f32> {
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
    v.par_chunks_mut(1 << 14).for_each(|c| apply(c, &f));
    Tensor::from_data(TensorData::new(v, dims.to_vec()), &device)
}

/// `f` over a slice, compiled for AVX2 + FMA when the CPU has them: the default x86-64 target
/// is SSE2, and [`exp`] only vectorises 8 wide with AVX2.
fn apply(c: &mut [f32], f: &impl Fn(f32) -> f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected on this CPU.
        return unsafe { apply_avx2(c, f) };
    }
    apply_any(c, f)
}

#[inline(always)]
fn apply_any(c: &mut [f32], f: &impl Fn(f32) -> f32) {
    c.iter_mut().for_each(|a| *a = f(*a));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_avx2(c: &mut [f32], f: &impl Fn(f32) -> f32) {
    apply_any(c, f)
}

/// `dst[i] = f(dst[i], src[i])`, compiled for AVX2 + FMA when the CPU has them (see [`apply`]).
fn zip_with(dst: &mut [f32], src: &[f32], f: &impl Fn(f32, f32) -> f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected on this CPU.
        return unsafe { zip_with_avx2(dst, src, f) };
    }
    zip_with_any(dst, src, f)
}

#[inline(always)]
fn zip_with_any(dst: &mut [f32], src: &[f32], f: &impl Fn(f32, f32) -> f32) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = f(*d, *s));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn zip_with_avx2(dst: &mut [f32], src: &[f32], f: &impl Fn(f32, f32) -> f32) {
    zip_with_any(dst, src, f)
}

/// `f(x)·other` elementwise (T5's gated feed-forward), in `x`'s buffer when it is not shared.
/// Only call where [`applies`] to both, with equal shapes.
pub(crate) fn mul_act<const D: usize>(
    x: Tensor<D>,
    other: Tensor<D>,
    f: impl Fn(f32) -> f32 + Sync,
) -> Tensor<D> {
    let dims = x.dims();
    let device = x.device();
    let mut v = host_vec(x);
    let o = host_vec(other);
    const CHUNK: usize = 1 << 14;
    v.par_chunks_mut(CHUNK)
        .zip(o.par_chunks(CHUNK))
        .for_each(|(d, s)| zip_with(d, s, &|a, b| f(a) * b));
    Tensor::from_data(TensorData::new(v, dims.to_vec()), &device)
}

/// `y[..., :d]·f(y[..., d:])` over `y` `[..., 2d]` (diffusers' GEGLU) in one pass, where burn
/// would copy both strided halves, activate and multiply. Only call where [`applies`].
pub(crate) fn gated_halves<const D: usize>(
    y: Tensor<D>,
    f: impl Fn(f32) -> f32 + Sync,
) -> Tensor<D> {
    let mut dims = y.dims();
    let d = dims[D - 1] / 2;
    let device = y.device();
    let v = host_vec(y);
    let mut out = vec![0f32; v.len() / 2];
    out.par_chunks_mut(d.max(1))
        .zip(v.par_chunks(2 * d.max(1)))
        .for_each(|(o, row)| {
            o.copy_from_slice(&row[..d]);
            zip_with(o, &row[d..], &|h, g| h * f(g));
        });
    dims[D - 1] = d;
    Tensor::from_data(TensorData::new(out, dims.to_vec()), &device)
}

/// `erf(x)` by Abramowitz & Stegun 7.1.26 (absolute error below 5e-7 in f32) on [`exp`]:
/// branch-free, so it vectorises where libm's `erff` is a call per element.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let p = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_7) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - p * exp(-a * a)).copysign(x)
}

/// Exact GELU `0.5·x·(1 + erf(x/√2))`.
#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `eˣ` in branch-free f32 arithmetic (Cephes `expf`: `x = n·ln2 + r`, a degree-5 polynomial
/// in `r`, `2ⁿ` by exponent bits), within 2 ulp on the range it clamps to, `[-87.3, 88]`;
/// libm's `expf` is a call per element, which no loop around it can vectorise. `n` is rounded
/// by adding 1.5·2²³ (the integer lands in the mantissa): a conversion (`as i32`) would be a
/// scalar instruction and two range checks per lane, as Rust's casts saturate.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³
    // Fused multiply-adds: the callers' loops are compiled with FMA (`apply`, `zip_with`, the
    // attention kernel); elsewhere `mul_add` is still exact, only slower.
    let x = x.clamp(-87.336_54, 88.0); // NaN stays NaN
    let f = x.mul_add(std::f32::consts::LOG2_E, MAGIC);
    let n = f - MAGIC; // round(x·log2 e), exactly
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let p = 1.987_569_1e-4f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 0.5);
    let y = p.mul_add(r * r, r) + 1.0;
    // 2ⁿ: n + 127 in the exponent field (f's low mantissa bits hold n + 2²²).
    y * f32::from_bits((f.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127)) << 23)
}

/// `x·σ(x)`, as torch computes it.
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, with `tanh(u) = 1 − 2/(e^{2u} + 1)`.
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // sqrt(2/pi)
    let u = K * (x + 0.044715 * x * x * x);
    0.5 * x * (2.0 - 2.0 / (exp(2.0 * u) + 1.0))
}

/// `x·σ(1.702·x)`.
#[inline(always)]
pub(crate) fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + exp(-1.702 * x))
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
                apply(plane, &|a| self::silu(a * scale + shift));
            } else {
                apply(plane, &|a| a * scale + shift);
            }
        });
    debug_assert_eq!(stats.len(), b * groups);
    Tensor::from_data(TensorData::new(v, dims.to_vec()), &device)
}

/// The arguments of [`conv2d`], handed back when it declines.
#[cfg(feature = "flex")]
pub(crate) type ConvArgs = Box<(Tensor<4>, Tensor<4>, Option<Tensor<1>>)>;

/// `conv2d` (groups 1, dilation 1) on NCHW `x` `[B, Cin, H, W]` with `weight`
/// `[Cout, Cin, kh, kw]`: one GEMM per band of output rows, `W [Cout, Cin·kh·kw]` times the
/// band's im2col matrix `[Cin·kh·kw, rows·W']`, written straight into the NCHW output.
///
/// Why not burn-flex's own path: it converts the whole input to NHWC and flattens the weight
/// on one thread, then scatters each tile's result back element by element with a
/// channel-sized stride (a sixth of the SDXL VAE decode, by profile). Here the weight is
/// already the GEMM's left operand in its PyTorch layout, the im2col rows are memcpys of
/// input rows (stride 1), and the GEMM's destination is the output itself. Hands the arguments
/// back (`Err`) when the kernel does not fit the padded input (the caller takes burn's path, which
/// reports it). Only call where [`applies`].
#[cfg(feature = "flex")]
pub(crate) fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Result<Tensor<4>, ConvArgs> {
    let [b, ci, h, w] = x.dims();
    let [co, wci, kh, kw] = weight.dims();
    let [sh, sw] = stride;
    let [ph, pw] = padding;
    if wci != ci || sh == 0 || sw == 0 || h + 2 * ph < kh || w + 2 * pw < kw {
        return Err(Box::new((x, weight, bias)));
    }
    let oh = (h + 2 * ph - kh) / sh + 1;
    let ow = (w + 2 * pw - kw) / sw + 1;
    let device = x.device();
    let xv = host_vec(x);
    let wv = host_vec(weight);
    let bv = bias.map(host_vec);
    let out = if kh == 3 && kw == 3 && sh == 1 && sw == 1 && ci >= WINOGRAD_MIN_CHANNELS {
        conv3x3_winograd(
            &xv,
            &wv,
            bv.as_deref(),
            [b, ci, h, w],
            co,
            padding,
            [oh, ow],
        )
    } else {
        conv_im2col(
            &xv,
            &wv,
            bv.as_deref(),
            [b, ci, h, w],
            [co, kh, kw],
            stride,
            padding,
            [oh, ow],
        )
    };
    Ok(Tensor::from_data(
        TensorData::new(out, vec![b, co, oh, ow]),
        &device,
    ))
}

/// Below this many input channels a 3x3 convolution takes the im2col path: the transforms'
/// cost is per input channel, the GEMM saving per (input, output) channel pair.
#[cfg(feature = "flex")]
const WINOGRAD_MIN_CHANNELS: usize = 16;

/// `dst = a·b` with `a` `[m, k]` row-major and contiguous, `b` `[k, n]` row-major (or, with
/// `b_t`, its transpose `[n, k]` row-major: a linear layer's weight), `dst` `[m, n]` row-major
/// with row stride `dst_rs`.
///
/// # Safety
/// The three pointers must cover those extents, and `dst` must not alias `a` or `b`.
#[cfg(feature = "flex")]
unsafe fn gemm_rows(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    dst_rs: usize,
    a: *const f32,
    (b, b_t): (*const f32, bool),
    par: gemm::Parallelism,
) {
    let (b_cs, b_rs) = if b_t { (k, 1) } else { (1, n) };
    // SAFETY: forwarded to the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            a,
            1,
            k as isize,
            b,
            b_cs as isize,
            b_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// `x · wᵀ` for a linear weight `w` `[n, k]` held in blocks, `x` `[m, k]` row-major: `[m, n]`.
/// The weight's rows are shared out in tiles; each job expands its tile to `f32` (about 1/m of
/// the work it then does with it) right before the GEMM that uses it, so the matrix is never
/// expanded whole.
#[cfg(feature = "flex")]
pub(crate) fn matmul_blocks_t(w: &crate::quant::QMatrix, x: &[f32], m: usize) -> Vec<f32> {
    let [n, k] = w.dims();
    assert_eq!(x.len(), m * k, "matmul_blocks_t: x is not [m, k]");
    let mut out = vec![0f32; m * n];
    // Enough tiles to keep every thread busy, few enough that x is packed rarely.
    let tile = (n / (4 * rayon::current_num_threads().max(1)))
        .clamp(16, 256)
        .div_ceil(16)
        * 16;
    let out_ptr = out.as_mut_ptr() as usize;
    let run_tile = |buf: &mut Vec<f32>, t: usize, gemm_par: gemm::Parallelism| {
        let r0 = t * tile;
        let rows = tile.min(n - r0);
        buf.resize(rows * k, 0.0);
        w.dequantize_rows(r0, &mut buf[..rows * k]);
        // SAFETY: tile `t` writes only columns `r0..r0 + rows` of the `[m, n]` output, which no
        // other tile writes; `out` outlives the loop; `x` is `[m, k]`, `buf` `[rows, k]`.
        unsafe {
            let dst = (out_ptr as *mut f32).add(r0);
            gemm_rows(
                [m, rows, k],
                dst,
                n,
                x.as_ptr(),
                (buf.as_ptr(), true),
                gemm_par,
            );
        }
    };
    for_each_job(n.div_ceil(tile), Vec::new, run_tile);
    out
}

/// `job(scratch, j, gemm_parallelism)` for every `j < jobs`: spread over the threads with
/// single-threaded GEMMs when there are enough jobs to share out, else one after another with
/// parallel GEMMs. `scratch` is a per-thread buffer made by `init`.
#[cfg(feature = "flex")]
fn for_each_job<S>(
    jobs: usize,
    init: impl Fn() -> S + Sync + Send,
    job: impl Fn(&mut S, usize, gemm::Parallelism) + Sync + Send,
) {
    if jobs >= 2 * rayon::current_num_threads() {
        (0..jobs)
            .into_par_iter()
            .for_each_init(init, |s, j| job(s, j, gemm::Parallelism::None));
    } else {
        let mut s = init();
        (0..jobs).for_each(|j| job(&mut s, j, gemm::Parallelism::Rayon(0)));
    }
}

/// Banded im2col + GEMM (any kernel and stride); see [`conv2d`].
#[cfg(feature = "flex")]
#[allow(clippy::too_many_arguments)]
fn conv_im2col(
    xv: &[f32],
    wv: &[f32],
    bv: Option<&[f32]>,
    [b, ci, h, w]: [usize; 4],
    [co, kh, kw]: [usize; 3],
    [sh, sw]: [usize; 2],
    [ph, pw]: [usize; 2],
    [oh, ow]: [usize; 2],
) -> Vec<f32> {
    let k = ci * kh * kw;
    let plane = oh * ow;
    // ~1024 output pixels per GEMM: the weight is packed once per GEMM, so fewer columns
    // would re-pack it too often; more would grow the im2col buffer past the caches' use.
    let band_rows = 1024usize.div_ceil(ow).clamp(1, oh);
    let bands = oh.div_ceil(band_rows);
    let tiles = b * bands;
    let mut out = vec![0f32; b * co * plane];
    let out_ptr = out.as_mut_ptr() as usize;
    let run_tile = |col: &mut Vec<f32>, t: usize, gemm_par: gemm::Parallelism| {
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
            gemm_rows(
                [co, n, k],
                dst,
                plane,
                wv.as_ptr(),
                (col.as_ptr(), false),
                gemm_par,
            );
        }
    };
    for_each_job(tiles, Vec::new, run_tile);
    if let Some(bv) = bv {
        out.par_chunks_mut(plane).enumerate().for_each(|(bc, p)| {
            let v = bv[bc % co];
            p.iter_mut().for_each(|a| *a += v);
        });
    }
    out
}

/// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray, 2016): each 2x2 output
/// tile costs 16 multiply-adds per (in, out) channel pair instead of 36, so the GEMM work is
/// 2.25x smaller than im2col's. Bands of tiles keep the transformed buffers cache-sized:
/// per band, the input transform `V = Bᵀ d B` `[16, Cin, n]`, sixteen GEMMs `M[e] = U[e] V[e]`
/// with the transformed weight `U = G g Gᵀ` `[16, Cout, Cin]`, and the output transform
/// `Y = Aᵀ M A` (+ bias) written into the NCHW output.
#[cfg(feature = "flex")]
#[allow(clippy::too_many_arguments)]
fn conv3x3_winograd(
    xv: &[f32],
    wv: &[f32],
    bv: Option<&[f32]>,
    [b, ci, h, w]: [usize; 4],
    co: usize,
    [ph, pw]: [usize; 2],
    [oh, ow]: [usize; 2],
) -> Vec<f32> {
    // U[e][o][c], e = 4·row + col of the 4x4 transformed kernel.
    let mut u = vec![0f32; 16 * co * ci];
    let u_ptr = u.as_mut_ptr() as usize;
    (0..co).into_par_iter().for_each(|o| {
        for c in 0..ci {
            let g = &wv[(o * ci + c) * 9..][..9];
            let mut gg = [[0f32; 3]; 4]; // G g: 4x3
            for j in 0..3 {
                let col = wino_g([g[j], g[3 + j], g[6 + j]]);
                for (i, v) in col.into_iter().enumerate() {
                    gg[i][j] = v;
                }
            }
            for (i, row) in gg.iter().enumerate() {
                for (j, v) in wino_g(*row).into_iter().enumerate() {
                    // SAFETY: (o, c) pairs are disjoint across the parallel loop.
                    unsafe { *(u_ptr as *mut f32).add(((4 * i + j) * co + o) * ci + c) = v };
                }
            }
        }
    });
    let (tiles_h, tiles_w) = (oh.div_ceil(2), ow.div_ceil(2));
    // ~512 tiles per GEMM: enough columns to amortise packing U[e], buffers of a few MB.
    let band_trows = 512usize.div_ceil(tiles_w).clamp(1, tiles_h);
    let bands = tiles_h.div_ceil(band_trows);
    let plane = oh * ow;
    let mut out = vec![0f32; b * co * plane];
    let out_ptr = out.as_mut_ptr() as usize;
    let jobs = b * bands;
    let run_band = |buf: &mut (Vec<f32>, Vec<f32>), job: usize, gemm_par: gemm::Parallelism| {
        let (bi, band) = (job / bands, job % bands);
        let t0 = band * band_trows;
        let t1 = (t0 + band_trows).min(tiles_h);
        let n = (t1 - t0) * tiles_w;
        let (v, m) = buf;
        v.clear();
        v.resize(16 * ci * n, 0.0);
        m.clear();
        m.resize(16 * co * n, 0.0);
        let xb = &xv[bi * ci * h * w..(bi + 1) * ci * h * w];
        let v_ptr = v.as_mut_ptr() as usize;
        // Row-wise, vectorisable across tiles: four zero-padded input rows, their horizontal
        // transform (stride-2 reads), then the vertical one stored contiguously in V.
        let padded = 2 * tiles_w + 2;
        (0..ci).into_par_iter().for_each_init(
            || (vec![0f32; 4 * padded], vec![0f32; 16 * tiles_w]),
            |(rows, hrow), c| {
                let xc = &xb[c * h * w..(c + 1) * h * w];
                for ty in t0..t1 {
                    for (i, row) in rows.chunks_exact_mut(padded).enumerate() {
                        row.fill(0.0);
                        let y = (2 * ty + i) as isize - ph as isize;
                        if y < 0 || y >= h as isize {
                            continue;
                        }
                        // row[k] = x[y, k - pw] where that column exists.
                        let lo = pw.min(padded);
                        let len = w.min(padded - lo);
                        row[lo..lo + len].copy_from_slice(&xc[y as usize * w..][..len]);
                    }
                    for (i, row) in rows.chunks_exact(padded).enumerate() {
                        let hr = &mut hrow[i * 4 * tiles_w..(i + 1) * 4 * tiles_w];
                        let (h0, rest) = hr.split_at_mut(tiles_w);
                        let (h1, rest) = rest.split_at_mut(tiles_w);
                        let (h2, h3) = rest.split_at_mut(tiles_w);
                        for tx in 0..tiles_w {
                            let [d0, d1, d2, d3] = wino_bt([
                                row[2 * tx],
                                row[2 * tx + 1],
                                row[2 * tx + 2],
                                row[2 * tx + 3],
                            ]);
                            h0[tx] = d0;
                            h1[tx] = d1;
                            h2[tx] = d2;
                            h3[tx] = d3;
                        }
                    }
                    let t = (ty - t0) * tiles_w;
                    for jj in 0..4 {
                        let r = |i: usize| &hrow[(i * 4 + jj) * tiles_w..][..tiles_w];
                        let (a0, a1, a2, a3) = (r(0), r(1), r(2), r(3));
                        // SAFETY: channel c writes only its own rows of V, tiles t..t+tiles_w.
                        let dst = |e: usize| unsafe {
                            std::slice::from_raw_parts_mut(
                                (v_ptr as *mut f32).add((e * ci + c) * n + t),
                                tiles_w,
                            )
                        };
                        let (v0, v1, v2, v3) = (dst(jj), dst(4 + jj), dst(8 + jj), dst(12 + jj));
                        for tx in 0..tiles_w {
                            let [b0, b1, b2, b3] = wino_bt([a0[tx], a1[tx], a2[tx], a3[tx]]);
                            v0[tx] = b0;
                            v1[tx] = b1;
                            v2[tx] = b2;
                            v3[tx] = b3;
                        }
                    }
                }
            },
        );
        for e in 0..16 {
            // SAFETY: M[e] `[co, n]`, U[e] `[co, ci]`, V[e] `[ci, n]`, all row-major in bounds.
            unsafe {
                gemm_rows(
                    [co, n, ci],
                    m.as_mut_ptr().add(e * co * n),
                    n,
                    u.as_ptr().add(e * co * ci),
                    (v.as_ptr().add(e * ci * n), false),
                    gemm_par,
                );
            }
        }
        let m = &*m;
        // Vertical transform on contiguous tile rows of M, then the horizontal one
        // interleaved into the output rows.
        (0..co).into_par_iter().for_each_init(
            || vec![0f32; 8 * tiles_w],
            |am, o| {
                let bias = bv.map_or(0.0, |bv| bv[o]);
                for ty in t0..t1 {
                    let t = (ty - t0) * tiles_w;
                    for jj in 0..4 {
                        let r = |i: usize| &m[((4 * i + jj) * co + o) * n + t..][..tiles_w];
                        let (m0, m1, m2, m3) = (r(0), r(1), r(2), r(3));
                        let (top, bottom) = am.split_at_mut(4 * tiles_w);
                        let top = &mut top[jj * tiles_w..][..tiles_w];
                        let bottom = &mut bottom[jj * tiles_w..][..tiles_w];
                        for tx in 0..tiles_w {
                            let [y0, y1] = wino_at([m0[tx], m1[tx], m2[tx], m3[tx]]);
                            top[tx] = y0;
                            bottom[tx] = y1;
                        }
                    }
                    for i in 0..2 {
                        let y = 2 * ty + i;
                        if y >= oh {
                            continue;
                        }
                        let c = |jj: usize| &am[(i * 4 + jj) * tiles_w..][..tiles_w];
                        let (c0, c1, c2, c3) = (c(0), c(1), c(2), c(3));
                        // SAFETY: output channel o of image bi, rows of this band only:
                        // disjoint across channels and bands.
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(
                                (out_ptr as *mut f32).add((bi * co + o) * plane + y * ow),
                                ow,
                            )
                        };
                        let (pairs, tail) = row.split_at_mut(ow / 2 * 2);
                        for (tx, pair) in pairs.chunks_exact_mut(2).enumerate() {
                            let [a, b] = wino_at([c0[tx], c1[tx], c2[tx], c3[tx]]);
                            pair[0] = a + bias;
                            pair[1] = b + bias;
                        }
                        if let Some(last) = tail.first_mut() {
                            let tx = tiles_w - 1;
                            *last = wino_at([c0[tx], c1[tx], c2[tx], c3[tx]])[0] + bias;
                        }
                    }
                }
            },
        );
    };
    for_each_job(jobs, || (Vec::new(), Vec::new()), run_band);
    out
}

/// `G g` for one 3-vector: `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]`.
#[cfg(feature = "flex")]
fn wino_g([g0, g1, g2]: [f32; 3]) -> [f32; 4] {
    [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]
}

/// `Bᵀ d` for one 4-vector: `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`.
#[cfg(feature = "flex")]
fn wino_bt([d0, d1, d2, d3]: [f32; 4]) -> [f32; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// `Aᵀ m` for one 4-vector: `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`.
#[cfg(feature = "flex")]
fn wino_at([m0, m1, m2, m3]: [f32; 4]) -> [f32; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

#[cfg(test)]
mod tests {
    /// The polynomial `exp` stays within 4 ulp (relative 5e-7) of the exact value over the
    /// range the activations feed it, and saturates instead of overflowing.
    #[test]
    fn exp_is_within_a_few_ulp() {
        let mut worst = 0f64;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3;
            let got = super::exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert!(super::exp(1e4).is_finite() && super::exp(-1e4) >= 0.0);
        assert!(super::silu(-1e4).abs() < 1e-30);
        assert!((super::gelu_tanh(20.0) - 20.0).abs() < 1e-6);
        // erf against its f64 series: A&S 7.1.26's 1.5e-7, plus f32 cancellation in
        // 1 − p·e^{−x²} near 0 (measured worst 4.7e-7 at x = −0.045).
        for i in -4000..=4000 {
            let x = i as f32 * 1e-3;
            let want = erf_f64(x as f64);
            assert!((super::erf(x) as f64 - want).abs() < 5e-7, "erf({x})");
        }
    }

    /// erf by its Taylor series (converges well on |x| <= 4 in f64 with enough terms).
    fn erf_f64(x: f64) -> f64 {
        if x.abs() > 3.5 {
            return x.signum() * (1.0 - (-x * x).exp() / (x.abs() * std::f64::consts::PI.sqrt()));
        }
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }
}
