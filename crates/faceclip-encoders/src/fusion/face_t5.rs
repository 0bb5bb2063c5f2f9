//! FaceT5 (`core/face_t5/face_t5.py`): `FaceT5Encoder` (FlashT5 T5-XXL encoder + face ViT +
//! vanilla fusion encoder -> `[B, 512, 4096]`) and `FaceT5FluxWrapper` (adds the stock CLIP-L
//! pooled embedding), as `infer_face_t5_flux.py` uses them.
//!
//! # Batches
//!
//! Upstream's fuser runs its image self-attention across the batch axis (a sequence-first
//! `nn.MultiheadAttention` fed batch-first tokens), so a batch of two gives other numbers
//! than two batches of one; `infer_face_t5_flux.py` always calls the encoder with batches
//! of one (positive and negative prompt separately). This port computes every sample as
//! its own batch of one ([`BatchMode::PerSample`], the default): that is the conditioning
//! the released pipeline produces, and it does not depend on what else is in the batch.
//! The literal batched behaviour is available as [`BatchMode::Batched`] for parity with a
//! batched upstream call only.

use std::path::{Path, PathBuf};

use faceclip_core::burn::module::Param;
use faceclip_core::image::RgbImage;
use faceclip_core::layers::Linear;
use faceclip_core::{
    Checkpoint, CoverageReport, Device, Error, Int, Pretrained, Result, Tensor, VarBuilder,
    read_config,
};
use serde_json::Value;

use crate::clip_text_model::{ClipTextConfig, ClipTextTransformer};
use crate::face_vit::{FaceVit, FaceVitConfig};
use crate::t5_encoder::{T5Config, T5Encoder};
use crate::tokenizer_clip::{ClipTokenizer, EOT_ID};
use crate::tokenizer_t5::T5Tokenizer;

use super::{BatchMode, FuserConfig, FuserVariant, TextFaceEmbeddingFuser, Trace};

/// The negative prompt `infer_face_t5_flux.py` pairs with a zero face.
pub const FLUX_NEGATIVE_PROMPT: &str = "digital painting, 3d render, CGI, cartoon, anime, unreal, stylized, overexposed, glossy skin, \
wearing mask, looking away from the camera, wearing glasses, wearing sunglasses, \
nude, worst quality, low quality, normal quality, nsfw, abstract, glitch, deformed, \
mutated, ugly, disfigured, text, watermark, bad hands, error, jpeg artifacts, blurry, \
missing fingers, poorly drawn face, ugly eyes, imperfect eyes, deformed pupils, deformed iris, bad anatomy";

/// `FaceT5Encoder`'s configuration.
#[derive(Debug, Clone)]
pub struct FaceT5EncoderConfig {
    /// The FlashT5 encoder (`t5-v1_1-xxl.yaml`'s `model_args`).
    pub t5: T5Config,
    /// `max_sequence_length`: the length of the text position buffer, hence of the ids.
    pub max_sequence_length: usize,
    /// The width upstream hard-codes as 4096 (projections, position buffer, fuser); it must
    /// equal the T5 `d_model`.
    pub hidden_width: usize,
    pub face_vit: FaceVitConfig,
    pub fuser: FuserConfig,
}

impl FaceT5EncoderConfig {
    /// The released encoder: T5-v1.1-XXL (FlashT5), 512 positions, width 4096.
    pub fn released() -> Self {
        let t5 = T5Config {
            vocab_size: 32128,
            d_model: 4096,
            d_kv: 64,
            d_ff: 10240,
            num_layers: 24,
            num_heads: 64,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            use_glu_mlp: Some(true),
            use_gelu_act: Some(true),
            attention_scale: Some(1.0),
            position_encoding_type: Some("t5".into()),
            ..T5Config::default()
        };
        Self {
            t5,
            max_sequence_length: 512,
            hidden_width: 4096,
            face_vit: FaceVitConfig::released(),
            fuser: Self::upstream_fuser(4096, 512),
        }
    }

    /// The fuser `FaceT5Encoder` builds (upstream defaults of FaceT5's class).
    fn upstream_fuser(width: usize, len: usize) -> FuserConfig {
        FuserConfig {
            use_checkpoint: Some(true),
            use_transformer_ckpt: Some(true),
            ..FuserConfig::upstream(width, len)
        }
    }

