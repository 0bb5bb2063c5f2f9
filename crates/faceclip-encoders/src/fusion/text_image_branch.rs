//! FaceCLIP's `TextImageBranch` (`core/face_clip/face_clip.py`): one of the two FaceCLIP
//! encoders (L-14 and bigG-14 share the code and differ by config). The face ViT's class
//! token replaces the `id` token's embedding inside the `"Photo of a id person."` prefix,
//! the open_clip text tower encodes the prompt, and the fusion encoder mixes the face patch
//! tokens into the text tokens.

use faceclip_core::layers::Linear;
use faceclip_core::{Bool, Error, Result, Tensor, TensorData, VarBuilder};
use serde_json::Value;

use crate::clip_text_model::{ClipTextTransformer, OpenClipTextConfig};
use crate::face_vit::{FaceVit, FaceVitConfig};

use super::{BatchMode, FuserConfig, FuserVariant, TextFaceEmbeddingFuser, Trace};

/// The prefix a prompt gets when its row has a face (upstream `id_text + " "`).
pub const ID_PREFIX: &str = "Photo of a id person. ";
/// The identity text whose token count bounds the substitution span.
pub const ID_TEXT: &str = "Photo of a id person.";
/// The word whose token embedding the face replaces.
pub const ID_SYMBOL: &str = "id";

/// A `TextImageBranch`'s configuration: the open_clip text tower, the face ViT and the
/// fuser.
#[derive(Debug, Clone)]
pub struct TextImageBranchConfig {
    /// `text_embed_dim` (768 for L-14, 1280 for bigG-14): the width of the projections and
    /// of the fuser; it must equal the text tower's width.
    pub text_embed_dim: usize,
    pub text_cfg: OpenClipTextConfig,
    pub face_vit: FaceVitConfig,
    pub fuser: FuserConfig,
    /// `init_logit_bias` is set (the checkpoint then holds the unused `logit_bias`).
    pub logit_bias: bool,
}

impl TextImageBranchConfig {
    /// FaceCLIP-L-14 as released: ViT-L-14-quickgelu text tower (768 wide, 12 heads, 12
    /// layers), the released face ViT, the upstream fuser at width 768.
    pub fn released_l() -> Self {
        Self::released(768, 12, 12, true)
    }

    /// FaceCLIP-bigG-14 as released: ViT-bigG-14 text tower (1280 wide, 20 heads, 32 layers,
    /// erf GELU), the released face ViT, the upstream fuser at width 1280.
    pub fn released_g() -> Self {
        Self::released(1280, 20, 32, false)
    }

    fn released(width: usize, heads: usize, layers: usize, quick_gelu: bool) -> Self {
        let text_cfg = OpenClipTextConfig {
            context_length: 77,
            vocab_size: 49408,
            width,
            heads,
            layers,
            quick_gelu,
            embed_dim: Some(width),
            ..OpenClipTextConfig::default()
        };
        Self {
            text_embed_dim: width,
            fuser: FuserConfig::upstream(width, text_cfg.context_length),
            text_cfg,
            face_vit: FaceVitConfig::released(),
            logit_bias: true,
        }
    }

    /// Reads a branch entry of a fixture or manifest config: `params.text_embed_dim`,
    /// `params.init_logit_bias`, `text_cfg` (open_clip `CLIPTextCfg`), `quick_gelu` (inside
    /// `text_cfg` or beside it), `face_vit` and `fuser` (constructor arguments; upstream's
    /// when absent).
    pub fn from_value(v: &Value) -> Result<Self> {
        let bad = |m: String| Error::config("TextImageBranch config", m);
        let mut text_cfg: OpenClipTextConfig = match v.get("text_cfg") {
            Some(t) => {
                serde_json::from_value(t.clone()).map_err(|e| bad(format!("text_cfg: {e}")))?
            }
            None => return Err(bad("no `text_cfg`".into())),
        };
        if text_cfg.embed_dim.is_none() {
            text_cfg.embed_dim = v
                .pointer("/params/text_embed_dim")
                .and_then(Value::as_u64)
                .map(|d| d as usize);
        }
        if let Some(q) = v.get("quick_gelu").and_then(Value::as_bool) {
            text_cfg.quick_gelu = q;
        }
        let text_embed_dim = v
            .pointer("/params/text_embed_dim")
            .and_then(Value::as_u64)
            .map(|d| d as usize)
            .unwrap_or(text_cfg.width);
        let face_vit = match v.get("face_vit") {
            Some(f) => {
                serde_json::from_value(f.clone()).map_err(|e| bad(format!("face_vit: {e}")))?
            }
            None => FaceVitConfig::released(),
        };
        let fuser = match v.get("fuser") {
            Some(f) => serde_json::from_value(f.clone()).map_err(|e| bad(format!("fuser: {e}")))?,
            None => FuserConfig::upstream(text_embed_dim, text_cfg.context_length),
        };
        // Upstream default `init_logit_bias=None`: no `logit_bias` parameter.
        let logit_bias = v
            .pointer("/params/init_logit_bias")
            .is_some_and(|x| !x.is_null());
        Ok(Self {
            text_embed_dim,
            text_cfg,
            face_vit,
            fuser,
            logit_bias,
        })
    }
}

