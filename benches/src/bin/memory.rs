//! `memory`: peak memory of the full-size FLUX transformer and T5 encoder as they load, per
//! weight format, and the time of one FLUX step (issue #21; run by `benches/memory.sh`).
//!
//! ```text
//! memory load flux_transformer|t5_encoder|facet5_encoder MODELS f32|bf16|q8|q4
//! memory step MODELS f32|bf16|q8|q4 [SIZE]
//! ```
//!
//! `MODELS` is a FaceT5-FLUX model folder (`benches/make_random_models.py --flux`). `load`
//! loads one model (quantized as it is read) and prints
//! `PEAK <component> quant=<q> rss_gb=<peak RSS of this process> weights_gb=<bytes held>`;
//! a model whose weights alone exceed the memory available is not loaded (`rss_gb=skipped`).
//! `step` loads the transformer and times one forward at SIZE x SIZE (default 512) with true
//! CFG (batch 2, T5's 512 tokens): `STEP flux_transformer quant=<q> size=<n> seconds=<s>`.
//! One process per case, so that each peak is its own.

use std::path::{Path, PathBuf};
use std::time::Instant;

use faceclip_pipeline::core::device::{Precision, parse_device, set_precision};
use faceclip_pipeline::core::{
    Checkpoint, Device, Pretrained, QuantType, Result, Tensor, TensorData, VarBuilder,
};
use faceclip_pipeline::dit::{FluxTransformer2DModel, FluxTransformerConfig};
use faceclip_pipeline::encoders::fusion::{FaceT5FluxConfig, FaceT5FluxEncoder};
use faceclip_pipeline::encoders::t5_encoder::T5Encoder;

const GB: f64 = 1e9;

/// The weight format of a case: a float type, or blocks (with f32 for the rest).
fn parse_quant(s: &str) -> std::result::Result<(Precision, Option<QuantType>), String> {
    match s {
        "f32" => Ok((Precision::F32, None)),
        "bf16" => Ok((Precision::BF16, None)),
        "q8" => Ok((Precision::F32, Some(QuantType::Q8_0))),
        "q4" => Ok((Precision::F32, Some(QuantType::Q4_0))),
        other => Err(format!("unknown weight format `{other}` (f32, bf16, q8, q4)")),
    }
}

