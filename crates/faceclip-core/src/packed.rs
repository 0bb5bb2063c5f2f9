//! Linear-layer weights packed once, at load, for the CPU GEMM kernel that multiplies by them.
//!
//! burn-flex's matmul (the `gemm` crate) re-packs its right operand on every call: for a linear
//! layer that is the whole weight, every step (a fifth of a T5 layer's time, by profile). Here
//! the weight `[n, k]` is stored as the kernel reads it, in panels of `NR` output features
//! (`[n / NR][k][NR]`, the transpose of each `NR`-row slab), so a product only streams it. The
//! left operand (activations, `[m, k]` row-major) is read in place, one broadcast per element
//! and row; the bias is the output's starting value; bf16 weights are multiplied with f32
//! accumulation: widened in registers on AVX2, by VDPBF16PS (pairs of `k` interleaved per
//! column) on CPUs with AVX-512 BF16.
//!
//! The packing is a permutation of the weight: the same bytes as the tensor it replaces (plus
//! zero padding of the last panel). Kernels are picked at run time ([`CpuKernel::detect`]);
//! `FACECLIP_CPU_KERNEL=off|avx2|avx512` overrides the pick (`off`: burn-flex's matmul).

use half::bf16;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// A GEMM micro-kernel of this module, by instruction set and weight type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuKernel {
    /// AVX2 + FMA, f32 weights: 6x16 output tiles.
    Avx2F32,
    /// AVX2 + FMA, bf16 weights widened to f32 in registers (activations widened once per
    /// product): 6x16 tiles, f32 accumulation.
    Avx2Bf16,
    /// AVX-512F, f32 weights: 12x32 tiles.
    Avx512F32,
    /// AVX-512 BF16 (VDPBF16PS), bf16 weights and activations, f32 accumulation: 12x32 tiles.
    Avx512Bf16,
}

/// Columns of `k` one micro-kernel call multiplies (one slice of a panel: `KC·NR` weights).
const KC: usize = 256;
/// Rows of the left operand one job covers (a multiple of every kernel's `MR`).
const MC: usize = 96;
/// Output columns one job covers at most.
const NC: usize = 128;

impl CpuKernel {
    /// Every kernel, for tests and benches.
    pub const ALL: [CpuKernel; 4] =
        [CpuKernel::Avx2F32, CpuKernel::Avx2Bf16, CpuKernel::Avx512F32, CpuKernel::Avx512Bf16];

    /// The best kernel this CPU runs for weights in bf16 (`bf16`) or f32, or `None` (no AVX2,
    /// not x86-64, or `FACECLIP_CPU_KERNEL=off`): then linear layers take burn-flex's matmul.
    pub fn detect(bf16: bool) -> Option<Self> {
        let choice = std::env::var("FACECLIP_CPU_KERNEL").unwrap_or_default();
        let candidates: &[CpuKernel] = match (choice.trim(), bf16) {
            ("off", _) => &[],
            ("avx2", false) => &[Self::Avx2F32],
            ("avx2", true) => &[Self::Avx2Bf16],
            (_, false) => &[Self::Avx512F32, Self::Avx2F32],
            (_, true) => &[Self::Avx512Bf16, Self::Avx2Bf16],
        };
        candidates.iter().copied().find(|k| k.supported())
    }

    /// Whether this CPU has the instructions the kernel needs.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 =
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            let avx512 = std::is_x86_feature_detected!("avx512f");
            match self {
                Self::Avx2F32 | Self::Avx2Bf16 => avx2,
                Self::Avx512F32 => avx512,
                Self::Avx512Bf16 => avx512 && std::is_x86_feature_detected!("avx512bf16"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// A short name for logs and bench lines (`avx512_bf16 12x32`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx2F32 => "avx2+fma f32 6x16",
            Self::Avx2Bf16 => "avx2+fma bf16->f32 6x16",
            Self::Avx512F32 => "avx512f f32 12x32",
            Self::Avx512Bf16 => "avx512_bf16 vdpbf16ps 12x32",
        }
    }

    /// Whether the kernel keeps its weights in bf16.
    pub fn is_bf16(self) -> bool {
        matches!(self, Self::Avx2Bf16 | Self::Avx512Bf16)
    }

