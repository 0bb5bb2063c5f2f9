//! The FaceCLIP-SDXL text encoder, upstream `FaceCLIP_L_G_Wrapper`
//! (`core/face_clip/face_clip.py`), as `infer_face_clip_sdxl.py` uses it: the L-14 and
//! bigG-14 [`TextImageBranch`]es side by side, giving SDXL's prompt embeddings
//! `[B, 77, 768 + 1280]` and pooled embedding `[B, 1280]`.

use std::path::{Path, PathBuf};

use faceclip_core::image::RgbImage;
use faceclip_core::{
    Checkpoint, CoverageReport, Device, Error, Pretrained, Result, Tensor, VarBuilder, read_config,
};
use serde_json::Value;

use crate::tokenizer_clip::ClipTokenizer;

use super::text_image_branch::{
    ID_PREFIX, ID_SYMBOL, ID_TEXT, TextImageBranch, TextImageBranchConfig,
};
use super::{BatchMode, Trace};

/// The negative prompt `infer_face_clip_sdxl.py` pairs with a zero face.
pub const SDXL_NEGATIVE_PROMPT: &str = "nude, worst quality, low quality, normal quality, nsfw, abstract, glitch, deformed, \
mutated, ugly, disfigured, text, watermark, bad hands, error, jpeg artifacts, blurry, \
missing fingers, poorly drawn face, ugly eyes, imperfect eyes, deformed pupils, deformed iris, bad anatomy";

/// The two branches' configurations (upstream `configs/face_clip_{l,g}_14_config.yaml`).
#[derive(Debug, Clone)]
pub struct FaceClipSdxlConfig {
    pub face_clip_l: TextImageBranchConfig,
    pub face_clip_g: TextImageBranchConfig,
}

impl FaceClipSdxlConfig {
    /// The released `face_clip_encoder.pt`'s configuration.
    pub fn released() -> Self {
        Self {
            face_clip_l: TextImageBranchConfig::released_l(),
            face_clip_g: TextImageBranchConfig::released_g(),
        }
    }

    /// Reads `{"face_clip_l": {...}, "face_clip_g": {...}}` (a fixture's or manifest's
    /// `config`; see [`TextImageBranchConfig::from_value`]).
    pub fn from_value(v: &Value) -> Result<Self> {
        let branch = |k: &str| {
            v.get(k)
                .ok_or_else(|| Error::config("FaceCLIP config", format!("no `{k}`")))
                .and_then(TextImageBranchConfig::from_value)
        };
        Ok(Self {
            face_clip_l: branch("face_clip_l")?,
            face_clip_g: branch("face_clip_g")?,
        })
    }
}

/// SDXL's text conditioning as `StableDiffusionXLPipeline` takes it.
#[derive(Debug, Clone)]
pub struct SdxlConditioning {
    /// `prompt_embeds` `[B, 77, W_L + W_G]` = `cat(fused_L, fused_G)`.
    pub prompt_embeds: Tensor<3>,
    /// `pooled_prompt_embeds` `[B, W_G]`: bigG's text-tower pooled output (before
    /// `text_projection`, with the face token, not from the fuser).
    pub pooled: Tensor<2>,
}

/// The tokenised input of both branches.
#[derive(Debug, Clone)]
pub struct FaceClipTokens {
    /// open_clip ids `[B, L]`, row-major, with the prefix on face rows.
    pub ids: Vec<i64>,
    /// Where the face token replaces the embedding: `(ids == 1014) & id_text_mask`.
    pub substitute: Vec<bool>,
    pub seq_len: usize,
}

/// `FaceCLIP_L_G_Wrapper`: keys `face_clip_l.*`, `face_clip_g.*` (those of
/// `face_clip_encoder.pt` after infer's `k.replace('model.', '')`).
#[derive(Debug, Clone)]
pub struct FaceClipSdxlEncoder {
    face_clip_l: TextImageBranch,
    face_clip_g: TextImageBranch,
    tokenizer: ClipTokenizer,
    face_token_id: i64,
    id_len: usize,
    mode: BatchMode,
    device: Device,
}

/// Loading: key names as `infer_face_clip_sdxl.py` rewrites them; no LoRA files. The folder
/// is FaceCLIP's release folder (`model/`): `face_clip_encoder.safetensors` (else `.pt`),
/// with `face_clip_encoder_config.json` when the encoder is not the released size.
impl Pretrained for FaceClipSdxlEncoder {
    type Config = FaceClipSdxlConfig;
    const COMPONENT: &'static str = "face_clip_encoder";

    fn build(config: &FaceClipSdxlConfig, vb: &VarBuilder) -> Result<Self> {
        Self::load_vb(vb, config)
    }

