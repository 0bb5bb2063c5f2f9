//! FaceCLIP in Rust: the FaceCLIP-SDXL and FaceT5-FLUX pipelines, their schedulers and model
//! discovery. Load a pipeline once, then make as many images as needed:
//!
//! ```no_run
//! use faceclip_pipeline::{FaceInput, SdxlOptions, SdxlPipeline};
//! use faceclip_pipeline::core::device::default_device;
//!
//! # fn main() -> faceclip_pipeline::core::Result<()> {
//! let device = default_device()?;
//! let pipe = SdxlPipeline::from_pretrained("models", &device)?;
//! let face = FaceInput::open("face.png")?;
//! for prompt in ["a portrait photo in a garden", "an astronaut on the moon"] {
//!     let opts = SdxlOptions::new(prompt).steps(30).seed(7);
//!     for img in pipe.generate(&face, &opts)? {
//!         img.save(format!("out_{}.png", img.seed).as_ref())?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The library prints nothing: progress and previews come through the step callback of
//! `generate_with`, warnings as return values (e.g. [`sdxl::truncated_prompts`]).

pub mod flux;
pub mod hub;
pub mod models;
#[cfg(feature = "parity")]
pub mod parity;
pub mod pipeline_utils;
pub mod schedulers;
pub mod sdxl;

use std::path::{Path, PathBuf};

pub use faceclip_core as core;
pub use faceclip_detect as detect;
pub use faceclip_detect::AlignMode;
pub use faceclip_dit as dit;
pub use faceclip_encoders as encoders;
pub use faceclip_unet as unet;
pub use flux::{FluxOptions, FluxPipeline};
pub use image;
pub use models::{FluxModels, SdxlModels};
pub use pipeline_utils::{
    Control, GeneratedImage, Guidance, LoadOptions, LoraSpec, MemoryPolicy, QuantType, StepInfo,
};
pub use schedulers::{NoiseSource, SchedulerKind};
pub use sdxl::{MicroConditioning, SdxlOptions, SdxlPipeline};

use faceclip_core::image::RgbImage;
use faceclip_core::{Device, Error, Result, Tensor};

/// The seed upstream's infer scripts use.
pub const UPSTREAM_SEED: u64 = 453563;

/// Which of the two systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// FaceCLIP-SDXL (noise prediction; sizes multiples of 8).
    Sdxl,
    /// FaceT5-FLUX (flow matching; sizes multiples of 16).
    Flux,
}

impl Model {
    /// The display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sdxl => "FaceCLIP-SDXL",
            Self::Flux => "FaceT5-FLUX",
        }
    }

    /// Width and height must be multiples of this (the VAE's 8, times FLUX's 2x2 packing).
    pub fn size_multiple(self) -> usize {
        match self {
            Self::Sdxl => 8,
            Self::Flux => 16,
        }
    }

    /// True when `kind` fits this model: flow matching for FLUX, the others for SDXL.
    pub fn fits(self, kind: SchedulerKind) -> bool {
        kind.is_flow_matching() == (self == Self::Flux)
    }

    /// The scheduler names that fit this model.
    pub fn scheduler_names(self) -> Vec<&'static str> {
        SchedulerKind::NAMES
            .iter()
            .copied()
            .filter(|n| n.parse::<SchedulerKind>().is_ok_and(|k| self.fits(k)))
            .collect()
    }
}

/// The largest image side and image count one call accepts.
pub const MAX_SIDE: usize = 4096;
pub const MAX_IMAGES: usize = 64;
pub const MAX_STEPS: usize = 1000;

