//! The SDXL UNet loaded with LoRA files (`tests/lora/sdxl_*`) runs like the UNet loaded with
//! the weights diffusers fused from the same files.

mod common;

use std::path::PathBuf;

use faceclip_core::lora::LoraSpec;
use faceclip_core::{
    Checkpoint, Comparison, Error, Fixture, Pretrained, Tensor, TensorData, to_vec_f32,
};
use faceclip_unet::{UNet2DConditionConfig, UNet2DConditionModel};

const LORAS: [&str; 3] = ["sdxl_peft", "sdxl_kohya", "sdxl_kohya_sgm"];

fn lora_dir(name: &str) -> PathBuf {
    common::repo_tests().join("lora").join(name)
}

fn spec(name: &str) -> LoraSpec {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lora_dir(name).join("meta.json")).unwrap())
            .unwrap();
    LoraSpec::new(
        lora_dir(name).join("lora.safetensors"),
        meta["scale"].as_f64().unwrap() as f32,
    )
}

/// The base weights plus every fixture's change (diffusers' fused weight minus the base).
fn diffusers_fused(base: &Checkpoint) -> Checkpoint {
    let mut values: Vec<(String, Vec<usize>, Vec<f32>)> = base
        .list()
        .into_iter()
        .map(|i| {
            let (s, v) = base.read_f32(&i.name).unwrap();
            (i.name, s, v)
        })
        .collect();
    for name in LORAS {
        let fused = Checkpoint::open(lora_dir(name).join("fused.safetensors")).unwrap();
        for (k, _, v) in &mut values {
            if fused.info(k).is_some() {
                let (_, f) = fused.read_f32(k).unwrap();
                let (_, b) = base.read_f32(k).unwrap();
                for ((x, f), b) in v.iter_mut().zip(&f).zip(&b) {
                    *x += f - b;
                }
            }
        }
    }
    Checkpoint::from_f32("diffusers-fused", values).unwrap()
}

fn run(unet: &UNet2DConditionModel, f: &Fixture) -> Vec<f32> {
    let dev = common::device();
    let (_, t) = f.f32("in.timestep").unwrap();
    let t = Tensor::<1>::from_data(TensorData::new(t, [1]), &dev);
    let out = unet
        .forward(
            f.tensor("in.sample", &dev).unwrap(),
            t,
            f.tensor("in.encoder_hidden_states", &dev).unwrap(),
            Some(f.tensor("in.text_embeds", &dev).unwrap()),
            Some(f.tensor("in.time_ids", &dev).unwrap()),
        )
        .unwrap();
    to_vec_f32(out)
}

#[test]
fn unet_with_loras_runs_like_unet_with_diffusers_fused_weights() {
    let f = common::fixture("unet_sdxl");
    let dev = common::device();
    let cfg = UNet2DConditionConfig::from_value(f.config()).unwrap();
    let specs: Vec<LoraSpec> = LORAS.iter().map(|n| spec(n)).collect();
    let with_loras =
        UNet2DConditionModel::load_with(f.weights().unwrap(), &cfg, &specs, &dev).unwrap();
    let fused =
        UNet2DConditionModel::load(diffusers_fused(&f.weights().unwrap()), &cfg, &dev).unwrap();
    let base = UNet2DConditionModel::load(f.weights().unwrap(), &cfg, &dev).unwrap();
    let (got, want, plain) = (run(&with_loras, &f), run(&fused, &f), run(&base, &f));
    let (atol, rtol) = f.tolerance();
    let shape = [want.len()];
    let c = Comparison::new("sample", &shape, &got, &shape, &want, atol, rtol);
    eprintln!(
        "unet + 3 LoRAs vs diffusers-fused weights: max_abs={:.3e}",
        c.max_abs
    );
    assert_eq!(
        c.failures, 0,
        "max_abs {:e} (atol {atol}, rtol {rtol})",
        c.max_abs
    );
    // The LoRAs change the output far beyond the tolerance, so the check above can fail.
    let moved = Comparison::new("sample", &shape, &plain, &shape, &want, atol, rtol);
    assert!(
        moved.failures > want.len() / 2,
        "LoRAs barely change the output"
    );
}

#[test]
fn a_folder_with_loras_refuses_a_flux_lora() {
    let f = common::fixture("unet_sdxl");
    let dir = common::Scratch::new("lora-folder");
    common::write_config(&f, &dir.0);
    std::fs::copy(
        common::repo_tests().join("fixtures/unet_sdxl/weights.safetensors"),
        dir.0.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let dev = common::device();
    let load = |loras: &[LoraSpec]| {
        let (config, weights) = UNet2DConditionModel::open_folder(&dir.0)?;
        UNet2DConditionModel::load_with(weights, &config, loras, &dev)
    };
    load(&[spec("sdxl_peft")]).unwrap();
    let flux = lora_dir("flux_peft").join("lora.safetensors");
    let err = load(&[LoraSpec::new(&flux, 1.0)]).expect_err("loaded");
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&*flux.to_string_lossy()) && msg.contains("SDXL UNet"),
        "{msg}"
    );
}
