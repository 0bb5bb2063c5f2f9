//! FaceCLIP-SDXL: `infer_face_clip_sdxl.py` through diffusers' `StableDiffusionXLPipeline`,
//! on any burn backend.
//!
//! Positive conditioning is the FaceCLIP-L/G encoding of the face and prompt; negative is the
//! same encoder with a zero face, face mask off and upstream's negative prompt. Classifier-free
//! guidance (default 5.0), SDXL micro-conditioning time ids `(H, W, 0, 0, H, W)`, Euler steps,
//! VAE decode.

use faceclip_core::{Checkpoint, Device, Fixture, ParityReport, Result, Tensor, TensorData};
use faceclip_encoders::fusion::{FaceClipSdxlConfig, FaceClipSdxlEncoder};
use faceclip_unet::{AutoencoderKL, UNet2DConditionConfig, UNet2DConditionModel};

use crate::models::SdxlModels;
use crate::schedulers::{AnyScheduler, Scheduler, read_scheduler_config};
use crate::{
    FaceInput, FixtureCall, GenerateOptions, GeneratedImage, check_finite, postprocess,
    progress_bar,
};

/// Loads the FaceCLIP-L/G encoder of `models` (its config file when present, else the
/// released configuration).
pub fn load_encoder(models: &SdxlModels, device: &Device) -> Result<FaceClipSdxlEncoder> {
    let cfg = match &models.encoder_config {
        Some(p) => FaceClipSdxlConfig::from_value(&crate::read_json(p)?)?,
        None => FaceClipSdxlConfig::released(),
    };
    FaceClipSdxlEncoder::from_checkpoint(Checkpoint::open(&models.encoder)?, &cfg, device)
}

/// Generates `opts.num_images` images of the person in `face`, as `infer_face_clip_sdxl.py`
/// does. Components load when needed and are dropped after use, so peak memory is about the
/// largest model (the UNet), not the sum.
pub fn generate(
    models: &SdxlModels,
    face: &FaceInput,
    opts: &GenerateOptions,
    device: &Device,
) -> Result<Vec<GeneratedImage>> {
    opts.check_size(8)?;
    let crop = face.aligned_crop(device)?;
    let n = opts.num_images;
    let negative = opts
        .negative
        .clone()
        .unwrap_or_else(|| DEFAULT_NEGATIVE.to_string());
    let prompt = format!("{} ", opts.prompt);
    let cut = faceclip_encoders::tokenizer_clip::ClipTokenizer::new()?
        .encode_openclip(&[prompt.as_str(), negative.as_str()])?
        .truncated;
    let limit = faceclip_encoders::tokenizer_clip::CONTEXT_LENGTH;
    crate::warn_truncated(
        &[&opts.prompt, &negative],
        &cut,
        "CLIP",
        limit,
        opts.progress,
    );
    let (cond, uncond) = {
        let encoder = load_encoder(models, device)?;
        let cond = encoder.encode(&vec![Some(crop); n], &vec![prompt; n])?;
        let uncond = encoder.encode(&vec![None; n], &vec![negative.clone(); n])?;
        (cond, uncond)
    };
    let (_, sched_cfg) = read_scheduler_config(&models.scheduler_config)?;
    let mut scheduler = AnyScheduler::with_kind(opts.scheduler, &sched_cfg)?;
    scheduler.set_generator(crate::schedulers::Generator::new(opts.seed ^ 0x5eed));
    let vae_cfg =
        faceclip_unet::AutoencoderKLConfig::from_file(models.vae_dir.join("config.json"))?;
    let latents = {
        let unet_cfg = UNet2DConditionConfig::from_file(&models.unet_config)?;
        let unet = UNet2DConditionModel::load(Checkpoint::open(&models.unet)?, &unet_cfg, device)?;
        let f = vae_cfg.downscale_factor();
        let mut rng = crate::schedulers::Generator::new(opts.seed);
        let noise = rng.randn(
            [n, unet_cfg.in_channels, opts.height / f, opts.width / f],
            device,
        );
        let bar = progress_bar(opts.steps, opts.progress);
        let guidance = opts.cfg.unwrap_or(5.0);
        let x = denoise(
            &unet,
            &mut scheduler,
            noise,
            &cond,
            &uncond,
            guidance,
            (opts.height, opts.width),
            opts.steps,
            &mut |_| bar.inc(1),
        )?;
        bar.finish_and_clear();
        x
    };
    let vae = AutoencoderKL::from_folder(&models.vae_dir, device)?;
    let images = decode(&vae, latents)?;
    GeneratedImage::from_batch(
        images,
        &[
            ("prompt", opts.prompt.clone()),
            ("negative_prompt", negative),
            ("seed", opts.seed.to_string()),
            ("steps", opts.steps.to_string()),
            ("guidance", opts.cfg.unwrap_or(5.0).to_string()),
            ("scheduler", opts.scheduler.class_name().to_string()),
            ("model", "FaceCLIP-SDXL".to_string()),
            (
                "software",
                format!("faceclip-rs {}", env!("CARGO_PKG_VERSION")),
            ),
        ],
    )
}

