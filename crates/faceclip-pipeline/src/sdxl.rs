//! FaceCLIP-SDXL: `infer_face_clip_sdxl.py` through diffusers' `StableDiffusionXLPipeline`,
//! as a load-once [`SdxlPipeline`].
//!
//! Positive conditioning is the FaceCLIP-L/G encoding of the face and prompt; negative is the
//! same encoder with a zero face, face mask off and upstream's negative prompt. Classifier-free
//! guidance (default 5.0) on the batch `[negative; positive]`, SDXL micro-conditioning
//! ([`MicroConditioning`]), Euler steps, VAE decode.

use faceclip_core::{Checkpoint, Device, Error, Pretrained, Result, Tensor, TensorData};
use faceclip_encoders::fusion::{FaceClipSdxlConfig, FaceClipSdxlEncoder};
use faceclip_unet::{AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConditionModel};

use crate::models::SdxlModels;
use crate::pipeline_utils::{
    Control, Denoiser, GeneratedImage, Guidance, LoadOptions, Slot, StepCallback, denoise,
};
use crate::schedulers::{NoiseSource, Scheduler, SchedulerKind, read_scheduler_config};
use crate::{FaceAligner, FaceInput};

pub use faceclip_encoders::fusion::{SDXL_NEGATIVE_PROMPT as DEFAULT_NEGATIVE, SdxlConditioning};

/// SDXL's micro-conditioning (diffusers' `original_size`, `crops_coords_top_left`,
/// `target_size` and their `negative_*` twins); sizes are `(height, width)`, crops
/// `(top, left)`. Unset sizes are the image size. The negative time ids differ from the
/// positive ones only when both `negative_original_size` and `negative_target_size` are set,
/// as in diffusers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MicroConditioning {
    pub original_size: Option<(usize, usize)>,
    pub crops_coords_top_left: (usize, usize),
    pub target_size: Option<(usize, usize)>,
    pub negative_original_size: Option<(usize, usize)>,
    pub negative_crops_coords_top_left: (usize, usize),
    pub negative_target_size: Option<(usize, usize)>,
}

impl MicroConditioning {
    /// The `(positive, negative)` time ids `[orig_h, orig_w, top, left, target_h, target_w]`
    /// for an image of `height` x `width`.
    pub fn time_ids(&self, height: usize, width: usize) -> ([f32; 6], [f32; 6]) {
        let ids = |orig: (usize, usize), crop: (usize, usize), target: (usize, usize)| {
            [orig.0, orig.1, crop.0, crop.1, target.0, target.1].map(|v| v as f32)
        };
        let size = (height, width);
        let pos = ids(
            self.original_size.unwrap_or(size),
            self.crops_coords_top_left,
            self.target_size.unwrap_or(size),
        );
        let neg = match (self.negative_original_size, self.negative_target_size) {
            (Some(o), Some(t)) => ids(o, self.negative_crops_coords_top_left, t),
            _ => pos,
        };
        (pos, neg)
    }

    /// True when nothing differs from diffusers' defaults.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// What one FaceCLIP-SDXL call makes; upstream's defaults (864x1152, 50 Euler steps, CFG 5.0,
/// seed 453563, upstream's negative prompt). Build with [`SdxlOptions::new`] and the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SdxlOptions {
    pub prompt: String,
    /// The negative prompt (`None`: upstream's [`DEFAULT_NEGATIVE`]).
    pub negative_prompt: Option<String>,
    pub steps: usize,
    /// Classifier-free guidance scale (diffusers' `guidance_scale`; ≤ 1 turns it off).
    pub guidance_scale: f32,
    /// Image `i` is made from seed `seed + i`, so it can be made again alone.
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    pub num_images: usize,
    /// Any noise-prediction scheduler (not flow matching).
    pub scheduler: SchedulerKind,
    /// Which generator draws the initial latents.
    pub noise: NoiseSource,
    pub micro: MicroConditioning,
}