    /// Output columns per panel (also the attention kernel's key panels and register tiles).
    pub(crate) fn nr(self) -> usize {
        match self {
            Self::Avx2F32 | Self::Avx2Bf16 => 16,
            Self::Avx512F32 | Self::Avx512Bf16 => 32,
        }
    }

    /// `k` per weight pair: VDPBF16PS multiplies two consecutive `k` per 32-bit lane.
    fn k_pair(self) -> usize {
        if self == Self::Avx512Bf16 { 2 } else { 1 }
    }
}

#[derive(Clone)]
enum Panels {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
}

/// A linear layer's weight `[n, k]` (`torch.nn.Linear.weight`: out x in) packed for one
/// [`CpuKernel`]; [`PackedMatrix::matmul_t`] computes `x · Wᵀ + bias`.
#[derive(Clone)]
pub struct PackedMatrix {
    kernel: CpuKernel,
    n: usize,
    k: usize,
    /// `k` rounded up to the kernel's pair size: the stored length of a panel's rows.
    kp: usize,
    panels: Panels,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("kernel", &self.kernel)
            .field("dims", &[self.n, self.k])
            .finish()
    }
}

/// The left operand of a product: activations `[m, k]` row-major, in the model's float type.
#[derive(Clone, Copy, Debug)]
pub enum Lhs<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
}

impl Lhs<'_> {
    fn len(&self) -> usize {
        match self {
            Lhs::F32(x) => x.len(),
            Lhs::Bf16(x) => x.len(),
        }
    }
}

impl PackedMatrix {
    /// Packs the row-major weight `w` `[n, k]` for `kernel` (rounding to bf16, to nearest even,
    /// for the bf16 kernels). Fails when the CPU lacks the kernel or `w` is not `n·k` long.
    pub fn pack(kernel: CpuKernel, n: usize, k: usize, w: &[f32]) -> Result<Self> {
        if !kernel.supported() {
            return Err(Error::invalid(format!(
                "CPU kernel {} is not supported by this CPU",
                kernel.name()
            )));
        }
        if n.checked_mul(k) != Some(w.len()) || n == 0 || k == 0 {
            return Err(Error::invalid(format!(
                "packing a [{n}, {k}] weight from {} values",
                w.len()
            )));
        }
        let nr = kernel.nr();
        let pair = kernel.k_pair();
        let kp = k.div_ceil(pair) * pair;
        let panel = nr * kp;
        let len = n.div_ceil(nr) * panel;
        // Element (row r, column c) of the weight sits in panel r / NR at (c / pair) · NR · pair
        // + (r % NR) · pair + c % pair.
        fn fill<T: Copy + Send>(
            out: &mut [T],
            w: &[f32],
            [n, k, nr, pair, panel]: [usize; 5],
            conv: impl Fn(f32) -> T + Sync,
        ) {
            out.par_chunks_mut(panel).enumerate().for_each(|(p, dst)| {
                for j in 0..nr.min(n - p * nr) {
                    let row = &w[(p * nr + j) * k..(p * nr + j + 1) * k];
                    for (c, &v) in row.iter().enumerate() {
                        dst[(c / pair) * nr * pair + j * pair + c % pair] = conv(v);
                    }
                }
            });
        }
        let dims = [n, k, nr, pair, panel];
        let panels = if kernel.is_bf16() {
            let mut out = vec![bf16::ZERO; len];
            fill(&mut out, w, dims, bf16::from_f32);
            Panels::Bf16(out)
        } else {
            let mut out = vec![0f32; len];
            fill(&mut out, w, dims, |v| v);
            Panels::F32(out)
        };
        Ok(Self { kernel, n, k, kp, panels })
    }

    /// `[n, k]`: out features, in features.
    pub fn dims(&self) -> [usize; 2] {
        [self.n, self.k]
    }

    /// The kernel the weight is packed for.
    pub fn kernel(&self) -> CpuKernel {
        self.kernel
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        match &self.panels {
            Panels::F32(v) => v.len() * 4,
            Panels::Bf16(v) => v.len() * 2,
        }
    }