/// `VmHWM` (peak resident set) and `MemAvailable`, in bytes.
fn proc_kb(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn peak_rss() -> u64 {
    proc_kb("/proc/self/status", "VmHWM:")
}

/// What the model would hold: blocks for the tensors quantization takes, the float type's
/// bytes for the rest.
fn estimate(ck: &Checkpoint, precision: Precision, quant: Option<QuantType>, take: fn(&str) -> bool) -> u64 {
    let float = if precision == Precision::BF16 { 2 } else { 4 };
    ck.list()
        .iter()
        .map(|t| {
            let n: usize = t.shape.iter().product();
            match quant {
                Some(q) if take(&t.name) && faceclip_pipeline::core::quant::is_quantizable(&t.name, &t.shape) => {
                    q.bytes_for(n).unwrap_or(n * 4) as u64
                }
                _ => (n * float) as u64,
            }
        })
        .sum()
}

/// `weights_gb=<x> (more than the <y> GB available)` when `need` bytes exceed the memory
/// available now; `None` when they fit.
fn too_big(need: u64) -> Option<String> {
    let available = proc_kb("/proc/meminfo", "MemAvailable:");
    (need > available).then(|| {
        format!(
            "weights_gb={:.2} (more than the {:.1} GB available)",
            need as f64 / GB,
            available as f64 / GB
        )
    })
}

fn device(precision: Precision) -> Result<Device> {
    let mut d = parse_device("cpu")?;
    set_precision(&mut d, precision)?;
    Ok(d)
}

fn load(component: &str, models: &Path, fmt: &str) -> Result<()> {
    let (precision, quant) = parse_quant(fmt).map_err(faceclip_pipeline::core::Error::invalid)?;
    let model_dir = models.join("FaceCLIP/model");
    let (file, take): (PathBuf, fn(&str) -> bool) = match component {
        "flux_transformer" => (model_dir.join("dit.safetensors"), |_| true),
        "t5_encoder" | "facet5_encoder" => (
            model_dir.join("face_t5_encoder.safetensors"),
            |k| k.starts_with("encoder_2.t5_encoder."),
        ),
        other => return Err(faceclip_pipeline::core::Error::invalid(format!("unknown component `{other}`"))),
    };
    let mut ck = Checkpoint::open(&file)?;
    if component == "t5_encoder" {
        ck = ck.strip_prefix("encoder_2.t5_encoder.");
    }
    let take_t5: fn(&str) -> bool = if component == "t5_encoder" { |_| true } else { take };
    if let Some(why) = too_big(estimate(&ck, precision, quant, take_t5)) {
        println!("PEAK {component} quant={fmt} rss_gb=skipped {why}");
        return Ok(());
    }
    let dev = device(precision)?;
    let t = Instant::now();
    let mut vb = VarBuilder::from_checkpoint(ck, &dev);
    if let Some(q) = quant {
        vb = vb.with_quant(q, take_t5);
    }
    match component {
        "flux_transformer" => {
            let cfg = FluxTransformerConfig::from_file(models.join("FLUX.1-dev/transformer/config.json"))?;
            let m = FluxTransformer2DModel::build(&cfg, &vb)?;
            vb.finish()?;
            std::hint::black_box(&m);
        }
        "t5_encoder" => {
            let cfg = FaceT5FluxConfig::released();
            let m = T5Encoder::load_flash_t5(&vb, &cfg.face_t5.t5)?;
            vb.finish()?;
            std::hint::black_box(&m);
        }
        _ => {
            let m = FaceT5FluxEncoder::build(&FaceT5FluxConfig::released(), &vb)?;
            vb.finish()?;
            std::hint::black_box(&m);
        }
    }
    eprintln!("memory: {component} {fmt} loaded in {:.1} s", t.elapsed().as_secs_f64());
    println!(
        "PEAK {component} quant={fmt} rss_gb={:.2} weights_gb={:.2}",
        peak_rss() as f64 / GB,
        vb.loaded_bytes() as f64 / GB
    );
    Ok(())
}

fn step(models: &Path, fmt: &str, size: usize) -> Result<()> {
    let (precision, quant) = parse_quant(fmt).map_err(faceclip_pipeline::core::Error::invalid)?;
    let ck = Checkpoint::open(models.join("FaceCLIP/model/dit.safetensors"))?;
    if let Some(why) = too_big(estimate(&ck, precision, quant, |_| true)) {
        println!("STEP flux_transformer quant={fmt} size={size} seconds=skipped {why}");
        return Ok(());
    }
    let dev = device(precision)?;
    let cfg = FluxTransformerConfig::from_file(models.join("FLUX.1-dev/transformer/config.json"))?;
    let mut vb = VarBuilder::from_checkpoint(ck, &dev);
    if let Some(q) = quant {
        vb = vb.with_quant(q, |_| true);
    }
    let model = FluxTransformer2DModel::build(&cfg, &vb)?;
    vb.finish()?;
    // Latents of SIZE x SIZE: (SIZE/16)^2 packed tokens of 64 channels; T5's 512 tokens.
    let (b, img, txt) = (2usize, (size / 16) * (size / 16), 512usize);
    let fill = |shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.2).collect();
        TensorData::new(v, shape)
    };
    let ids = |n: usize, w: usize| {
        let v: Vec<f32> = (0..n * 3).map(|i| if i % 3 == 0 { 0.0 } else { ((i / 3) % w) as f32 }).collect();
        Tensor::<2>::from_data(TensorData::new(v, [n, 3]), &dev)
    };
    let t = Instant::now();
    let out = model.forward(
        Tensor::from_data(fill(vec![b, img, cfg.in_channels]), &dev),
        Tensor::from_data(fill(vec![b, txt, cfg.joint_attention_dim]), &dev),
        Tensor::from_data(fill(vec![b, cfg.pooled_projection_dim]), &dev),
        Tensor::from_data(TensorData::new(vec![0.5f32; b], [b]), &dev),
        cfg.guidance_embeds
            .then(|| Tensor::from_data(TensorData::new(vec![3.5f32; b], [b]), &dev)),
        ids(img, size / 16),
        Tensor::<2>::zeros([txt, 3], &dev),
    )?;
    let v = faceclip_pipeline::core::to_vec_f32(out);
    let secs = t.elapsed().as_secs_f64();
    assert!(v.iter().all(|x| x.is_finite()), "non-finite output");
    println!(
        "STEP flux_transformer quant={fmt} size={size} seconds={secs:.1} rss_gb={:.2} weights_gb={:.2}",
        peak_rss() as f64 / GB,
        vb.loaded_bytes() as f64 / GB
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["load", component, models, fmt] => load(component, Path::new(models), fmt),
        ["step", models, fmt] => step(Path::new(models), fmt, 512),
        ["step", models, fmt, size] => match size.parse() {
            Ok(s) => step(Path::new(models), fmt, s),
            Err(_) => Err(faceclip_pipeline::core::Error::invalid(format!("size `{size}`"))),
        },
        _ => {
            eprintln!("usage: memory load flux_transformer|t5_encoder|facet5_encoder MODELS f32|bf16|q8|q4\n       memory step MODELS f32|bf16|q8|q4 [SIZE]");
            return std::process::ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