impl Default for SdxlOptions {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: None,
            steps: 50,
            guidance_scale: 5.0,
            seed: crate::UPSTREAM_SEED,
            width: 864,
            height: 1152,
            num_images: 1,
            scheduler: SchedulerKind::EulerDiscrete,
            noise: NoiseSource::default(),
            micro: MicroConditioning::default(),
        }
    }
}

crate::common_options!(SdxlOptions);

impl SdxlOptions {
    /// Upstream's defaults with `prompt`.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }

    /// Sets the classifier-free guidance scale.
    pub fn guidance_scale(mut self, scale: f32) -> Self {
        self.guidance_scale = scale;
        self
    }

    /// Sets the micro-conditioning.
    pub fn micro(mut self, micro: MicroConditioning) -> Self {
        self.micro = micro;
        self
    }

    /// Everything that can be wrong with these options, before anything loads.
    pub fn validate(&self) -> Result<()> {
        crate::check_common(
            crate::Model::Sdxl,
            self.steps,
            self.width,
            self.height,
            self.num_images,
            self.scheduler,
        )?;
        if !self.guidance_scale.is_finite() {
            return Err(Error::invalid("the guidance scale must be finite"));
        }
        Ok(())
    }

    fn negative(&self) -> &str {
        self.negative_prompt.as_deref().unwrap_or(DEFAULT_NEGATIVE)
    }
}

/// The prompts `opts` gives that are longer than CLIP's 77 tokens (upstream cuts them
/// silently); needs no model, so a program can warn before loading.
pub fn truncated_prompts(opts: &SdxlOptions) -> Result<Vec<String>> {
    let prompts = [format!("{} ", opts.prompt), opts.negative().to_string()];
    let cut = faceclip_encoders::tokenizer_clip::ClipTokenizer::new()?
        .encode_openclip(&prompts)?
        .truncated;
    Ok([opts.prompt.as_str(), opts.negative()]
        .into_iter()
        .zip(cut)
        .filter(|(_, c)| *c)
        .map(|(p, _)| p.to_string())
        .collect())
}

/// The conditioning of one UNet pass: `[B, 77, 2048]` prompt embeddings, `[B, 1280]` pooled
/// text embeddings, `[B, 6]` micro-conditioning time ids.
#[derive(Debug, Clone)]
pub struct UnetConditioning {
    pub prompt_embeds: Tensor<3>,
    pub text_embeds: Tensor<2>,
    pub time_ids: Tensor<2>,
}

impl UnetConditioning {
    /// The encoder's output with the time ids `ids` on every row.
    pub fn new(c: SdxlConditioning, ids: [f32; 6]) -> Self {
        let rows = c.prompt_embeds.dims()[0];
        let device = c.prompt_embeds.device();
        let data: Vec<f32> = (0..rows).flat_map(|_| ids).collect();
        Self {
            time_ids: Tensor::from_data(TensorData::new(data, [rows, 6]), &device),
            prompt_embeds: c.prompt_embeds,
            text_embeds: c.pooled,
        }
    }
}

impl Denoiser<4> for UNet2DConditionModel {
    type Cond = UnetConditioning;

    fn predict(&self, x: Tensor<4>, timestep: f32, c: &UnetConditioning) -> Result<Tensor<4>> {
        let t = crate::pipeline_utils::filled(timestep, 1, &x.device());
        self.forward(
            x,
            t,
            c.prompt_embeds.clone(),
            Some(c.text_embeds.clone()),
            Some(c.time_ids.clone()),
        )
    }

    fn concat(n: &UnetConditioning, p: &UnetConditioning) -> UnetConditioning {
        UnetConditioning {
            prompt_embeds: Tensor::cat(vec![n.prompt_embeds.clone(), p.prompt_embeds.clone()], 0),
            text_embeds: Tensor::cat(vec![n.text_embeds.clone(), p.text_embeds.clone()], 0),
            time_ids: Tensor::cat(vec![n.time_ids.clone(), p.time_ids.clone()], 0),
        }
    }
}