    /// Reads a fixture's or manifest's `config`: the T5 config from `flash_t5_yaml`,
    /// `flash_t5_effective` and `flash_t5` (merged in that order), `max_sequence_length`
    /// from it, the width from `FaceT5Encoder.hidden_width` (else the fuser's `d_model`,
    /// else 4096), `face_vit`, `fuser` (upstream's when absent).
    pub fn from_value(v: &Value) -> Result<Self> {
        let bad = |m: String| Error::config("FaceT5 config", m);
        let mut t5v = serde_json::Map::new();
        for key in ["flash_t5_yaml", "flash_t5_effective", "flash_t5"] {
            if let Some(Value::Object(o)) = v.get(key) {
                for (k, x) in o {
                    t5v.insert(k.clone(), x.clone());
                }
            }
        }
        if t5v.is_empty() {
            return Err(bad("no `flash_t5` (or `flash_t5_yaml`)".into()));
        }
        let t5v = Value::Object(t5v);
        let t5: T5Config =
            serde_json::from_value(t5v.clone()).map_err(|e| bad(format!("flash_t5: {e}")))?;
        let max_sequence_length = t5v
            .get("max_sequence_length")
            .and_then(Value::as_u64)
            .unwrap_or(512) as usize;
        let hidden_width = v
            .pointer("/FaceT5Encoder/hidden_width")
            .or_else(|| v.pointer("/fuser/d_model"))
            .and_then(Value::as_u64)
            .map(|d| d as usize)
            .unwrap_or(4096);
        let face_vit = match v.get("face_vit") {
            Some(f) => {
                serde_json::from_value(f.clone()).map_err(|e| bad(format!("face_vit: {e}")))?
            }
            None => FaceVitConfig::released(),
        };
        let mut fuser = match v.get("fuser") {
            Some(f) => serde_json::from_value(f.clone()).map_err(|e| bad(format!("fuser: {e}")))?,
            None => Self::upstream_fuser(hidden_width, max_sequence_length),
        };
        // FaceT5's class defaults, where the config leaves them out.
        fuser.use_checkpoint.get_or_insert(true);
        fuser.use_transformer_ckpt.get_or_insert(true);
        Ok(Self {
            t5,
            max_sequence_length,
            hidden_width,
            face_vit,
            fuser,
        })
    }
}

/// What [`FaceT5Encoder::forward`] returns.
#[derive(Debug, Clone)]
pub struct FaceT5Output {
    /// The fused text tokens `[B, max_sequence_length, width]` (FLUX's `prompt_embeds`).
    pub fused: Tensor<3>,
    /// The L2-normalised face class token `[B, num_classes]` (returned, never used).
    pub face_cls_norm: Tensor<2>,
}

/// `FaceT5Encoder`: keys `t5_encoder.*` (FlashT5Stack), `face_encoder.*`, `face_patch_proj`,
/// `positional_embedding` (the sinusoidal buffer `[1, L, W]`), `fuser.*`; unused:
/// `face_pos_proj` (its output never reaches the fuser, see
/// [`super::transformer_vanilla`]), `face_encoder.mask_token`, `fuser.enc_output*`.
#[derive(Debug, Clone)]
pub struct FaceT5Encoder {
    t5_encoder: T5Encoder,
    face_encoder: FaceVit,
    face_patch_proj: Linear,
    face_pos_proj: Option<Linear>,
    positional_embedding: Param<Tensor<3>>,
    fuser: TextFaceEmbeddingFuser,
    max_sequence_length: usize,
    mode: BatchMode,
}

impl FaceT5Encoder {
    /// Loads under `vb` (upstream `FaceT5Encoder`'s root; `encoder_2` in the wrapper).
    pub fn load(vb: &VarBuilder, cfg: &FaceT5EncoderConfig) -> Result<Self> {
        let w = cfg.hidden_width;
        if cfg.t5.d_model != w || cfg.fuser.d_model != w {
            return Err(Error::config(
                "FaceT5 config",
                format!(
                    "T5 d_model {}, hidden width {w} and fuser d_model {} must agree",
                    cfg.t5.d_model, cfg.fuser.d_model
                ),
            ));
        }
        if cfg.max_sequence_length == 0 {
            return Err(Error::config("FaceT5 config", "max_sequence_length is 0"));
        }
        let t5_encoder = T5Encoder::load_flash_t5(&vb.pp("t5_encoder"), &cfg.t5)?;
        let face_encoder = FaceVit::load(&vb.pp("face_encoder"), &cfg.face_vit)?;
        let fe = cfg.face_vit.embed_dim;
        let fuser =
            TextFaceEmbeddingFuser::load(&vb.pp("fuser"), &cfg.fuser, FuserVariant::FaceT5)?;
        let face_pos_proj = if fuser.uses_face_pos() {
            Some(Linear::load(&vb.pp("face_pos_proj"), fe, w, true))
        } else {
            vb.expect_unused("face_pos_proj.weight", &[w, fe]);
            vb.expect_unused("face_pos_proj.bias", &[w]);
            None
        };
        Ok(Self {
            t5_encoder,
            face_encoder,
            face_patch_proj: Linear::load(&vb.pp("face_patch_proj"), fe, w, true),
            face_pos_proj,
            positional_embedding: vb
                .tensor("positional_embedding", [1, cfg.max_sequence_length, w]),
            fuser,
            max_sequence_length: cfg.max_sequence_length,
            mode: BatchMode::PerSample,
        })
    }

