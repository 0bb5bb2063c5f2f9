//! What both pipelines share (diffusers' `pipeline_utils.py` and the loop every diffusers
//! pipeline repeats): the [`Denoiser`] a loop drives, classifier-free [`Guidance`], the one
//! denoising loop [`denoise`], per-step callbacks ([`StepInfo`] -> [`Control`]), how models
//! stay in memory ([`MemoryPolicy`], [`LoadOptions`]) and the images a run makes
//! ([`GeneratedImage`]).

use std::path::{Path, PathBuf};

use faceclip_core::{Error, Result, Tensor, TensorData};

use crate::schedulers::{AnyScheduler, Scheduler};

/// A model the denoising loop drives: the SDXL UNet (noise prediction) or the FLUX
/// transformer (velocity), on latents of rank `D`.
pub trait Denoiser<const D: usize> {
    /// What the model is conditioned on (prompt embeddings, pooled embedding, ...).
    type Cond;
    /// The model's prediction for `x` (already scaled by the scheduler) at the scheduler's
    /// `timestep`, conditioned on `cond` (one row per row of `x`).
    fn predict(&self, x: Tensor<D>, timestep: f32, cond: &Self::Cond) -> Result<Tensor<D>>;
    /// `[negative; positive]` as one batch, for [`Guidance::Batched`].
    fn concat(negative: &Self::Cond, positive: &Self::Cond) -> Self::Cond;
}

/// Classifier-free guidance: `negative + scale · (positive − negative)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Guidance {
    /// One pass on the positive conditioning (a scale ≤ 1 gives this too).
    Off,
    /// Both conditionings in one batch `[negative; positive]`, as SDXL's `guidance_scale`.
    Batched(f32),
    /// Two passes, positive then negative, as FluxPipeline's `true_cfg_scale`.
    TwoPass(f32),
}

impl Guidance {
    /// The guidance actually applied: `Off` when the scale is at most 1 (diffusers'
    /// `do_classifier_free_guidance`).
    fn effective(self) -> Self {
        match self {
            Self::Batched(s) | Self::TwoPass(s) if s <= 1.0 => Self::Off,
            g => g,
        }
    }
}

/// What a step callback is told after each denoising step.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// Which image of the run (0-based).
    pub image: usize,
    /// The step just done (0-based) and the number of steps.
    pub step: usize,
    pub steps: usize,
    /// The scheduler timestep of the step.
    pub timestep: f32,
    /// The latents after the step, `[1, C, H/f, W/f]` (FLUX's packed latents unpacked).
    pub latents: Tensor<4>,
}

/// What a step callback answers: go on, or stop the run ([`Error::Cancelled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Control {
    #[default]
    Continue,
    Stop,
}

/// A per-step callback: progress bars, previews, cancellation.
pub type StepCallback<'a> = dyn FnMut(&StepInfo) -> Control + 'a;

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

/// The denoising loop of both pipelines. The scheduler must have its timesteps set;
/// `noise` is unscaled (multiplied here by `init_noise_sigma`, as `prepare_latents` does).
/// Each step scales the input, runs `model` as `guidance` says, and steps the scheduler;
/// `on_step(step, timestep, latents)` may stop the run ([`Error::Cancelled`], `image` 0).
/// Returns the final latents.
pub fn denoise<const D: usize, M: Denoiser<D>>(
    model: &M,
    scheduler: &mut AnyScheduler,
    noise: Tensor<D>,
    positive: &M::Cond,
    negative: Option<&M::Cond>,
    guidance: Guidance,
    on_step: &mut dyn FnMut(usize, f32, &Tensor<D>) -> Control,
) -> Result<Tensor<D>> {
    let guidance = match negative {
        Some(_) => guidance.effective(),
        None => Guidance::Off,
    };
    let batched = match (guidance, negative) {
        (Guidance::Batched(_), Some(n)) => Some(M::concat(n, positive)),
        _ => None,
    };
    let mut x = noise * scheduler.init_noise_sigma();
    let b = x.dims()[0];
    let timesteps = scheduler.timesteps().to_vec();
    for (i, &t) in timesteps.iter().enumerate() {
        let out = match (guidance, negative, &batched) {
            (Guidance::Batched(s), _, Some(both)) => {
                let xin = scheduler.scale_model_input(Tensor::cat(vec![x.clone(), x.clone()], 0), t)?;
                let out = model.predict(xin, t, both)?;
                let u = out.clone().narrow(0, 0, b);
                let c = out.narrow(0, b, b);
                u.clone() + (c - u) * s
            }
            (Guidance::TwoPass(s), Some(n), _) => {
                let xin = scheduler.scale_model_input(x.clone(), t)?;
                let c = model.predict(xin.clone(), t, positive)?;
                let u = model.predict(xin, t, n)?;
                u.clone() + (c - u) * s
            }
            _ => {
                let xin = scheduler.scale_model_input(x.clone(), t)?;
                model.predict(xin, t, positive)?
            }
        };
        x = scheduler.step(out, t, x)?;
        check_finite(&x, i, t)?;
        if on_step(i, t, &x) == Control::Stop {
            return Err(Error::Cancelled {
                image: 0,
                step: i + 1,
            });
        }
    }
    Ok(x)
}

