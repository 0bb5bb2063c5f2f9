//! `TextFaceEmbeddingFuser` (`core/face_clip/face_clip.py` and `core/face_t5/face_t5.py`):
//! GroundingDINO's transformer trimmed to its encoder; returns the fused text tokens.

use faceclip_core::layers::Activation;
use faceclip_core::{Error, Result, Tensor, VarBuilder};
use serde::Deserialize;

use super::transformer_encoder::{EncoderSizes, FACE_GRID, ImageLayerKind, TransformerEncoder};
use super::{BatchMode, Trace};

/// Which upstream fuser class: they share the constructor arguments and differ in the
/// image-side layer and in the defaults of `use_checkpoint` / `use_transformer_ckpt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FuserVariant {
    /// `core.face_clip.face_clip.TextFaceEmbeddingFuser`: deformable image layers.
    FaceClip,
    /// `core.face_t5.face_t5.TextFaceEmbeddingFuser`: vanilla image layers.
    FaceT5,
}

/// The fuser's constructor arguments as upstream takes them (unknown fields ignored,
/// upstream defaults for missing ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FuserConfig {
    pub d_model: usize,
    pub nhead: usize,
    pub num_queries: usize,
    pub num_encoder_layers: usize,
    pub num_unicoder_layers: usize,
    pub num_decoder_layers: usize,
    pub dim_feedforward: usize,
    pub dropout: f64,
    pub activation: String,
    pub normalize_before: bool,
    pub query_dim: usize,
    pub num_feature_levels: usize,
    pub enc_n_points: usize,
    pub learnable_tgt_init: bool,
    pub two_stage_type: String,
    pub embed_init_tgt: bool,
    pub use_text_enhancer: bool,
    pub use_fusion_layer: bool,
    /// Upstream default: false (FaceCLIP), true (FaceT5). No effect on the numbers.
    pub use_checkpoint: Option<bool>,
    /// Upstream default: false (FaceCLIP), true (FaceT5). In FaceT5 `true` drops the face
    /// position (see [`super::transformer_vanilla`]); in FaceCLIP it has no effect.
    pub use_transformer_ckpt: Option<bool>,
}

impl Default for FuserConfig {
    fn default() -> Self {
        Self {
            d_model: 256,
            nhead: 8,
            num_queries: 300,
            num_encoder_layers: 6,
            num_unicoder_layers: 0,
            num_decoder_layers: 6,
            dim_feedforward: 2048,
            dropout: 0.0,
            activation: "relu".into(),
            normalize_before: false,
            query_dim: 4,
            num_feature_levels: 1,
            enc_n_points: 4,
            learnable_tgt_init: true,
            two_stage_type: "standard".into(),
            embed_init_tgt: false,
            use_text_enhancer: true,
            use_fusion_layer: true,
            use_checkpoint: None,
            use_transformer_ckpt: None,
        }
    }
}

impl FuserConfig {
    /// The fuser `TextImageBranch` / `FaceT5Encoder` build: `d_model`, nhead 8, 6 layers,
    /// FFN 2048, `num_queries` = the text length.
    pub fn upstream(d_model: usize, num_queries: usize) -> Self {
        Self {
            d_model,
            num_queries,
            ..Self::default()
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::config("TextFaceEmbeddingFuser config", reason));
        if self.d_model == 0 || self.nhead < 2 || self.dim_feedforward < 2 {
            return bad(format!(
                "d_model {}, nhead {}, dim_feedforward {}: need d_model > 0, nhead >= 2, dim_feedforward >= 2",
                self.d_model, self.nhead, self.dim_feedforward
            ));
        }
        if !self.d_model.is_multiple_of(self.nhead) || !self.d_model.is_multiple_of(self.nhead / 2)
        {
            return bad(format!(
                "d_model {} is not divisible by nhead {} and nhead/2",
                self.d_model, self.nhead
            ));
        }
        if !(self.dim_feedforward / 2).is_multiple_of(self.nhead / 2) {
            return bad(format!(
                "the bi-attention width dim_feedforward/2 = {} is not divisible by nhead/2 = {}",
                self.dim_feedforward / 2,
                self.nhead / 2
            ));
        }
        if self.num_feature_levels != 1 {
            return bad(format!(
                "num_feature_levels {} (the fuser feeds one 12x12 level)",
                self.num_feature_levels
            ));
        }
        if self.normalize_before || self.query_dim != 4 || !self.learnable_tgt_init {
            return bad("normalize_before must be false, query_dim 4, learnable_tgt_init true (upstream asserts)".into());
        }
        if !matches!(self.two_stage_type.as_str(), "no" | "standard") {
            return bad(format!("unknown two_stage_type `{}`", self.two_stage_type));
        }
        if self.enc_n_points == 0 {
            return bad("enc_n_points is 0".into());
        }
        Ok(())
    }
}

