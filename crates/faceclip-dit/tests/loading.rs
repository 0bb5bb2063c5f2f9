//! Checkpoint layouts: BFL single files (written here from the fixture's weights), prefixed
//! state dicts, diffusers folders with sharded weights, the full-size BFL layout as a
//! listing, and typed errors for bad configs, shapes and checkpoints.

mod common;

use std::collections::BTreeMap;

use common::{device, fixture, manifest_path, scratch};
use faceclip_core::{Checkpoint, Error, Manifest, Tensor, TensorInfo, VarBuilder};
use faceclip_dit::bfl::{bfl_to_diffusers, is_bfl_layout, to_diffusers_layout};
use faceclip_dit::{FluxTransformer2DModel, FluxTransformerConfig};

type Entry = (String, Vec<usize>, Vec<f32>);

/// diffusers -> BFL renames (the test's own inverse of the loader's mapping).
fn bfl_name(key: &str) -> Option<String> {
    let top = [
        ("x_embedder.", "img_in."),
        ("context_embedder.", "txt_in."),
        (
            "time_text_embed.timestep_embedder.linear_1.",
            "time_in.in_layer.",
        ),
        (
            "time_text_embed.timestep_embedder.linear_2.",
            "time_in.out_layer.",
        ),
        (
            "time_text_embed.text_embedder.linear_1.",
            "vector_in.in_layer.",
        ),
        (
            "time_text_embed.text_embedder.linear_2.",
            "vector_in.out_layer.",
        ),
        (
            "time_text_embed.guidance_embedder.linear_1.",
            "guidance_in.in_layer.",
        ),
        (
            "time_text_embed.guidance_embedder.linear_2.",
            "guidance_in.out_layer.",
        ),
        ("proj_out.", "final_layer.linear."),
        ("norm_out.linear.", "final_layer.adaLN_modulation.1."),
    ];
    for (d, b) in top {
        if let Some(s) = key.strip_prefix(d) {
            return Some(format!("{b}{s}"));
        }
    }
    let double = [
        ("norm1.linear.", "img_mod.lin."),
        ("norm1_context.linear.", "txt_mod.lin."),
        ("attn.norm_q.weight", "img_attn.norm.query_norm.scale"),
        ("attn.norm_k.weight", "img_attn.norm.key_norm.scale"),
        ("attn.norm_added_q.weight", "txt_attn.norm.query_norm.scale"),
        ("attn.norm_added_k.weight", "txt_attn.norm.key_norm.scale"),
        ("attn.to_out.0.", "img_attn.proj."),
        ("attn.to_add_out.", "txt_attn.proj."),
        ("ff.net.0.proj.", "img_mlp.0."),
        ("ff.net.2.", "img_mlp.2."),
        ("ff_context.net.0.proj.", "txt_mlp.0."),
        ("ff_context.net.2.", "txt_mlp.2."),
    ];
    let single = [
        ("proj_out.", "linear2."),
        ("attn.norm_q.weight", "norm.query_norm.scale"),
        ("attn.norm_k.weight", "norm.key_norm.scale"),
        ("norm.linear.", "modulation.lin."),
    ];
    for (head, bhead, table) in [
        ("transformer_blocks.", "double_blocks.", &double[..]),
        ("single_transformer_blocks.", "single_blocks.", &single[..]),
    ] {
        if let Some(tail) = key.strip_prefix(head) {
            let (i, rest) = tail.split_once('.').unwrap();
            for (d, b) in table {
                if let Some(s) = rest.strip_prefix(d) {
                    return Some(format!("{bhead}{i}.{b}{s}"));
                }
            }
        }
    }
    None
}

