//! FaceT5-FLUX: `infer_face_t5_flux.py` through diffusers' `FluxPipeline`, as a load-once
//! [`FluxPipeline`].
//!
//! FaceT5 embeds `[B, 512, 4096]` with the stock CLIP-L pooled embedding `[B, 768]`; packed
//! latents and position ids; flow-match Euler with the resolution-dependent shift; true CFG
//! (default 3.5: two transformer passes a step, positive first) with distilled guidance
//! (default 1.0); VAE decode with shift and scale.

use faceclip_core::{Checkpoint, Device, Error, Pretrained, Result, Tensor, WeightOptions};
use faceclip_dit::{
    FluxRotaryEmbedding, FluxTransformer2DModel, FluxTransformerConfig, image_ids, pack_latents,
    text_ids, unpack_latents,
};
use faceclip_encoders::fusion::{FaceT5FluxConfig, FaceT5FluxEncoder};
use faceclip_encoders::tokenizer_t5::T5Tokenizer;
use faceclip_unet::{AutoencoderKL, AutoencoderKLConfig};

use crate::models::FluxModels;
use crate::pipeline_utils::{
    Control, Denoiser, GeneratedImage, Guidance, LoadOptions, Slot, StepCallback, denoise, filled,
};
use crate::schedulers::{NoiseSource, Scheduler, SchedulerKind, read_scheduler_config};
use crate::{FaceAligner, FaceInput};

pub use faceclip_encoders::fusion::{FLUX_NEGATIVE_PROMPT as DEFAULT_NEGATIVE, FluxConditioning};

/// What one FaceT5-FLUX call makes; upstream's defaults (864x1152, 50 flow-match steps, true
/// CFG 3.5, guidance 1.0, seed 453563, upstream's negative prompt). Build with
/// [`FluxOptions::new`] and the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FluxOptions {
    pub prompt: String,
    /// The negative prompt (`None`: upstream's [`DEFAULT_NEGATIVE`]).
    pub negative_prompt: Option<String>,
    pub steps: usize,
    /// True classifier-free guidance (FluxPipeline's `true_cfg_scale`; ≤ 1 turns it off and
    /// skips the negative pass).
    pub true_cfg_scale: f32,
    /// Distilled guidance fed to the transformer (FluxPipeline's `guidance_scale`).
    pub guidance_scale: f32,
    /// Image `i` is made from seed `seed + i`, so it can be made again alone.
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    pub num_images: usize,
    /// A flow-matching scheduler.
    pub scheduler: SchedulerKind,
    /// Which generator draws the initial latents.
    pub noise: NoiseSource,
}

impl Default for FluxOptions {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: None,
            steps: 50,
            true_cfg_scale: 3.5,
            guidance_scale: 1.0,
            seed: crate::UPSTREAM_SEED,
            width: 864,
            height: 1152,
            num_images: 1,
            scheduler: SchedulerKind::FlowMatchEulerDiscrete,
            noise: NoiseSource::default(),
        }
    }
}

crate::common_options!(FluxOptions);

impl FluxOptions {
    /// Upstream's defaults with `prompt`.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }

    /// Sets the true CFG scale.
    pub fn true_cfg_scale(mut self, scale: f32) -> Self {
        self.true_cfg_scale = scale;
        self
    }

    /// Sets the distilled guidance.
    pub fn guidance_scale(mut self, scale: f32) -> Self {
        self.guidance_scale = scale;
        self
    }

    /// Everything that can be wrong with these options, before anything loads.
    pub fn validate(&self) -> Result<()> {
        crate::check_common(
            crate::Model::Flux,
            self.steps,
            self.width,
            self.height,
            self.num_images,
            self.scheduler,
        )?;
        if !(self.true_cfg_scale.is_finite() && self.guidance_scale.is_finite()) {
            return Err(Error::invalid("the guidance scales must be finite"));
        }
        Ok(())
    }

    fn negative(&self) -> &str {
        self.negative_prompt.as_deref().unwrap_or(DEFAULT_NEGATIVE)
    }
}

/// The FLUX transformer with what every step of one image shares: the rotary embedding of
/// its text and image positions and the distilled guidance.
pub struct FluxDenoiser<'a> {
    pub transformer: &'a FluxTransformer2DModel,
    pub rope: FluxRotaryEmbedding,
    /// `[B]` distilled guidance (for guidance-distilled models).
    pub guidance: Option<Tensor<1>>,
}

impl<'a> FluxDenoiser<'a> {
    /// For packed latents of a `grid_h` x `grid_w` grid, `text_len` text tokens, batch `b`.
    pub fn new(
        transformer: &'a FluxTransformer2DModel,
        (grid_h, grid_w): (usize, usize),
        text_len: usize,
        guidance: f32,
        b: usize,
        device: &Device,
    ) -> Result<Self> {
        let rope = transformer.rotary_embedding(text_ids(text_len, device), image_ids(grid_h, grid_w, device))?;
        Ok(Self {
            transformer,
            rope,
            guidance: transformer
                .config()
                .guidance_embeds
                .then(|| filled(guidance, b, device)),
        })
    }
}