    /// The weight back as row-major `[n, k]` f32 (bf16 values widened exactly).
    pub fn unpack(&self) -> Vec<f32> {
        let (nr, pair) = (self.kernel.nr(), self.kernel.k_pair());
        let at = |r: usize, c: usize| {
            let i = (r / nr) * nr * self.kp + (c / pair) * nr * pair + (r % nr) * pair + c % pair;
            match &self.panels {
                Panels::F32(v) => v[i],
                Panels::Bf16(v) => v[i].to_f32(),
            }
        };
        (0..self.n * self.k).map(|i| at(i / self.k, i % self.k)).collect()
    }

    /// `x · Wᵀ (+ bias)`: `x` `[m, k]` row-major, `bias` `[n]`; returns `[m, n]` row-major f32.
    /// The bf16 kernels take either input type (f32 activations are rounded to bf16 for
    /// VDPBF16PS); f32 kernels widen bf16 activations.
    ///
    /// # Panics
    /// When `x` is not `m·k` long or `bias` not `n`: the caller's shapes are a bug then.
    pub fn matmul_t(&self, x: Lhs<'_>, m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k, "PackedMatrix::matmul_t: x is not [m, k]");
        let mut out = vec![0f32; m * n];
        if let Some(b) = bias {
            assert_eq!(b.len(), n, "PackedMatrix::matmul_t: bias is not [n]");
            out.par_chunks_mut(n).for_each(|row| row.copy_from_slice(b));
        }
        if m == 0 {
            return out;
        }
        // The left operand as the kernel reads it: f32 rows of k, or bf16 rows of kp (even).
        let widened: Vec<f32>;
        let narrowed: Vec<bf16>;
        let lhs: (*const u8, usize) = match (self.kernel, x) {
            (CpuKernel::Avx512Bf16, Lhs::Bf16(x)) if self.kp == k => (x.as_ptr().cast(), k),
            (CpuKernel::Avx512Bf16, x) => {
                let mut v = vec![bf16::ZERO; m * self.kp];
                v.par_chunks_mut(self.kp).enumerate().for_each(|(r, row)| match x {
                    Lhs::F32(x) => {
                        for (d, s) in row.iter_mut().zip(&x[r * k..(r + 1) * k]) {
                            *d = bf16::from_f32(*s);
                        }
                    }
                    Lhs::Bf16(x) => row[..k].copy_from_slice(&x[r * k..(r + 1) * k]),
                });
                narrowed = v;
                (narrowed.as_ptr().cast(), self.kp)
            }
            (_, Lhs::F32(x)) => (x.as_ptr().cast(), k),
            (_, Lhs::Bf16(x)) => {
                let mut v = vec![0f32; m * k];
                v.par_chunks_mut(1 << 14)
                    .zip(x.par_chunks(1 << 14))
                    .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d = s.to_f32()));
                widened = v;
                (widened.as_ptr().cast(), k)
            }
        };
        let b: *const u8 = match &self.panels {
            Panels::F32(v) => v.as_ptr().cast(),
            Panels::Bf16(v) => v.as_ptr().cast(),
        };

        let nr = self.kernel.nr();
        let panels = n.div_ceil(nr);
        let threads = rayon::current_num_threads().max(1);
        // Jobs: tiles of up to MC rows x NC columns, smaller when that leaves threads idle.
        let per_job = (NC / nr).min(panels.div_ceil(2 * threads)).max(1);
        let pchunks = panels.div_ceil(per_job);
        let mc = if pchunks >= 2 * threads {
            MC
        } else {
            let mr = MC / 8; // 12: a multiple of both kernels' MR
            (m.div_ceil(2 * threads).div_ceil(mr) * mr).clamp(mr, MC)
        };
        let mchunks = m.div_ceil(mc);
        let ptrs = (lhs.0 as usize, b as usize, out.as_mut_ptr() as usize);
        let shape = Shape { n, k, kp: self.kp, lda: lhs.1 };
        let kernel = self.kernel;
        (0..mchunks * pchunks).into_par_iter().for_each(|j| {
            let (pc, mcix) = (j / mchunks, j % mchunks);
            let rows = mcix * mc..(m.min((mcix + 1) * mc));
            let cols = pc * per_job..panels.min((pc + 1) * per_job);
            // SAFETY: the kernel was checked to be supported when the matrix was packed; the
            // operands cover [m, lda] (lhs), the panels, and [m, n] (out); this job writes only
            // the output tile rows x cols, which no other job writes.
            unsafe {
                run(
                    kernel,
                    ptrs.0 as *const u8,
                    ptrs.1 as *const u8,
                    ptrs.2 as *mut f32,
                    shape,
                    rows,
                    cols,
                )
            }
        });
        out
    }
}