/// The checks both option types share: steps, size, image count, scheduler.
pub(crate) fn check_common(
    model: Model,
    steps: usize,
    width: usize,
    height: usize,
    num_images: usize,
    scheduler: SchedulerKind,
) -> Result<()> {
    if steps == 0 || steps > MAX_STEPS {
        return Err(Error::invalid(format!(
            "steps {steps} must be between 1 and {MAX_STEPS}"
        )));
    }
    let m = model.size_multiple();
    for (name, v) in [("width", width), ("height", height)] {
        if v == 0 || !v.is_multiple_of(m) {
            return Err(Error::invalid(format!(
                "{name} {v} must be a positive multiple of {m} for {}",
                model.name()
            )));
        }
        if v > MAX_SIDE {
            return Err(Error::invalid(format!("{name} {v} is larger than {MAX_SIDE}")));
        }
    }
    if num_images == 0 || num_images > MAX_IMAGES {
        return Err(Error::invalid(format!(
            "num_images {num_images} must be between 1 and {MAX_IMAGES}"
        )));
    }
    if !model.fits(scheduler) {
        return Err(Error::invalid(format!(
            "scheduler {} does not fit {} ({}); use one of: {}",
            scheduler.name(),
            model.name(),
            match model {
                Model::Sdxl => "a noise-prediction model",
                Model::Flux => "a flow-matching model",
            },
            model.scheduler_names().join(", ")
        )));
    }
    Ok(())
}

/// The setters both option types share (one definition for both).
macro_rules! common_options {
    ($t:ty) => {
        impl $t {
            /// Sets the negative prompt.
            pub fn negative_prompt(mut self, prompt: impl Into<String>) -> Self {
                self.negative_prompt = Some(prompt.into());
                self
            }

            /// Sets the number of denoising steps.
            pub fn steps(mut self, steps: usize) -> Self {
                self.steps = steps;
                self
            }

            /// Sets the seed of the first image (image `i` uses `seed + i`).
            pub fn seed(mut self, seed: u64) -> Self {
                self.seed = seed;
                self
            }

            /// Sets the image size in pixels.
            pub fn size(mut self, width: usize, height: usize) -> Self {
                self.width = width;
                self.height = height;
                self
            }

            /// Sets how many images one call makes.
            pub fn num_images(mut self, n: usize) -> Self {
                self.num_images = n;
                self
            }

            /// Sets the scheduler.
            pub fn scheduler(mut self, kind: $crate::SchedulerKind) -> Self {
                self.scheduler = kind;
                self
            }

            /// Sets the generator of the initial latents.
            pub fn noise(mut self, source: $crate::NoiseSource) -> Self {
                self.noise = source;
                self
            }
        }
    };
}
pub(crate) use common_options;

/// The scheduler `kind` from a pipeline's scheduler config, its noise (ancestral and SDE
/// steps) seeded from the image's `seed`.
pub(crate) fn scheduler_for(
    kind: SchedulerKind,
    config: &serde_json::Value,
    seed: u64,
) -> Result<schedulers::AnyScheduler> {
    use schedulers::Scheduler;
    let mut s = schedulers::AnyScheduler::with_kind(kind, config)?;
    s.set_generator(schedulers::Generator::new(seed ^ 0x5eed));
    Ok(s)
}

/// Adapts a user's [`StepInfo`] callback to the loop's `(step, timestep, latents)` for image
/// `image`; `unpack` turns the loop's latents into `[B, C, h, w]`.
pub(crate) fn step_reporter<'a, const D: usize>(
    image: usize,
    steps: usize,
    on_step: &'a mut pipeline_utils::StepCallback<'_>,
    unpack: impl Fn(&Tensor<D>) -> Result<Tensor<4>> + 'a,
) -> impl FnMut(usize, f32, &Tensor<D>) -> Control + 'a {
    move |step, timestep, x| match unpack(x) {
        Ok(latents) => on_step(&StepInfo {
            image,
            step,
            steps,
            timestep,
            latents,
        }),
        Err(_) => Control::Continue,
    }
}

/// Names image `i` in a cancellation.
pub(crate) fn in_image(e: Error, i: usize) -> Error {
    match e {
        Error::Cancelled { step, .. } => Error::Cancelled { image: i, step },
        e => e,
    }
}

/// One image's metadata: the run's `base`, its seed, the LoRAs, the face source, the software.
pub(crate) fn image_metadata(
    base: &[(&str, String)],
    seed: u64,
    load: &LoadOptions,
    face: &FaceInput,
) -> Vec<(String, String)> {
    let mut md: Vec<(String, String)> = base
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    md.push(("seed".into(), seed.to_string()));
    if let Some(src) = &face.source {
        md.push(("face".into(), src.display().to_string()));
    }
    for l in &load.loras {
        md.push(("lora".into(), format!("{}:{}", l.path.display(), l.scale)));
    }
    md.push((
        "software".into(),
        format!("faceclip-rs {}", env!("CARGO_PKG_VERSION")),
    ));
    md
}