/// `TextFaceEmbeddingFuser`: keys `encoder.*` ([`TransformerEncoder`]) and, unused at
/// inference, `enc_output`, `enc_output_norm` (`two_stage_type="standard"`), `tgt_embed`,
/// `refpoint_embed` (`"no"`).
#[derive(Debug, Clone)]
pub struct TextFaceEmbeddingFuser {
    encoder: TransformerEncoder,
    d_model: usize,
}

impl TextFaceEmbeddingFuser {
    /// Loads under `vb` (upstream `fuser`).
    pub fn load(vb: &VarBuilder, cfg: &FuserConfig, variant: FuserVariant) -> Result<Self> {
        cfg.check()?;
        let activation = Activation::from_name(&cfg.activation)
            .filter(|a| matches!(a, Activation::Relu | Activation::Gelu))
            .ok_or_else(|| {
                Error::config(
                    "TextFaceEmbeddingFuser config",
                    format!("activation `{}` (relu or gelu)", cfg.activation),
                )
            })?;
        let image = match variant {
            FuserVariant::FaceClip => ImageLayerKind::Deformable {
                n_points: cfg.enc_n_points,
            },
            FuserVariant::FaceT5 => ImageLayerKind::Vanilla {
                use_transformer_ckpt: cfg.use_transformer_ckpt.unwrap_or(true),
            },
        };
        let sizes = EncoderSizes {
            d_model: cfg.d_model,
            nhead: cfg.nhead,
            dim_feedforward: cfg.dim_feedforward,
            num_layers: cfg.num_encoder_layers,
            activation,
            text_enhancer: cfg.use_text_enhancer,
            fusion: cfg.use_fusion_layer,
            image,
        };
        let encoder = TransformerEncoder::load(&vb.pp("encoder"), &sizes);
        let d = cfg.d_model;
        if cfg.two_stage_type == "standard" {
            vb.expect_unused("enc_output.weight", &[d, d]);
            vb.expect_unused("enc_output.bias", &[d]);
            vb.expect_unused("enc_output_norm.weight", &[d]);
            vb.expect_unused("enc_output_norm.bias", &[d]);
        }
        if cfg.two_stage_type == "no" || cfg.embed_init_tgt {
            vb.expect_unused("tgt_embed.weight", &[cfg.num_queries, d]);
        }
        if cfg.two_stage_type == "no" {
            vb.expect_unused("refpoint_embed.weight", &[cfg.num_queries, 4]);
        }
        Ok(Self {
            encoder,
            d_model: d,
        })
    }

    /// The fused text tokens.
    ///
    /// - `text` `[B, L, D]`: the text embedding (`text_embed_proj` output / T5 output);
    /// - `text_pos` `[B or 1, L, D]`: added to the text enhancer's queries and keys;
    /// - `face` `[B, 144, D]`: the projected face patch tokens;
    /// - `face_pos` `[B or 1, 144, D]`: the projected face position; FaceCLIP adds it to
    ///   the deformable query; FaceT5 (default `use_transformer_ckpt`) never reads it, so
    ///   `None` is accepted there.
    ///
    /// Upstream's `text_self_attn_mask` and `face_cls_embed` arguments are never read and
    /// are not taken. Returns `[B, L, D]`.
    pub fn forward(
        &self,
        text: Tensor<3>,
        text_pos: Tensor<3>,
        face: Tensor<3>,
        face_pos: Option<Tensor<3>>,
        mode: BatchMode,
    ) -> Result<Tensor<3>> {
        self.forward_traced(text, text_pos, face, face_pos, mode, &mut Trace::disabled())
    }

    pub(crate) fn forward_traced(
        &self,
        text: Tensor<3>,
        text_pos: Tensor<3>,
        face: Tensor<3>,
        face_pos: Option<Tensor<3>>,
        mode: BatchMode,
        trace: &mut Trace,
    ) -> Result<Tensor<3>> {
        let d = self.d_model;
        let [b, l, dt] = text.dims();
        let n = FACE_GRID.0 * FACE_GRID.1;
        if dt != d || b == 0 {
            return Err(Error::shape(
                "fuser text embedding [B, L, d_model]",
                &[b.max(1), l, d],
                &[b, l, dt],
            ));
        }
        let check_pos = |what: &str, t: &Tensor<3>, len: usize| {
            let [pb, pl, pd] = t.dims();
            if (pb != 1 && pb != b) || pl != len || pd != d {
                Err(Error::shape(what, &[b, len, d], &[pb, pl, pd]))
            } else {
                Ok(())
            }
        };
        check_pos("fuser text position embedding", &text_pos, l)?;
        let fd = face.dims();
        if fd != [b, n, d] {
            return Err(Error::shape(
                "fuser face patch embedding [B, 144, d_model]",
                &[b, n, d],
                &fd,
            ));
        }
        if let Some(p) = &face_pos {
            check_pos("fuser face position embedding", p, n)?;
        }
        self.encoder
            .forward(face, face_pos, text, text_pos, mode, trace)
    }

    /// True when [`Self::forward`] reads `face_pos`.
    pub fn uses_face_pos(&self) -> bool {
        self.encoder.uses_face_pos()
    }

    /// The model width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }
}
