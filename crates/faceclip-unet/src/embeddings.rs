//! diffusers `embeddings.py`: `Timesteps` (sinusoids) and `TimestepEmbedding` (MLP).

use faceclip_core::Tensor;
use faceclip_core::VarBuilder;
use faceclip_core::layers::{Activation, Linear, timestep_embedding};

/// diffusers `Timesteps`: `[N]` timesteps -> `[N, num_channels]` sinusoids (no weights).
#[derive(Debug, Clone, Copy)]
pub struct Timesteps {
    pub num_channels: usize,
    pub flip_sin_to_cos: bool,
    pub downscale_freq_shift: f32,
}

impl Timesteps {
    pub fn new(num_channels: usize, flip_sin_to_cos: bool, downscale_freq_shift: f32) -> Self {
        Self {
            num_channels,
            flip_sin_to_cos,
            downscale_freq_shift,
        }
    }

    /// `[N]` -> `[N, num_channels]`.
    pub fn forward(&self, timesteps: Tensor<1>) -> Tensor<2> {
        timestep_embedding(
            timesteps,
            self.num_channels,
            self.flip_sin_to_cos,
            self.downscale_freq_shift,
            1.0,
            10000.0,
        )
    }
}

/// diffusers `TimestepEmbedding`: `linear_1` -> act -> `linear_2` (-> optional post act).
#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
    act: Activation,
    post_act: Option<Activation>,
}

impl TimestepEmbedding {
    pub fn load(
        vb: &VarBuilder,
        in_channels: usize,
        time_embed_dim: usize,
        act: Activation,
        post_act: Option<Activation>,
    ) -> Self {
        Self {
            linear_1: Linear::load(&vb.pp("linear_1"), in_channels, time_embed_dim, true),
            linear_2: Linear::load(&vb.pp("linear_2"), time_embed_dim, time_embed_dim, true),
            act,
            post_act,
        }
    }

    /// `[N, in_channels]` -> `[N, time_embed_dim]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self
            .linear_2
            .forward(self.act.forward(self.linear_1.forward(x)));
        match self.post_act {
            Some(a) => a.forward(x),
            None => x,
        }
    }
}