/// Reads a JSON file (through the one config reader, [`faceclip_core::read_config`]).
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    faceclip_core::read_config(path)
}

/// Decoder output `[B, 3, H, W]` in `[-1, 1]` -> `[0, 1]`: `clamp(x/2 + 0.5, 0, 1)`.
pub fn postprocess(image: Tensor<4>) -> Tensor<4> {
    (image / 2.0 + 0.5).clamp(0.0, 1.0)
}

/// A face photo and how to turn it into the crop the encoders see.
#[derive(Debug, Clone)]
pub struct FaceInput {
    pub image: RgbImage,
    /// Where it came from (for messages and metadata); `None` for an in-memory image.
    pub source: Option<PathBuf>,
    /// Whether it is detected and aligned first (default [`AlignMode::Auto`]: an image that
    /// already is an aligned FaceCLIP crop is used as is).
    pub align: AlignMode,
    /// Which detected face to use, largest first.
    pub face_index: usize,
}

impl FaceInput {
    /// Opens a photo (PNG, JPEG, WebP; EXIF orientation applied).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Ok(Self {
            image: RgbImage::open(path)?,
            source: Some(path.to_path_buf()),
            align: AlignMode::default(),
            face_index: 0,
        })
    }

    /// A face from an `image` crate image (any pixel type; alpha dropped).
    pub fn from_image(image: &image::DynamicImage) -> Result<Self> {
        let rgb = image.to_rgb8();
        Ok(Self {
            image: RgbImage::from_rgb8(rgb.width() as usize, rgb.height() as usize, rgb.as_raw())?,
            source: None,
            align: AlignMode::default(),
            face_index: 0,
        })
    }

    /// The aligned face shipped for `--demo` runs (FaceCLIP's asset crop `0001`).
    pub fn demo_face() -> Result<Self> {
        Self::open(models::demo_dir()?.join("face.png"))
    }

    /// Sets the [`AlignMode`].
    pub fn align(mut self, mode: AlignMode) -> Self {
        self.align = mode;
        self
    }

    /// Sets which detected face to use (largest first).
    pub fn face_index(mut self, index: usize) -> Self {
        self.face_index = index;
        self
    }

    fn source_path(&self) -> PathBuf {
        self.source.clone().unwrap_or_else(|| PathBuf::from("<image>"))
    }

    /// The crop the encoders see, as [`Self::align`] says.
    pub(crate) fn crop(&self, aligner: &FaceAligner) -> Result<RgbImage> {
        if self.align == AlignMode::Never {
            return Ok(self.image.clone());
        }
        let rgb = self.image.to_rgb8();
        let crop = aligner
            .mtcnn()?
            .face_crop(
                (self.image.width, self.image.height, rgb.as_slice()),
                self.align,
                self.face_index,
                448,
            )
            .map_err(|e| Error::Image {
                path: self.source_path(),
                reason: e.to_string(),
            })?;
        if crop.is_as_is() {
            return Ok(self.image.clone());
        }
        let img = crop.image();
        RgbImage::from_rgb8(img.width, img.height, &img.data)
    }
}

/// The MTCNN detector, built on first use and kept.
pub(crate) struct FaceAligner {
    device: Device,
    mtcnn: std::cell::OnceCell<faceclip_detect::Mtcnn>,
}

impl FaceAligner {
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.clone(),
            mtcnn: std::cell::OnceCell::new(),
        }
    }

    fn mtcnn(&self) -> Result<&faceclip_detect::Mtcnn> {
        if let Some(m) = self.mtcnn.get() {
            return Ok(m);
        }
        let m = faceclip_detect::Mtcnn::new(&self.device)?;
        Ok(self.mtcnn.get_or_init(|| m))
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
    let face = FaceInput {
        image: image.clone(),
        source: Some(source.to_path_buf()),
        align: AlignMode::Always,
        face_index,
    };
    face.crop(&FaceAligner::new(device))
}