    /// A `{"face_clip_l": {...}, "face_clip_g": {...}}` file ([`FaceClipSdxlConfig::from_value`]).
    fn read_config(path: &Path) -> Result<FaceClipSdxlConfig> {
        FaceClipSdxlConfig::from_value(&read_config::<Value>(path)?)
    }

    /// `k.replace('model.', '')`, every occurrence, as upstream's inference script does.
    fn adapt(checkpoint: Checkpoint, _config: &FaceClipSdxlConfig) -> Result<Checkpoint> {
        Ok(checkpoint.rename(|k| Some(k.replace("model.", ""))))
    }

    fn component_folder(dir: &Path) -> Result<PathBuf> {
        Ok(dir.to_path_buf())
    }

    fn folder_config(dir: &Path) -> Result<FaceClipSdxlConfig> {
        let path = dir.join(format!("{}_config.json", Self::COMPONENT));
        if path.is_file() {
            <Self as Pretrained>::read_config(&path)
        } else {
            Ok(FaceClipSdxlConfig::released())
        }
    }

    fn folder_weights(dir: &Path) -> Result<PathBuf> {
        release_weights(dir, Self::COMPONENT)
    }
}

/// The weights of the single-file model `stem` in FaceCLIP's release folder `dir`:
/// `stem.gguf` (quantized by `faceclip convert --quant`), else `stem.safetensors`
/// (memory-mapped), else `stem.pt`.
pub(super) fn release_weights(dir: &Path, stem: &str) -> Result<PathBuf> {
    for ext in ["gguf", "safetensors", "pt"] {
        let p = dir.join(format!("{stem}.{ext}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::io(
        dir,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("none of `{stem}.gguf`, `{stem}.safetensors`, `{stem}.pt` is in this folder"),
        ),
    ))
}

