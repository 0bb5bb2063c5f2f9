//! FaceT5-FLUX: `infer_face_t5_flux.py` through diffusers' `FluxPipeline`, on any burn backend.
//!
//! FaceT5 embeds `[B, 512, 4096]` with the stock CLIP-L pooled embedding `[B, 768]`; packed
//! latents and position ids; flow-match Euler with the resolution-dependent shift; true CFG
//! (default 3.5: two transformer passes a step, positive first) with distilled guidance
//! (default 1.0); VAE decode with shift and scale.

use faceclip_core::{Checkpoint, Device, Fixture, ParityReport, Result, Tensor, TensorData};
use faceclip_dit::{
    FluxTransformer2DModel, FluxTransformerConfig, image_ids, pack_latents, text_ids,
    unpack_latents,
};
use faceclip_encoders::fusion::{FaceT5FluxConfig, FaceT5FluxEncoder};
use faceclip_encoders::tokenizer_t5::T5Tokenizer;
use faceclip_unet::{AutoencoderKL, AutoencoderKLConfig};

use crate::models::FluxModels;
use crate::schedulers::{AnyScheduler, Scheduler, SchedulerKind, read_scheduler_config};
use crate::{FaceInput, FixtureCall, GenerateOptions, GeneratedImage, check_finite, progress_bar};

pub use faceclip_encoders::fusion::{FLUX_NEGATIVE_PROMPT as DEFAULT_NEGATIVE, FluxConditioning};

/// Loads the FaceT5 + CLIP-L encoder of `models` (its config file when present, else the
/// released configuration).
pub fn load_encoder(models: &FluxModels, device: &Device) -> Result<FaceT5FluxEncoder> {
    let cfg = match &models.encoder_config {
        Some(p) => FaceT5FluxConfig::from_value(&crate::read_json(p)?)?,
        None => FaceT5FluxConfig::released(),
    };
    FaceT5FluxEncoder::from_checkpoint(Checkpoint::open(&models.encoder)?, &cfg, device)
}

/// Generates `opts.num_images` images of the person in `face`, as `infer_face_t5_flux.py`
/// does (true CFG 3.5, guidance 1.0 by default). Components load when needed and are
/// dropped after use.
pub fn generate(
    models: &FluxModels,
    face: &FaceInput,
    opts: &GenerateOptions,
    device: &Device,
) -> Result<Vec<GeneratedImage>> {
    opts.check_size(16)?;
    let crop = face.aligned_crop(device)?;
    let n = opts.num_images;
    let negative = opts
        .negative
        .clone()
        .unwrap_or_else(|| DEFAULT_NEGATIVE.to_string());
    let true_cfg = opts.true_cfg.unwrap_or(3.5);
    let guidance = opts.guidance.unwrap_or(1.0);
    let (cond, uncond) = {
        let encoder = load_encoder(models, device)?;
        let tok = T5Tokenizer::from_file(&models.t5_tokenizer)?
            .with_max_length(encoder.face_t5().max_sequence_length())?;
        let cut = tok
            .encode(&[opts.prompt.as_str(), negative.as_str()])?
            .truncated;
        let limit = encoder.face_t5().max_sequence_length();
        crate::warn_truncated(&[&opts.prompt, &negative], &cut, "T5", limit, opts.progress);
        let cond = encoder.encode(&vec![Some(crop); n], &vec![opts.prompt.clone(); n], &tok)?;
        let uncond = if true_cfg > 1.0 {
            Some(encoder.encode(&vec![None; n], &vec![negative.clone(); n], &tok)?)
        } else {
            None
        };
        (cond, uncond)
    };
    let (_, sched_cfg) = read_scheduler_config(&models.scheduler_config)?;
    let mut scheduler = AnyScheduler::with_kind(opts.scheduler, &sched_cfg)?;
    scheduler.set_generator(crate::schedulers::Generator::new(opts.seed ^ 0x5eed));
    let vae_cfg = AutoencoderKLConfig::from_file(models.vae_dir.join("config.json"))?;
    let f = vae_cfg.downscale_factor();
    let (lh, lw) = (2 * (opts.height / (2 * f)), 2 * (opts.width / (2 * f)));
    let packed = {
        let tcfg = FluxTransformerConfig::from_file(&models.dit_config)?;
        let transformer = FluxTransformer2DModel::from_file(&models.dit, &tcfg, device)?;
        let c = tcfg.in_channels / 4;
        let mut rng = crate::schedulers::Generator::new(opts.seed);
        let noise = pack_latents(rng.randn([n, c, lh, lw], device))?;
        let bar = progress_bar(opts.steps, opts.progress);
        let x = denoise(
            &transformer,
            &mut scheduler,
            noise,
            &cond,
            uncond.as_ref(),
            true_cfg,
            guidance,
            (lh / 2, lw / 2),
            opts.steps,
            &mut |_| bar.inc(1),
        )?;
        bar.finish_and_clear();
        x
    };
    let vae = AutoencoderKL::from_folder(&models.vae_dir, device)?;
    let images = decode(&vae, packed, lh, lw)?;
    GeneratedImage::from_batch(
        images,
        &[
            ("prompt", opts.prompt.clone()),
            ("negative_prompt", negative),
            ("seed", opts.seed.to_string()),
            ("steps", opts.steps.to_string()),
            ("true_cfg", true_cfg.to_string()),
            ("guidance", guidance.to_string()),
            ("scheduler", opts.scheduler.class_name().to_string()),
            ("model", "FaceT5-FLUX".to_string()),
            (
                "software",
                format!("faceclip-rs {}", env!("CARGO_PKG_VERSION")),
            ),
        ],
    )
}

