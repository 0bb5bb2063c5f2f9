//! Bad configs, bad weights and bad inputs give typed errors naming the cause.

mod common;

use common::Scratch;
use faceclip_core::{Checkpoint, Error, Tensor};
use faceclip_unet::{
    AutoencoderKL, AutoencoderKLConfig, TiledDecode, UNet2DConditionConfig, UNet2DConditionModel,
};

fn unet_config() -> serde_json::Value {
    common::fixture("unet_sdxl").config().clone()
}

fn unet_config_error(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v = unet_config();
    edit(&mut v);
    let err = UNet2DConditionConfig::from_value(&v)
        .and_then(|c| {
            let vb = faceclip_core::VarBuilder::dry(&common::device());
            UNet2DConditionModel::new(&c, &vb).map(|_| ())
        })
        .expect_err("the config is refused");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn unet_bad_configs() {
    let m = unet_config_error(|v| v["attention_head_dim"] = serde_json::json!([2, 4, 8]));
    assert!(m.contains("attention_head_dim"), "{m}");
    let m = unet_config_error(|v| v["attention_head_dim"] = serde_json::json!([2, 5]));
    assert!(m.contains("head count"), "{m}");
    let m = unet_config_error(|v| {
        v["down_block_types"] = serde_json::json!(["DownBlock2D", "SimpleCrossAttnDownBlock2D"])
    });
    assert!(m.contains("SimpleCrossAttnDownBlock2D"), "{m}");
    let m = unet_config_error(|v| v["block_out_channels"] = serde_json::json!("wide"));
    assert!(
        m.contains("block_out_channels") || m.contains("invalid"),
        "{m}"
    );
    let m = unet_config_error(|v| v["addition_embed_type"] = serde_json::json!("text"));
    assert!(m.contains("addition_embed_type"), "{m}");
    let m = unet_config_error(|v| v["class_embed_type"] = serde_json::json!("timestep"));
    assert!(m.contains("class_embed_type"), "{m}");
    let m = unet_config_error(|v| {
        v.as_object_mut()
            .unwrap()
            .remove("projection_class_embeddings_input_dim");
    });
    assert!(m.contains("projection_class_embeddings_input_dim"), "{m}");
}

#[test]
fn vae_bad_configs() {
    let mut v = common::fixture("vae_sdxl").config().clone();
    v["norm_num_groups"] = serde_json::json!(24);
    let err = AutoencoderKLConfig::from_value(&v)
        .and_then(|c| {
            AutoencoderKL::new(&c, &faceclip_core::VarBuilder::dry(&common::device())).map(|_| ())
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Config { .. }) && err.to_string().contains("norm_num_groups"),
        "{err}"
    );
    v["norm_num_groups"] = serde_json::json!(-1);
    assert!(matches!(
        AutoencoderKLConfig::from_value(&v),
        Err(Error::Config { .. })
    ));
}

#[test]
fn malformed_config_file_in_folder() {
    let f = common::fixture("unet_sdxl");
    let s = Scratch::new("bad_config");
    std::fs::write(s.0.join("config.json"), "{\"in_channels\": 4,").unwrap();
    std::fs::copy(
        f.dir.join("weights.safetensors"),
        s.0.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let err = UNet2DConditionModel::from_folder(&s.0, &common::device()).unwrap_err();
    match &err {
        Error::Config { path, .. } => assert!(path.ends_with("config.json")),
        e => panic!("{e:?}"),
    }
    // A folder with neither config.json nor unet/config.json.
    let empty = Scratch::new("empty");
    assert!(matches!(
        UNet2DConditionModel::from_folder(&empty.0, &common::device()),
        Err(Error::Io { .. })
    ));
}

#[test]
fn corrupt_weights_file() {
    let f = common::fixture("vae_sdxl");
    let s = Scratch::new("corrupt");
    common::write_config(&f, &s.0);
    std::fs::write(
        s.0.join("diffusion_pytorch_model.safetensors"),
        b"\x10\0\0\0\0\0\0\0{\"a\":",
    )
    .unwrap();
    let err = AutoencoderKL::from_folder(&s.0, &common::device()).unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err:?}");
    // No weights at all.
    std::fs::remove_file(s.0.join("diffusion_pytorch_model.safetensors")).unwrap();
    let err = AutoencoderKL::from_folder(&s.0, &common::device()).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains("no weights file"),
        "{err}"
    );
}