impl FaceClipSdxlEncoder {
    /// Loads the released `face_clip_encoder.pt` (or a `.safetensors` copy) as it ships.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_checkpoint(
            Checkpoint::open(path)?,
            &FaceClipSdxlConfig::released(),
            device,
        )
    }

    /// Loads from `checkpoint` with `cfg`. Key names are rewritten as
    /// `infer_face_clip_sdxl.py` does (`k.replace('model.', '')`, every occurrence), then
    /// must match the model exactly (strict, as upstream's `load_state_dict`).
    /// ([`Pretrained::load`]).
    pub fn from_checkpoint(
        checkpoint: Checkpoint,
        cfg: &FaceClipSdxlConfig,
        device: &Device,
    ) -> Result<Self> {
        <Self as Pretrained>::load(checkpoint, cfg, device)
    }

    /// Builds from `vb` at the wrapper root without checking coverage (see
    /// [`VarBuilder::finish`] / [`VarBuilder::report`]).
    pub fn load_vb(vb: &VarBuilder, cfg: &FaceClipSdxlConfig) -> Result<Self> {
        let face_clip_l = TextImageBranch::load(&vb.pp("face_clip_l"), &cfg.face_clip_l)?;
        let face_clip_g = TextImageBranch::load(&vb.pp("face_clip_g"), &cfg.face_clip_g)?;
        let ctx = face_clip_l.text_tower().context_length();
        if face_clip_g.text_tower().context_length() != ctx {
            return Err(Error::config(
                "FaceCLIP config",
                "the two branches' text context lengths differ",
            ));
        }
        // Both branches use the same open_clip SimpleTokenizer.
        let tokenizer = ClipTokenizer::new()?.with_context_length(ctx)?;
        let face_token_id = *tokenizer
            .encode_openclip_body(ID_SYMBOL)?
            .first()
            .ok_or_else(|| Error::Tokenizer("`id` has no token".into()))?;
        // `(tokenizer(id_text) != 0).sum() - 1`: SOT plus the prefix tokens.
        let id_len = tokenizer
            .encode_openclip(&[ID_TEXT])?
            .ids
            .iter()
            .filter(|&&i| i != 0)
            .count()
            - 1;
        Ok(Self {
            face_clip_l,
            face_clip_g,
            tokenizer,
            face_token_id,
            id_len,
            mode: BatchMode::PerSample,
            device: vb.device().clone(),
        })
    }

    /// Chooses how a batched call treats the bi-attention's batch-wide maximum (default
    /// [`BatchMode::PerSample`], i.e. each row as `infer_face_clip_sdxl.py`'s batch-of-one
    /// calls; the two agree unless logits spread over 50000).
    pub fn with_batch_mode(mut self, mode: BatchMode) -> Self {
        self.mode = mode;
        self
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `TextImageBranch.forward`'s text side: rows with a face get [`ID_PREFIX`]; ids from
    /// open_clip's tokenizer (zero padded to 77); the substitution mask is true where the id
    /// is `id` (1014) within the first 7 positions of a face row.
    pub fn tokenize<S: AsRef<str>>(
        &self,
        prompts: &[S],
        face_exist: &[bool],
    ) -> Result<FaceClipTokens> {
        if prompts.len() != face_exist.len() {
            return Err(Error::invalid(format!(
                "{} prompts for {} face flags",
                prompts.len(),
                face_exist.len()
            )));
        }
        let texts: Vec<String> = prompts
            .iter()
            .zip(face_exist)
            .map(|(t, &m)| {
                if m {
                    format!("{ID_PREFIX}{}", t.as_ref())
                } else {
                    t.as_ref().to_string()
                }
            })
            .collect();
        let batch = self.tokenizer.encode_openclip(&texts)?;
        let l = batch.seq_len;
        let substitute = batch
            .ids
            .iter()
            .enumerate()
            .map(|(i, &id)| face_exist[i / l] && i % l < self.id_len && id == self.face_token_id)
            .collect();
        Ok(FaceClipTokens {
            ids: batch.ids,
            substitute,
            seq_len: l,
        })
    }

    /// Encodes prompts with faces: `None` is upstream's negative branch (a zero image and
    /// `face_exist_mask` false: no prefix, no substitution); `Some` image (ToTensor values,
    /// any size) has a face. One row per prompt.
    pub fn encode<S: AsRef<str>>(
        &self,
        faces: &[Option<RgbImage>],
        prompts: &[S],
    ) -> Result<SdxlConditioning> {
        if faces.len() != prompts.len() || faces.is_empty() {
            return Err(Error::invalid(format!(
                "{} faces for {} prompts (need one per prompt, at least one)",
                faces.len(),
                prompts.len()
            )));
        }
        let exist: Vec<bool> = faces.iter().map(Option::is_some).collect();
        let tokens = self.tokenize(prompts, &exist)?;
        let branch_faces = |b: &TextImageBranch| -> Result<Tensor<4>> {
            let s = b.face_encoder().config().img_size;
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
            b.face_encoder().images_to_tensor(&images, &self.device)
        };
        let l = self.face_clip_l.forward(
            branch_faces(&self.face_clip_l)?,
            &tokens.ids,
            tokens.seq_len,
            &tokens.substitute,
            self.mode,
        )?;
        let g = self.face_clip_g.forward(
            branch_faces(&self.face_clip_g)?,
            &tokens.ids,
            tokens.seq_len,
            &tokens.substitute,
            self.mode,
        )?;
        Ok(SdxlConditioning {
            prompt_embeds: Tensor::cat(vec![l.fused, g.fused], 2),
            pooled: g.pooled,
        })
    }

    /// [`Self::encode`] on a face batch `[B, 3, H, W]` (ToTensor values, any size) with
    /// upstream's `face_exist_mask` (false rows: no prefix, no substitution; upstream feeds
    /// them zero images, but the given image is used as it is).
    pub fn encode_tensor<S: AsRef<str>>(
        &self,
        faces: Tensor<4>,
        face_exist: &[bool],
        prompts: &[S],
    ) -> Result<SdxlConditioning> {
        self.encode_tensor_traced(faces, face_exist, prompts, &mut Trace::disabled())
    }

    pub(crate) fn encode_tensor_traced<S: AsRef<str>>(
        &self,
        faces: Tensor<4>,
        face_exist: &[bool],
        prompts: &[S],
        trace: &mut Trace,
    ) -> Result<SdxlConditioning> {
        let b = faces.dims()[0];
        if b != prompts.len() || b == 0 {
            return Err(Error::invalid(format!(
                "{b} faces for {} prompts",
                prompts.len()
            )));
        }
        let tokens = self.tokenize(prompts, face_exist)?;
        trace.set_prefix("l.");
        let l = self.face_clip_l.forward_traced(
            faces.clone(),
            &tokens.ids,
            tokens.seq_len,
            &tokens.substitute,
            self.mode,
            trace,
        )?;
        trace.set_prefix("g.");
        let g = self.face_clip_g.forward_traced(
            faces,
            &tokens.ids,
            tokens.seq_len,
            &tokens.substitute,
            self.mode,
            trace,
        )?;
        trace.set_prefix("");
        Ok(SdxlConditioning {
            prompt_embeds: Tensor::cat(vec![l.fused, g.fused], 2),
            pooled: g.pooled,
        })
    }

    /// Walks the full-size model over a manifest's listing (no weights allocated) and
    /// returns how it covers the model ([`Pretrained::check_listing`]).
    pub fn check_listing(
        checkpoint: Checkpoint,
        cfg: &FaceClipSdxlConfig,
        device: &Device,
    ) -> Result<CoverageReport> {
        <Self as Pretrained>::check_listing(checkpoint, cfg, device)
    }
}