/// FaceCLIP-SDXL, loaded once: `SdxlPipeline::from_pretrained(dir, &device)?` then
/// [`SdxlPipeline::generate`] as often as needed, with any face, prompt and seed.
pub struct SdxlPipeline {
    device: Device,
    models: SdxlModels,
    load: LoadOptions,
    encoder_cfg: FaceClipSdxlConfig,
    unet_cfg: UNet2DConditionConfig,
    vae_cfg: AutoencoderKLConfig,
    scheduler_cfg: serde_json::Value,
    encoder: Slot<FaceClipSdxlEncoder>,
    unet: Slot<UNet2DConditionModel>,
    vae: Slot<AutoencoderKL>,
    aligner: FaceAligner,
}

impl SdxlPipeline {
    /// Loads the models of a model folder (layout: [`crate::models`]), keeping them loaded.
    pub fn from_pretrained(dir: impl AsRef<std::path::Path>, device: &Device) -> Result<Self> {
        Self::load(SdxlModels::discover(dir.as_ref())?, device, &LoadOptions::default())
    }

    /// Loads `models` on `device` as `options` say (every config is read and checked first;
    /// under [`crate::MemoryPolicy::KeepLoaded`] every model is loaded now).
    pub fn load(models: SdxlModels, device: &Device, options: &LoadOptions) -> Result<Self> {
        options.check()?;
        let encoder_cfg = match &models.encoder_config {
            Some(p) => FaceClipSdxlConfig::from_value(&crate::read_json(p)?)?,
            None => FaceClipSdxlConfig::released(),
        };
        let unet_cfg = UNet2DConditionConfig::from_file(&models.unet_config)?;
        let vae_cfg = AutoencoderKLConfig::from_file(models.vae_dir.join("config.json"))?;
        let (_, scheduler_cfg) = read_scheduler_config(&models.scheduler_config)?;
        let mut me = Self {
            device: device.clone(),
            models,
            load: options.clone(),
            encoder_cfg,
            unet_cfg,
            vae_cfg,
            scheduler_cfg,
            encoder: Slot::OnDemand,
            unet: Slot::OnDemand,
            vae: Slot::OnDemand,
            aligner: FaceAligner::new(device),
        };
        let memory = options.memory;
        me.encoder = Slot::new(memory, || me.load_encoder())?;
        me.unet = Slot::new(memory, || me.load_unet())?;
        me.vae = Slot::new(memory, || me.load_vae())?;
        Ok(me)
    }

    /// The files this pipeline reads.
    pub fn models(&self) -> &SdxlModels {
        &self.models
    }