#[test]
fn misshaped_missing_and_extra_weights() {
    let f = common::fixture("unet_sdxl");
    let cfg = UNet2DConditionConfig::from_value(f.config()).unwrap();
    let ck = f.weights().unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for t in ck.list() {
        if t.name == "down_blocks.0.resnets.0.norm1.bias" {
            continue; // missing
        }
        let (shape, v) = ck.read_f32(&t.name).unwrap();
        if t.name == "conv_in.weight" {
            tensors.push((t.name.clone(), vec![32, 4, 9], vec![0.0; 32 * 4 * 9])); // mis-shaped
        } else {
            tensors.push((t.name.clone(), shape, v));
        }
    }
    tensors.push(("conv_in.extra".into(), vec![1], vec![0.0]));
    let bad = Checkpoint::from_f32("bad-unet", tensors).unwrap();
    let err = UNet2DConditionModel::load(bad, &cfg, &common::device()).unwrap_err();
    let Error::Coverage(report) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        report.missing,
        vec!["down_blocks.0.resnets.0.norm1.bias".to_string()]
    );
    assert_eq!(report.unexpected, vec!["conv_in.extra".to_string()]);
    assert_eq!(report.mismatched.len(), 1);
    assert_eq!(report.mismatched[0].0, "conv_in.weight");
    assert_eq!(report.mismatched[0].1, vec![32, 4, 3, 3]);
    // The VAE weights under the UNet config: everything wrong at once, still one typed error.
    let err = UNet2DConditionModel::load(
        common::fixture("vae_sdxl").weights().unwrap(),
        &cfg,
        &common::device(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Coverage(_)));
}

#[test]
fn bad_inputs() {
    let dev = common::device();
    let f = common::fixture("unet_sdxl");
    let unet = faceclip_unet::parity::load_unet(&f, &dev).unwrap();
    let t = Tensor::<1>::from_floats([10.0], &dev);
    let ehs = Tensor::<3>::zeros([1, 77, 64], &dev);
    let text = Tensor::<2>::zeros([1, 32], &dev);
    let ids = Tensor::<2>::zeros([1, 6], &dev);
    let x = Tensor::<4>::zeros([1, 4, 8, 8], &dev);
    let call =
        |x: Tensor<4>, t: Tensor<1>, e: Tensor<3>, te: Option<Tensor<2>>, ti: Option<Tensor<2>>| {
            unet.forward(x, t, e, te, ti)
        };
    assert!(
        call(
            x.clone(),
            t.clone(),
            ehs.clone(),
            Some(text.clone()),
            Some(ids.clone())
        )
        .is_ok()
    );
    let e = call(
        Tensor::zeros([1, 3, 8, 8], &dev),
        t.clone(),
        ehs.clone(),
        Some(text.clone()),
        Some(ids.clone()),
    );
    assert!(matches!(e, Err(Error::Shape { .. })));
    let e = call(
        x.clone(),
        t.clone(),
        Tensor::zeros([1, 77, 48], &dev),
        Some(text.clone()),
        Some(ids.clone()),
    );
    assert!(matches!(e, Err(Error::Shape { .. })));
    let e = call(
        x.clone(),
        Tensor::from_floats([1.0, 2.0, 3.0], &dev),
        ehs.clone(),
        Some(text.clone()),
        Some(ids.clone()),
    );
    assert!(matches!(e, Err(Error::Shape { .. })));
    let e = call(x.clone(), t.clone(), ehs.clone(), None, Some(ids.clone()));
    assert!(matches!(e, Err(Error::InvalidInput(_))));
    let e = call(
        x.clone(),
        t.clone(),
        ehs.clone(),
        Some(text.clone()),
        Some(Tensor::zeros([1, 5], &dev)),
    );
    assert!(matches!(e, Err(Error::Shape { .. })));

    let vae = faceclip_unet::parity::load_vae(&common::fixture("vae_sdxl"), &dev).unwrap();
    assert!(matches!(
        vae.decode(Tensor::zeros([1, 16, 4, 4], &dev)),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        vae.encode(Tensor::zeros([1, 4, 8, 8], &dev)),
        Err(Error::Shape { .. })
    ));
    let tiny = TiledDecode {
        tile_sample_size: 1,
        overlap_factor: 0.25,
    };
    assert!(matches!(
        vae.tiled_decode(Tensor::zeros([1, 4, 4, 4], &dev), &tiny),
        Err(Error::InvalidInput(_))
    ));
    // 12 px, 0.25: stride int(6·0.75) = 4 latents = 8 px, but 12 - 3 = 9 px kept: misaligned.
    let skew = TiledDecode {
        tile_sample_size: 12,
        overlap_factor: 0.25,
    };
    assert!(matches!(
        vae.tiled_decode(Tensor::zeros([1, 4, 4, 4], &dev), &skew),
        Err(Error::InvalidInput(_))
    ));
}
