//! Scaled-dot-product attention as one tiled CPU kernel (flash attention), for the flex backend
//! in f32.
//!
//! burn-flex's attention takes every query row of a head against one 64-key tile at a time: the
//! score tile (`Lq x 64`) and the output accumulator (`Lq x Dv`) are megabytes at the UNet's
//! 3888 tokens and stream through memory once per key tile, and its softmax calls libm's `expf`
//! per score. Here a job is one head's block of [`BQ`] query rows: its scores (`BQ x BK`), its
//! output accumulator and the key/value tile stay in cache, the two products run in register
//! tiles (`MR x W`, like a GEMM micro-kernel), and the softmax is branch-free and vectorised
//! ([`super::host::exp`]). Keys are packed once per head as `W`-wide panels of `Kᵀ`; values are
//! read in rows. Jobs are spread over `batch x heads x query blocks`, so even one head keeps
//! every thread busy.

use rayon::prelude::*;

use crate::packed::CpuKernel;

/// Query rows per job (a multiple of every kernel's `MR`).
const BQ: usize = 48;
/// Keys per tile at most (a multiple of every kernel's `W`), and the row stride of the scores.
const BK: usize = 256;
/// Bytes of keys and values one tile may hold: with the job's own buffers, within a 512 KiB L2.
const KV_TILE_BYTES: usize = 128 << 10;

/// Which keys a query may not see.
#[derive(Clone, Copy)]
pub(crate) enum Masking<'a> {
    None,
    /// Query `i` sees keys `0..=i + (Lk - Lq)` (torch's `is_causal`, aligned at the end).
    Causal,
    /// `true` masks the key; `[B or 1, H or 1, Lq, Lk]` with the leading steps given.
    Bool {
        mask: &'a [bool],
        batch_step: usize,
        head_step: usize,
    },
}

/// An additive score bias `[B or 1, H or 1, Lq, Lk]`: its data and the steps of its leading axes
/// (0 where broadcast).
#[derive(Clone, Copy)]
pub(crate) struct Bias<'a> {
    pub data: &'a [f32],
    pub batch_step: usize,
    pub head_step: usize,
}

/// The shapes of one attention call: `q` `[b, h, lq, d]`, `k` `[b, h, lk, d]`, `v`
/// `[b, h, lk, dv]`, all contiguous.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub b: usize,
    pub h: usize,
    pub lq: usize,
    pub lk: usize,
    pub d: usize,
    pub dv: usize,
}

/// The f32 kernels this module has, by the [`CpuKernel`] that names the instruction set.
pub(crate) fn kernel() -> Option<CpuKernel> {
    CpuKernel::detect(false)
}