pub use faceclip_encoders::fusion::{SDXL_NEGATIVE_PROMPT as DEFAULT_NEGATIVE, SdxlConditioning};

/// The micro-conditioning time ids `(H, W, 0, 0, H, W)` for `rows` rows: `[rows, 6]`.
pub fn time_ids(height: usize, width: usize, rows: usize, device: &Device) -> Tensor<2> {
    let row = [
        height as f32,
        width as f32,
        0.0,
        0.0,
        height as f32,
        width as f32,
    ];
    let data: Vec<f32> = (0..rows).flat_map(|_| row).collect();
    Tensor::from_data(TensorData::new(data, [rows, 6]), device)
}

/// Runs the denoising loop from `noise` `[B, 4, H/8, W/8]` (unscaled: it is multiplied by the
/// scheduler's `init_noise_sigma` here, as diffusers' `prepare_latents` does). With
/// `guidance > 1` each step runs the UNet once on the batch `[negative; positive]` and mixes
/// `u + g·(c − u)`. `on_step(i)` is called after step `i`. Returns the final latents.
#[allow(clippy::too_many_arguments)]
pub fn denoise(
    unet: &UNet2DConditionModel,
    scheduler: &mut AnyScheduler,
    noise: Tensor<4>,
    cond: &SdxlConditioning,
    uncond: &SdxlConditioning,
    guidance: f32,
    (height, width): (usize, usize),
    steps: usize,
    on_step: &mut dyn FnMut(usize),
) -> Result<Tensor<4>> {
    let device = noise.device();
    scheduler.set_timesteps(steps)?;
    let mut x = noise * scheduler.init_noise_sigma();
    let b = x.dims()[0];
    let cfg = guidance > 1.0;
    let (ehs, text) = if cfg {
        (
            Tensor::cat(
                vec![uncond.prompt_embeds.clone(), cond.prompt_embeds.clone()],
                0,
            ),
            Tensor::cat(vec![uncond.pooled.clone(), cond.pooled.clone()], 0),
        )
    } else {
        (cond.prompt_embeds.clone(), cond.pooled.clone())
    };
    let rows = if cfg { 2 * b } else { b };
    let ids = time_ids(height, width, rows, &device);
    let timesteps = scheduler.timesteps().to_vec();
    for (i, &t) in timesteps.iter().enumerate() {
        let xin = if cfg {
            Tensor::cat(vec![x.clone(), x.clone()], 0)
        } else {
            x.clone()
        };
        let xin = scheduler.scale_model_input(xin, t)?;
        let tt = Tensor::<1>::from_data(TensorData::new(vec![t], [1]), &device);
        let eps = unet.forward(xin, tt, ehs.clone(), Some(text.clone()), Some(ids.clone()))?;
        let eps = if cfg {
            let u = eps.clone().narrow(0, 0, b);
            let c = eps.narrow(0, b, b);
            u.clone() + (c - u) * guidance
        } else {
            eps
        };
        x = scheduler.step(eps, t, x)?;
        check_finite(&x, i, t)?;
        on_step(i);
    }
    Ok(x)
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
    crate::check_finite_images(&img)?;
    Ok(postprocess(img))
}

/// Parity on the `pipeline_sdxl` fixture: its stored embeddings and latents, its UNet and
/// VAE (from `extra.weights_from`) and scheduler config, the call in `extra.call`; compares
/// `out.image` `[B, H, W, 3]`.
pub(crate) fn parity(fx: &Fixture, device: &Device) -> Result<ParityReport> {
    let unet_cfg: faceclip_unet::UNet2DConditionConfig = fx.config_as("/unet")?;
    let vae_cfg: faceclip_unet::AutoencoderKLConfig = fx.config_as("/vae")?;
    let unet = UNet2DConditionModel::load(fx.weights_from("unet")?, &unet_cfg, device)?;
    let vae = AutoencoderKL::load(fx.weights_from("vae")?, &vae_cfg, device)?;
    let call = FixtureCall::read(fx, crate::schedulers::SchedulerKind::EulerDiscrete, device)?;
    let (h, w) = (call.num("height")? as usize, call.num("width")? as usize);
    let steps = call.num("num_inference_steps")? as usize;
    let guidance = call.num("guidance_scale")? as f32;
    let mut scheduler = call.scheduler;
    let [cond, uncond] = [call.cond, call.uncond].map(|(prompt_embeds, pooled)| SdxlConditioning {
        prompt_embeds,
        pooled,
    });
    let noise = fx.tensor::<4>("in.latents", device)?;
    let x = denoise(
        &unet,
        &mut scheduler,
        noise,
        &cond,
        &uncond,
        guidance,
        (h, w),
        steps,
        &mut |_| {},
    )?;
    let img = decode(&vae, x)?.permute([0, 2, 3, 1]);
    let mut report = ParityReport::default();
    report.push(fx.check("image", img.into_data())?);
    Ok(report)
}
