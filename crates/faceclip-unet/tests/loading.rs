//! diffusers folders (single file, fp16-named, sharded), wrapper prefixes (FaceCLIP's
//! `unet.pt`) and old VAE attention names all load into the same model.

mod common;

use std::collections::BTreeMap;

use common::Scratch;
use faceclip_core::{Checkpoint, Fixture, ParityReport, Tensor, TensorData};
use faceclip_unet::{
    AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConditionModel,
};

fn unet_report(f: &Fixture, unet: &UNet2DConditionModel) -> ParityReport {
    let dev = common::device();
    let (_, t) = f.f32("in.timestep").unwrap();
    let y = unet
        .forward(
            f.tensor("in.sample", &dev).unwrap(),
            Tensor::from_data(TensorData::new(t, [1]), &dev),
            f.tensor("in.encoder_hidden_states", &dev).unwrap(),
            Some(f.tensor("in.text_embeds", &dev).unwrap()),
            Some(f.tensor("in.time_ids", &dev).unwrap()),
        )
        .unwrap();
    let mut r = ParityReport::default();
    r.push(f.check("sample", y.into_data()).unwrap());
    r
}

fn vae_report(f: &Fixture, vae: &AutoencoderKL) -> ParityReport {
    let dev = common::device();
    let mut r = ParityReport::default();
    let img = vae.decode(f.tensor("in.latents", &dev).unwrap()).unwrap();
    r.push(f.check("image", img.into_data()).unwrap());
    let d = vae.encode(f.tensor("in.image", &dev).unwrap()).unwrap();
    r.push(f.check("latent_mean", d.mean.into_data()).unwrap());
    r
}

#[test]
fn unet_from_folder_single_file() {
    let f = common::fixture("unet_sdxl");
    let s = Scratch::new("unet_single");
    common::write_config(&f, &s.0);
    std::fs::copy(
        f.dir.join("weights.safetensors"),
        s.0.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let unet = UNet2DConditionModel::from_folder(&s.0, &common::device()).unwrap();
    assert!(unet_report(&f, &unet).pass());
    assert!(
        unet.config()
            .source
            .as_ref()
            .unwrap()
            .ends_with("config.json")
    );
}

/// A pipeline folder: `unet/` holding an fp16-named sharded index, `vae/` an fp16-named file.
#[test]
fn pipeline_folder_sharded_fp16_variant() {
    let fu = common::fixture("unet_sdxl");
    let fv = common::fixture("vae_sdxl");
    let s = Scratch::new("pipeline");
    let unet_dir = s.0.join("unet");
    common::write_config(&fu, &unet_dir);
    let ck = fu.weights().unwrap();
    let mut weight_map = BTreeMap::new();
    for (i, keep) in [|k: &str| k < "mid", |k: &str| k >= "mid"]
        .into_iter()
        .enumerate()
    {
        let file = format!(
            "diffusion_pytorch_model.fp16-0000{}-of-00002.safetensors",
            i + 1
        );
        let shard = ck.rename(|k| keep(k).then(|| k.to_string()));
        for t in shard.list() {
            weight_map.insert(t.name, file.clone());
        }
        shard.save_safetensors(&unet_dir.join(&file)).unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        unet_dir.join("diffusion_pytorch_model.fp16.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let vae_dir = s.0.join("vae");
    common::write_config(&fv, &vae_dir);
    std::fs::copy(
        fv.dir.join("weights.safetensors"),
        vae_dir.join("diffusion_pytorch_model.fp16.safetensors"),
    )
    .unwrap();

    let dev = common::device();
    let unet = UNet2DConditionModel::from_folder(&s.0, &dev).unwrap();
    assert!(unet_report(&fu, &unet).pass());
    let vae = AutoencoderKL::from_folder(&s.0, &dev).unwrap();
    assert!(vae_report(&fv, &vae).pass());
}

/// FaceCLIP's `model/unet.pt` holds diffusers names, possibly under `module.` / `unet.`.
#[test]
fn unet_checkpoint_with_wrapper_prefixes() {
    let f = common::fixture("unet_sdxl");
    let cfg = UNet2DConditionConfig::from_value(f.config()).unwrap();
    let dev = common::device();
    for prefix in ["module.", "unet.", "module.unet."] {
        let ck = f
            .weights()
            .unwrap()
            .rename(|k| Some(format!("{prefix}{k}")));
        let unet = UNet2DConditionModel::load(ck, &cfg, &dev).unwrap();
        assert!(unet_report(&f, &unet).pass(), "{prefix}");
    }
}

/// Old diffusers files name the VAE mid-block attention `query/key/value/proj_attn`.
#[test]
fn vae_deprecated_attention_names() {
    let f = common::fixture("vae_sdxl");
    let cfg = AutoencoderKLConfig::from_value(f.config()).unwrap();
    let ck = f.weights().unwrap().rename(|k| {
        Some(
            k.replace("attentions.0.to_q.", "attentions.0.query.")
                .replace("attentions.0.to_k.", "attentions.0.key.")
                .replace("attentions.0.to_v.", "attentions.0.value.")
                .replace("attentions.0.to_out.0.", "attentions.0.proj_attn."),
        )
    });
    assert!(
        ck.info("decoder.mid_block.attentions.0.proj_attn.weight")
            .is_some()
    );
    let vae = AutoencoderKL::load(ck, &cfg, &common::device()).unwrap();
    assert!(vae_report(&f, &vae).pass());
}

/// `Checkpoint::open` of the fixture's own file (not through a folder) also loads.
#[test]
fn vae_load_from_checkpoint_file() {
    let f = common::fixture("vae_flux");
    let cfg = AutoencoderKLConfig::from_value(f.config()).unwrap();
    let ck = Checkpoint::open(f.dir.join("weights.safetensors")).unwrap();
    let vae = AutoencoderKL::load(ck, &cfg, &common::device()).unwrap();
    assert!(vae_report(&f, &vae).pass());
}