#[derive(Clone, Copy)]
struct Shape {
    n: usize,
    k: usize,
    kp: usize,
    lda: usize,
}

/// One job: output rows `rows` x panels `panels`, all of `k`.
///
/// # Safety
/// See [`PackedMatrix::matmul_t`]: the kernel is supported and the pointers cover the shapes.
#[allow(unused_variables)]
unsafe fn run(
    kernel: CpuKernel,
    a: *const u8,
    b: *const u8,
    c: *mut f32,
    s: Shape,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded.
    unsafe {
        match kernel {
            CpuKernel::Avx2F32 => x86::avx2_f32(a.cast(), b.cast(), c, s, rows, panels),
            CpuKernel::Avx2Bf16 => x86::avx2_bf16(a.cast(), b.cast(), c, s, rows, panels),
            CpuKernel::Avx512F32 => x86::avx512_f32(a.cast(), b.cast(), c, s, rows, panels),
            CpuKernel::Avx512Bf16 => x86::avx512_bf16(a.cast(), b.cast(), c, s, rows, panels),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no CpuKernel is supported off x86-64");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{KC, Shape};
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// One instruction set's vector operations, as the shared loop nest uses them.
    /// Everything is `#[inline(always)]`: the entry points below carry the target features.
    /// An f32 vector: the accumulator and the output it reads and writes.
    trait Acc: Copy {
        /// f32 lanes per vector.
        const LANES: usize;
        unsafe fn zero() -> Self;
        unsafe fn load(p: *const f32) -> Self;
        unsafe fn store(p: *mut f32, v: Self);
        unsafe fn add(a: Self, b: Self) -> Self;
    }

    macro_rules! acc {
        ($v:ty, $lanes:expr, $zero:ident, $load:ident, $store:ident, $add:ident) => {
            impl Acc for $v {
                const LANES: usize = $lanes;
                #[inline(always)]
                unsafe fn zero() -> $v {
                    unsafe { $zero() }
                }
                #[inline(always)]
                unsafe fn load(p: *const f32) -> $v {
                    unsafe { $load(p) }
                }
                #[inline(always)]
                unsafe fn store(p: *mut f32, v: $v) {
                    unsafe { $store(p, v) }
                }
                #[inline(always)]
                unsafe fn add(a: $v, b: $v) -> $v {
                    unsafe { $add(a, b) }
                }
            }
        };
    }
    acc!(__m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps);
    acc!(__m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps);

    trait Micro {
        /// f32 accumulator vector.
        type V: Acc;
        /// A broadcast element (or pair) of the left operand.
        type AV: Copy;
        /// A vector of packed weights.
        type BV: Copy;
        /// Left operand element type.
        type A: Copy;
        /// Packed weight element type.
        type B: Copy;
        /// A zero of the left operand's type (padding rows).
        const A_ZERO: Self::A;
        /// Output columns per vector.
        const LANES: usize = <Self::V as Acc>::LANES;
        /// `k` consumed per step.
        const KSTEP: usize;
        unsafe fn bcast(p: *const Self::A) -> Self::AV;
        unsafe fn load_b(p: *const Self::B) -> Self::BV;
        unsafe fn madd(c: Self::V, a: Self::AV, b: Self::BV) -> Self::V;
    }

    /// `c[rows x cols] += a · panel` over `ksteps` steps: one MR x NR register tile. `a` is
    /// the packed row tile (`[ksteps][MR][KSTEP]`, rows past `rows` zero); columns past
    /// `cols` are the panel's zero padding.
    #[inline(always)]
    unsafe fn tile<M: Micro, const MR: usize, const NV: usize>(
        ksteps: usize,
        mut a: *const M::A,
        mut b: *const M::B,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
    ) {
        // SAFETY (whole body): the caller passes pointers that cover ksteps steps of the panel
        // and of the packed rows, and a c tile of rows x cols with row stride ldc.
        unsafe {
            let mut acc = [[<M::V as Acc>::zero(); NV]; MR];
            for _ in 0..ksteps {
                let bv: [M::BV; NV] =
                    std::array::from_fn(|v| M::load_b(b.add(v * M::LANES * M::KSTEP)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = M::bcast(a.add(i * M::KSTEP));
                    for (x, &bv) in row.iter_mut().zip(&bv) {
                        *x = M::madd(*x, av, bv);
                    }
                }
                b = b.add(NV * M::LANES * M::KSTEP);
                a = a.add(MR * M::KSTEP);
            }
            if rows == MR && cols == NV * M::LANES {
                for (i, row) in acc.iter().enumerate() {
                    for (v, &x) in row.iter().enumerate() {
                        let p = c.add(i * ldc + v * M::LANES);
                        <M::V as Acc>::store(p, <M::V as Acc>::add(<M::V as Acc>::load(p), x));
                    }
                }
            } else {
                // 12 x 32 is the largest tile of any kernel.
                let mut buf = [0f32; 12 * 32];
                let nr = NV * M::LANES;
                for (i, row) in acc.iter().enumerate() {
                    for (v, &x) in row.iter().enumerate() {
                        <M::V as Acc>::store(buf.as_mut_ptr().add(i * nr + v * M::LANES), x);
                    }
                }
                for i in 0..rows {
                    for j in 0..cols {
                        *c.add(i * ldc + j) += buf[i * nr + j];
                    }
                }
            }
        }
    }

    /// The loop nest of one job: `KC` slices of `k`; per slice the job's rows are packed
    /// MR-interleaved (one contiguous stream per tile, where rows `lda` apart would fight over
    /// the same L1 sets when `lda` is a multiple of 1024), then panels, then `MR`-row tiles:
    /// the panel slice (`KC·NR`) stays in L1 across the row tiles, the packed rows in L2.
    #[inline(always)]
    unsafe fn job<M: Micro, const MR: usize, const NV: usize>(
        a: *const M::A,
        b: *const M::B,
        c: *mut f32,
        s: Shape,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        let nr = NV * M::LANES;
        let tiles = rows.len().div_ceil(MR);
        let slice = KC.div_ceil(M::KSTEP) * MR * M::KSTEP;
        let mut packed = vec![M::A_ZERO; tiles * slice];
        let mut k0 = 0;
        while k0 < s.k {
            let kc = KC.min(s.k - k0);
            let ksteps = kc.div_ceil(M::KSTEP);
            // SAFETY: row r < m of the left operand holds lda >= k0 + ksteps·KSTEP elements
            // (kp for the pair kernel); `packed` holds tiles · slice.
            unsafe {
                for t in 0..tiles {
                    let dst = packed.as_mut_ptr().add(t * slice);
                    for i in 0..MR {
                        let r = rows.start + t * MR + i;
                        if r < rows.end {
                            let src = a.add(r * s.lda + k0);
                            for st in 0..ksteps {
                                for q in 0..M::KSTEP {
                                    *dst.add((st * MR + i) * M::KSTEP + q) =
                                        *src.add(st * M::KSTEP + q);
                                }
                            }
                        } else {
                            for st in 0..ksteps {
                                for q in 0..M::KSTEP {
                                    *dst.add((st * MR + i) * M::KSTEP + q) = M::A_ZERO;
                                }
                            }
                        }
                    }
                }
            }
            for p in panels.clone() {
                let col0 = p * nr;
                let cols = nr.min(s.n - col0);
                // SAFETY: offsets inside the panel (p · NR · kp + k0 · NR, k0 a multiple of the
                // pair size) and inside `packed`; see `tile`.
                unsafe {
                    let bp = b.add(p * nr * s.kp + k0 * nr);
                    for t in 0..tiles {
                        let i0 = rows.start + t * MR;
                        let r = MR.min(rows.end - i0);
                        tile::<M, MR, NV>(
                            ksteps,
                            packed.as_ptr().add(t * slice),
                            bp,
                            c.add(i0 * s.n + col0),
                            s.n,
                            r,
                            cols,
                        );
                    }
                }
            }
            k0 += kc;
        }
    }

    struct Avx2F32;
    impl Micro for Avx2F32 {
        type V = __m256;
        type AV = __m256;
        type BV = __m256;
        type A = f32;
        type B = f32;
        const A_ZERO: f32 = 0.0;
        const KSTEP: usize = 1;
        #[inline(always)]
        unsafe fn bcast(p: *const f32) -> __m256 {
            unsafe { _mm256_broadcast_ss(&*p) }
        }
        #[inline(always)]
        unsafe fn load_b(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn madd(c: __m256, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
    }

    /// AVX2 with bf16 panels: a bf16 is the top half of an f32, so widening is a zero-extend
    /// and a shift.
    struct Avx2Bf16;
    impl Micro for Avx2Bf16 {
        type V = __m256;
        type AV = __m256;
        type BV = __m256;
        type A = f32;
        type B = u16;
        const A_ZERO: f32 = 0.0;
        const KSTEP: usize = 1;
        #[inline(always)]
        unsafe fn bcast(p: *const f32) -> __m256 {
            unsafe { _mm256_broadcast_ss(&*p) }
        }
        #[inline(always)]
        unsafe fn load_b(p: *const u16) -> __m256 {
            unsafe {
                let h = _mm_loadu_si128(p.cast());
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
        }
        #[inline(always)]
        unsafe fn madd(c: __m256, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
    }

    struct Avx512F32;
    impl Micro for Avx512F32 {
        type V = __m512;
        type AV = __m512;
        type BV = __m512;
        type A = f32;
        type B = f32;
        const A_ZERO: f32 = 0.0;
        const KSTEP: usize = 1;
        #[inline(always)]
        unsafe fn bcast(p: *const f32) -> __m512 {
            unsafe { _mm512_set1_ps(*p) }
        }
        #[inline(always)]
        unsafe fn load_b(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn madd(c: __m512, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
    }

    /// VDPBF16PS: each 32-bit lane holds a pair of bf16 (`k`, `k + 1`); the panel interleaves
    /// each column's pairs, the left operand's pair is broadcast as one 32-bit value.
    struct Avx512Bf16;
    impl Micro for Avx512Bf16 {
        type V = __m512;
        type AV = __m512bh;
        type BV = __m512bh;
        type A = u16;
        type B = u16;
        const A_ZERO: u16 = 0;
        const KSTEP: usize = 2;
        #[inline(always)]
        unsafe fn bcast(p: *const u16) -> __m512bh {
            // SAFETY: __m512i and __m512bh are both 64 plain bytes.
            unsafe {
                let pair = std::ptr::read_unaligned(p.cast::<i32>());
                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair))
            }
        }
        #[inline(always)]
        unsafe fn load_b(p: *const u16) -> __m512bh {
            unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast())) }
        }
        #[inline(always)]
        unsafe fn madd(c: __m512, a: __m512bh, b: __m512bh) -> __m512 {
            unsafe { _mm512_dpbf16_ps(c, a, b) }
        }
    }

    // The entry points: one per kernel, compiled for its instruction set.

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2_f32(
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        s: Shape,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        unsafe { job::<Avx2F32, 6, 2>(a, b, c, s, rows, panels) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2_bf16(
        a: *const f32,
        b: *const u16,
        c: *mut f32,
        s: Shape,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        unsafe { job::<Avx2Bf16, 6, 2>(a, b, c, s, rows, panels) }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512_f32(
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        s: Shape,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        unsafe { job::<Avx512F32, 12, 2>(a, b, c, s, rows, panels) }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn avx512_bf16(
        a: *const u16,
        b: *const u16,
        c: *mut f32,
        s: Shape,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        unsafe { job::<Avx512Bf16, 12, 2>(a, b, c, s, rows, panels) }
    }
}