/// Converts a diffusers state dict (data may be empty: a listing) into BFL's layout.
fn to_bfl(entries: Vec<Entry>, inner: usize) -> Vec<Entry> {
    let map: BTreeMap<String, (Vec<usize>, Vec<f32>)> =
        entries.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
    let mut out = Vec::new();
    let fuse = |names: &[String]| -> (Vec<usize>, Vec<f32>) {
        let mut shape = map[&names[0]].0.clone();
        shape[0] = names.iter().map(|n| map[n].0[0]).sum();
        let data = names
            .iter()
            .flat_map(|n| map[n].1.iter().copied())
            .collect();
        (shape, data)
    };
    for (name, (shape, data)) in &map {
        if let Some(b) = bfl_name(name) {
            let data = if name.starts_with("norm_out.linear.") && !data.is_empty() {
                let h = data.len() / 2;
                [&data[h..], &data[..h]].concat()
            } else {
                data.clone()
            };
            out.push((b, shape.clone(), data));
            continue;
        }
        // Fused tensors: emitted once, at their first part (to_q / add_q_proj).
        let parts = |pre: &str, names: &[&str], p: &str| -> Vec<String> {
            names.iter().map(|n| format!("{pre}{n}.{p}")).collect()
        };
        if let Some(tail) = name.strip_prefix("transformer_blocks.") {
            let (i, rest) = tail.split_once('.').unwrap();
            let pre = format!("transformer_blocks.{i}.attn.");
            if let Some(p) = rest.strip_prefix("attn.to_q.") {
                let (s, d) = fuse(&parts(&pre, &["to_q", "to_k", "to_v"], p));
                out.push((format!("double_blocks.{i}.img_attn.qkv.{p}"), s, d));
            } else if let Some(p) = rest.strip_prefix("attn.add_q_proj.") {
                let (s, d) = fuse(&parts(&pre, &["add_q_proj", "add_k_proj", "add_v_proj"], p));
                out.push((format!("double_blocks.{i}.txt_attn.qkv.{p}"), s, d));
            }
        } else if let Some(tail) = name.strip_prefix("single_transformer_blocks.") {
            let (i, rest) = tail.split_once('.').unwrap();
            if let Some(p) = rest.strip_prefix("attn.to_q.") {
                let pre = format!("single_transformer_blocks.{i}.");
                let names: Vec<String> = ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]
                    .iter()
                    .map(|n| format!("{pre}{n}.{p}"))
                    .collect();
                let (s, d) = fuse(&names);
                out.push((format!("single_blocks.{i}.linear1.{p}"), s, d));
            }
        }
    }
    let _ = inner;
    out
}

fn fixture_entries() -> (faceclip_core::Fixture, Vec<Entry>) {
    let fx = fixture("flux_transformer");
    let w = fx.weights().unwrap();
    let entries = w
        .list()
        .into_iter()
        .map(|i| {
            let (s, v) = w.read_f32(&i.name).unwrap();
            (i.name, s, v)
        })
        .collect();
    (fx, entries)
}

fn run(model: &FluxTransformer2DModel, fx: &faceclip_core::Fixture) -> Tensor<3> {
    let dev = device();
    model
        .forward(
            fx.tensor("in.hidden_states", &dev).unwrap(),
            fx.tensor("in.encoder_hidden_states", &dev).unwrap(),
            fx.tensor("in.pooled_projections", &dev).unwrap(),
            fx.tensor("in.timestep", &dev).unwrap(),
            Some(fx.tensor("in.guidance", &dev).unwrap()),
            fx.tensor("in.img_ids", &dev).unwrap(),
            fx.tensor("in.txt_ids", &dev).unwrap(),
        )
        .unwrap()
}

