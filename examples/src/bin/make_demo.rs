//! Writes the tiny random-weight model folder `demo/models` that `faceclip sdxl --demo` and
//! `faceclip flux --demo` run on, in the real layout (see `faceclip_pipeline::models`).
//!
//! The FaceCLIP and FaceT5 encoders and the VAEs come from the parity fixtures, the face is
//! upstream's asset 0001 (`tests/fixtures`, `crates/faceclip-detect/tests/assets`); the UNet,
//! the FLUX transformer and the CLIP-L text encoder
//! are drawn here from a fixed seed at tiny sizes that chain with those encoders. Images made
//! from these weights are noise: they prove the pipeline runs end to end, nothing more.
//!
//! `cargo run -p faceclip-examples --bin make_demo -- [OUT_DIR]` (default `demo/models`).

use std::path::{Path, PathBuf};

use faceclip_pipeline::core::device::default_device;
use faceclip_pipeline::core::{Checkpoint, Result, VarBuilder};
use faceclip_pipeline::dit::{FluxTransformer2DModel, FluxTransformerConfig};
use faceclip_pipeline::encoders::clip_text_model::{ClipTextConfig, ClipTextTransformer};
use faceclip_pipeline::schedulers::Generator;
use faceclip_pipeline::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use serde_json::{Value, json};

fn main() {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("demo/models"));
    if let Err(e) = run(&out) {
        eprintln!("make_demo: {e}");
        std::process::exit(1);
    }
    println!("wrote {}", out.display());
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn meta_config(name: &str) -> Result<Value> {
    let p = fixtures().join(name).join("meta.json");
    let v: Value = faceclip_pipeline::core::read_config(&p)?;
    Ok(v["config"].clone())
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("has a parent"))
        .map_err(|e| faceclip_pipeline::core::Error::io(path, e))?;
    let text = serde_json::to_string_pretty(v).expect("serialisable");
    std::fs::write(path, text + "\n").map_err(|e| faceclip_pipeline::core::Error::io(path, e))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.parent().expect("has a parent"))
        .map_err(|e| faceclip_pipeline::core::Error::io(to, e))?;
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| faceclip_pipeline::core::Error::io(from, e))
}

/// Random values for every tensor a dry walk expected, as the fixtures draw them: matrices
/// N(0, 1/fan_in), 1-D weights 1 + N(0, 0.1²), biases and the rest N(0, 0.1²).
fn random_weights(
    vb: &VarBuilder,
    rng: &mut Generator,
    prefix: &str,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    vb.expected()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let z = rng.randn_vec(n);
            let vals: Vec<f32> = if shape.len() >= 2 {
                let fan_in: usize = shape[1..].iter().product();
                let s = (1.0 / fan_in.max(1) as f32).sqrt();
                z.iter().map(|v| v * s).collect()
            } else if shape.len() == 1 && name.ends_with("weight") {
                z.iter().map(|v| 1.0 + 0.1 * v).collect()
            } else {
                z.iter().map(|v| 0.1 * v).collect()
            };
            (format!("{prefix}{name}"), shape, vals)
        })
        .collect()
}

