//! FaceCLIP in Rust: schedulers, the FaceCLIP-SDXL and FaceT5-FLUX pipelines, model discovery
//! and the parity dispatch.
//!
//! ```no_run
//! use faceclip_pipeline::{FaceInput, GenerateOptions, models::SdxlModels, sdxl};
//! use faceclip_pipeline::core::device::default_device;
//!
//! # fn main() -> faceclip_pipeline::core::Result<()> {
//! let device = default_device()?;
//! let models = SdxlModels::discover("models".as_ref())?;
//! let face = FaceInput::open("face.png", false)?;
//! let opts = GenerateOptions::sdxl("a portrait photo in a garden");
//! for (i, img) in sdxl::generate(&models, &face, &opts, &device)?.iter().enumerate() {
//!     img.save(format!("out_{i}.png").as_ref())?;
//! }
//! # Ok(()) }
//! ```

pub mod flux;
pub mod hub;
pub mod models;
pub mod parity;
pub mod schedulers;
pub mod sdxl;

use std::path::{Path, PathBuf};

pub use faceclip_core as core;
pub use faceclip_detect as detect;
pub use faceclip_dit as dit;
pub use faceclip_encoders as encoders;
pub use faceclip_unet as unet;
pub use schedulers::SchedulerKind;

use faceclip_core::image::RgbImage;
use faceclip_core::{Device, Error, Result, Tensor};

/// Fails with [`Error::Numerical`] when `x` holds NaN or Inf after step `step` (timestep `t`).
pub fn check_finite<const D: usize>(x: &Tensor<D>, step: usize, t: f32) -> Result<()> {
    if non_finite(x) {
        return Err(Error::Numerical(format!(
            "the latents hold NaN or Inf after step {} (timestep {t}); {F16_HINT}",
            step + 1
        )));
    }
    Ok(())
}

const F16_HINT: &str = "the usual cause is f16 overflow: run in f32 or bf16";

fn non_finite<const D: usize>(x: &Tensor<D>) -> bool {
    x.clone().is_nan().any().into_scalar() || x.clone().is_inf().any().into_scalar()
}

/// The VAE's decoded images must be finite: the SDXL VAE is known to overflow in f16.
pub(crate) fn check_finite_images(x: &Tensor<4>) -> Result<()> {
    if non_finite(x) {
        return Err(Error::Numerical(format!(
            "the VAE decoded NaN or Inf pixels; {F16_HINT}"
        )));
    }
    Ok(())
}

/// What a pipeline fixture (`pipeline_sdxl`, `pipeline_flux`) gives both pipelines' parity
/// checks: the scheduler of kind `kind` from its `config.scheduler`, the numbers of its
/// `extra.call`, and its (positive, negative) conditioning `(prompt_embeds, pooled)`.
pub(crate) struct FixtureCall {
    pub scheduler: schedulers::AnyScheduler,
    pub cond: (Tensor<3>, Tensor<2>),
    pub uncond: (Tensor<3>, Tensor<2>),
    call: serde_json::Value,
    meta: PathBuf,
}

impl FixtureCall {
    pub fn read(fx: &faceclip_core::Fixture, kind: SchedulerKind, device: &Device) -> Result<Self> {
        let meta = fx.dir.join("meta.json");
        let scheduler = schedulers::AnyScheduler::with_kind(
            kind,
            fx.config()
                .get("scheduler")
                .unwrap_or(&serde_json::Value::Null),
        )?;
        let call = fx
            .extra()
            .get("call")
            .cloned()
            .ok_or_else(|| Error::config(&meta, "no extra.call"))?;
        let embeds = |neg: &str| -> Result<(Tensor<3>, Tensor<2>)> {
            Ok((
                fx.tensor(&format!("in.{neg}prompt_embeds"), device)?,
                fx.tensor(&format!("in.{neg}pooled_prompt_embeds"), device)?,
            ))
        };
        Ok(Self {
            scheduler,
            cond: embeds("")?,
            uncond: embeds("negative_")?,
            call,
            meta,
        })
    }

    /// The number `extra.call.{key}`.
    pub fn num(&self, key: &str) -> Result<f64> {
        self.call
            .get(key)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| Error::config(&self.meta, format!("no extra.call.{key}")))
    }
}

/// Reads a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::config(path, e))
}

/// One stderr line per prompt the tokenizer cut (`truncated[i]` for `prompts[i]`), when the
/// run shows progress: upstream truncates silently; the user should know the tail is ignored.
pub(crate) fn warn_truncated(
    prompts: &[&str],
    truncated: &[bool],
    tokenizer: &str,
    limit: usize,
    show: bool,
) {
    if !show {
        return;
    }
    for (p, _) in prompts.iter().zip(truncated).filter(|(_, t)| **t) {
        let head: String = p.chars().take(40).collect();
        eprintln!(
            "warning: the prompt \"{head}...\" is longer than {tokenizer}'s {limit} tokens; \
             the rest is ignored (as upstream does)"
        );
    }
}

/// A progress bar over `steps` denoising steps with it/s (hidden when `show` is false).
pub(crate) fn progress_bar(steps: usize, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} steps [{elapsed_precise}<{eta_precise}, {per_sec}]",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Decoder output `[B, 3, H, W]` in `[-1, 1]` -> `[0, 1]`: `clamp(x/2 + 0.5, 0, 1)`.
pub fn postprocess(image: Tensor<4>) -> Tensor<4> {
    (image / 2.0 + 0.5).clamp(0.0, 1.0)
}

