//! A small seeded random generator that draws on the host, so that every backend (CPU, CUDA,
//! WGPU) receives the same noise for the same seed.
//!
//! - Uniforms: xoshiro256++ (Blackman & Vigna), its 256-bit state filled from the seed by
//!   SplitMix64; `next_f64` takes the top 53 bits, giving `[0, 1)`.
//! - Normals: Box–Muller on two uniforms, `r = sqrt(-2 ln(1 - u1))`, giving the pair
//!   `(r cos 2πu2, r sin 2πu2)`; the second value of each pair is kept for the next draw, so the
//!   stream does not depend on how draws are grouped into calls.
//!
//! This is not PyTorch's generator: seeds do not reproduce `torch.randn` images.

use faceclip_core::{Device, Tensor, TensorData};

/// Seeded host-side random generator (xoshiro256++ + Box–Muller).
#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    s: [u64; 4],
    spare: Option<f64>,
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Generator {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Self { s, spare: None }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform value in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One standard normal value (Box–Muller, float64).
    pub fn next_normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `n` standard normal values as float32.
    pub fn randn_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_normal() as f32).collect()
    }

    /// A standard normal tensor of `shape` (filled row-major on the host, then moved to `device`).
    pub fn randn<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Tensor<D> {
        let n = shape.iter().product();
        Tensor::from_data(TensorData::new(self.randn_vec(n), shape.to_vec()), device)
    }

    /// A standard normal tensor of `like`'s shape, device and float type.
    pub fn randn_like<const D: usize>(&mut self, like: &Tensor<D>) -> Tensor<D> {
        let shape = like.dims();
        let n = shape.iter().product();
        Tensor::from_data(
            TensorData::new(self.randn_vec(n), shape.to_vec()),
            (&like.device(), like.dtype()),
        )
    }
}

impl Default for Generator {
    /// Seed 0.
    fn default() -> Self {
        Self::new(0)
    }
}