#[test]
fn bfl_single_file_reproduces_the_fixture() {
    let (fx, entries) = fixture_entries();
    let cfg = FluxTransformerConfig::from_value(fx.config()).unwrap();
    let n_diffusers = entries.len();
    let bfl = to_bfl(entries, cfg.inner_dim());
    // Per double block two fused qkv (weight + bias) replace 12 tensors; per single block
    // linear1 (weight + bias) replaces 8.
    assert_eq!(
        bfl.len(),
        n_diffusers - 8 * cfg.num_layers - 6 * cfg.num_single_layers
    );
    assert!(
        bfl.iter()
            .any(|(n, _, _)| n == "double_blocks.0.img_attn.qkv.weight")
    );
    let dir = scratch("bfl");
    let path = dir.join("flux1-tiny.safetensors");
    Checkpoint::from_f32("bfl", bfl)
        .unwrap()
        .save_safetensors(&path)
        .unwrap();

    let ck = Checkpoint::open(&path).unwrap();
    assert!(is_bfl_layout(&ck));
    let model = FluxTransformer2DModel::from_file(&path, &cfg, &device()).unwrap();
    let c = fx.check("sample", run(&model, &fx).into_data()).unwrap();
    println!("BFL layout: max_abs={:.3e}", c.max_abs);
    assert!(c.pass(), "{c:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn comfyui_prefixed_bfl_and_prefixed_diffusers_load() {
    let (fx, entries) = fixture_entries();
    let cfg = FluxTransformerConfig::from_value(fx.config()).unwrap();
    let dev = device();
    let bfl: Vec<Entry> = to_bfl(entries.clone(), cfg.inner_dim())
        .into_iter()
        .map(|(n, s, v)| (format!("model.diffusion_model.{n}"), s, v))
        .collect();
    let model =
        FluxTransformer2DModel::load(&Checkpoint::from_f32("comfy", bfl).unwrap(), &cfg, &dev)
            .unwrap();
    assert!(
        fx.check("sample", run(&model, &fx).into_data())
            .unwrap()
            .pass()
    );

    for prefix in ["module.", "transformer.", "module.transformer."] {
        let renamed: Vec<Entry> = entries
            .iter()
            .map(|(n, s, v)| (format!("{prefix}{n}"), s.clone(), v.clone()))
            .collect();
        let model = FluxTransformer2DModel::load(
            &Checkpoint::from_f32("dit.pt", renamed).unwrap(),
            &cfg,
            &dev,
        )
        .unwrap();
        assert!(
            fx.check("sample", run(&model, &fx).into_data())
                .unwrap()
                .pass(),
            "prefix {prefix}"
        );
    }
}

/// The full-size BFL layout (the manifest's names fused and renamed, as a listing) converts
/// back onto exactly the model's keys and shapes.
#[test]
fn full_size_bfl_listing_covers_the_model() {
    let manifest = Manifest::open(manifest_path("flux_transformer")).unwrap();
    let cfg = FluxTransformerConfig::from_value(&manifest.config).unwrap();
    let entries: Vec<Entry> = manifest
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), Vec::new()))
        .collect();
    let bfl = to_bfl(entries, cfg.inner_dim());
    let listing = Checkpoint::from_listing(
        "flux1-dev.safetensors",
        bfl.into_iter().map(|(name, shape, _)| TensorInfo {
            name,
            shape,
            dtype: faceclip_core::StoredDType::BF16,
        }),
    );
    assert!(
        listing
            .info("single_blocks.37.linear1.weight")
            .is_some_and(|i| i.shape == vec![21504, 3072])
    );
    assert!(
        listing
            .info("double_blocks.18.txt_attn.qkv.bias")
            .is_some_and(|i| i.shape == vec![9216])
    );
    let converted = to_diffusers_layout(&listing, cfg.inner_dim()).unwrap();
    assert!(converted.is_listing());
    let vb = VarBuilder::from_checkpoint(converted, &device());
    FluxTransformer2DModel::new(&vb, &cfg).unwrap();
    let report = vb.report();
    assert!(report.is_exact(), "{report}");
    assert_eq!(report.expected, 1160);
}

