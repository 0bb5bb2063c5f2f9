//! The FLUX transformer loaded with LoRA files (`tests/lora/flux_*`) runs like the transformer
//! loaded with the weights diffusers fused from the same files, from a diffusers-named base and
//! from a BFL single-file base alike.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{device, fixture, scratch};
use faceclip_core::lora::LoraSpec;
use faceclip_core::{Checkpoint, Comparison, Error, Fixture, Pretrained, to_vec_f32};
use faceclip_dit::bfl::is_bfl_layout;
use faceclip_dit::{FluxTransformer2DModel, FluxTransformerConfig};

const LORAS: [&str; 3] = ["flux_peft", "flux_kohya", "flux_xlabs"];

type Entry = (String, Vec<usize>, Vec<f32>);

fn lora_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/lora")
        .join(name)
}

fn specs() -> Vec<LoraSpec> {
    LORAS
        .iter()
        .map(|name| {
            let meta: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(lora_dir(name).join("meta.json")).unwrap(),
            )
            .unwrap();
            LoraSpec::new(
                lora_dir(name).join("lora.safetensors"),
                meta["scale"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

fn entries(ck: &Checkpoint) -> Vec<Entry> {
    ck.list()
        .into_iter()
        .map(|i| {
            let (s, v) = ck.read_f32(&i.name).unwrap();
            (i.name, s, v)
        })
        .collect()
}

/// The base weights plus every fixture's change (diffusers' fused weight minus the base).
fn diffusers_fused(base: &Checkpoint) -> Checkpoint {
    let mut values = entries(base);
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

/// diffusers -> BFL renames of the tensors that move unchanged (top level, then inside
/// `transformer_blocks.N.` and `single_transformer_blocks.N.`).
const TOP: [(&str, &str); 9] = [
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
];
const DOUBLE: [(&str, &str); 12] = [
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
const SINGLE: [(&str, &str); 4] = [
    ("proj_out.", "linear2."),
    ("attn.norm_q.weight", "norm.query_norm.scale"),
    ("attn.norm_k.weight", "norm.key_norm.scale"),
    ("norm.linear.", "modulation.lin."),
];

fn renamed(rest: &str, table: &[(&str, &str)]) -> Option<String> {
    table.iter().find_map(|(d, b)| {
        if d.ends_with('.') {
            rest.strip_prefix(d).map(|s| format!("{b}{s}"))
        } else {
            (rest == *d).then(|| b.to_string())
        }
    })
}

/// The diffusers-named tiny model in BFL's single-file layout (fused qkv and linear1, the
/// final adaLN in `(shift, scale)` order): the test's own inverse of the loader's conversion.
fn to_bfl(values: Vec<Entry>) -> Vec<Entry> {
    let map: BTreeMap<String, (Vec<usize>, Vec<f32>)> =
        values.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
    let fuse = |names: Vec<String>| -> (Vec<usize>, Vec<f32>) {
        let mut shape = map[&names[0]].0.clone();
        shape[0] = names.iter().map(|n| map[n].0[0]).sum();
        (shape, names.iter().flat_map(|n| map[n].1.clone()).collect())
    };
    let mut out = Vec::new();
    for (name, (shape, data)) in &map {
        if let Some(s) = name.strip_prefix("norm_out.linear.") {
            let h = data.len() / 2;
            let swapped = [&data[h..], &data[..h]].concat();
            out.push((
                format!("final_layer.adaLN_modulation.1.{s}"),
                shape.clone(),
                swapped,
            ));
        } else if let Some(b) = renamed(name, &TOP) {
            out.push((b, shape.clone(), data.clone()));
        }
        for (head, bhead, single) in [
            ("transformer_blocks.", "double_blocks.", false),
            ("single_transformer_blocks.", "single_blocks.", true),
        ] {
            let Some((i, rest)) = name.strip_prefix(head).and_then(|t| t.split_once('.')) else {
                continue;
            };
            let parts = |ns: &[&str], p: &str| -> Vec<String> {
                ns.iter().map(|n| format!("{head}{i}.{n}.{p}")).collect()
            };
            let fused = if let Some(p) = rest.strip_prefix("attn.to_q.") {
                Some(if single {
                    (
                        "linear1",
                        parts(&["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"], p),
                        p,
                    )
                } else {
                    (
                        "img_attn.qkv",
                        parts(&["attn.to_q", "attn.to_k", "attn.to_v"], p),
                        p,
                    )
                })
            } else {
                rest.strip_prefix("attn.add_q_proj.").map(|p| {
                    let ns = ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"];
                    ("txt_attn.qkv", parts(&ns, p), p)
                })
            };
            if let Some((bname, names, p)) = fused {
                let (s, d) = fuse(names);
                out.push((format!("{bhead}{i}.{bname}.{p}"), s, d));
            } else if let Some(b) = renamed(rest, if single { &SINGLE } else { &DOUBLE }) {
                out.push((format!("{bhead}{i}.{b}"), shape.clone(), data.clone()));
            }
        }
    }
    out
}

fn run(model: &FluxTransformer2DModel, fx: &Fixture) -> Vec<f32> {
    let dev = device();
    let out = model
        .forward(
            fx.tensor("in.hidden_states", &dev).unwrap(),
            fx.tensor("in.encoder_hidden_states", &dev).unwrap(),
            fx.tensor("in.pooled_projections", &dev).unwrap(),
            fx.tensor("in.timestep", &dev).unwrap(),
            Some(fx.tensor("in.guidance", &dev).unwrap()),
            fx.tensor("in.img_ids", &dev).unwrap(),
            fx.tensor("in.txt_ids", &dev).unwrap(),
        )
        .unwrap();
    to_vec_f32(out)
}

#[test]
fn flux_with_loras_runs_like_flux_with_diffusers_fused_weights() {
    let fx = fixture("flux_transformer");
    let dev = device();
    let cfg: FluxTransformerConfig = FluxTransformerConfig::from_value(fx.config()).unwrap();
    let base = fx.weights().unwrap();
    let with_loras = FluxTransformer2DModel::load_with(base.clone(), &cfg, &specs(), &dev).unwrap();
    let fused = FluxTransformer2DModel::load(&diffusers_fused(&base), &cfg, &dev).unwrap();
    let plain = FluxTransformer2DModel::load(&base, &cfg, &dev).unwrap();
    let (got, want, plain) = (run(&with_loras, &fx), run(&fused, &fx), run(&plain, &fx));
    let (atol, rtol) = fx.tolerance();
    let shape = [want.len()];
    let c = Comparison::new("sample", &shape, &got, &shape, &want, atol, rtol);
    eprintln!(
        "flux + 3 LoRAs vs diffusers-fused weights: max_abs={:.3e}",
        c.max_abs
    );
    assert_eq!(
        c.failures, 0,
        "max_abs {:e} (atol {atol}, rtol {rtol})",
        c.max_abs
    );
    let moved = Comparison::new("sample", &shape, &plain, &shape, &want, atol, rtol);
    assert!(
        moved.failures > want.len() / 2,
        "LoRAs barely change the output"
    );
}

/// LoRA names are diffusers'; a BFL single-file base is converted to diffusers' names before
/// the walk, so the same LoRAs land on the same weights and the model is the same bit for bit.
#[test]
fn loras_apply_to_a_bfl_single_file_base() {
    let fx = fixture("flux_transformer");
    let dev = device();
    let cfg = FluxTransformerConfig::from_value(fx.config()).unwrap();
    let base = fx.weights().unwrap();
    let dir = scratch("lora-bfl");
    let path = dir.join("flux1-tiny.safetensors");
    let bfl = Checkpoint::from_f32(&path, to_bfl(entries(&base))).unwrap();
    assert!(is_bfl_layout(&bfl));
    bfl.save_safetensors(&path).unwrap();
    let from_bfl =
        FluxTransformer2DModel::load_with(Checkpoint::open(&path).unwrap(), &cfg, &specs(), &dev)
            .unwrap();
    let from_diffusers =
        FluxTransformer2DModel::load_with(base.clone(), &cfg, &specs(), &dev).unwrap();
    assert_eq!(run(&from_bfl, &fx), run(&from_diffusers, &fx));
}

#[test]
fn an_sdxl_lora_is_refused_before_the_weights_load() {
    let fx = fixture("flux_transformer");
    let cfg = FluxTransformerConfig::from_value(fx.config()).unwrap();
    let sdxl = lora_dir("sdxl_kohya").join("lora.safetensors");
    let err = FluxTransformer2DModel::load_with(
        fx.weights().unwrap(),
        &cfg,
        &[LoraSpec::new(&sdxl, 1.0)],
        &device(),
    )
    .expect_err("loaded");
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&*sdxl.to_string_lossy()) && msg.contains("lora_unet_down_blocks"),
        "{msg}"
    );
}