/// What a branch returns.
#[derive(Debug, Clone)]
pub struct BranchOutput {
    /// The fused text tokens `[B, L, text_embed_dim]`.
    pub fused: Tensor<3>,
    /// `ln_final` output at the first EOT `[B, width]`, before `text_projection` and from
    /// the text tower (with the face token), not the fuser.
    pub pooled: Tensor<2>,
}

/// `TextImageBranch`: keys `token_embedding`, `positional_embedding`, `transformer.*`,
/// `ln_final` (text tower), `face_encoder.*` (face ViT), `proj1`, `face_patch_proj`,
/// `face_pos_proj`, `text_embed_proj`, `text_pos_proj`, `fuser.*`; unused at inference:
/// `text_projection`, `logit_scale`, `logit_bias`, `face_encoder.mask_token`,
/// `fuser.enc_output*`.
#[derive(Debug, Clone)]
pub struct TextImageBranch {
    text: ClipTextTransformer,
    face_encoder: FaceVit,
    proj1: Linear,
    face_patch_proj: Linear,
    face_pos_proj: Linear,
    text_embed_proj: Linear,
    text_pos_proj: Linear,
    fuser: TextFaceEmbeddingFuser,
}

impl TextImageBranch {
    /// Loads under `vb` (upstream `face_clip_l` / `face_clip_g`).
    pub fn load(vb: &VarBuilder, cfg: &TextImageBranchConfig) -> Result<Self> {
        let d = cfg.text_embed_dim;
        let width = cfg.text_cfg.width;
        if width != d || cfg.fuser.d_model != d {
            return Err(Error::config(
                "TextImageBranch config",
                format!(
                    "text width {width}, text_embed_dim {d} and fuser d_model {} must agree",
                    cfg.fuser.d_model
                ),
            ));
        }
        // The tower's `text_projection` is computed and thrown away upstream: expected, not read.
        let mut text_cfg = cfg.text_cfg.clone();
        let proj_dim = text_cfg.output_dim.or(text_cfg.embed_dim).unwrap_or(d);
        text_cfg.proj_type = Some("none".into());
        let text = ClipTextTransformer::load_open_clip(vb, &text_cfg)?;
        vb.expect_unused("text_projection", &[width, proj_dim]);
        vb.expect_unused("logit_scale", &[]);
        if cfg.logit_bias {
            vb.expect_unused("logit_bias", &[]);
        }
        let face_encoder = FaceVit::load(&vb.pp("face_encoder"), &cfg.face_vit)?;
        let fe = cfg.face_vit.embed_dim;
        Ok(Self {
            text,
            face_encoder,
            proj1: Linear::load(&vb.pp("proj1"), cfg.face_vit.num_classes, d, true),
            face_patch_proj: Linear::load(&vb.pp("face_patch_proj"), fe, d, true),
            face_pos_proj: Linear::load(&vb.pp("face_pos_proj"), fe, d, true),
            text_embed_proj: Linear::load(&vb.pp("text_embed_proj"), d, d, true),
            text_pos_proj: Linear::load(&vb.pp("text_pos_proj"), d, d, true),
            fuser: TextFaceEmbeddingFuser::load(
                &vb.pp("fuser"),
                &cfg.fuser,
                FuserVariant::FaceClip,
            )?,
        })
    }

    /// The text tower (for its context length and tokenizer checks).
    pub fn text_tower(&self) -> &ClipTextTransformer {
        &self.text
    }

    /// The face ViT.
    pub fn face_encoder(&self) -> &FaceVit {
        &self.face_encoder
    }