/// A face photo and how to use it.
#[derive(Debug, Clone)]
pub struct FaceInput {
    pub image: RgbImage,
    /// Where it came from (for messages and PNG metadata).
    pub source: PathBuf,
    /// True when `image` is already an aligned FaceCLIP crop (skip detection).
    pub aligned: bool,
    /// Which detected face to use, largest first.
    pub face_index: usize,
}

impl FaceInput {
    /// The aligned face shipped for `--demo` runs (FaceCLIP's asset crop `0001`).
    pub fn demo_face() -> Result<Self> {
        let path = models::demo_dir()?.join("face.png");
        Self::open(path, true)
    }

    /// Opens a photo; `aligned` skips detection.
    pub fn open(path: impl AsRef<Path>, aligned: bool) -> Result<Self> {
        let path = path.as_ref();
        Ok(Self {
            image: RgbImage::open(path)?,
            source: path.to_path_buf(),
            aligned,
            face_index: 0,
        })
    }

    /// The aligned crop the encoders see: the image itself when `aligned`, otherwise the
    /// detected face `face_index` aligned to the ArcFace template at 448x448.
    pub fn aligned_crop(&self, device: &Device) -> Result<RgbImage> {
        if self.aligned {
            Ok(self.image.clone())
        } else {
            align_face(&self.image, &self.source, self.face_index, device)
        }
    }
}

/// Detects the faces of `image` (MTCNN), picks `face_index` (largest first) and aligns it to
/// the ArcFace template at 448x448, as FaceCLIP's training crops were made.
pub fn align_face(
    image: &RgbImage,
    source: &Path,
    face_index: usize,
    device: &Device,
) -> Result<RgbImage> {
    let rgb = image.to_rgb8();
    let mtcnn = faceclip_detect::Mtcnn::new(device)?;
    let face = mtcnn
        .detect_and_align((image.width, image.height, rgb.as_slice()), face_index, 448)
        .map_err(|e| Error::Image {
            path: source.to_path_buf(),
            reason: e.to_string(),
        })?;
    RgbImage::from_rgb8(face.image.width, face.image.height, &face.image.data)
}

/// Generation settings shared by both pipelines; `None` means the pipeline's default.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub prompt: String,
    /// The negative prompt (default: upstream's).
    pub negative: Option<String>,
    pub steps: usize,
    /// SDXL classifier-free guidance (default 5.0).
    pub cfg: Option<f32>,
    /// FLUX true CFG (default 3.5).
    pub true_cfg: Option<f32>,
    /// FLUX distilled guidance (default 1.0).
    pub guidance: Option<f32>,
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    pub num_images: usize,
    pub scheduler: SchedulerKind,
    /// Show a progress bar over the steps.
    pub progress: bool,
}

impl GenerateOptions {
    /// A typed error unless width and height are positive multiples of `multiple` (the VAE's
    /// downscale, times FLUX's 2x2 packing).
    pub(crate) fn check_size(&self, multiple: usize) -> Result<()> {
        let fits = |x: usize| x > 0 && x.is_multiple_of(multiple);
        if fits(self.width) && fits(self.height) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "width and height must be positive multiples of {multiple}, got {}x{}",
            self.width, self.height
        )))
    }

    /// Upstream's SDXL defaults: 864x1152, 50 Euler steps, CFG 5.0, seed 453563.
    pub fn sdxl(prompt: &str) -> Self {
        Self {
            prompt: prompt.into(),
            negative: None,
            steps: 50,
            cfg: None,
            true_cfg: None,
            guidance: None,
            seed: 453563,
            width: 864,
            height: 1152,
            num_images: 1,
            scheduler: SchedulerKind::EulerDiscrete,
            progress: false,
        }
    }

    /// Upstream's FLUX defaults: 864x1152, 50 flow-match steps, true CFG 3.5, guidance 1.0.
    pub fn flux(prompt: &str) -> Self {
        Self {
            scheduler: SchedulerKind::FlowMatchEulerDiscrete,
            ..Self::sdxl(prompt)
        }
    }
}

/// One generated image with the text metadata its PNG carries.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub width: usize,
    pub height: usize,
    /// Interleaved RGB8.
    pub pixels: Vec<u8>,
    pub metadata: Vec<(&'static str, String)>,
}

impl GeneratedImage {
    /// Turns `[B, 3, H, W]` images in `[0, 1]` into RGB8 images with `metadata` (+ the seed
    /// and index of each).
    pub fn from_batch(images: Tensor<4>, metadata: &[(&'static str, String)]) -> Result<Vec<Self>> {
        let [b, _, h, w] = images.dims();
        let mut out = Vec::with_capacity(b);
        for i in 0..b {
            let img: Tensor<3> = images.clone().narrow(0, i, 1).squeeze_dim(0);
            let data = faceclip_core::to_vec_f32(img);
            let rgb = RgbImage {
                width: w,
                height: h,
                data,
            };
            let mut md = metadata.to_vec();
            md.push(("index", i.to_string()));
            out.push(Self {
                width: w,
                height: h,
                pixels: rgb.to_rgb8(),
                metadata: md,
            });
        }
        Ok(out)
    }

    /// Writes a PNG (atomically) carrying the metadata as text chunks.
    pub fn save(&self, path: &Path) -> Result<()> {
        faceclip_core::image::save_rgb8_png(
            &self.pixels,
            self.width,
            self.height,
            path,
            &self.metadata,
        )
    }
}
