//! PyTorch's CPU random generator, reproduced bit for bit, so that a seed gives the same initial
//! noise as `torch.randn(shape, generator=torch.Generator().manual_seed(seed))`.
//!
//! - Engine: Mersenne Twister mt19937, seeded from the low 32 bits of the seed with the
//!   reference `init_genrand` recurrence, as `torch.manual_seed` does (so `2**32 + 5` and `5`
//!   give the same stream). `random()` is one 32-bit output, `random64()` is two (first one high).
//! - Uniforms: float32 `(random() & (2^24 - 1)) * 2^-24`, float64
//!   `(random64() & (2^53 - 1)) * 2^-53`.
//! - `randn` of fewer than 16 elements (torch's scalar path): element by element, float64
//!   Box–Muller `r = sqrt(-2 log1p(-u2))`, `θ = 2π u1`, returning `r cos θ` and keeping `r sin θ`
//!   for the next scalar draw, rounded to float32. The kept value lives in the generator and
//!   survives later calls (as in torch), until the generator is re-seeded.
//! - `randn` of 16 or more elements (torch's vectorised `normal_fill`): all `n` float32 uniforms
//!   are drawn first; each whole block of 16 becomes 16 normals, pairing `u[i]` (`1 - u` goes to
//!   the logarithm) with `u[i + 8]` (the angle): `r cos θ` lands at `i`, `r sin θ` at `i + 8`. When
//!   `n` is not a multiple of 16, 16 fresh uniforms then overwrite the last 16 places and are
//!   transformed the same way (the overlap with the last whole block is recomputed). This path
//!   neither reads nor writes the scalar path's kept value.
//!
//! The float32 block transform is where torch's builds differ ([`TorchKernel`]): on x86-64 with
//! AVX2 (AVX-512 CPUs included, torch does not dispatch `normal_` to AVX-512) it uses Cephes-style
//! polynomial `log`/`sincos` (`avx_mathfun.h`) compiled with fused multiply-adds; elsewhere it
//! calls the C library's `logf`/`cosf`/`sinf`. Both are reproduced exactly: checked bit for bit
//! against torch 2.15 (`tests/torch_rng.rs`, fixture `tests/data/torch_randn.safetensors`). The
//! portable kernel and the scalar path call the platform's libm (as torch does), so they match
//! torch on the same platform (checked on Linux/glibc).

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use faceclip_core::{Device, Error, Result, Tensor, TensorData};

use super::Generator;

const MT_N: usize = 624;
const MT_M: usize = 397;

/// The mt19937 engine (32-bit outputs).
#[derive(Clone, PartialEq, Eq)]
struct Mt19937 {
    state: [u32; MT_N],
    /// Index of the next output word in `state`; `MT_N` means a new block must be generated.
    pos: usize,
}

impl Mt19937 {
    fn new(seed: u64) -> Self {
        let mut state = [0u32; MT_N];
        // torch keeps the 64-bit seed but the engine only sees its low 32 bits
        state[0] = seed as u32;
        for j in 1..MT_N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        Self { state, pos: MT_N }
    }

