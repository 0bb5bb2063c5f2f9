//! diffusers `config.json` of `UNet2DConditionModel` and `AutoencoderKL`, read unchanged:
//! serde defaults are diffusers 0.33's constructor defaults, unknown fields are ignored.

use std::path::{Path, PathBuf};

use faceclip_core::layers::Activation;
use faceclip_core::{Error, Result, read_config};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A config value given once for every block or as one value per block (diffusers accepts
/// both for `attention_head_dim`, `layers_per_block`, `cross_attention_dim`, ...).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    /// One value per block for `n` blocks; a list of another length is an error.
    pub fn resolve(&self, n: usize, what: &str, source: &Path) -> Result<Vec<T>> {
        match self {
            PerBlock::One(v) => Ok(vec![v.clone(); n]),
            PerBlock::Each(v) if v.len() == n => Ok(v.clone()),
            PerBlock::Each(v) => Err(Error::config(
                source,
                format!("`{what}` has {} entries, the model has {n} blocks", v.len()),
            )),
        }
    }
}

fn from_value<T: DeserializeOwned>(value: &serde_json::Value, label: &str) -> Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| Error::config(label, e))
}

pub(crate) fn activation(name: &str, field: &str, source: &Path) -> Result<Activation> {
    Activation::from_name(name).ok_or_else(|| {
        Error::config(
            source,
            format!("`{field}` = \"{name}\" is not an activation this port knows"),
        )
    })
}

/// `UNet2DConditionModel`'s config (diffusers 0.33). Covers SDXL and SD 1.x/2.x; fields of
/// other variants (class embeddings, encoder_hid_proj, LCM cond_proj, dual cross-attention,
/// GLIGEN) are read and rejected by [`UNet2DConditionConfig::validate`] when set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UNet2DConditionConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f32,
    pub down_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub only_cross_attention: PerBlock<bool>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: PerBlock<usize>,
    pub downsample_padding: usize,
    pub mid_block_scale_factor: f64,
    pub act_fn: String,
    pub norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub cross_attention_dim: PerBlock<usize>,
    pub transformer_layers_per_block: PerBlock<usize>,
    pub reverse_transformer_layers_per_block: Option<serde_json::Value>,
    pub encoder_hid_dim: Option<usize>,
    pub encoder_hid_dim_type: Option<String>,
    /// In this class the NUMBER OF HEADS per block (diffusers' historical misnomer).
    pub attention_head_dim: PerBlock<usize>,
    pub num_attention_heads: Option<PerBlock<usize>>,
    pub dual_cross_attention: bool,
    pub use_linear_projection: bool,
    pub class_embed_type: Option<String>,
    pub addition_embed_type: Option<String>,
    pub addition_time_embed_dim: Option<usize>,
    pub num_class_embeds: Option<usize>,
    pub upcast_attention: Option<bool>,
    pub resnet_time_scale_shift: String,
    pub resnet_skip_time_act: bool,
    pub resnet_out_scale_factor: f64,
    pub time_embedding_type: String,
    pub time_embedding_dim: Option<usize>,
    pub time_embedding_act_fn: Option<String>,
    pub timestep_post_act: Option<String>,
    pub time_cond_proj_dim: Option<usize>,
    pub conv_in_kernel: usize,
    pub conv_out_kernel: usize,
    pub projection_class_embeddings_input_dim: Option<usize>,
    pub attention_type: String,
    pub class_embeddings_concat: bool,
    pub cross_attention_norm: Option<String>,
    /// The file this config was read from (error messages name it).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for UNet2DConditionConfig {
    fn default() -> Self {
        Self {
            in_channels: 4,
            out_channels: 4,
            center_input_sample: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: vec![
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "DownBlock2D".into(),
            ],
            mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
            up_block_types: vec![
                "UpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
            ],
            only_cross_attention: PerBlock::One(false),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: PerBlock::One(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            act_fn: "silu".into(),
            norm_num_groups: Some(32),
            norm_eps: 1e-5,
            cross_attention_dim: PerBlock::One(1280),
            transformer_layers_per_block: PerBlock::One(1),
            reverse_transformer_layers_per_block: None,
            encoder_hid_dim: None,
            encoder_hid_dim_type: None,
            attention_head_dim: PerBlock::One(8),
            num_attention_heads: None,
            dual_cross_attention: false,
            use_linear_projection: false,
            class_embed_type: None,
            addition_embed_type: None,
            addition_time_embed_dim: None,
            num_class_embeds: None,
            upcast_attention: None,
            resnet_time_scale_shift: "default".into(),
            resnet_skip_time_act: false,
            resnet_out_scale_factor: 1.0,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            time_embedding_act_fn: None,
            timestep_post_act: None,
            time_cond_proj_dim: None,
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            projection_class_embeddings_input_dim: None,
            attention_type: "default".into(),
            class_embeddings_concat: false,
            cross_attention_norm: None,
            source: None,
        }
    }
}