    /// The device the models run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn load_encoder(&self) -> Result<FaceClipSdxlEncoder> {
        FaceClipSdxlEncoder::from_checkpoint(
            Checkpoint::open(&self.models.encoder)?,
            &self.encoder_cfg,
            &self.device,
        )
    }

    fn load_unet(&self) -> Result<UNet2DConditionModel> {
        UNet2DConditionModel::load_options(
            Checkpoint::open(&self.models.unet)?,
            &self.unet_cfg,
            &self.load.denoiser_weights(),
            &self.device,
        )
    }

    fn load_vae(&self) -> Result<AutoencoderKL> {
        AutoencoderKL::from_folder(&self.models.vae_dir, &self.device)
    }

    /// Encodes `face` (aligned as its [`crate::AlignMode`] says) with the prompt, and the
    /// negative prompt with a zero face: the `(positive, negative)` encoder outputs.
    pub fn encode(
        &self,
        face: &FaceInput,
        opts: &SdxlOptions,
    ) -> Result<(SdxlConditioning, SdxlConditioning)> {
        let crop = face.crop(&self.aligner)?;
        // Upstream appends a space to the prompt before tokenising.
        let prompt = format!("{} ", opts.prompt);
        self.encoder.with(
            || self.load_encoder(),
            |enc| {
                Ok((
                    enc.encode(&[Some(crop)], &[prompt])?,
                    enc.encode(&[None], &[opts.negative()])?,
                ))
            },
        )
    }

    /// Makes `opts.num_images` images of the person in `face`, as `infer_face_clip_sdxl.py`.
    pub fn generate(&self, face: &FaceInput, opts: &SdxlOptions) -> Result<Vec<GeneratedImage>> {
        self.generate_with(face, opts, &mut |_| Control::Continue)
    }

    /// [`Self::generate`] calling `on_step` after every denoising step of every image; it
    /// may stop the run ([`Error::Cancelled`]).
    pub fn generate_with(
        &self,
        face: &FaceInput,
        opts: &SdxlOptions,
        on_step: &mut StepCallback<'_>,
    ) -> Result<Vec<GeneratedImage>> {
        opts.validate()?;
        let (pos, neg) = self.encode(face, opts)?;
        let (pos_ids, neg_ids) = opts.micro.time_ids(opts.height, opts.width);
        let (pos, neg) = (UnetConditioning::new(pos, pos_ids), UnetConditioning::new(neg, neg_ids));
        let f = self.vae_cfg.downscale_factor();
        let shape = [self.unet_cfg.in_channels, opts.height / f, opts.width / f];
        let latents = self.unet.with(
            || self.load_unet(),
            |unet| {
                (0..opts.num_images)
                    .map(|i| {
                        let seed = opts.seed.wrapping_add(i as u64);
                        let mut scheduler = crate::scheduler_for(opts.scheduler, &self.scheduler_cfg, seed)?;
                        scheduler.set_timesteps(opts.steps)?;
                        let noise = crate::schedulers::initial_noise(opts.noise, seed, 1, shape, &self.device);
                        denoise(
                            unet,
                            &mut scheduler,
                            noise,
                            &pos,
                            Some(&neg),
                            Guidance::Batched(opts.guidance_scale),
                            &mut crate::step_reporter(i, opts.steps, on_step, |x: &Tensor<4>| Ok(x.clone())),
                        )
                        .map_err(|e| crate::in_image(e, i))
                    })
                    .collect::<Result<Vec<_>>>()
            },
        )?;
        let mut metadata = vec![
            ("prompt", opts.prompt.clone()),
            ("negative_prompt", opts.negative().to_string()),
            ("steps", opts.steps.to_string()),
            ("guidance", opts.guidance_scale.to_string()),
            ("scheduler", opts.scheduler.class_name().to_string()),
            ("noise", opts.noise.to_string()),
            ("model", "FaceCLIP-SDXL".to_string()),
        ];
        if !opts.micro.is_default() {
            let (p, n) = opts.micro.time_ids(opts.height, opts.width);
            metadata.push(("time_ids", format!("{p:?}")));
            metadata.push(("negative_time_ids", format!("{n:?}")));
        }
        self.vae.with(
            || self.load_vae(),
            |vae| {
                latents
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| {
                        let seed = opts.seed.wrapping_add(i as u64);
                        GeneratedImage::from_tensor(
                            decode(vae, x)?,
                            seed,
                            crate::image_metadata(&metadata, seed, &self.load, face),
                        )
                    })
                    .collect()
            },
        )
    }
}

/// Images larger than this many pixels on a side are decoded in tiles.
pub const TILE_ABOVE: usize = 1536;

/// Decodes denoiser latents to images `[B, 3, H, W]` in `[0, 1]`: `vae.decode(z / scaling)`,
/// then `clamp(x/2 + 0.5)`. Large images decode in tiles.
pub fn decode(vae: &AutoencoderKL, latents: Tensor<4>) -> Result<Tensor<4>> {
    let z = vae.unscale_latents(latents);
    let [_, _, h, w] = z.dims();
    let f = vae.downscale_factor();
    // Untiled up to 1536 px a side, as upstream (diffusers does not tile by default); beyond,
    // 512-px tiles keep memory bounded.
    let img = if h * f > TILE_ABOVE || w * f > TILE_ABOVE {
        let tiling = faceclip_unet::TiledDecode {
            tile_sample_size: 512,
            overlap_factor: 0.25,
        };
        vae.tiled_decode(z, &tiling)?
    } else {
        vae.decode(z)?
    };
    crate::pipeline_utils::check_finite_images(&img)?;
    Ok(crate::postprocess(img))
}