    /// See the module docs: [`BatchMode::PerSample`] (default) or [`BatchMode::Batched`].
    pub fn with_batch_mode(mut self, mode: BatchMode) -> Self {
        self.mode = mode;
        self
    }

    /// The required id length (the position buffer's, 512 released).
    pub fn max_sequence_length(&self) -> usize {
        self.max_sequence_length
    }

    /// The face ViT (for its input size).
    pub fn face_encoder(&self) -> &FaceVit {
        &self.face_encoder
    }

    /// The T5 encoder (FLUX's `text_encoder_2` in `infer_face_t5_flux.py`).
    pub fn t5_encoder(&self) -> &T5Encoder {
        &self.t5_encoder
    }

    /// `FaceT5Encoder.forward`: `faces` `[B, 3, H, W]` (ToTensor values, any size; resized
    /// to 112×112 bilinearly, no antialias), `input_ids` `[B, max_sequence_length]` (T5 ids,
    /// no attention mask). There is no face-existence input: upstream's `face_exist_mask` is
    /// ignored (no prefix, no token substitution in FaceT5).
    pub fn forward(&self, faces: Tensor<4>, input_ids: Tensor<2, Int>) -> Result<FaceT5Output> {
        self.forward_traced(faces, input_ids, self.mode, &mut Trace::disabled())
    }

    /// [`Self::forward`] with an explicit [`BatchMode`].
    pub fn forward_mode(
        &self,
        faces: Tensor<4>,
        input_ids: Tensor<2, Int>,
        mode: BatchMode,
    ) -> Result<FaceT5Output> {
        self.forward_traced(faces, input_ids, mode, &mut Trace::disabled())
    }

    pub(crate) fn forward_traced(
        &self,
        faces: Tensor<4>,
        input_ids: Tensor<2, Int>,
        mode: BatchMode,
        trace: &mut Trace,
    ) -> Result<FaceT5Output> {
        let [b, l] = input_ids.dims();
        if l != self.max_sequence_length || b != faces.dims()[0] {
            return Err(Error::shape(
                "FaceT5 input_ids (the text position buffer fixes the length; one row per face)",
                &[faces.dims()[0], self.max_sequence_length],
                &[b, l],
            ));
        }
        let face = self.face_encoder.forward_resized(faces)?;
        trace.record_tensor("face_class_token", &face.class_token);
        trace.record_tensor("face_patch_token", &face.patch_token);
        let cls = face.class_token;
        let face_cls_norm = cls.clone() / cls.square().sum_dim(1).sqrt();
        trace.record_tensor("face_cls_norm", &face_cls_norm);
        let face_patch = self.face_patch_proj.forward(face.patch_token);
        trace.record_tensor("face_patch_embed", &face_patch);
        let face_pos = self
            .face_pos_proj
            .as_ref()
            .map(|p| p.forward(self.face_encoder.pos_embed.val()));

        let t5 = self.t5_encoder.forward(input_ids, None)?;
        trace.record_tensor("t5.inputs_embeds", &t5.inputs_embeds);
        for (i, x) in t5.block_outputs.iter().enumerate() {
            trace.record_tensor(format!("t5.block{i}"), x);
        }
        trace.record_tensor("t5.position_bias", &t5.position_bias);
        let text = t5.last_hidden_state;
        trace.record_tensor("text_embedding", &text);
        let text_pos = self.positional_embedding.val();
        trace.record_tensor("text_pos_embedding", &text_pos.clone().expand(text.dims()));

        let prefix = trace.prefix().to_string();
        trace.set_prefix(&format!("{prefix}fuser."));
        let fused = self
            .fuser
            .forward_traced(text, text_pos, face_patch, face_pos, mode, trace);
        trace.set_prefix(&prefix);
        Ok(FaceT5Output {
            fused: fused?,
            face_cls_norm,
        })
    }
}

