//! The library as a downstream crate uses it: pipelines loaded once on the shipped demo
//! models, many calls, step callbacks, one seed per image, options checked before work.

use std::path::{Path, PathBuf};

use faceclip_pipeline::core::Error;
use faceclip_pipeline::core::device::default_device;
use faceclip_pipeline::{
    AlignMode, Control, FaceInput, FluxOptions, FluxPipeline, LoadOptions, MemoryPolicy,
    MicroConditioning, SchedulerKind, SdxlModels, SdxlOptions, SdxlPipeline, models,
};

mod common;
use common::copy_dir;

fn demo() -> PathBuf {
    models::demo_dir().unwrap()
}

fn small_sdxl(prompt: &str) -> SdxlOptions {
    SdxlOptions::new(prompt).size(64, 64).steps(3).seed(11)
}

fn small_flux(prompt: &str) -> FluxOptions {
    FluxOptions::new(prompt).size(64, 64).steps(3).seed(11)
}

fn face() -> FaceInput {
    FaceInput::demo_face().unwrap()
}


#[test]
fn a_kept_pipeline_reads_no_file_after_loading() {
    let dir = std::env::temp_dir().join(format!("faceclip-api-keep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&demo(), &dir);
    let device = default_device().unwrap();
    let pipe = SdxlPipeline::from_pretrained(&dir, &device).unwrap();
    let flux = FluxPipeline::from_pretrained(&dir, &device).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    // Every model is in memory: two calls with other prompts and seeds still work.
    let a = pipe.generate(&face(), &small_sdxl("a garden")).unwrap();
    let b = pipe
        .generate(&face(), &small_sdxl("a beach").seed(12))
        .unwrap();
    assert_ne!(a[0].image, b[0].image);
    assert_eq!(a[0].image.dimensions(), (64, 64));
    flux.generate(&face(), &small_flux("a street")).unwrap();
    // A sequential pipeline loads on each call: without the files it must fail, naming one.
    copy_dir(&demo(), &dir);
    let seq = SdxlPipeline::load(
        SdxlModels::discover(&dir).unwrap(),
        &device,
        &LoadOptions::new().memory(MemoryPolicy::Sequential),
    )
    .unwrap();
    let c = seq.generate(&face(), &small_sdxl("a garden")).unwrap();
    assert_eq!(a[0].image, c[0].image, "sequential and kept pipelines differ");
    std::fs::remove_dir_all(&dir).unwrap();
    let err = seq.generate(&face(), &small_sdxl("a garden")).unwrap_err();
    assert!(err.to_string().contains("face_clip_encoder"), "{err}");
}

#[test]
fn each_image_is_its_own_seed_and_can_be_made_again_alone() {
    let device = default_device().unwrap();
    let pipe = SdxlPipeline::from_pretrained(demo(), &device).unwrap();
    let two = pipe
        .generate(&face(), &small_sdxl("a garden").num_images(2))
        .unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!((two[0].seed, two[1].seed), (11, 12));
    assert_eq!(two[1].meta("seed"), Some("12"));
    assert_ne!(two[0].image, two[1].image);
    let alone = pipe
        .generate(&face(), &small_sdxl("a garden").seed(12))
        .unwrap();
    assert_eq!(alone[0].image, two[1].image);
    let flux = FluxPipeline::from_pretrained(demo(), &device).unwrap();
    let two = flux
        .generate(&face(), &small_flux("a street").num_images(2))
        .unwrap();
    let alone = flux
        .generate(&face(), &small_flux("a street").seed(12))
        .unwrap();
    assert_eq!(alone[0].image, two[1].image);
}

#[test]
fn the_step_callback_sees_every_step_and_can_stop_the_run() {
    let device = default_device().unwrap();
    let pipe = SdxlPipeline::from_pretrained(demo(), &device).unwrap();
    let mut seen = vec![];
    pipe.generate_with(&face(), &small_sdxl("a").num_images(2), &mut |s| {
        seen.push((s.image, s.step, s.steps, s.latents.dims()));
        Control::Continue
    })
    .unwrap();
    // The demo VAE downscales by 2: 64x64 pixels are 32x32 latents.
    let want: Vec<_> = (0..2)
        .flat_map(|i| (0..3).map(move |s| (i, s, 3, [1, 4, 32, 32])))
        .collect();
    assert_eq!(seen, want);
    let err = pipe
        .generate_with(&face(), &small_sdxl("a"), &mut |s| {
            if s.step == 1 {
                Control::Stop
            } else {
                Control::Continue
            }
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Cancelled { image: 0, step: 2 }),
        "{err}"
    );
    // FLUX reports unpacked latents [1, C, H/f, W/f], not the packed [1, L, 4C].
    let flux = FluxPipeline::from_pretrained(demo(), &device).unwrap();
    let mut dims = vec![];
    flux.generate_with(&face(), &small_flux("a"), &mut |s| {
        dims.push(s.latents.dims());
        Control::Continue
    })
    .unwrap();
    assert_eq!(dims.len(), 3);
    assert_eq!(dims[0][2..], [32, 32]);
}

#[test]
fn a_scheduler_that_does_not_fit_the_model_is_refused_before_any_work() {
    let flux = small_flux("a").scheduler(SchedulerKind::Ddim);
    let err = flux.validate().unwrap_err().to_string();
    assert!(err.contains("ddim") && err.contains("flow-match"), "{err}");
    let sdxl = small_sdxl("a").scheduler(SchedulerKind::FlowMatchEulerDiscrete);
    let err = sdxl.validate().unwrap_err().to_string();
    assert!(err.contains("flow-match") && err.contains("euler"), "{err}");
    for k in ["euler", "euler-a", "ddim", "dpm++2m", "dpm++2m-karras"] {
        small_sdxl("a")
            .scheduler(k.parse().unwrap())
            .validate()
            .unwrap();
    }
    let err = small_sdxl("a").size(60, 64).validate().unwrap_err();
    assert!(err.to_string().contains("multiple of 8"), "{err}");
    let err = small_flux("a").size(72, 64).validate().unwrap_err();
    assert!(err.to_string().contains("multiple of 16"), "{err}");
}

#[test]
fn micro_conditioning_reaches_the_unet() {
    let micro = MicroConditioning {
        original_size: Some((1024, 768)),
        crops_coords_top_left: (16, 32),
        ..MicroConditioning::default()
    };
    let (pos, neg) = micro.time_ids(64, 64);
    assert_eq!(pos, [1024.0, 768.0, 16.0, 32.0, 64.0, 64.0]);
    assert_eq!(neg, pos, "negative ids follow the positive unless both are set");
    let both = MicroConditioning {
        negative_original_size: Some((512, 512)),
        negative_target_size: Some((256, 256)),
        ..micro
    };
    assert_eq!(both.time_ids(64, 64).1, [512.0, 512.0, 0.0, 0.0, 256.0, 256.0]);
    let device = default_device().unwrap();
    let pipe = SdxlPipeline::from_pretrained(demo(), &device).unwrap();
    let plain = pipe.generate(&face(), &small_sdxl("a")).unwrap();
    let explicit = MicroConditioning {
        original_size: Some((64, 64)),
        target_size: Some((64, 64)),
        ..MicroConditioning::default()
    };
    let same = pipe
        .generate(&face(), &small_sdxl("a").micro(explicit))
        .unwrap();
    assert_eq!(plain[0].image, same[0].image);
    let other = pipe
        .generate(&face(), &small_sdxl("a").micro(micro))
        .unwrap();
    assert_ne!(plain[0].image, other[0].image);
}

#[test]
fn faces_come_from_the_image_crate_and_results_go_back_to_it() {
    let path = demo().join("face.png");
    let dynamic = faceclip_pipeline::image::open(&path).unwrap();
    let from_image = FaceInput::from_image(&dynamic).unwrap();
    let opened = FaceInput::open(&path).unwrap();
    assert_eq!(from_image.image, opened.image);
    assert_eq!(from_image.align, AlignMode::Auto);
    let device = default_device().unwrap();
    let pipe = SdxlPipeline::from_pretrained(demo(), &device).unwrap();
    let a = pipe.generate(&from_image, &small_sdxl("a")).unwrap();
    let b = pipe.generate(&opened, &small_sdxl("a")).unwrap();
    let img: &faceclip_pipeline::image::RgbImage = &a[0].image;
    assert_eq!(img, &b[0].image);
    // The shipped face is an aligned crop: under Auto it is used as is, so Never agrees.
    let never = pipe
        .generate(&opened.clone().align(AlignMode::Never), &small_sdxl("a"))
        .unwrap();
    assert_eq!(never[0].image, b[0].image);
}

#[test]
fn a_missing_lora_file_is_refused_when_the_pipeline_loads() {
    let device = default_device().unwrap();
    let err = SdxlPipeline::load(
        SdxlModels::discover(&demo()).unwrap(),
        &device,
        &LoadOptions::new().lora("/no/such/lora.safetensors", 0.8),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("/no/such/lora.safetensors"), "{err}");
}

#[test]
fn a_lora_for_the_other_model_is_refused_when_the_pipeline_loads() {
    let device = default_device().unwrap();
    let lora = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lora/flux_peft/lora.safetensors");
    let err = SdxlPipeline::load(
        SdxlModels::discover(&demo()).unwrap(),
        &device,
        &LoadOptions::new().lora(&lora, 0.8),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("lora.safetensors"), "{err}");
}