    /// Regenerates the 624 state words (the "twist").
    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for k in 0..MT_N {
            let y = (self.state[k] & UPPER) | (self.state[(k + 1) % MT_N] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[k] = self.state[(k + MT_M) % MT_N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.pos >= MT_N {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}

impl fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mt19937")
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

/// Which build of torch's float32 `normal_` kernel (tensors of 16 or more elements) to
/// reproduce; tensors of fewer elements take the same float64 path in every build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TorchKernel {
    /// x86-64 CPUs with AVX2 and FMA, AVX-512 ones included: what torch runs on nearly every
    /// x86-64 machine.
    #[default]
    Avx2,
    /// The portable kernel (`ATEN_CPU_CAPABILITY=default`, ARM builds), calling libm's
    /// `logf`/`cosf`/`sinf`.
    Portable,
}

/// PyTorch's CPU generator (`torch.Generator()`): mt19937 plus torch's normal sampling, drawn on
/// the host so every backend receives the same noise.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchGenerator {
    mt: Mt19937,
    seed: u64,
    /// The second value of the scalar path's last Box–Muller pair, not yet used.
    next_normal: Option<f64>,
    kernel: TorchKernel,
}

impl TorchGenerator {
    /// A generator in the state `torch.Generator().manual_seed(seed)` (or `torch.manual_seed`)
    /// leaves the CPU generator in, with the AVX2 kernel.
    pub fn new(seed: u64) -> Self {
        Self::with_kernel(seed, TorchKernel::default())
    }

    /// [`TorchGenerator::new`] reproducing the given torch kernel for tensors of 16+ elements.
    pub fn with_kernel(seed: u64, kernel: TorchKernel) -> Self {
        Self {
            mt: Mt19937::new(seed),
            seed,
            next_normal: None,
            kernel,
        }
    }

    /// The seed given (torch's `initial_seed()`).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The kernel reproduced for tensors of 16 or more elements.
    pub fn kernel(&self) -> TorchKernel {
        self.kernel
    }

    /// The next 32 random bits (torch's `random()`).
    pub fn next_u32(&mut self) -> u32 {
        self.mt.next_u32()
    }

    /// The next 64 random bits: two 32-bit outputs, the first one high (torch's `random64()`).
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.mt.next_u32();
        let lo = self.mt.next_u32();
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// A float32 uniform in `[0, 1)` with 24 random bits.
    fn uniform_f32(&mut self) -> f32 {
        (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// A float64 uniform in `[0, 1)` with 53 random bits.
    fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() & ((1u64 << 53) - 1)) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One standard normal value of torch's scalar path (`normal_distribution<double>`), using
    /// the kept second value of the previous pair when there is one.
    pub fn next_normal(&mut self) -> f64 {
        if let Some(z) = self.next_normal.take() {
            return z;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * PI * u1;
        self.next_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `torch.randn(n)` from this generator: `n` standard normal float32 values.
    pub fn randn_vec(&mut self, n: usize) -> Vec<f32> {
        if n < 16 {
            // `* 1.0 + 0.0`: torch's `val * std + mean` (turns -0.0 into +0.0)
            return (0..n)
                .map(|_| (self.next_normal() * 1.0 + 0.0) as f32)
                .collect();
        }
        let mut out: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for block in out.chunks_exact_mut(16) {
            self.kernel.transform_16(block);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut out[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            self.kernel.transform_16(tail);
        }
        out
    }

    /// `torch.randn(shape)` from this generator (row-major on the host, then moved to `device`).
    pub fn randn<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Tensor<D> {
        let n = shape.iter().product();
        Tensor::from_data(TensorData::new(self.randn_vec(n), shape.to_vec()), device)
    }

    /// A standard normal tensor of `like`'s shape, device and float type (drawn as float32).
    pub fn randn_like<const D: usize>(&mut self, like: &Tensor<D>) -> Tensor<D> {
        let shape = like.dims();
        let n = shape.iter().product();
        Tensor::from_data(
            TensorData::new(self.randn_vec(n), shape.to_vec()),
            (&like.device(), like.dtype()),
        )
    }
}

impl Default for TorchGenerator {
    /// Seed 0.
    fn default() -> Self {
        Self::new(0)
    }
}

impl TorchKernel {
    /// Box–Muller on one block of 16 uniforms, in place.
    fn transform_16(self, block: &mut [f32]) {
        match self {
            Self::Avx2 => {
                let two_pi = (2.0 * PI) as f32;
                for j in 0..8 {
                    let radius = (-2.0 * cephes_logf(1.0 - block[j])).sqrt();
                    let (sin, cos) = cephes_sincosf(two_pi * block[j + 8]);
                    // the kernel ends with fma(n, std = 1, mean = 0)
                    block[j] = (radius * cos).mul_add(1.0, 0.0);
                    block[j + 8] = (radius * sin).mul_add(1.0, 0.0);
                }
            }
            Self::Portable => {
                for j in 0..8 {
                    let radius = (-2.0 * (1.0 - block[j]).ln()).sqrt();
                    // the angle is computed in float64 and rounded once to float32
                    let theta = (2.0 * PI * f64::from(block[j + 8])) as f32;
                    block[j] = radius * theta.cos() * 1.0 + 0.0;
                    block[j + 8] = radius * theta.sin() * 1.0 + 0.0;
                }
            }
        }
    }
}

/// Float constants written as C double literals converted to float, as `avx_mathfun.h` has them.
const fn c(v: f64) -> f32 {
    v as f32
}

/// Natural logarithm of `x` in `(0, 1]` as torch's AVX2 build computes it (Cephes `logf`:
/// mantissa in `[√½, √2)`, degree-9 polynomial, exponent added in two parts), with the fused
/// multiply-adds its compiler forms. Only called on `(0, 1]`.
fn cephes_logf(x: f32) -> f32 {
    const P: [f64; 9] = [
        7.037_683_629_2E-2,
        -1.151_461_031_0E-1,
        1.167_699_874_0E-1,
        -1.242_014_084_6E-1,
        1.424_932_278_7E-1,
        -1.666_805_766_5E-1,
        2.000_071_476_5E-1,
        -2.499_999_399_3E-1,
        3.333_333_117_4E-1,
    ];
    let sqrt_half = c(std::f64::consts::FRAC_1_SQRT_2);
    let q1 = c(-2.121_944_40e-4);
    let q2 = c(0.693_359_375);
    // denormals are clamped to the smallest normal
    let bits = x.max(f32::from_bits(0x0080_0000)).to_bits();
    let mut e = ((bits >> 23) as i32 - 0x7f) as f32 + 1.0;
    // mantissa scaled to [0.5, 1)
    let m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let x = if m < sqrt_half {
        e -= 1.0;
        (m - 1.0) + m
    } else {
        m - 1.0
    };
    let z = x * x;
    let mut y = c(P[0]);
    for &p in &P[1..] {
        y = y.mul_add(x, c(p));
    }
    y = (y * x).mul_add(z, e * q1);
    y -= z * 0.5;
    (x + y) + e * q2
}

/// `(sin x, cos x)` as torch's AVX2 build computes them (Cephes `sinf`/`cosf`: octant
/// reduction by `4/π` with a three-part `π/4`, one polynomial per function), with the fused
/// multiply-adds its compiler forms. Accurate for `|x| < 8192`; the kernel passes `[0, 2π)`.
fn cephes_sincosf(x: f32) -> (f32, f32) {
    const SIGN: u32 = 0x8000_0000;
    let dp1 = c(-0.785_156_25);
    let dp2 = c(-2.418_756_484_985_351_6e-4);
    let dp3 = c(-3.774_894_977_445_941e-8);
    let four_over_pi = c(1.273_239_544_735_16);
    let sin_sign_in = x.to_bits() & SIGN;
    let ax = x.abs();
    // octant, rounded up to even (truncating float-to-int conversion first)
    let j = ((ax * four_over_pi) as i32 + 1) & !1;
    let jf = j as f32;
    let sin_sign = sin_sign_in ^ (((j & 4) as u32) << 29);
    let cos_sign = ((!(j - 2) & 4) as u32) << 29;
    let use_cos_poly_for_sin = (j & 2) != 0;
    let r = jf.mul_add(dp3, jf.mul_add(dp2, jf.mul_add(dp1, ax)));
    let z = r * r;
    // cos polynomial on [-π/4, π/4]
    let mut yc = c(2.443_315_711_809_948E-5);
    yc = yc.mul_add(z, c(-1.388_731_625_493_765E-3));
    yc = yc.mul_add(z, c(4.166_664_568_298_827E-2));
    yc = (yc * z).mul_add(z, -(z * 0.5)) + 1.0;
    // sin polynomial on [-π/4, π/4]
    let mut ys = c(-1.951_529_589_1E-4);
    ys = ys.mul_add(z, c(8.332_160_873_6E-3));
    ys = ys.mul_add(z, c(-1.666_665_461_1E-1));
    ys = (ys * z).mul_add(r, r);
    // each result takes one polynomial; the other is zeroed by a subtraction, as the kernel does
    let (sin_part_c, sin_part_s) = if use_cos_poly_for_sin {
        (yc, 0.0)
    } else {
        (0.0, ys)
    };
    let sin = sin_part_c + sin_part_s;
    let cos = (yc - sin_part_c) + (ys - sin_part_s);
    (
        f32::from_bits(sin.to_bits() ^ sin_sign),
        f32::from_bits(cos.to_bits() ^ cos_sign),
    )
}

/// Where the initial latent noise comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NoiseSource {
    /// This crate's own [`Generator`] (xoshiro256++): `Generator::new(seed).randn([n, C, H, W])`.
    #[default]
    Faceclip,
    /// PyTorch's CPU generator ([`TorchGenerator`]), as diffusers' `randn_tensor` with one
    /// generator per image: image `i` is `torch.randn([1, C, H, W], manual_seed(seed + i))`.
    Torch,
}

impl NoiseSource {
    /// The names [`FromStr`] accepts and [`fmt::Display`] writes.
    pub const NAMES: &'static [&'static str] = &["faceclip", "torch"];

    /// The name of this source.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Faceclip => "faceclip",
            Self::Torch => "torch",
        }
    }
}

impl fmt::Display for NoiseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NoiseSource {
    type Err = Error;

    /// `faceclip` or `torch` (case and surrounding blanks do not matter).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "faceclip" => Ok(Self::Faceclip),
            "torch" => Ok(Self::Torch),
            _ => Err(Error::invalid(format!(
                "unknown noise source `{s}`; expected one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }
}

/// The initial latents of `n` images of per-image shape `chw = [C, H, W]`, as a `[n, C, H, W]`
/// tensor on `device` (unscaled: multiply by the scheduler's `init_noise_sigma`).
///
/// With [`NoiseSource::Torch`] image `i` is drawn from `TorchGenerator::new(seed + i)`
/// (wrapping), which for `n == 1` is `torch.randn([1, C, H, W], generator=manual_seed(seed))`;
/// with [`NoiseSource::Faceclip`] all `n` images come from one `Generator::new(seed)`.
pub fn initial_noise(
    source: NoiseSource,
    seed: u64,
    n: usize,
    chw: [usize; 3],
    device: &Device,
) -> Tensor<4> {
    let [c, h, w] = chw;
    match source {
        NoiseSource::Faceclip => Generator::new(seed).randn([n, c, h, w], device),
        NoiseSource::Torch => {
            let per_image = c * h * w;
            let mut data = Vec::with_capacity(n * per_image);
            for i in 0..n {
                let mut g = TorchGenerator::new(seed.wrapping_add(i as u64));
                data.extend(g.randn_vec(per_image));
            }
            Tensor::from_data(TensorData::new(data, vec![n, c, h, w]), device)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference mt19937 (seed 5489) gives 4123659995 as its 10000th output (C++11
    /// `std::mt19937` requirement).
    #[test]
    fn mt19937_matches_the_cpp_standard() {
        let mut g = TorchGenerator::new(5489);
        let v = (0..10_000).map(|_| g.next_u32()).last();
        assert_eq!(v, Some(4_123_659_995));
    }

    #[test]
    fn only_the_low_32_bits_of_the_seed_reach_the_engine() {
        let mut a = TorchGenerator::new(7);
        let mut b = TorchGenerator::new((1 << 32) + 7);
        assert_eq!(a.randn_vec(40), b.randn_vec(40));
        assert_eq!(b.seed(), (1 << 32) + 7);
    }

    #[test]
    fn scalar_path_keeps_the_second_normal_across_calls() {
        let mut a = TorchGenerator::new(1);
        let whole = a.randn_vec(3);
        let mut b = TorchGenerator::new(1);
        let mut parts = b.randn_vec(1);
        parts.extend(b.randn_vec(2));
        assert_eq!(whole, parts);
        // the vectorised path leaves the kept value alone
        let mut c = TorchGenerator::new(1);
        c.randn_vec(1);
        let kept = c.next_normal;
        c.randn_vec(16);
        assert_eq!(c.next_normal, kept);
    }

    #[test]
    fn cephes_functions_are_close_to_libm() {
        for i in 1..=1000 {
            let u = i as f32 / 1000.0;
            assert!((cephes_logf(u) - u.ln()).abs() <= 2e-7 * u.ln().abs().max(1.0));
            let t = u * std::f32::consts::TAU;
            let (s, c) = cephes_sincosf(t);
            assert!(
                (s - t.sin()).abs() < 5e-7 && (c - t.cos()).abs() < 5e-7,
                "{t}"
            );
        }
    }

    #[test]
    fn noise_source_names_round_trip() {
        for &name in NoiseSource::NAMES {
            let s: NoiseSource = name.parse().unwrap();
            assert_eq!(s.to_string(), name);
        }
        assert_eq!(
            " Torch ".parse::<NoiseSource>().unwrap(),
            NoiseSource::Torch
        );
        assert!(matches!(
            "numpy".parse::<NoiseSource>(),
            Err(Error::InvalidInput(_))
        ));
        assert_eq!(NoiseSource::default(), NoiseSource::Faceclip);
    }
}