/// `softmax(q·kᵀ·scale + bias, masked)·v` → `[b, h, lq, dv]`. Rows whose keys are all masked
/// are zero (as burn-flex's attention gives them). `kernel` must be an f32 kernel this CPU
/// supports.
///
/// # Panics
/// When a slice does not match `dims` or the kernel is not supported: callers' bugs.
pub(crate) fn attention(
    kernel: CpuKernel,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: Dims,
    bias: Option<Bias<'_>>,
    masking: Masking<'_>,
    scale: f32,
) -> Vec<f32> {
    let Dims {
        b,
        h,
        lq,
        lk,
        d,
        dv,
    } = dims;
    assert!(
        kernel.supported() && !kernel.is_bf16(),
        "attention: kernel {kernel:?} not usable"
    );
    assert_eq!(q.len(), b * h * lq * d, "attention: q is not [b, h, lq, d]");
    assert_eq!(k.len(), b * h * lk * d, "attention: k is not [b, h, lk, d]");
    assert_eq!(
        v.len(),
        b * h * lk * dv,
        "attention: v is not [b, h, lk, dv]"
    );
    let mut out = vec![0f32; b * h * lq * dv];
    if out.is_empty() {
        return out;
    }
    let w = kernel.nr(); // keys per Kᵀ panel, output columns per register tile
    let lkp = lk.div_ceil(w) * w;
    let dvp = dv.div_ceil(w) * w;
    // Kᵀ in panels of w keys ([lkp / w][d][w]) and V padded to [lkp][dvp], per head.
    let (kt_len, vp_len) = (lkp * d, lkp * dvp);
    let mut kt = vec![0f32; b * h * kt_len];
    let mut vp = vec![0f32; b * h * vp_len];
    kt.par_chunks_mut(kt_len)
        .zip(vp.par_chunks_mut(vp_len))
        .enumerate()
        .for_each(|(bh, (kt, vp))| {
            let k = &k[bh * lk * d..(bh + 1) * lk * d];
            for (j, row) in k.chunks_exact(d.max(1)).enumerate().take(lk) {
                let panel = &mut kt[(j / w) * d * w..(j / w + 1) * d * w];
                for (e, &x) in row.iter().enumerate() {
                    panel[e * w + j % w] = x;
                }
            }
            let v = &v[bh * lk * dv..(bh + 1) * lk * dv];
            for (dst, src) in vp.chunks_exact_mut(dvp).zip(v.chunks_exact(dv.max(1))) {
                dst[..dv].copy_from_slice(src);
            }
        });

    let qblocks = lq.div_ceil(BQ);
    let out_ptr = out.as_mut_ptr() as usize;
    let bk = (KV_TILE_BYTES / 4 / (d + dvp).max(1) / w * w).clamp(w, BK);
    let job = Job {
        dims,
        dvp,
        bk,
        bias,
        masking,
        scale,
    };
    (0..b * h * qblocks).into_par_iter().for_each_init(
        || Scratch::new(d, dvp),
        |scratch, j| {
            let (bh, qb) = (j / qblocks, j % qblocks);
            let rows = qb * BQ..lq.min((qb + 1) * BQ);
            let q = &q[(bh * lq + rows.start) * d..(bh * lq + rows.end) * d];
            let kt = &kt[bh * kt_len..(bh + 1) * kt_len];
            let vp = &vp[bh * vp_len..(bh + 1) * vp_len];
            // SAFETY: job j writes only rows `rows` of head bh, which no other job writes; the
            // buffer outlives the parallel loop.
            let o = unsafe {
                std::slice::from_raw_parts_mut(
                    (out_ptr as *mut f32).add((bh * lq + rows.start) * dv),
                    rows.len() * dv,
                )
            };
            // SAFETY: `kernel` was checked to be supported above.
            unsafe {
                run(
                    kernel,
                    &job,
                    scratch,
                    Rows {
                        bh,
                        q0: rows.start,
                        q,
                        kt,
                        vp,
                        o,
                    },
                )
            }
        },
    );
    out
}

/// The kernel's name for logs: instruction set and register tile (`avx2+fma 6x16`).
pub(crate) fn name(kernel: CpuKernel) -> &'static str {
    match kernel {
        CpuKernel::Avx512F32 | CpuKernel::Avx512Bf16 => "avx512f 8x32",
        CpuKernel::Avx2F32 | CpuKernel::Avx2Bf16 => "avx2+fma 6x16",
    }
}

/// What every job of one call shares.
struct Job<'a> {
    dims: Dims,
    dvp: usize,
    /// Keys per tile.
    bk: usize,
    bias: Option<Bias<'a>>,
    masking: Masking<'a>,
    scale: f32,
}

/// One thread's working set: the query block, its scores and its output accumulator.
struct Scratch {
    q: Vec<f32>,
    s: Vec<f32>,
    o: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

impl Scratch {
    fn new(d: usize, dvp: usize) -> Self {
        Self {
            q: vec![0.0; BQ * d],
            s: vec![0.0; BQ * BK],
            o: vec![0.0; BQ * dvp],
            max: vec![0.0; BQ],
            sum: vec![0.0; BQ],
        }
    }
}

/// One job's operands: head `bh`, query rows from `q0` (`q`, row-major), that head's packed keys
/// and values, and its output rows.
struct Rows<'a> {
    bh: usize,
    q0: usize,
    q: &'a [f32],
    kt: &'a [f32],
    vp: &'a [f32],
    o: &'a mut [f32],
}