/// FLUX's text conditioning as `FluxPipeline` takes it.
#[derive(Debug, Clone)]
pub struct FluxConditioning {
    /// `prompt_embeds` `[B, 512, 4096]`: FaceT5's fused tokens.
    pub prompt_embeds: Tensor<3>,
    /// `pooled_prompt_embeds` `[B, 768]`: CLIP-L's `pooler_output` of the raw prompt.
    pub pooled: Tensor<2>,
}

/// `FaceT5FluxWrapper`'s configuration: `encoder_1` (transformers `CLIPTextModel`) and
/// `encoder_2` ([`FaceT5EncoderConfig`]).
#[derive(Debug, Clone)]
pub struct FaceT5FluxConfig {
    pub clip: ClipTextConfig,
    pub face_t5: FaceT5EncoderConfig,
}

impl FaceT5FluxConfig {
    /// The released `face_t5_encoder.pt`: FLUX.1-dev's CLIP-L text encoder (768 wide, 12
    /// layers, 12 heads, QuickGELU, `eos_token_id` 2) and [`FaceT5EncoderConfig::released`].
    pub fn released() -> Self {
        Self {
            clip: ClipTextConfig {
                vocab_size: 49408,
                hidden_size: 768,
                intermediate_size: 3072,
                num_hidden_layers: 12,
                num_attention_heads: 12,
                max_position_embeddings: 77,
                hidden_act: "quick_gelu".into(),
                layer_norm_eps: 1e-5,
                eos_token_id: 2,
                projection_dim: 768,
            },
            face_t5: FaceT5EncoderConfig::released(),
        }
    }

    /// Reads a manifest's `config`: `encoder_1_clip_text_config` and the FaceT5 keys of
    /// [`FaceT5EncoderConfig::from_value`].
    pub fn from_value(v: &Value) -> Result<Self> {
        let clip = match v.get("encoder_1_clip_text_config") {
            Some(c) => serde_json::from_value(c.clone()).map_err(|e| {
                Error::config("FaceT5 config", format!("encoder_1_clip_text_config: {e}"))
            })?,
            None => Self::released().clip,
        };
        Ok(Self {
            clip,
            face_t5: FaceT5EncoderConfig::from_value(v)?,
        })
    }
}

/// `FaceT5FluxWrapper`: keys `encoder_1.text_model.*` (CLIP-L) and `encoder_2.*`
/// ([`FaceT5Encoder`]), exactly those of the released `face_t5_encoder.pt`.
#[derive(Debug, Clone)]
pub struct FaceT5FluxEncoder {
    encoder_1: ClipTextTransformer,
    encoder_2: FaceT5Encoder,
    tokenizer_1: ClipTokenizer,
    device: Device,
}

/// Loading: the key names of the released `face_t5_encoder.pt`, unchanged; no LoRA files.
/// The folder is FaceCLIP's release folder (`model/`): `face_t5_encoder.safetensors` (else
/// `.pt`), with `face_t5_encoder_config.json` when the encoder is not the released size.
impl Pretrained for FaceT5FluxEncoder {
    type Config = FaceT5FluxConfig;
    const COMPONENT: &'static str = "face_t5_encoder";

    fn build(config: &FaceT5FluxConfig, vb: &VarBuilder) -> Result<Self> {
        Self::load_vb(vb, config)
    }

    /// A manifest-style config file ([`FaceT5FluxConfig::from_value`]).
    fn read_config(path: &Path) -> Result<FaceT5FluxConfig> {
        FaceT5FluxConfig::from_value(&read_config::<Value>(path)?)
    }

    /// Quantization applies to the T5 encoder (nearly all of the weights); the face ViT, the
    /// fuser and the CLIP text tower stay in full precision.
    fn quantizes(_config: &FaceT5FluxConfig) -> fn(&str) -> bool {
        |key| key.starts_with("encoder_2.t5_encoder.")
    }

    fn component_folder(dir: &Path) -> Result<PathBuf> {
        Ok(dir.to_path_buf())
    }

    fn folder_config(dir: &Path) -> Result<FaceT5FluxConfig> {
        let path = dir.join(format!("{}_config.json", Self::COMPONENT));
        if path.is_file() {
            <Self as Pretrained>::read_config(&path)
        } else {
            Ok(FaceT5FluxConfig::released())
        }
    }

    fn folder_weights(dir: &Path) -> Result<PathBuf> {
        super::face_clip::release_weights(dir, Self::COMPONENT)
    }
}