    /// `TextImageBranch.forward_all` on tokenised input.
    ///
    /// - `faces` `[B, 3, H, W]`: ToTensor values, any size (resized to 112×112 with
    ///   PyTorch's bilinear, no antialias);
    /// - `input_ids` `[B, L]`: open_clip ids (with the prefix on face rows);
    /// - `substitute` `[B·L]`: where the face token replaces the token embedding
    ///   (`(ids == id) & id_text_mask`, at most one position per row).
    pub fn forward(
        &self,
        faces: Tensor<4>,
        input_ids: &[i64],
        seq_len: usize,
        substitute: &[bool],
        mode: BatchMode,
    ) -> Result<BranchOutput> {
        self.forward_traced(
            faces,
            input_ids,
            seq_len,
            substitute,
            mode,
            &mut Trace::disabled(),
        )
    }

    pub(crate) fn forward_traced(
        &self,
        faces: Tensor<4>,
        input_ids: &[i64],
        seq_len: usize,
        substitute: &[bool],
        mode: BatchMode,
        trace: &mut Trace,
    ) -> Result<BranchOutput> {
        let b = faces.dims()[0];
        let device = faces.device();
        if input_ids.len() != b * seq_len || substitute.len() != b * seq_len {
            return Err(Error::shape(
                "TextImageBranch input_ids / substitution mask",
                &[b, seq_len],
                &[input_ids.len() / seq_len.max(1), seq_len],
            ));
        }
        if seq_len != self.text.context_length() {
            return Err(Error::shape(
                "TextImageBranch input_ids (the fuser's text position table needs every position)",
                &[b, self.text.context_length()],
                &[b, seq_len],
            ));
        }
        // Face: ViT on the resized image.
        let face = self.face_encoder.forward_resized(faces)?;
        trace.record_tensor("face_class_token", &face.class_token);
        trace.record_tensor("face_patch_token", &face.patch_token);
        let cls = face.class_token;
        // `c / c.norm()`: no eps.
        let cls_norm = cls.clone() / cls.square().sum_dim(1).sqrt();
        trace.record_tensor("face_cls_norm", &cls_norm);
        let face_token = self.proj1.forward(cls_norm);
        trace.record_tensor("face_token", &face_token);
        let face_pos = self
            .face_pos_proj
            .forward(self.face_encoder.pos_embed.val());
        let face_patch = self.face_patch_proj.forward(face.patch_token);
        trace.record_tensor("face_patch_embed", &face_patch);
        trace.record_tensor(
            "face_pos_embedding",
            &face_pos.clone().expand(face_patch.dims()),
        );

        // Text: token embeddings with the face token substituted, then the tower.
        let ids = Tensor::<2, faceclip_core::Int>::from_data(
            TensorData::new(input_ids.to_vec(), [b, seq_len]),
            &device,
        );
        let pool_positions = self.text.pool_positions(&ids)?;
        let tokens = self.text.embed_tokens(ids)?;
        let [_, _, w] = tokens.dims();
        let mask = Tensor::<3, Bool>::from_data(
            TensorData::new(substitute.to_vec(), [b, seq_len, 1]),
            &device,
        )
        .expand([b, seq_len, w]);
        let tokens = tokens.mask_where(mask, face_token.reshape([b, 1, w]).expand([b, seq_len, w]));
        if trace.is_enabled() {
            trace.record_tensor(
                "text_tower_input",
                &self.text.add_positions(tokens.clone())?,
            );
        }
        let out = self.text.forward_embeds(tokens, &pool_positions)?;
        trace.record_tensor("text_embedding_raw", &out.last_hidden_state);
        trace.record_tensor("pooled", &out.pooler_output);
        let text_embedding = self.text_embed_proj.forward(out.last_hidden_state);
        trace.record_tensor("text_embedding", &text_embedding);
        let text_pos = self
            .text_pos_proj
            .forward(self.text.position_embedding.val().unsqueeze::<3>());
        trace.record_tensor(
            "text_pos_embedding",
            &text_pos.clone().expand(text_embedding.dims()),
        );

        let prefix = trace.prefix().to_string();
        trace.set_prefix(&format!("{prefix}fuser."));
        let fused = self.fuser.forward_traced(
            text_embedding,
            text_pos,
            face_patch,
            Some(face_pos),
            mode,
            trace,
        );
        trace.set_prefix(&prefix);
        let fused = fused?;
        trace.record_tensor("fused", &fused);
        Ok(BranchOutput {
            fused,
            pooled: out.pooler_output,
        })
    }
}
