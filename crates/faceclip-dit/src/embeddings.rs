//! FLUX's embeddings (diffusers `embeddings.py`): `FluxPosEmbed` (3-axis RoPE from position
//! ids), `apply_rotary_emb`, and `CombinedTimestepGuidanceTextProjEmbeddings` (time, guidance
//! and pooled-text conditioning) with its parts `TimestepEmbedding` and
//! `PixArtAlphaTextProjection`.

use faceclip_core::layers::{Activation, Linear, timestep_embedding};
use faceclip_core::{Device, Error, Result, Tensor, TensorData, VarBuilder};

/// Sinusoid width of `Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=0)`.
pub const TIME_PROJ_DIM: usize = 256;

/// diffusers' `FluxPosEmbed(theta=10000, axes_dim)`: one rotary embedding per id column,
/// concatenated. Frequencies and angles are computed in `f64` on the host (as diffusers does
/// on every device but MPS), then `cos`/`sin` are cast to `f32`; each frequency is repeated
/// twice, so the pairs `(x[2i], x[2i+1])` rotate together.
#[derive(Debug, Clone, PartialEq)]
pub struct FluxPosEmbed {
    pub theta: f64,
    pub axes_dim: Vec<usize>,
}

impl FluxPosEmbed {
    pub fn new(theta: f64, axes_dim: Vec<usize>) -> Self {
        Self { theta, axes_dim }
    }

    /// Width of the embedding: the sum of the axis widths (= the attention head width).
    pub fn dim(&self) -> usize {
        self.axes_dim.iter().sum()
    }

    /// `(cos, sin)`, each `[rows, dim]` row-major, for `ids` `[rows, axes]` row-major.
    pub fn cos_sin(&self, ids: &[f32], rows: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let axes = self.axes_dim.len();
        if ids.len() != rows * axes {
            return Err(Error::shape(
                "FluxPosEmbed ids",
                &[rows, axes],
                &[ids.len()],
            ));
        }
        let dim = self.dim();
        // 1 / theta^(2i/d) per axis, in f64 (`theta ** (arange(0, d, 2) / d)`).
        let inv: Vec<Vec<f64>> = self
            .axes_dim
            .iter()
            .map(|&d| {
                (0..d / 2)
                    .map(|i| 1.0 / self.theta.powf((2 * i) as f64 / d as f64))
                    .collect()
            })
            .collect();
        let mut cos = Vec::with_capacity(rows * dim);
        let mut sin = Vec::with_capacity(rows * dim);
        for r in 0..rows {
            for (a, freqs) in inv.iter().enumerate() {
                let pos = ids[r * axes + a] as f64;
                for &f in freqs {
                    let angle = pos * f;
                    let (s, c) = (angle.sin() as f32, angle.cos() as f32);
                    cos.extend_from_slice(&[c, c]);
                    sin.extend_from_slice(&[s, s]);
                }
            }
        }
        Ok((cos, sin))
    }

    /// The rotary embedding of `ids` `[L, axes]` (float positions; diffusers' 2-D ids). The ids
    /// are read back to the host, where the `f64` angles are computed.
    pub fn forward(&self, ids: Tensor<2>) -> Result<FluxRotaryEmbedding> {
        let [rows, axes] = ids.dims();
        if axes != self.axes_dim.len() {
            return Err(Error::invalid(format!(
                "position ids have {axes} columns, but the model has {} RoPE axes {:?}",
                self.axes_dim.len(),
                self.axes_dim
            )));
        }
        let device = ids.device();
        let values = faceclip_core::to_vec_f32(ids);
        self.from_host(&values, rows, &device)
    }

    /// As [`FluxPosEmbed::forward`] from host ids `[rows, axes]` (row-major).
    pub fn from_host(
        &self,
        ids: &[f32],
        rows: usize,
        device: &Device,
    ) -> Result<FluxRotaryEmbedding> {
        let (cos, sin) = self.cos_sin(ids, rows)?;
        Ok(FluxRotaryEmbedding::new(cos, sin, rows, self.dim(), device))
    }
}

/// A rotary embedding ready to apply to `[B, L, H, D]` queries and keys: `cos` and a signed
/// `sin` (`-sin` on even lanes, `+sin` on odd ones), each `[1, L, 1, D]`.
#[derive(Debug, Clone)]
pub struct FluxRotaryEmbedding {
    cos: Tensor<4>,
    sin_signed: Tensor<4>,
    len: usize,
    dim: usize,
}