/// Runs the flow-match loop from packed `noise` `[B, (H/16)·(W/16), 64]` (not scaled, as
/// FluxPipeline). With `true_cfg > 1` and a negative conditioning, each step runs the
/// transformer on the positive, then the negative, and mixes `n + s·(c − n)`. Returns the
/// packed latents.
#[allow(clippy::too_many_arguments)]
pub fn denoise(
    transformer: &FluxTransformer2DModel,
    scheduler: &mut AnyScheduler,
    noise: Tensor<3>,
    cond: &FluxConditioning,
    uncond: Option<&FluxConditioning>,
    true_cfg: f32,
    guidance: f32,
    (grid_h, grid_w): (usize, usize),
    steps: usize,
    on_step: &mut dyn FnMut(usize),
) -> Result<Tensor<3>> {
    let device = noise.device();
    let [b, seq, _] = noise.dims();
    scheduler.set_image_seq_len(seq);
    scheduler.set_timesteps(steps)?;
    let img = image_ids(grid_h, grid_w, &device);
    let txt = text_ids(cond.prompt_embeds.dims()[1], &device);
    let rope = transformer.rotary_embedding(txt, img)?;
    let guidance_t = transformer
        .config()
        .guidance_embeds
        .then(|| Tensor::<1>::from_data(TensorData::new(vec![guidance; b], [b]), &device));
    let mut x = noise;
    let timesteps = scheduler.timesteps().to_vec();
    for (i, &t) in timesteps.iter().enumerate() {
        let tt = Tensor::<1>::from_data(TensorData::new(vec![t / 1000.0; b], [b]), &device);
        let run = |c: &FluxConditioning| {
            transformer.forward_with_rope(
                x.clone(),
                c.prompt_embeds.clone(),
                c.pooled.clone(),
                tt.clone(),
                guidance_t.clone(),
                &rope,
            )
        };
        let v = run(cond)?;
        let v = match uncond {
            Some(n) if true_cfg > 1.0 => {
                let vn = run(n)?;
                vn.clone() + (v - vn) * true_cfg
            }
            _ => v,
        };
        x = scheduler.step(v, t, x)?;
        check_finite(&x, i, t)?;
        on_step(i);
    }
    Ok(x)
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

/// Parity on the `pipeline_flux` fixture; compares `out.image` `[B, H, W, 3]`.
pub(crate) fn parity(fx: &Fixture, device: &Device) -> Result<ParityReport> {
    let tcfg: faceclip_dit::FluxTransformerConfig = fx.config_as("/transformer")?;
    let vae_cfg: faceclip_unet::AutoencoderKLConfig = fx.config_as("/vae")?;
    let transformer =
        FluxTransformer2DModel::load(&fx.weights_from("transformer")?, &tcfg, device)?;
    let vae = AutoencoderKL::load(fx.weights_from("vae")?, &vae_cfg, device)?;
    let call = FixtureCall::read(fx, SchedulerKind::FlowMatchEulerDiscrete, device)?;
    let (h, w) = (call.num("height")? as usize, call.num("width")? as usize);
    let steps = call.num("num_inference_steps")? as usize;
    let guidance = call.num("guidance_scale")? as f32;
    let true_cfg = call.num("true_cfg_scale")? as f32;
    let mut scheduler = call.scheduler;
    let [cond, uncond] = [call.cond, call.uncond].map(|(prompt_embeds, pooled)| FluxConditioning {
        prompt_embeds,
        pooled,
    });
    let f = vae.downscale_factor();
    let (lh, lw) = (h / f, w / f);
    let noise = fx.tensor::<3>("in.latents", device)?;
    // The packed input must be the packing of the unpacked one.
    let mut report = ParityReport::default();
    if fx.has("in.latents_unpacked") {
        let packed = pack_latents(fx.tensor::<4>("in.latents_unpacked", device)?)?;
        let (shape, want) = fx.f32("in.latents")?;
        let got = faceclip_core::to_vec_f32(packed.clone());
        report.push(faceclip_core::Comparison::new(
            "packing",
            &packed.dims(),
            &got,
            &shape,
            &want,
            0.0,
            0.0,
        ));
    }
    let x = denoise(
        &transformer,
        &mut scheduler,
        noise,
        &cond,
        Some(&uncond),
        true_cfg,
        guidance,
        (lh / 2, lw / 2),
        steps,
        &mut |_| {},
    )?;
    let img = decode(&vae, x, lh, lw)?.permute([0, 2, 3, 1]);
    report.push(fx.check("image", img.into_data())?);
    Ok(report)
}