impl Denoiser<3> for FluxDenoiser<'_> {
    type Cond = FluxConditioning;

    fn predict(&self, x: Tensor<3>, timestep: f32, c: &FluxConditioning) -> Result<Tensor<3>> {
        let b = x.dims()[0];
        let t = filled(timestep / 1000.0, b, &x.device());
        self.transformer.forward_with_rope(
            x,
            c.prompt_embeds.clone(),
            c.pooled.clone(),
            t,
            self.guidance.clone(),
            &self.rope,
        )
    }

    fn concat(n: &FluxConditioning, p: &FluxConditioning) -> FluxConditioning {
        FluxConditioning {
            prompt_embeds: Tensor::cat(vec![n.prompt_embeds.clone(), p.prompt_embeds.clone()], 0),
            pooled: Tensor::cat(vec![n.pooled.clone(), p.pooled.clone()], 0),
        }
    }
}

/// FaceT5-FLUX, loaded once: `FluxPipeline::from_pretrained(dir, &device)?` then
/// [`FluxPipeline::generate`] as often as needed.
pub struct FluxPipeline {
    device: Device,
    models: FluxModels,
    load: LoadOptions,
    encoder_cfg: FaceT5FluxConfig,
    tokenizer: T5Tokenizer,
    dit_cfg: FluxTransformerConfig,
    vae_cfg: AutoencoderKLConfig,
    scheduler_cfg: serde_json::Value,
    encoder: Slot<FaceT5FluxEncoder>,
    transformer: Slot<FluxTransformer2DModel>,
    vae: Slot<AutoencoderKL>,
    aligner: FaceAligner,
}

impl FluxPipeline {
    /// Loads the models of a model folder (layout: [`crate::models`]), keeping them loaded.
    pub fn from_pretrained(dir: impl AsRef<std::path::Path>, device: &Device) -> Result<Self> {
        Self::load(FluxModels::discover(dir.as_ref())?, device, &LoadOptions::default())
    }

    /// Loads `models` on `device` as `options` say (configs and tokenizer read and checked
    /// first; under [`crate::MemoryPolicy::KeepLoaded`] every model is loaded now).
    pub fn load(models: FluxModels, device: &Device, options: &LoadOptions) -> Result<Self> {
        options.check()?;
        let encoder_cfg = match &models.encoder_config {
            Some(p) => FaceT5FluxConfig::from_value(&crate::read_json(p)?)?,
            None => FaceT5FluxConfig::released(),
        };
        let tokenizer = T5Tokenizer::from_file(&models.t5_tokenizer)?
            .with_max_length(encoder_cfg.face_t5.max_sequence_length)?;
        let dit_cfg = FluxTransformerConfig::from_file(&models.dit_config)?;
        let vae_cfg = AutoencoderKLConfig::from_file(models.vae_dir.join("config.json"))?;
        let (_, scheduler_cfg) = read_scheduler_config(&models.scheduler_config)?;
        let mut me = Self {
            device: device.clone(),
            models,
            load: options.clone(),
            encoder_cfg,
            tokenizer,
            dit_cfg,
            vae_cfg,
            scheduler_cfg,
            encoder: Slot::OnDemand,
            transformer: Slot::OnDemand,
            vae: Slot::OnDemand,
            aligner: FaceAligner::new(device),
        };
        let memory = options.memory;
        me.encoder = Slot::new(memory, || me.load_encoder())?;
        me.transformer = Slot::new(memory, || me.load_transformer())?;
        me.vae = Slot::new(memory, || me.load_vae())?;
        Ok(me)
    }

    /// The files this pipeline reads.
    pub fn models(&self) -> &FluxModels {
        &self.models
    }