/// Per-block values of a [`UNet2DConditionConfig`], resolved and checked.
#[derive(Debug, Clone)]
pub(crate) struct UNetPlan {
    pub n: usize,
    pub heads: Vec<usize>,
    pub layers_per_block: Vec<usize>,
    pub cross_attention_dim: Vec<usize>,
    pub transformer_layers: Vec<usize>,
    pub only_cross_attention: Vec<bool>,
    pub groups: usize,
    pub act: Activation,
    pub time_embed_dim: usize,
    pub post_act: Option<Activation>,
    pub time_embed_act: Option<Activation>,
    /// `(addition_time_embed_dim, projection_class_embeddings_input_dim)` for `text_time`.
    pub text_time: Option<(usize, usize)>,
}

impl UNet2DConditionConfig {
    /// Reads `unet/config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut c: Self = read_config(path)?;
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    /// Reads a config held as JSON (a fixture's `config`, a manifest's `config`).
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        from_value(value, "UNet2DConditionModel config")
    }

    pub(crate) fn source(&self) -> PathBuf {
        self.source
            .clone()
            .unwrap_or_else(|| PathBuf::from("UNet2DConditionModel config"))
    }

    fn err(&self, reason: impl std::fmt::Display) -> Error {
        Error::config(self.source(), reason)
    }

    /// Checks the config describes a model this port builds; see [`UNet2DConditionConfig`].
    pub fn validate(&self) -> Result<()> {
        self.plan().map(|_| ())
    }

    pub(crate) fn plan(&self) -> Result<UNetPlan> {
        let src = self.source();
        let n = self.down_block_types.len();
        if n == 0 {
            return Err(self.err("`down_block_types` is empty"));
        }
        if self.up_block_types.len() != n {
            return Err(self.err(format!(
                "`down_block_types` has {n} entries but `up_block_types` has {}",
                self.up_block_types.len()
            )));
        }
        if self.block_out_channels.len() != n {
            return Err(self.err(format!(
                "`block_out_channels` has {} entries, `down_block_types` {n}",
                self.block_out_channels.len()
            )));
        }
        if self.block_out_channels.contains(&0) || self.in_channels == 0 || self.out_channels == 0 {
            return Err(self.err("channel counts must be positive"));
        }
        for t in &self.down_block_types {
            if t != "CrossAttnDownBlock2D" && t != "DownBlock2D" {
                return Err(self.err(format!(
                    "down block type `{t}` is not supported (CrossAttnDownBlock2D, DownBlock2D)"
                )));
            }
        }
        for t in &self.up_block_types {
            if t != "CrossAttnUpBlock2D" && t != "UpBlock2D" {
                return Err(self.err(format!(
                    "up block type `{t}` is not supported (CrossAttnUpBlock2D, UpBlock2D)"
                )));
            }
        }
        match self.mid_block_type.as_deref() {
            None | Some("UNetMidBlock2DCrossAttn") | Some("UNetMidBlock2D") => {}
            Some(t) => return Err(self.err(format!("mid block type `{t}` is not supported"))),
        }
        if self.num_attention_heads.is_some() {
            return Err(self.err(
                "`num_attention_heads` must be null for UNet2DConditionModel (diffusers refuses it too); the head count is `attention_head_dim`",
            ));
        }
        let unsupported: [(&str, bool); 11] = [
            ("class_embed_type", self.class_embed_type.is_some()),
            ("num_class_embeds", self.num_class_embeds.is_some()),
            ("encoder_hid_dim_type", self.encoder_hid_dim_type.is_some()),
            ("time_cond_proj_dim", self.time_cond_proj_dim.is_some()),
            ("dual_cross_attention", self.dual_cross_attention),
            ("cross_attention_norm", self.cross_attention_norm.is_some()),
            (
                "reverse_transformer_layers_per_block",
                self.reverse_transformer_layers_per_block
                    .as_ref()
                    .is_some_and(|v| !v.is_null()),
            ),
            (
                "resnet_time_scale_shift != \"default\"",
                self.resnet_time_scale_shift != "default",
            ),
            (
                "time_embedding_type != \"positional\"",
                self.time_embedding_type != "positional",
            ),
            (
                "attention_type != \"default\"",
                self.attention_type != "default",
            ),
            ("resnet_skip_time_act", self.resnet_skip_time_act),
        ];
        if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(self.err(format!(
                "`{name}` is set; this port builds SD 1.x/2.x/XL UNets without it"
            )));
        }
        match self.addition_embed_type.as_deref() {
            None | Some("text_time") => {}
            Some(t) => {
                return Err(self.err(format!(
                    "`addition_embed_type` = \"{t}\" is not supported (null or \"text_time\")"
                )));
            }
        }
        if self.conv_in_kernel.is_multiple_of(2) || self.conv_out_kernel.is_multiple_of(2) {
            return Err(self.err("`conv_in_kernel` and `conv_out_kernel` must be odd"));
        }
        let groups = self
            .norm_num_groups
            .ok_or_else(|| self.err("`norm_num_groups` = null is not supported"))?;
        if groups == 0 {
            return Err(self.err("`norm_num_groups` must be positive"));
        }
        let heads = self
            .attention_head_dim
            .resolve(n, "attention_head_dim", &src)?;
        let layers_per_block = self.layers_per_block.resolve(n, "layers_per_block", &src)?;
        let cross_attention_dim =
            self.cross_attention_dim
                .resolve(n, "cross_attention_dim", &src)?;
        let transformer_layers =
            self.transformer_layers_per_block
                .resolve(n, "transformer_layers_per_block", &src)?;
        let only_cross_attention =
            self.only_cross_attention
                .resolve(n, "only_cross_attention", &src)?;
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if c % groups != 0 {
                return Err(self.err(format!(
                    "block_out_channels[{i}] = {c} is not a multiple of norm_num_groups = {groups}"
                )));
            }
            let attn = self.down_block_types[i].starts_with("CrossAttn")
                || self.up_block_types[n - 1 - i].starts_with("CrossAttn")
                || (i == n - 1
                    && self.mid_block_type.as_deref() == Some("UNetMidBlock2DCrossAttn"));
            if attn && (heads[i] == 0 || c % heads[i] != 0) {
                return Err(self.err(format!(
                    "block_out_channels[{i}] = {c} is not a multiple of the head count attention_head_dim[{i}] = {}",
                    heads[i]
                )));
            }
        }
        let act = activation(&self.act_fn, "act_fn", &src)?;
        let post_act = match &self.timestep_post_act {
            Some(a) => Some(activation(a, "timestep_post_act", &src)?),
            None => None,
        };
        let time_embed_act = match &self.time_embedding_act_fn {
            Some(a) => Some(activation(a, "time_embedding_act_fn", &src)?),
            None => None,
        };
        let text_time = if self.addition_embed_type.as_deref() == Some("text_time") {
            let t = self.addition_time_embed_dim.ok_or_else(|| {
                self.err("`addition_embed_type` = \"text_time\" needs `addition_time_embed_dim`")
            })?;
            let p = self.projection_class_embeddings_input_dim.ok_or_else(|| {
                self.err("`addition_embed_type` = \"text_time\" needs `projection_class_embeddings_input_dim`")
            })?;
            Some((t, p))
        } else {
            None
        };
        Ok(UNetPlan {
            n,
            heads,
            layers_per_block,
            cross_attention_dim,
            transformer_layers,
            only_cross_attention,
            groups,
            act,
            time_embed_dim: self
                .time_embedding_dim
                .unwrap_or(self.block_out_channels[0] * 4),
            post_act,
            time_embed_act,
            text_time,
        })
    }
}