/// A `[n]` tensor holding `value` `n` times, on `device`.
pub(crate) fn filled(value: f32, n: usize, device: &faceclip_core::Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(vec![value; n], [n]), device)
}

/// Which models stay in memory between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryPolicy {
    /// Every component is loaded once, when the pipeline is built; each image after that
    /// pays no load time. Peak memory: the sum of the components.
    #[default]
    KeepLoaded,
    /// Each component is loaded when a call needs it and dropped after use (encoder before
    /// denoising, denoiser before decoding): peak memory about the largest component, load
    /// time paid on every call. For one-off runs on small machines.
    Sequential,
}

pub use faceclip_core::lora::LoraSpec;
pub use faceclip_core::quant::QuantType;
use faceclip_core::WeightOptions;

/// How a pipeline loads its models.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Which models stay in memory (default [`MemoryPolicy::KeepLoaded`]).
    pub memory: MemoryPolicy,
    /// LoRAs merged into the denoiser (UNet / FLUX transformer) as it loads.
    pub loras: Vec<LoraSpec>,
    /// Weight-only quantization of the big models' linear layers as they load (FLUX: the
    /// transformer and FaceT5's T5 encoder; SDXL: the UNet); `None`: full precision, or as a
    /// `.gguf` file stores them.
    pub quant: Option<QuantType>,
}

impl LoadOptions {
    /// The defaults: every model kept loaded, no LoRA.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the [`MemoryPolicy`].
    pub fn memory(mut self, memory: MemoryPolicy) -> Self {
        self.memory = memory;
        self
    }

    /// Adds a LoRA merged into the denoiser.
    pub fn lora(mut self, path: impl Into<PathBuf>, scale: f32) -> Self {
        self.loras.push(LoraSpec::new(path, scale));
        self
    }

    /// Sets the block format of the big models' linear weights ([`LoadOptions::quant`]).
    pub fn quant(mut self, quant: Option<QuantType>) -> Self {
        self.quant = quant;
        self
    }

    /// What the denoiser's loader does to its weights: the LoRAs and the quantization.
    pub(crate) fn denoiser_weights(&self) -> WeightOptions {
        WeightOptions::new().loras(&self.loras).quant(self.quant)
    }

    /// Every LoRA file must exist before anything loads.
    pub(crate) fn check(&self) -> Result<()> {
        for l in &self.loras {
            std::fs::metadata(&l.path).map_err(|e| Error::io(&l.path, e))?;
        }
        Ok(())
    }
}

/// A model kept loaded, or loaded for one use.
pub(crate) enum Slot<T> {
    Loaded(T),
    OnDemand,
}

impl<T> Slot<T> {
    /// Loads now under [`MemoryPolicy::KeepLoaded`].
    pub fn new(memory: MemoryPolicy, load: impl FnOnce() -> Result<T>) -> Result<Self> {
        Ok(match memory {
            MemoryPolicy::KeepLoaded => Self::Loaded(load()?),
            MemoryPolicy::Sequential => Self::OnDemand,
        })
    }

    /// Runs `f` on the model: the kept one, or one loaded now and dropped after `f`.
    pub fn with<R>(&self, load: impl FnOnce() -> Result<T>, f: impl FnOnce(&T) -> Result<R>) -> Result<R> {
        match self {
            Self::Loaded(m) => f(m),
            Self::OnDemand => f(&load()?),
        }
    }
}

/// One generated image with the metadata its file carries.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    /// The pixels.
    pub image: image::RgbImage,
    /// The seed that makes this image alone: the run's seed + the image's index.
    pub seed: u64,
    /// `(key, value)` text metadata (prompt, seed, steps, guidance, scheduler, model, ...).
    pub metadata: Vec<(String, String)>,
}

impl GeneratedImage {
    /// RGB8 images from `[1, 3, H, W]` values in `[0, 1]`.
    pub(crate) fn from_tensor(
        images: Tensor<4>,
        seed: u64,
        metadata: Vec<(String, String)>,
    ) -> Result<Self> {
        let [_, _, h, w] = images.dims();
        let img: Tensor<3> = images.narrow(0, 0, 1).squeeze_dim(0);
        let planar = faceclip_core::image::RgbImage {
            width: w,
            height: h,
            data: faceclip_core::to_vec_f32(img),
        };
        let image = image::RgbImage::from_raw(w as u32, h as u32, planar.to_rgb8())
            .ok_or_else(|| Error::shape("decoded image", &[h, w, 3], &[planar.data.len()]))?;
        Ok(Self {
            image,
            seed,
            metadata,
        })
    }

    /// The value of metadata `key`.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Writes the image atomically in the format `path`'s extension names (PNG, JPEG, WebP),
    /// with the metadata where the format carries it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let md: Vec<(&str, String)> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        faceclip_core::image::save_rgb8(
            self.image.as_raw(),
            self.image.width() as usize,
            self.image.height() as usize,
            path,
            &md,
        )
        .map(|_| ())
    }
}