    /// The device the models run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn load_encoder(&self) -> Result<FaceT5FluxEncoder> {
        FaceT5FluxEncoder::load_options(
            Checkpoint::open(&self.models.encoder)?,
            &self.encoder_cfg,
            &WeightOptions::new().quant(self.load.quant),
            &self.device,
        )
    }

    fn load_transformer(&self) -> Result<FluxTransformer2DModel> {
        FluxTransformer2DModel::load_options(
            Checkpoint::open(&self.models.dit)?,
            &self.dit_cfg,
            &self.load.denoiser_weights(),
            &self.device,
        )
    }

    fn load_vae(&self) -> Result<AutoencoderKL> {
        AutoencoderKL::from_folder(&self.models.vae_dir, &self.device)
    }

    /// The T5 token count prompts are padded or cut to.
    pub fn max_sequence_length(&self) -> usize {
        self.encoder_cfg.face_t5.max_sequence_length
    }

    /// The prompts of `opts` longer than the T5 encoder's `max_sequence_length` tokens
    /// (upstream cuts them silently).
    pub fn truncated_prompts(&self, opts: &FluxOptions) -> Result<Vec<String>> {
        let prompts = [opts.prompt.as_str(), opts.negative()];
        let cut = self.tokenizer.encode(&prompts)?.truncated;
        Ok(prompts
            .into_iter()
            .zip(cut)
            .filter(|(_, c)| *c)
            .map(|(p, _)| p.to_string())
            .collect())
    }

    /// Encodes `face` with the prompt and, when true CFG is on, the negative prompt with a
    /// zero face: the `(positive, negative)` conditionings.
    pub fn encode(
        &self,
        face: &FaceInput,
        opts: &FluxOptions,
    ) -> Result<(FluxConditioning, Option<FluxConditioning>)> {
        let crop = face.crop(&self.aligner)?;
        self.encoder.with(
            || self.load_encoder(),
            |enc| {
                let pos = enc.encode(&[Some(crop)], &[opts.prompt.as_str()], &self.tokenizer)?;
                let neg = (opts.true_cfg_scale > 1.0)
                    .then(|| enc.encode(&[None], &[opts.negative()], &self.tokenizer))
                    .transpose()?;
                Ok((pos, neg))
            },
        )
    }

    /// Makes `opts.num_images` images of the person in `face`, as `infer_face_t5_flux.py`.
    pub fn generate(&self, face: &FaceInput, opts: &FluxOptions) -> Result<Vec<GeneratedImage>> {
        self.generate_with(face, opts, &mut |_| Control::Continue)
    }

    /// [`Self::generate`] calling `on_step` after every denoising step of every image; it
    /// may stop the run ([`Error::Cancelled`]).
    pub fn generate_with(
        &self,
        face: &FaceInput,
        opts: &FluxOptions,
        on_step: &mut StepCallback<'_>,
    ) -> Result<Vec<GeneratedImage>> {
        opts.validate()?;
        let (pos, neg) = self.encode(face, opts)?;
        let f = self.vae_cfg.downscale_factor();
        let (lh, lw) = (2 * (opts.height / (2 * f)), 2 * (opts.width / (2 * f)));
        let shape = [self.dit_cfg.in_channels / 4, lh, lw];
        let text_len = pos.prompt_embeds.dims()[1];
        let latents = self.transformer.with(
            || self.load_transformer(),
            |transformer| {
                let model = FluxDenoiser::new(
                    transformer,
                    (lh / 2, lw / 2),
                    text_len,
                    opts.guidance_scale,
                    1,
                    &self.device,
                )?;
                (0..opts.num_images)
                    .map(|i| {
                        let seed = opts.seed.wrapping_add(i as u64);
                        let noise = pack_latents(crate::schedulers::initial_noise(
                            opts.noise,
                            seed,
                            1,
                            shape,
                            &self.device,
                        ))?;
                        let mut scheduler =
                            crate::scheduler_for(opts.scheduler, &self.scheduler_cfg, seed)?;
                        scheduler.set_image_seq_len(noise.dims()[1]);
                        scheduler.set_timesteps(opts.steps)?;
                        denoise(
                            &model,
                            &mut scheduler,
                            noise,
                            &pos,
                            neg.as_ref(),
                            Guidance::TwoPass(opts.true_cfg_scale),
                            &mut crate::step_reporter(i, opts.steps, on_step, |x: &Tensor<3>| {
                                unpack_latents(x.clone(), lh, lw)
                            }),
                        )
                        .map_err(|e| crate::in_image(e, i))
                    })
                    .collect::<Result<Vec<_>>>()
            },
        )?;
        let metadata = vec![
            ("prompt", opts.prompt.clone()),
            ("negative_prompt", opts.negative().to_string()),
            ("steps", opts.steps.to_string()),
            ("true_cfg", opts.true_cfg_scale.to_string()),
            ("guidance", opts.guidance_scale.to_string()),
            ("scheduler", opts.scheduler.class_name().to_string()),
            ("noise", opts.noise.to_string()),
            ("model", "FaceT5-FLUX".to_string()),
        ];
        self.vae.with(
            || self.load_vae(),
            |vae| {
                latents
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| {
                        let seed = opts.seed.wrapping_add(i as u64);
                        GeneratedImage::from_tensor(
                            decode(vae, x, lh, lw)?,
                            seed,
                            crate::image_metadata(&metadata, seed, &self.load, face),
                        )
                    })
                    .collect()
            },
        )
    }
}

/// Unpacks and decodes: `vae.decode(z / scaling + shift)`, then `clamp(x/2 + 0.5)`.
pub fn decode(
    vae: &AutoencoderKL,
    packed: Tensor<3>,
    height: usize,
    width: usize,
) -> Result<Tensor<4>> {
    let latents = unpack_latents(packed, height, width)?;
    crate::sdxl::decode(vae, latents)
}