#[test]
fn diffusers_folder_with_sharded_weights_loads() {
    let (fx, entries) = fixture_entries();
    let dir = scratch("folder");
    let mut config = fx.config().clone();
    config["_class_name"] = "FluxTransformer2DModel".into();
    config["_diffusers_version"] = "0.33.1".into();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    let (a, b): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|(n, _, _)| n.starts_with("transformer_blocks."));
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in [a, b].into_iter().enumerate() {
        let file = format!("diffusion_pytorch_model-0000{}-of-00002.safetensors", i + 1);
        for (n, _, _) in &shard {
            weight_map.insert(n.clone(), file.clone().into());
        }
        Checkpoint::from_f32("shard", shard)
            .unwrap()
            .save_safetensors(&dir.join(&file))
            .unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        dir.join("diffusion_pytorch_model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let model = FluxTransformer2DModel::from_folder(&dir, &device()).unwrap();
    assert_eq!(model.config().num_layers, 2);
    assert!(
        fx.check("sample", run(&model, &fx).into_data())
            .unwrap()
            .pass()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_configs_are_config_errors() {
    let fx = fixture("flux_transformer");
    let mut v = fx.config().clone();
    v["axes_dims_rope"] = serde_json::json!([4, 6, 8]);
    assert!(matches!(
        FluxTransformerConfig::from_value(&v),
        Err(Error::Config { .. })
    ));
    v["axes_dims_rope"] = serde_json::json!([3, 7, 6]);
    assert!(matches!(
        FluxTransformerConfig::from_value(&v),
        Err(Error::Config { .. })
    ));
    v["axes_dims_rope"] = serde_json::json!([4, 6, 6]);
    v["num_attention_heads"] = serde_json::json!("two");
    assert!(matches!(
        FluxTransformerConfig::from_value(&v),
        Err(Error::Config { .. })
    ));

    let dir = scratch("badcfg");
    std::fs::write(dir.join("config.json"), r#"{"attention_head_dim": 0}"#).unwrap();
    let err = FluxTransformer2DModel::from_folder(&dir, &device()).unwrap_err();
    assert!(
        matches!(&err, Error::Config { path, .. } if path.ends_with("config.json")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);

    // Defaults are diffusers' (FLUX.1 sizes, no guidance).
    let d: FluxTransformerConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(
        (
            d.num_layers,
            d.num_single_layers,
            d.inner_dim(),
            d.guidance_embeds
        ),
        (19, 38, 3072, false)
    );
}

#[test]
fn wrong_shapes_are_typed_errors() {
    let fx = fixture("flux_transformer");
    let dev = device();
    let cfg = FluxTransformerConfig::from_value(fx.config()).unwrap();
    let weights = fx.weights().unwrap();

    // Weights for another width: a coverage error listing the mismatched tensors.
    let mut other = cfg.clone();
    other.joint_attention_dim = 48;
    match FluxTransformer2DModel::load(&weights, &other, &dev) {
        Err(Error::Coverage(r)) => {
            assert_eq!(r.mismatched.len(), 1, "{r}");
            assert_eq!(r.mismatched[0].0, "context_embedder.weight");
        }
        other => panic!("expected a coverage error, got {other:?}"),
    }
    // Missing blocks.
    let mut deeper = cfg.clone();
    deeper.num_single_layers = 3;
    assert!(matches!(
        FluxTransformer2DModel::load(&weights, &deeper, &dev),
        Err(Error::Coverage(_))
    ));

    // Bad inputs.
    let model = FluxTransformer2DModel::load(&weights, &cfg, &dev).unwrap();
    let hs: Tensor<3> = fx.tensor("in.hidden_states", &dev).unwrap();
    let ehs: Tensor<3> = fx.tensor("in.encoder_hidden_states", &dev).unwrap();
    let pooled: Tensor<2> = fx.tensor("in.pooled_projections", &dev).unwrap();
    let t: Tensor<1> = fx.tensor("in.timestep", &dev).unwrap();
    let g: Tensor<1> = fx.tensor("in.guidance", &dev).unwrap();
    let img: Tensor<2> = fx.tensor("in.img_ids", &dev).unwrap();
    let txt: Tensor<2> = fx.tensor("in.txt_ids", &dev).unwrap();
    let f =
        |hs: Tensor<3>, ehs: Tensor<3>, g: Option<Tensor<1>>, img: Tensor<2>, txt: Tensor<2>| {
            model.forward(hs, ehs, pooled.clone(), t.clone(), g, img, txt)
        };
    let narrow_hs = hs.clone().slice([0..1, 0..64, 0..32]);
    assert!(matches!(
        f(
            narrow_hs,
            ehs.clone(),
            Some(g.clone()),
            img.clone(),
            txt.clone()
        ),
        Err(Error::Shape { .. })
    ));
    let short_txt = txt.clone().slice([0..5, 0..3]);
    assert!(matches!(
        f(
            hs.clone(),
            ehs.clone(),
            Some(g.clone()),
            img.clone(),
            short_txt
        ),
        Err(Error::Shape { .. })
    ));
    let two_axes = img.clone().slice([0..64, 0..2]);
    assert!(matches!(
        f(
            hs.clone(),
            ehs.clone(),
            Some(g.clone()),
            two_axes,
            txt.clone()
        ),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        f(hs.clone(), ehs.clone(), None, img.clone(), txt.clone()),
        Err(Error::InvalidInput(_))
    ));
    let wide_ehs = Tensor::cat(vec![ehs.clone(), ehs], 2);
    assert!(matches!(
        f(hs, wide_ehs, Some(g), img, txt),
        Err(Error::Shape { .. })
    ));

    // A BFL qkv that is not 3 x inner_dim.
    let bad = Checkpoint::from_f32(
        "bad-bfl",
        vec![(
            "double_blocks.0.img_attn.qkv.weight".to_string(),
            vec![90, 32],
            vec![0.0; 90 * 32],
        )],
    )
    .unwrap();
    assert!(matches!(
        bfl_to_diffusers(&bad, 32),
        Err(Error::InvalidInput(_))
    ));
}

/// Sliced inputs: a shorter text and a smaller, non-square image grid run and keep their
/// shapes (no size is tied to the fixture).
#[test]
fn other_lengths_and_grids_run() {
    let fx = fixture("flux_transformer");
    let dev = device();
    let cfg = FluxTransformerConfig::from_value(fx.config()).unwrap();
    let model = FluxTransformer2DModel::load(&fx.weights().unwrap(), &cfg, &dev).unwrap();
    let hs: Tensor<3> = fx.tensor("in.hidden_states", &dev).unwrap();
    let ehs: Tensor<3> = fx.tensor("in.encoder_hidden_states", &dev).unwrap();
    let out = model
        .forward(
            hs.slice([0..1, 0..24, 0..64]),
            ehs.slice([0..1, 0..5, 0..32]),
            fx.tensor("in.pooled_projections", &dev).unwrap(),
            fx.tensor("in.timestep", &dev).unwrap(),
            Some(fx.tensor("in.guidance", &dev).unwrap()),
            faceclip_dit::image_ids(4, 6, &dev),
            faceclip_dit::text_ids(5, &dev),
        )
        .unwrap();
    assert_eq!(out.dims(), [1, 24, 64]);
    assert!(faceclip_core::to_vec_f32(out).iter().all(|v| v.is_finite()));
}

/// Keys a BFL file holds beyond the transformer (here a scalar) survive the conversion and
/// are reported as unexpected, not lost or mangled.
#[test]
fn unknown_bfl_keys_are_reported() {
    let (fx, entries) = fixture_entries();
    let cfg = FluxTransformerConfig::from_value(fx.config()).unwrap();
    let mut bfl = to_bfl(entries, cfg.inner_dim());
    bfl.push(("extra_scalar".into(), vec![], vec![1.0]));
    let ck = Checkpoint::from_f32("bfl+extra", bfl).unwrap();
    let converted = bfl_to_diffusers(&ck, cfg.inner_dim()).unwrap();
    assert_eq!(
        converted.read_f32("extra_scalar").unwrap(),
        (vec![], vec![1.0])
    );
    match FluxTransformer2DModel::load(&ck, &cfg, &device()) {
        Err(Error::Coverage(r)) => {
            assert_eq!(r.unexpected, vec!["extra_scalar".to_string()]);
            assert!(r.missing.is_empty() && r.mismatched.is_empty(), "{r}");
        }
        other => panic!("expected a coverage error, got {other:?}"),
    }
}