fn run(out: &Path) -> Result<()> {
    let device = default_device()?;
    let mut rng = Generator::new(20251127);
    let fc = out.join("FaceCLIP/model");

    // FaceCLIP-L/G encoder: the `faceclip_encoder` fixture as released (.pt), its config beside.
    copy(
        &fixtures().join("faceclip_encoder/weights.pt"),
        &fc.join("face_clip_encoder.pt"),
    )?;
    write_json(
        &fc.join("face_clip_encoder_config.json"),
        &meta_config("faceclip_encoder")?,
    )?;
    // Its outputs: prompt embeds 8 + 8 = 16 wide, pooled 8 wide (the G branch width).
    let unet_config = json!({
        "_class_name": "UNet2DConditionModel",
        "sample_size": 32, "in_channels": 4, "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [32, 64], "layers_per_block": 1,
        "transformer_layers_per_block": [1, 1], "attention_head_dim": [2, 4],
        "cross_attention_dim": 16, "use_linear_projection": true,
        "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 56,
        "norm_num_groups": 32, "norm_eps": 1e-5, "act_fn": "silu",
        "flip_sin_to_cos": true, "freq_shift": 0, "mid_block_type": "UNetMidBlock2DCrossAttn"
    });
    let sdxl = out.join("stable-diffusion-xl-base-1.0");
    write_json(&sdxl.join("unet/config.json"), &unet_config)?;
    let cfg = UNet2DConditionConfig::from_value(&unet_config)?;
    let vb = VarBuilder::dry(&device);
    UNet2DConditionModel::new(&cfg, &vb)?;
    Checkpoint::from_f32("unet", random_weights(&vb, &mut rng, ""))?
        .save_safetensors(&fc.join("unet.safetensors"))?;
    let mut vae = meta_config("vae_sdxl")?;
    vae["_class_name"] = json!("AutoencoderKL");
    write_json(&sdxl.join("vae/config.json"), &vae)?;
    copy(
        &fixtures().join("vae_sdxl/weights.safetensors"),
        &sdxl.join("vae/diffusion_pytorch_model.safetensors"),
    )?;
    write_json(
        &sdxl.join("scheduler/scheduler_config.json"),
        &json!({
            "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "beta_start": 0.00085, "clip_sample": false, "interpolation_type": "linear",
            "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0,
            "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
            "timestep_spacing": "leading", "trained_betas": null, "use_karras_sigmas": false
        }),
    )?;

    // FaceT5 + CLIP-L: the `facet5_encoder` fixture under `encoder_2.`, a tiny random CLIP
    // text encoder under `encoder_1.`.
    let clip_config = json!({
        "vocab_size": 49408, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5, "eos_token_id": 2, "projection_dim": 8
    });
    let clip_cfg: ClipTextConfig = serde_json::from_value(clip_config.clone())
        .map_err(|e| faceclip_pipeline::core::Error::config("demo CLIP config", e))?;
    let vb = VarBuilder::dry(&device);
    ClipTextTransformer::load_hf(&vb, &clip_cfg)?;
    let mut tensors = random_weights(&vb, &mut rng, "encoder_1.");
    let t5 = Checkpoint::open(fixtures().join("facet5_encoder/weights.safetensors"))?;
    for info in t5.list() {
        let (shape, v) = if info.dtype.is_float() {
            t5.read_f32(&info.name)?
        } else {
            let (s, v) = t5.read_i64(&info.name)?;
            (s, v.into_iter().map(|x| x as f32).collect())
        };
        tensors.push((format!("encoder_2.{}", info.name), shape, v));
    }
    Checkpoint::from_f32("face_t5_encoder", tensors)?
        .save_safetensors(&fc.join("face_t5_encoder.safetensors"))?;
    let mut t5cfg = meta_config("facet5_encoder")?;
    t5cfg["encoder_1_clip_text_config"] = clip_config;
    write_json(&fc.join("face_t5_encoder_config.json"), &t5cfg)?;
    write_json(&fc.join("tokenizer/tokenizer.json"), &tiny_t5_tokenizer())?;

    // FLUX transformer: joint width 64 (FaceT5's), pooled width 8 (the tiny CLIP's).
    let flux = out.join("FLUX.1-dev");
    let tconfig = json!({
        "_class_name": "FluxTransformer2DModel", "patch_size": 1, "in_channels": 64,
        "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
        "num_attention_heads": 2, "joint_attention_dim": 64, "pooled_projection_dim": 8,
        "guidance_embeds": true, "axes_dims_rope": [4, 6, 6]
    });
    write_json(&flux.join("transformer/config.json"), &tconfig)?;
    let tcfg = FluxTransformerConfig::from_value(&tconfig)?;
    let vb = VarBuilder::dry(&device);
    FluxTransformer2DModel::new(&vb, &tcfg)?;
    Checkpoint::from_f32("dit", random_weights(&vb, &mut rng, ""))?
        .save_safetensors(&fc.join("dit.safetensors"))?;
    let mut vae = meta_config("vae_flux")?;
    vae["_class_name"] = json!("AutoencoderKL");
    write_json(&flux.join("vae/config.json"), &vae)?;
    copy(
        &fixtures().join("vae_flux/weights.safetensors"),
        &flux.join("vae/diffusion_pytorch_model.safetensors"),
    )?;
    write_json(
        &flux.join("scheduler/scheduler_config.json"),
        &json!({
            "_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256,
            "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
            "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": true
        }),
    )?;

    // The face: FaceCLIP's asset 0001 as upstream ships it (already an aligned crop; aligning
    // it again would rotate and shrink it).
    copy(
        &fixtures().join("../../crates/faceclip-detect/tests/assets/0001_female.png"),
        &out.join("face.png"),
    )?;
    std::fs::write(
        out.join("README.md"),
        "Tiny random-weight models in the real folder layout, written by \
         `cargo run -p faceclip-examples --bin make_demo`. Images made from them are noise.\n",
    )
    .map_err(|e| faceclip_pipeline::core::Error::io(out, e))?;
    Ok(())
}

/// A 512-piece Unigram `tokenizer.json` in the layout of T5's (`<pad>` 0, `</s>` 1, `<unk>` 2,
/// Metaspace pre-tokenizer): the real T5 vocabulary cannot be shipped or fetched here.
fn tiny_t5_tokenizer() -> Value {
    let mut vocab = vec![
        json!(["<pad>", 0.0]),
        json!(["</s>", 0.0]),
        json!(["<unk>", 0.0]),
        json!(["\u{2581}", -2.0]),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()".chars() {
        seen.insert(c.to_string());
        vocab.push(json!([c.to_string(), -5.0]));
    }
    let words = "a the of and in on with photo person woman man wearing shirt pants blue red green \
                 portrait garden desert rocky plateau khaki denim smiling hair face light dark \
                 city street beach sunset studio background standing sitting looking camera";
    for w in words.split_whitespace() {
        for piece in [format!("\u{2581}{w}"), w.to_string()] {
            if seen.insert(piece.clone()) && vocab.len() < 512 {
                vocab.push(json!([piece, -3.0]));
            }
        }
    }
    let mut i = 0;
    while vocab.len() < 512 {
        vocab.push(json!([format!("<extra_id_{i}>"), -20.0]));
        i += 1;
    }
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [
            {"id": 0, "content": "<pad>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "post_processor": null,
        "decoder": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "model": {"type": "Unigram", "unk_id": 2, "vocab": vocab, "byte_fallback": false}
    })
}
