//! `FluxTransformer2DModel`'s config: diffusers' `transformer/config.json`, read unchanged.

use std::path::Path;

use faceclip_core::{Error, Result, read_config};
use serde::Deserialize;

/// The constructor arguments of diffusers' `FluxTransformer2DModel`, with diffusers' defaults
/// for missing fields; unknown fields (`_class_name`, `_diffusers_version`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct FluxTransformerConfig {
    /// Patch side; only sizes `proj_out` (`patch_size² · out_channels`).
    pub patch_size: usize,
    /// Width of a packed latent token (FLUX: 16 latent channels × 2 × 2 = 64).
    pub in_channels: usize,
    /// Output token width before `patch_size²`; `None` means `in_channels`.
    pub out_channels: Option<usize>,
    /// Number of double-stream `FluxTransformerBlock`s.
    pub num_layers: usize,
    /// Number of single-stream `FluxSingleTransformerBlock`s.
    pub num_single_layers: usize,
    pub attention_head_dim: usize,
    pub num_attention_heads: usize,
    /// Width of `encoder_hidden_states` (the T5 width).
    pub joint_attention_dim: usize,
    /// Width of the pooled text embedding (the CLIP width).
    pub pooled_projection_dim: usize,
    /// Guidance-distilled variant (FLUX.1-dev): adds `time_text_embed.guidance_embedder`.
    pub guidance_embeds: bool,
    /// RoPE width per id column; must sum to `attention_head_dim`.
    pub axes_dims_rope: Vec<usize>,
}

impl Default for FluxTransformerConfig {
    fn default() -> Self {
        Self {
            patch_size: 1,
            in_channels: 64,
            out_channels: None,
            num_layers: 19,
            num_single_layers: 38,
            attention_head_dim: 128,
            num_attention_heads: 24,
            joint_attention_dim: 4096,
            pooled_projection_dim: 768,
            guidance_embeds: false,
            axes_dims_rope: vec![16, 56, 56],
        }
    }
}

/// What a config file or a `meta.json` is called in error messages when no path is known.
const LABEL: &str = "FluxTransformer2DModel config";

impl FluxTransformerConfig {
    /// Reads and validates a diffusers `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let cfg: Self = read_config(path)?;
        cfg.validate().map_err(|e| match e {
            Error::Config { reason, .. } => Error::config(path, reason),
            other => other,
        })?;
        Ok(cfg)
    }

    /// Parses (and validates) a config from a JSON value (a fixture's or manifest's `config`).
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        let cfg: Self =
            serde_json::from_value(value.clone()).map_err(|e| Error::config(LABEL, e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// `num_attention_heads · attention_head_dim`: the model width.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// `out_channels or in_channels`.
    pub fn out_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    /// The single blocks' MLP width: `int(inner_dim · 4.0)`.
    pub fn mlp_hidden_dim(&self) -> usize {
        self.inner_dim() * 4
    }

    /// Checks what diffusers would only find out in the forward pass: every size positive,
    /// the RoPE axes even and summing to the head width.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::config(LABEL, reason));
        for (name, v) in [
            ("patch_size", self.patch_size),
            ("in_channels", self.in_channels),
            ("attention_head_dim", self.attention_head_dim),
            ("num_attention_heads", self.num_attention_heads),
            ("joint_attention_dim", self.joint_attention_dim),
            ("pooled_projection_dim", self.pooled_projection_dim),
        ] {
            if v == 0 {
                return bad(format!("`{name}` must be positive"));
            }
        }
        if self.out_channels == Some(0) {
            return bad("`out_channels` must be positive".into());
        }
        if self.axes_dims_rope.is_empty() {
            return bad("`axes_dims_rope` is empty".into());
        }
        if let Some(d) = self
            .axes_dims_rope
            .iter()
            .find(|d| **d == 0 || !d.is_multiple_of(2))
        {
            return bad(format!(
                "`axes_dims_rope` {:?} holds {d}; every RoPE axis width must be even and positive",
                self.axes_dims_rope
            ));
        }
        let sum: usize = self.axes_dims_rope.iter().sum();
        if sum != self.attention_head_dim {
            return bad(format!(
                "`axes_dims_rope` {:?} sums to {sum}, but `attention_head_dim` is {}",
                self.axes_dims_rope, self.attention_head_dim
            ));
        }
        Ok(())
    }
}