/// One job on the kernel's instruction set.
///
/// # Safety
/// The CPU supports `kernel`.
unsafe fn run(kernel: CpuKernel, job: &Job<'_>, scratch: &mut Scratch, rows: Rows<'_>) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller checked the features.
    unsafe {
        match kernel {
            CpuKernel::Avx512F32 | CpuKernel::Avx512Bf16 => block_avx512(job, scratch, rows),
            CpuKernel::Avx2F32 | CpuKernel::Avx2Bf16 => block_avx2(job, scratch, rows),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, job, scratch, rows);
        unreachable!("no CpuKernel is supported off x86-64");
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(job: &Job<'_>, scratch: &mut Scratch, rows: Rows<'_>) {
    block::<6, 16>(job, scratch, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn block_avx512(job: &Job<'_>, scratch: &mut Scratch, rows: Rows<'_>) {
    block::<8, 32>(job, scratch, rows)
}

/// One head's query rows `q0..q0 + q.len() / d` against all keys, online softmax over key tiles.
/// `MR x W` is the register tile; `W` is also the key panel width of `kt`.
#[inline(always)]
fn block<const MR: usize, const W: usize>(job: &Job<'_>, sc: &mut Scratch, rows: Rows<'_>) {
    let Rows {
        bh,
        q0,
        q,
        kt,
        vp,
        o,
    } = rows;
    let Dims {
        h, lq, lk, d, dv, ..
    } = job.dims;
    let (dvp, scale) = (job.dvp, job.scale);
    let rows = q.len() / d.max(1);
    let rows_p = rows.div_ceil(MR) * MR;
    // The query block as the score kernel reads it: per tile of MR rows, [d][MR] (one
    // contiguous run of broadcasts per step), zero rows up to a whole tile.
    sc.q[..rows_p * d].fill(0.0);
    for (r, row) in q.chunks_exact(d.max(1)).enumerate() {
        let tile = &mut sc.q[(r / MR) * MR * d..];
        for (e, &x) in row.iter().enumerate() {
            tile[e * MR + r % MR] = x;
        }
    }
    sc.o[..rows_p * dvp].fill(0.0);
    sc.max[..rows_p].fill(f32::NEG_INFINITY);
    sc.sum[..rows_p].fill(0.0);
    let (bi, hi) = (bh / h, bh % h);
    let bias = job
        .bias
        .map(|b| &b.data[bi * b.batch_step + hi * b.head_step..]);
    let (mask, causal_end) = match job.masking {
        Masking::None => (None, None),
        // Keys past q + (lk - lq) are hidden from query q.
        Masking::Causal => (None, Some(lk as isize - lq as isize)),
        Masking::Bool {
            mask,
            batch_step,
            head_step,
        } => (Some(&mask[bi * batch_step + hi * head_step..]), None),
    };
    let last_row = (q0 + rows - 1) as isize;

    for k0 in (0..lk).step_by(job.bk) {
        if let Some(off) = causal_end
            && k0 as isize > last_row + off
        {
            break;
        }
        let kn = job.bk.min(lk - k0); // real keys in this tile
        let kw = kn.div_ceil(W) * W; // the panels it spans
        // Scores: s[r][j] = q[r] · k[k0 + j].
        for r0 in (0..rows_p).step_by(MR) {
            for p in (0..kw).step_by(W) {
                let panel = &kt[(k0 + p) * d..(k0 + p + W) * d];
                tile_qk::<MR, W>(
                    &sc.q[r0 * d..(r0 + MR) * d],
                    panel,
                    d,
                    &mut sc.s[r0 * BK + p..],
                );
            }
        }
        // Online softmax, row by row.
        for r in 0..rows {
            let qi = q0 + r;
            let s = &mut sc.s[r * BK..r * BK + kw];
            // Without a bias the scale is applied inside the exponential (one FMA); the max of
            // the raw scores scaled is the max of the scaled ones (scale > 0).
            let mul = match bias {
                Some(b) => {
                    let b = &b[qi * lk + k0..qi * lk + k0 + kn];
                    s[..kn]
                        .iter_mut()
                        .zip(b)
                        .for_each(|(x, b)| *x = *x * scale + b);
                    1.0
                }
                None => scale,
            };
            s[kn..].fill(f32::NEG_INFINITY);
            if let Some(m) = mask {
                let m = &m[qi * lk + k0..qi * lk + k0 + kn];
                s[..kn].iter_mut().zip(m).for_each(|(x, &m)| {
                    if m {
                        *x = f32::NEG_INFINITY
                    }
                });
            }
            if let Some(off) = causal_end {
                let first_hidden = (qi as isize + off + 1 - k0 as isize).clamp(0, kn as isize);
                s[first_hidden as usize..].fill(f32::NEG_INFINITY);
            }
            let tile_max = max_of::<W>(s) * mul;
            let old = sc.max[r];
            let new = old.max(tile_max);
            if new == f32::NEG_INFINITY {
                s.fill(0.0); // every key so far masked: this tile adds nothing
                continue;
            }
            // Only masks, biases and the padding of a partial tile put -inf among the scores.
            let sum = if bias.is_some() || mask.is_some() || causal_end.is_some() || kn < kw {
                exp_sub_sum::<W, true>(s, mul, new)
            } else {
                exp_sub_sum::<W, false>(s, mul, new)
            };
            let corr = if old == f32::NEG_INFINITY {
                0.0
            } else {
                super::host::exp(old - new)
            };
            if corr != 1.0 {
                sc.o[r * dvp..(r + 1) * dvp]
                    .iter_mut()
                    .for_each(|x| *x *= corr);
            }
            sc.sum[r] = sc.sum[r] * corr + sum;
            sc.max[r] = new;
        }
        // Padding rows' scores are zero already (zero queries, finite scale): P there is
        // whatever; their outputs are never copied out.
        for r0 in (0..rows_p).step_by(MR) {
            for c in (0..dvp).step_by(W) {
                let v = &vp[k0 * dvp + c..(k0 + kw - 1) * dvp + c + W];
                tile_pv::<MR, W>(&sc.s[r0 * BK..], kw, v, dvp, &mut sc.o[r0 * dvp + c..]);
            }
        }
    }
    for (r, out) in o.chunks_exact_mut(dv.max(1)).enumerate().take(rows) {
        let l = sc.sum[r];
        let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
        out.iter_mut()
            .zip(&sc.o[r * dvp..r * dvp + dv])
            .for_each(|(o, x)| *o = x * inv);
    }
}

/// `s[r·BK + j] = Σₑ q[e·MR + r]·panel[e·W + j]` for an `MR x W` tile (`q` one packed row tile).
#[inline(always)]
fn tile_qk<const MR: usize, const W: usize>(q: &[f32], panel: &[f32], d: usize, s: &mut [f32]) {
    assert!(q.len() >= d * MR && panel.len() >= d * W && s.len() >= (MR - 1) * BK + W);
    let mut acc = [[0f32; W]; MR];
    let (mut a, mut b) = (q.as_ptr(), panel.as_ptr());
    for _ in 0..d {
        // SAFETY: d steps of MR (a) and W (b) values: within the lengths asserted above.
        unsafe {
            let bv: [f32; W] = std::ptr::read_unaligned(b.cast());
            for (i, acc) in acc.iter_mut().enumerate() {
                let a = *a.add(i);
                for (x, &b) in acc.iter_mut().zip(&bv) {
                    *x = a.mul_add(b, *x);
                }
            }
            a = a.add(MR);
            b = b.add(W);
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        s[i * BK..i * BK + W].copy_from_slice(acc);
    }
}

/// `o[r·ldv + c] += Σⱼ p[r·BK + j]·v[j·ldv + c]` over `j < kw`, for an `MR x W` tile (`o` and `v`
/// share the row stride `ldv`).
#[inline(always)]
fn tile_pv<const MR: usize, const W: usize>(
    p: &[f32],
    kw: usize,
    v: &[f32],
    ldv: usize,
    o: &mut [f32],
) {
    assert!(kw > 0 && p.len() >= (MR - 1) * BK + kw && v.len() >= (kw - 1) * ldv + W);
    assert!(o.len() >= (MR - 1) * ldv + W);
    let mut acc = [[0f32; W]; MR];
    for (i, acc) in acc.iter_mut().enumerate() {
        acc.copy_from_slice(&o[i * ldv..i * ldv + W]);
    }
    let (p, mut b) = (p.as_ptr(), v.as_ptr());
    for j in 0..kw {
        // SAFETY: rows j < kw of v and columns j < kw of MR rows of p, asserted above.
        unsafe {
            let bv: [f32; W] = std::ptr::read_unaligned(b.cast());
            for (i, acc) in acc.iter_mut().enumerate() {
                let a = *p.add(i * BK + j);
                for (x, &b) in acc.iter_mut().zip(&bv) {
                    *x = a.mul_add(b, *x);
                }
            }
            b = b.add(ldv);
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        o[i * ldv..i * ldv + W].copy_from_slice(acc);
    }
}

/// The largest of `s` (a whole number of `W`-chunks), in `W` lanes so that it vectorises.
#[inline(always)]
fn max_of<const W: usize>(s: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; W];
    for c in s.chunks_exact(W) {
        for (m, &x) in m.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    m.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

/// `s = exp(s·mul - max)` (exactly 0 where `s` is -inf when `HIDDEN`; [`super::host::exp`]
/// clamps its argument, so -inf would give 1e-38), returning the sum, in `W` lanes.
#[inline(always)]
fn exp_sub_sum<const W: usize, const HIDDEN: bool>(s: &mut [f32], mul: f32, max: f32) -> f32 {
    let mut acc = [0f32; W];
    for c in s.chunks_exact_mut(W) {
        for (a, x) in acc.iter_mut().zip(c) {
            let e = super::host::exp(x.mul_add(mul, -max));
            *x = if HIDDEN && *x == f32::NEG_INFINITY {
                0.0
            } else {
                e
            };
            *a += *x;
        }
    }
    acc.into_iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1].
    fn values(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f64 * 0.618_034 + seed as f64 * 1.7).sin() * 1e4).sin() as f32)
            .collect()
    }

    /// softmax(q·kᵀ·scale + bias, hidden) · v in f64, one row at a time.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dims: Dims,
        bias: Option<&[f32]>,
        hidden: &dyn Fn(usize, usize, usize) -> bool,
        scale: f64,
    ) -> Vec<f64> {
        let Dims {
            b,
            h,
            lq,
            lk,
            d,
            dv,
        } = dims;
        let mut out = vec![0.0; b * h * lq * dv];
        for bh in 0..b * h {
            for i in 0..lq {
                let s: Vec<f64> = (0..lk)
                    .map(|j| {
                        if hidden(bh, i, j) {
                            return f64::NEG_INFINITY;
                        }
                        let dot: f64 = (0..d)
                            .map(|e| {
                                q[(bh * lq + i) * d + e] as f64 * k[(bh * lk + j) * d + e] as f64
                            })
                            .sum();
                        // The test's bias is [1, h, lq, lk]: broadcast over the batch.
                        dot * scale + bias.map_or(0.0, |bb| bb[((bh % h) * lq + i) * lk + j] as f64)
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if m == f64::NEG_INFINITY {
                    continue;
                }
                let p: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = p.iter().sum();
                for c in 0..dv {
                    out[(bh * lq + i) * dv + c] = (0..lk)
                        .map(|j| p[j] / z * v[(bh * lk + j) * dv + c] as f64)
                        .sum();
                }
            }
        }
        out
    }

    /// Every f32 kernel this CPU runs, against the f64 reference, on shapes that leave partial
    /// query blocks, key tiles, key panels and value columns, with a batch-broadcast bias, a
    /// boolean mask that hides whole rows, and causal masking with `lq != lk`.
    #[test]
    fn kernels_match_the_reference() {
        let dims = Dims {
            b: 2,
            h: 3,
            lq: 53,
            lk: 300,
            d: 40,
            dv: 24,
        };
        let Dims {
            b,
            h,
            lq,
            lk,
            d,
            dv,
        } = dims;
        let q = values(b * h * lq * d, 1);
        let k = values(b * h * lk * d, 2);
        let v = values(b * h * lk * dv, 3);
        let bias = values(h * lq * lk, 4);
        // Hides key j from row i of head bh on a pattern; rows 7 of batch 1 see nothing.
        let hide =
            |bh: usize, i: usize, j: usize| (i * 7 + j * 3 + bh) % 5 == 0 || (bh >= h && i == 7);
        let mask: Vec<bool> = (0..b * h * lq * lk)
            .map(|x| hide(x / (lq * lk), (x / lk) % lq, x % lk))
            .collect();
        let causal = |_: usize, i: usize, j: usize| j > i + (lk - lq);
        let none = |_: usize, _: usize, _: usize| false;
        let mut ran = 0;
        for kernel in [CpuKernel::Avx2F32, CpuKernel::Avx512F32] {
            if !kernel.supported() {
                eprintln!("skipped {}: this CPU lacks its instructions", kernel.name());
                continue;
            }
            ran += 1;
            let cases: [(Option<Bias>, Masking, &dyn Fn(usize, usize, usize) -> bool); 3] = [
                (
                    Some(Bias {
                        data: &bias,
                        batch_step: 0,
                        head_step: lq * lk,
                    }),
                    Masking::None,
                    &none,
                ),
                (
                    None,
                    Masking::Bool {
                        mask: &mask,
                        batch_step: h * lq * lk,
                        head_step: lq * lk,
                    },
                    &hide,
                ),
                (None, Masking::Causal, &causal),
            ];
            for (case, (bias_arg, masking, hidden)) in cases.into_iter().enumerate() {
                let got = attention(kernel, &q, &k, &v, dims, bias_arg, masking, 0.3);
                let want = reference(
                    &q,
                    &k,
                    &v,
                    dims,
                    bias_arg.map(|_| bias.as_slice()),
                    hidden,
                    0.3f32 as f64,
                );
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (*g as f64 - w).abs())
                    .fold(0.0, f64::max);
                assert!(err < 2e-6, "{} case {case}: max error {err}", kernel.name());
            }
            // A fully hidden row comes out zero.
            let got = attention(
                kernel,
                &q,
                &k,
                &v,
                dims,
                None,
                cases_mask(&mask, h, lq, lk),
                0.3,
            );
            let row = ((h + 1) * lq + 7) * dv;
            assert!(got[row..row + dv].iter().all(|&x| x == 0.0));
        }
        eprintln!("{ran} attention kernel(s) executed");
    }

    fn cases_mask(mask: &[bool], h: usize, lq: usize, lk: usize) -> Masking<'_> {
        Masking::Bool {
            mask,
            batch_step: h * lq * lk,
            head_step: lq * lk,
        }
    }
}