/// `AutoencoderKL`'s config (diffusers 0.33): SDXL's VAE (quant convs, scaling 0.13025) and
/// FLUX's (16 latent channels, no quant convs, scaling 0.3611 and shift 0.1159).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AutoencoderKLConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub act_fn: String,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    /// An int or `[h, w]`; the tile size of diffusers' tiled decode.
    pub sample_size: PerBlock<usize>,
    pub scaling_factor: f64,
    pub shift_factor: Option<f64>,
    pub latents_mean: Option<Vec<f64>>,
    pub latents_std: Option<Vec<f64>>,
    pub force_upcast: bool,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_add_attention: bool,
    /// The file this config was read from (error messages name it).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for AutoencoderKLConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec!["DownEncoderBlock2D".into()],
            up_block_types: vec!["UpDecoderBlock2D".into()],
            block_out_channels: vec![64],
            layers_per_block: 1,
            act_fn: "silu".into(),
            latent_channels: 4,
            norm_num_groups: 32,
            sample_size: PerBlock::One(32),
            scaling_factor: 0.18215,
            shift_factor: None,
            latents_mean: None,
            latents_std: None,
            force_upcast: true,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
            source: None,
        }
    }
}

impl AutoencoderKLConfig {
    /// Reads `vae/config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut c: Self = read_config(path)?;
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    /// Reads a config held as JSON (a fixture's `config`, a manifest's `config`).
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        from_value(value, "AutoencoderKL config")
    }

    pub(crate) fn source(&self) -> PathBuf {
        self.source
            .clone()
            .unwrap_or_else(|| PathBuf::from("AutoencoderKL config"))
    }

    fn err(&self, reason: impl std::fmt::Display) -> Error {
        Error::config(self.source(), reason)
    }

    /// Spatial downscale factor between image and latent: `2^(len(block_out_channels) - 1)`.
    pub fn downscale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// diffusers' `tile_sample_min_size` (the first entry of a list `sample_size`).
    pub fn tile_sample_size(&self) -> usize {
        match &self.sample_size {
            PerBlock::One(s) => *s,
            PerBlock::Each(v) => v.first().copied().unwrap_or(0),
        }
    }

    /// Checks the config describes a model this port builds.
    pub fn validate(&self) -> Result<()> {
        self.act().map(|_| ())
    }

    pub(crate) fn act(&self) -> Result<Activation> {
        let n = self.block_out_channels.len();
        if n == 0 {
            return Err(self.err("`block_out_channels` is empty"));
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(self.err(format!(
                "`block_out_channels` has {n} entries, `down_block_types` {} and `up_block_types` {}",
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        if let Some(t) = self
            .down_block_types
            .iter()
            .find(|t| *t != "DownEncoderBlock2D")
        {
            return Err(self.err(format!(
                "down block type `{t}` is not supported (DownEncoderBlock2D)"
            )));
        }
        if let Some(t) = self
            .up_block_types
            .iter()
            .find(|t| *t != "UpDecoderBlock2D")
        {
            return Err(self.err(format!(
                "up block type `{t}` is not supported (UpDecoderBlock2D)"
            )));
        }
        if self.norm_num_groups == 0 {
            return Err(self.err("`norm_num_groups` must be positive"));
        }
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|c| **c == 0 || **c % self.norm_num_groups != 0)
        {
            return Err(self.err(format!(
                "block_out_channels entry {c} is not a positive multiple of norm_num_groups = {}",
                self.norm_num_groups
            )));
        }
        if self.in_channels == 0 || self.out_channels == 0 || self.latent_channels == 0 {
            return Err(self.err("channel counts must be positive"));
        }
        if !(self.scaling_factor.is_finite() && self.scaling_factor != 0.0) {
            return Err(self.err("`scaling_factor` must be finite and non-zero"));
        }
        match (&self.latents_mean, &self.latents_std) {
            (None, None) => {}
            (Some(m), Some(s))
                if m.len() == self.latent_channels && s.len() == self.latent_channels => {}
            _ => {
                return Err(self.err(format!(
                    "`latents_mean` and `latents_std` must both be null or both hold {} values",
                    self.latent_channels
                )));
            }
        }
        activation(&self.act_fn, "act_fn", &self.source())
    }
}