impl FaceT5FluxEncoder {
    /// Loads the released `face_t5_encoder.pt` as it ships (strict, no key changes; bf16
    /// values converted to f32).
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_checkpoint(
            Checkpoint::open(path)?,
            &FaceT5FluxConfig::released(),
            device,
        )
    }

    /// Loads from `checkpoint` with `cfg`; the keys must match exactly
    /// ([`Pretrained::load`]).
    pub fn from_checkpoint(
        checkpoint: Checkpoint,
        cfg: &FaceT5FluxConfig,
        device: &Device,
    ) -> Result<Self> {
        <Self as Pretrained>::load(checkpoint, cfg, device)
    }

    /// Builds from `vb` at the wrapper root without checking coverage.
    pub fn load_vb(vb: &VarBuilder, cfg: &FaceT5FluxConfig) -> Result<Self> {
        let encoder_1 = ClipTextTransformer::load_hf(&vb.pp("encoder_1"), &cfg.clip)?;
        let encoder_2 = FaceT5Encoder::load(&vb.pp("encoder_2"), &cfg.face_t5)?;
        let tokenizer_1 = ClipTokenizer::new()?.with_context_length(encoder_1.context_length())?;
        Ok(Self {
            encoder_1,
            encoder_2,
            tokenizer_1,
            device: vb.device().clone(),
        })
    }

    /// See [`FaceT5Encoder::with_batch_mode`].
    pub fn with_batch_mode(mut self, mode: BatchMode) -> Self {
        self.encoder_2 = self.encoder_2.with_batch_mode(mode);
        self
    }

    /// The FaceT5 encoder (`encoder_2`).
    pub fn face_t5(&self) -> &FaceT5Encoder {
        &self.encoder_2
    }

    /// The CLIP-L text encoder (`encoder_1`).
    pub fn clip(&self) -> &ClipTextTransformer {
        &self.encoder_1
    }

    /// The conditioning from token ids: `clip_ids` `[B, 77]` (FLUX `tokenizer`), `t5_ids`
    /// `[B, 512]` (FLUX `tokenizer_2`), `faces` `[B, 3, H, W]`.
    pub fn encode_ids(
        &self,
        faces: Tensor<4>,
        clip_ids: Tensor<2, Int>,
        t5_ids: Tensor<2, Int>,
    ) -> Result<FluxConditioning> {
        let pooled = self.encoder_1.forward(clip_ids)?.pooler_output;
        let fused = self.encoder_2.forward(faces, t5_ids)?.fused;
        Ok(FluxConditioning {
            prompt_embeds: fused,
            pooled,
        })
    }

    /// `FaceT5FluxWrapper.forward`: prompts tokenised by CLIP's slow `CLIPTokenizer` (77,
    /// padded with `<|endoftext|>`) and by `tokenizer_2` (FLUX's T5 tokenizer, padded to the
    /// position buffer's length); `None` faces are zero images (upstream's negative branch).
    pub fn encode<S: AsRef<str>>(
        &self,
        faces: &[Option<RgbImage>],
        prompts: &[S],
        tokenizer_2: &T5Tokenizer,
    ) -> Result<FluxConditioning> {
        if faces.len() != prompts.len() || faces.is_empty() {
            return Err(Error::invalid(format!(
                "{} faces for {} prompts (need one per prompt, at least one)",
                faces.len(),
                prompts.len()
            )));
        }
        let len = self.encoder_2.max_sequence_length();
        if tokenizer_2.max_length() != len {
            return Err(Error::invalid(format!(
                "the T5 tokenizer pads to {} ids, FaceT5 needs exactly {len}",
                tokenizer_2.max_length()
            )));
        }
        let clip_ids = self
            .tokenizer_1
            .encode_hf_slow(prompts, EOT_ID)?
            .ids_tensor(&self.device);
        let t5_ids = tokenizer_2.encode(prompts)?.ids_tensor(&self.device);
        let s = self.encoder_2.face_encoder().config().img_size;
        let images: Vec<RgbImage> = faces
            .iter()
            .map(|f| {
                f.clone().unwrap_or_else(|| RgbImage {
                    width: s,
                    height: s,
                    data: vec![0.0; 3 * s * s],
                })
            })
            .collect();
        let faces = self
            .encoder_2
            .face_encoder()
            .images_to_tensor(&images, &self.device)?;
        self.encode_ids(faces, clip_ids, t5_ids)
    }

    /// Walks the full-size model over a manifest's listing (no weights allocated)
    /// ([`Pretrained::check_listing`]).
    pub fn check_listing(
        checkpoint: Checkpoint,
        cfg: &FaceT5FluxConfig,
        device: &Device,
    ) -> Result<CoverageReport> {
        <Self as Pretrained>::check_listing(checkpoint, cfg, device)
    }
}