impl FluxRotaryEmbedding {
    /// From `cos` and `sin` `[len, dim]` as `FluxPosEmbed` returns them.
    pub fn new(cos: Vec<f32>, sin: Vec<f32>, len: usize, dim: usize, device: &Device) -> Self {
        // The reference multiplies `-x[2i+1]` by `sin`; `x[2i+1] · (-sin)` is the same number.
        let sin_signed: Vec<f32> = sin
            .iter()
            .enumerate()
            .map(|(i, &s)| if i % 2 == 0 { -s } else { s })
            .collect();
        let up = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, len, 1, dim]), device);
        Self {
            cos: up(cos),
            sin_signed: up(sin_signed),
            len,
            dim,
        }
    }

    /// Number of positions (text + image tokens).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no positions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Head width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `cos` `[L, D]` (for checks against diffusers' `freqs_cos`).
    pub fn cos(&self) -> Tensor<2> {
        self.cos.clone().reshape([self.len, self.dim])
    }

    /// `sin` `[L, D]` (for checks against diffusers' `freqs_sin`).
    pub fn sin(&self) -> Tensor<2> {
        let [_, l, _, d] = self.sin_signed.dims();
        let sign: Vec<f32> = (0..d)
            .map(|i| if i % 2 == 0 { -1.0 } else { 1.0 })
            .collect();
        let sign = Tensor::<1>::from_data(TensorData::new(sign, [d]), &self.sin_signed.device());
        self.sin_signed.clone().reshape([l, d]) * sign.unsqueeze::<2>()
    }

    /// diffusers' `apply_rotary_emb(x, (cos, sin), use_real=True, use_real_unbind_dim=-1)` on
    /// `x` `[B, L, H, D]`: `x·cos + rot(x)·sin` with `rot(x)[2i] = -x[2i+1]`,
    /// `rot(x)[2i+1] = x[2i]`.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, l, h, d] = x.dims();
        let swapped = x
            .clone()
            .reshape([b, l, h, d / 2, 2])
            .flip([4])
            .reshape([b, l, h, d]);
        x * self.cos.clone() + swapped * self.sin_signed.clone()
    }
}

/// diffusers' `TimestepEmbedding(in_channels, time_embed_dim)`: `linear_2(silu(linear_1(x)))`.
#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn load(vb: &VarBuilder, in_channels: usize, dim: usize) -> Self {
        Self {
            linear_1: Linear::load(&vb.pp("linear_1"), in_channels, dim, true),
            linear_2: Linear::load(&vb.pp("linear_2"), dim, dim, true),
        }
    }

    /// `[N, in]` -> `[N, dim]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2
            .forward(Activation::Silu.forward(self.linear_1.forward(x)))
    }
}

/// diffusers' `PixArtAlphaTextProjection(in_features, hidden_size, act_fn="silu")`:
/// `linear_2(silu(linear_1(x)))`.
#[derive(Debug, Clone)]
pub struct PixArtAlphaTextProjection {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl PixArtAlphaTextProjection {
    pub fn load(vb: &VarBuilder, in_features: usize, hidden: usize) -> Self {
        Self {
            linear_1: Linear::load(&vb.pp("linear_1"), in_features, hidden, true),
            linear_2: Linear::load(&vb.pp("linear_2"), hidden, hidden, true),
        }
    }

    /// `[N, in]` -> `[N, hidden]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2
            .forward(Activation::Silu.forward(self.linear_1.forward(x)))
    }
}

/// diffusers' `CombinedTimestepGuidanceTextProjEmbeddings` (with `guidance_embedder`) or
/// `CombinedTimestepTextProjEmbeddings` (without): `temb = (time + guidance) + text`.
#[derive(Debug, Clone)]
pub struct CombinedTimestepGuidanceTextProjEmbeddings {
    pub timestep_embedder: TimestepEmbedding,
    pub guidance_embedder: Option<TimestepEmbedding>,
    pub text_embedder: PixArtAlphaTextProjection,
}

impl CombinedTimestepGuidanceTextProjEmbeddings {
    /// Loads under `time_text_embed`; `guidance` adds `guidance_embedder`.
    pub fn load(vb: &VarBuilder, dim: usize, pooled_projection_dim: usize, guidance: bool) -> Self {
        Self {
            timestep_embedder: TimestepEmbedding::load(
                &vb.pp("timestep_embedder"),
                TIME_PROJ_DIM,
                dim,
            ),
            guidance_embedder: guidance
                .then(|| TimestepEmbedding::load(&vb.pp("guidance_embedder"), TIME_PROJ_DIM, dim)),
            text_embedder: PixArtAlphaTextProjection::load(
                &vb.pp("text_embedder"),
                pooled_projection_dim,
                dim,
            ),
        }
    }

    /// `timestep` and `guidance` `[N]` (already ×1000, as the model passes them),
    /// `pooled` `[B, P]` -> `[B, dim]` (`N` is `B` or 1).
    pub fn forward(
        &self,
        timestep: Tensor<1>,
        guidance: Option<Tensor<1>>,
        pooled: Tensor<2>,
    ) -> Tensor<2> {
        let proj = |t: Tensor<1>| timestep_embedding(t, TIME_PROJ_DIM, true, 0.0, 1.0, 10000.0);
        let mut emb = self.timestep_embedder.forward(proj(timestep));
        if let (Some(embedder), Some(g)) = (&self.guidance_embedder, guidance) {
            emb = emb + embedder.forward(proj(g));
        }
        emb + self.text_embedder.forward(pooled)
    }
}
