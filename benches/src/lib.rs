//! Shared pieces of the benchmarks: which devices to run on, and one builder per component
//! at its real (full-size) configuration, used by both the criterion benches
//! (`benches/components.rs`) and the PyTorch side-by-side timer (`src/bin/compare.rs`).
//!
//! A component is built by [`build`] into a [`Bench`]: the model plus its fixed input; each
//! [`Bench::run`] is one forward, synchronised (the output is read back). The weights are
//! either lazily zero-filled ([`Weights::Zeros`]: nothing is allocated until a forward needs
//! it, builds in no time) or a deterministic pseudo-random fill ([`Weights::Random`]: scaled
//! like a fan-in initialisation, so that no kernel can take a zeros fast path). Random
//! weights go through a temporary safetensors file (memory-mapped, removed after loading), so
//! that the peak memory stays one copy of the weights (the SDXL UNet alone is 10.3 GB in f32).

use std::io::Write;
use std::path::{Path, PathBuf};

use faceclip_pipeline::core::device::{available_backends, parse_device};
use faceclip_pipeline::core::{
    Checkpoint, Device, Error, Int, Result, Tensor, TensorData, VarBuilder,
};
use faceclip_pipeline::dit::{FluxPosEmbed, FluxSingleTransformerBlock, FluxTransformerBlock};
use faceclip_pipeline::encoders::clip_text_model::ClipTextTransformer;
use faceclip_pipeline::encoders::face_vit::{FaceVit, FaceVitConfig};
use faceclip_pipeline::encoders::fusion::{
    BatchMode, FuserConfig, FuserVariant, TextFaceEmbeddingFuser, TextImageBranch,
    TextImageBranchConfig,
};
use faceclip_pipeline::encoders::t5_encoder::{T5Config, T5Encoder};
use faceclip_pipeline::schedulers::{AnyScheduler, Scheduler, SchedulerKind};
use faceclip_pipeline::unet::{
    AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConditionModel,
};

/// The devices to benchmark: `FACECLIP_BENCH_BACKENDS` (comma-separated names) or every
/// backend compiled in.
pub fn bench_devices() -> Vec<(String, Device)> {
    let names: Vec<String> = match std::env::var("FACECLIP_BENCH_BACKENDS") {
        Ok(s) => s
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        Err(_) => available_backends().iter().map(|s| s.to_string()).collect(),
    };
    names
        .into_iter()
        .filter_map(|n| parse_device(&n).ok().map(|d| (n, d)))
        .collect()
}

/// One benchmarked component: its name (the same on the Rust and the PyTorch side), its
/// input, and what it is.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    pub name: &'static str,
    pub input: &'static str,
    pub about: &'static str,
}

/// Every component [`build`] knows, in the order the benchmarks run them.
pub const COMPONENTS: &[Component] = &[
    Component {
        name: "scheduler_step",
        input: "latent 1x4x144x108 (864x1152)",
        about: "Euler discrete: set_timesteps(50) + scale_model_input + step",
    },
    Component {
        name: "face_vit",
        input: "1x3x112x112",
        about: "FaceCLIP face ViT (768 wide, 24 layers, 8 heads, feature head)",
    },
    Component {
        name: "clip_l_text",
        input: "77 tokens",
        about: "open_clip ViT-L-14-quickgelu text tower (768 wide, 12 layers)",
    },
    Component {
        name: "clip_bigg_text",
        input: "77 tokens",
        about: "open_clip ViT-bigG-14 text tower (1280 wide, 32 layers)",
    },
    Component {
        name: "fusion_l",
        input: "77 text + 144 face tokens",
        about: "FaceCLIP-L TextFaceEmbeddingFuser (width 768, 6 layers)",
    },
    Component {
        name: "fusion_bigg",
        input: "77 text + 144 face tokens",
        about: "FaceCLIP-bigG TextFaceEmbeddingFuser (width 1280, 6 layers)",
    },
    Component {
        name: "fusion_t5",
        input: "512 text + 144 face tokens",
        about: "FaceT5 TextFaceEmbeddingFuser (width 4096, 6 layers)",
    },
    Component {
        name: "faceclip_l_branch",
        input: "448x448 face, 77 tokens",
        about: "FaceCLIP-L-14 TextImageBranch (face ViT + text tower + fuser)",
    },
    Component {
        name: "faceclip_bigg_branch",
        input: "448x448 face, 77 tokens",
        about: "FaceCLIP-bigG-14 TextImageBranch",
    },
    Component {
        name: "t5_layer",
        input: "512 tokens",
        about: "one T5-XXL encoder layer (4096 wide, 64 heads, d_ff 10240) + final norm",
    },
    Component {
        name: "flux_double",
        input: "1024 image + 512 text tokens",
        about: "FLUX double-stream block (3072 wide, 24 heads)",
    },
    Component {
        name: "flux_single",
        input: "1536 tokens",
        about: "FLUX single-stream block (3072 wide, 24 heads)",
    },
    Component {
        name: "vae_decode",
        input: "latent 1x4x64x64 -> 512x512",
        about: "SDXL AutoencoderKL decode",
    },
    Component {
        name: "unet_sdxl",
        input: "latent 1x4x64x64, 77x2048 context",
        about: "SDXL UNet2DConditionModel forward (2.57 B parameters), added cond",
    },
    Component {
        name: "unet_sdxl_32",
        input: "latent 1x4x32x32, 77x2048 context",
        about: "SDXL UNet forward at latent 32x32",
    },
    Component {
        name: "unet_sdxl_step",
        input: "latent 2x4x144x108 (864x1152, CFG), 77x2048 context",
        about: "one full-size FaceCLIP-SDXL denoising step: the UNet at batch 2 (CFG)",
    },
    Component {
        name: "attention_unet",
        input: "q, k, v 2x10x3888x64",
        about: "scaled-dot-product attention of the 864x1152 UNet's 54x72 self-attention (CFG)",
    },
    Component {
        name: "attention_flux",
        input: "q, k, v 1x24x1536x128",
        about: "scaled-dot-product attention of a 512x512 FLUX block (512 text + 1024 image)",
    },
];

/// The components both sides of the PyTorch comparison time (`compare` runs these by default).
pub const COMPARE_DEFAULT: &[&str] = &[
    "clip_l_text",
    "clip_bigg_text",
    "face_vit",
    "fusion_l",
    "fusion_bigg",
    "t5_layer",
    "flux_double",
    "flux_single",
    "unet_sdxl",
    "vae_decode",
    "scheduler_step",
];

/// The component called `name`.
pub fn component(name: &str) -> Option<&'static Component> {
    COMPONENTS.iter().find(|c| c.name == name)
}

/// How a component's weights are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// Lazily zero-filled parameters (a dry [`VarBuilder`]): no build cost.
    Zeros,
    /// Deterministic pseudo-random values from `seed`: uniform in ±1/sqrt(fan_in) for
    /// matrices and kernels, 1 ± 0.1 for 1-D `weight`/`scale`, ±0.1 for other 1-D tensors.
    Random { seed: u64 },
}

impl Weights {
    /// `FACECLIP_BENCH_WEIGHTS=random` (seed 0) or `zeros`; `default` when unset.
    pub fn from_env(default: Weights) -> Weights {
        match std::env::var("FACECLIP_BENCH_WEIGHTS").as_deref() {
            Ok("random") => Weights::Random { seed: 0 },
            Ok("zeros") => Weights::Zeros,
            _ => default,
        }
    }
}

/// A built component: the model and its input; [`Bench::run`] is one synchronised forward.
pub struct Bench {
    pub component: &'static Component,
    run: Box<dyn Fn() -> Result<()>>,
}

impl Bench {
    fn new(name: &str, run: impl Fn() -> Result<()> + 'static) -> Self {
        Self {
            component: component(name).expect("every builder is listed in COMPONENTS"),
            run: Box::new(run),
        }
    }

    /// One forward pass, waiting for the result (read back to the host).
    pub fn run(&self) -> Result<()> {
        (self.run)()
    }
}

/// Builds the component `name` (one of [`COMPONENTS`]) on `device`.
pub fn build(name: &str, device: &Device, weights: Weights) -> Result<Bench> {
    match name {
        "scheduler_step" => scheduler_step(device),
        "face_vit" => face_vit(device, weights),
        "clip_l_text" => clip_text(name, TextImageBranchConfig::released_l(), device, weights),
        "clip_bigg_text" => clip_text(name, TextImageBranchConfig::released_g(), device, weights),
        "fusion_l" => fusion(name, 768, FuserVariant::FaceClip, 77, device, weights),
        "fusion_bigg" => fusion(name, 1280, FuserVariant::FaceClip, 77, device, weights),
        "fusion_t5" => fusion(name, 4096, FuserVariant::FaceT5, 512, device, weights),
        "faceclip_l_branch" => branch(name, TextImageBranchConfig::released_l(), device, weights),
        "faceclip_bigg_branch" => {
            branch(name, TextImageBranchConfig::released_g(), device, weights)
        }
        "t5_layer" => t5_layer(device, weights),
        "flux_double" | "flux_single" => flux_block(name, device, weights),
        "vae_decode" => vae_decode(device, weights),
        "unet_sdxl" => unet(name, [1, 64, 64], device, weights),
        "unet_sdxl_32" => unet(name, [1, 32, 32], device, weights),
        "unet_sdxl_step" => unet(name, [2, 144, 108], device, weights),
        "attention_unet" => attention_bench(name, [2, 10, 3888, 64], device),
        "attention_flux" => attention_bench(name, [1, 24, 1536, 128], device),
        other => Err(Error::InvalidInput(format!(
            "unknown component `{other}`; known: {}",
            COMPONENTS
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn sync<const D: usize>(t: Tensor<D>) {
    let _ = t.into_data();
}

/// The `config` object of `tests/manifests/{name}.json` (the released full-size configs).
pub fn manifest_config(name: &str) -> Result<serde_json::Value> {
    let p = manifests_dir().join(format!("{name}.json"));
    let v: serde_json::Value = faceclip_pipeline::core::read_config(&p)?;
    Ok(v["config"].clone())
}

/// `tests/manifests` of this repository.
pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/manifests")
}

// ---------------------------------------------------------------------------------------
// Deterministic fill

/// A cheap deterministic generator (splitmix64-seeded xorshift64*), uniform in [-1, 1).
struct Fill(u64);

impl Fill {
    fn new(seed: u64, stream: &str) -> Self {
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in stream.bytes() {
            h = splitmix(h ^ b as u64);
        }
        Fill(splitmix(h) | 1)
    }

    fn next(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        r as f32 * (2.0 / (1u64 << 24) as f32) - 1.0
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic input tensor, uniform in [-1, 1).
pub fn input_tensor<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let mut f = Fill::new(seed, "input");
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| f.next()).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// (offset, scale) of the fill for the parameter `name` of `shape`.
fn fill_rule(name: &str, shape: &[usize]) -> (f32, f32) {
    if shape.len() >= 2 {
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        (0.0, 1.0 / (fan_in as f32).sqrt())
    } else if name.ends_with("weight") || name.ends_with("scale") || name.ends_with("running_var") {
        (1.0, 0.1)
    } else {
        (0.0, 0.1)
    }
}

/// Writes `tensors` as an f32 safetensors file filled by [`fill_rule`].
fn write_random_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>)],
    seed: u64,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut head =
        serde_json::to_vec(&serde_json::Value::Object(header)).expect("a JSON map serialises");
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let io = |e: std::io::Error| Error::io(path, e);
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::with_capacity(8 << 20, file);
    w.write_all(&(head.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&head).map_err(io)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4 << 20);
    for (name, shape) in tensors {
        let (offset, scale) = fill_rule(name, shape);
        let mut f = Fill::new(seed, name);
        let mut left: usize = shape.iter().product();
        while left > 0 {
            let n = left.min(1 << 20);
            buf.clear();
            for _ in 0..n {
                buf.extend_from_slice(&(offset + scale * f.next()).to_le_bytes());
            }
            w.write_all(&buf).map_err(io)?;
            left -= n;
        }
    }
    w.flush().map_err(io)?;
    Ok(())
}

/// Removes a file when dropped (the temporary weights, also on error paths).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Builds a model with `load` under the chosen weights. For [`Weights::Random`] the model is
/// first walked dry to list its tensors, which are then written to a temporary safetensors
/// file (`FACECLIP_BENCH_TMP` or the system temp dir), loaded with full coverage checking,
/// and the file is removed.
pub fn with_weights<T>(
    label: &str,
    device: &Device,
    weights: Weights,
    load: impl Fn(&VarBuilder) -> Result<T>,
) -> Result<T> {
    match weights {
        Weights::Zeros => load(&VarBuilder::dry(device)),
        Weights::Random { seed } => {
            let dry = VarBuilder::dry(device);
            load(&dry)?;
            let tensors = dry.expected();
            let dir = std::env::var_os("FACECLIP_BENCH_TMP")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let path = dir.join(format!(
                "faceclip-bench-{label}-{}.safetensors",
                std::process::id()
            ));
            let _guard = RemoveOnDrop(path.clone());
            write_random_safetensors(&path, &tensors, seed)?;
            let vb = VarBuilder::from_checkpoint(Checkpoint::open(&path)?, device);
            let model = load(&vb)?;
            vb.finish()?;
            Ok(model)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Builders

/// The 77 CLIP token ids the text benches use: SOT, 19 word tokens, EOT, padding 0.
pub fn clip_ids() -> Vec<i64> {
    let mut v = vec![0i64; 77];
    v[0] = 49406;
    for (i, x) in v.iter_mut().enumerate().take(20).skip(1) {
        *x = 320 + i as i64;
    }
    v[20] = 49407;
    v
}

fn scheduler_step(device: &Device) -> Result<Bench> {
    let cfg = serde_json::json!({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
        "timestep_spacing": "leading", "steps_offset": 1});
    let x = input_tensor([1, 4, 144, 108], 1, device);
    Ok(Bench::new("scheduler_step", move || {
        let mut s = AnyScheduler::with_kind(SchedulerKind::EulerDiscrete, &cfg)?;
        s.set_timesteps(50)?;
        let t = s.timesteps()[0];
        let xin = s.scale_model_input(x.clone(), t)?;
        sync(s.step(xin, t, x.clone())?);
        Ok(())
    }))
}

fn face_vit(device: &Device, weights: Weights) -> Result<Bench> {
    let cfg = FaceVitConfig::released();
    let vit = with_weights("face_vit", device, weights, |vb| FaceVit::load(vb, &cfg))?;
    let x = input_tensor([1, 3, 112, 112], 1, device);
    Ok(Bench::new("face_vit", move || {
        sync(vit.forward(x.clone())?.class_token);
        Ok(())
    }))
}

fn clip_text(
    name: &str,
    cfg: TextImageBranchConfig,
    device: &Device,
    weights: Weights,
) -> Result<Bench> {
    let tower = with_weights(name, device, weights, |vb| {
        ClipTextTransformer::load_open_clip(vb, &cfg.text_cfg)
    })?;
    let ids = Tensor::<2, Int>::from_data(TensorData::new(clip_ids(), [1, 77]), device);
    Ok(Bench::new(name, move || {
        sync(tower.forward(ids.clone())?.last_hidden_state);
        Ok(())
    }))
}

fn fusion(
    name: &str,
    width: usize,
    variant: FuserVariant,
    len: usize,
    device: &Device,
    weights: Weights,
) -> Result<Bench> {
    let cfg = FuserConfig::upstream(width, len);
    let fuser = with_weights(name, device, weights, |vb| {
        TextFaceEmbeddingFuser::load(vb, &cfg, variant)
    })?;
    let text = input_tensor([1, len, width], 1, device);
    let text_pos = input_tensor([1, len, width], 2, device);
    let face = input_tensor([1, 144, width], 3, device);
    let face_pos = input_tensor([1, 144, width], 4, device);
    Ok(Bench::new(name, move || {
        let out = fuser.forward(
            text.clone(),
            text_pos.clone(),
            face.clone(),
            Some(face_pos.clone()),
            BatchMode::PerSample,
        )?;
        sync(out);
        Ok(())
    }))
}

fn branch(
    name: &str,
    cfg: TextImageBranchConfig,
    device: &Device,
    weights: Weights,
) -> Result<Bench> {
    let branch = with_weights(name, device, weights, |vb| TextImageBranch::load(vb, &cfg))?;
    let face = input_tensor([1, 3, 448, 448], 1, device);
    let ids = clip_ids();
    let mut substitute = vec![false; 77];
    substitute[4] = true;
    Ok(Bench::new(name, move || {
        sync(
            branch
                .forward(face.clone(), &ids, 77, &substitute, BatchMode::PerSample)?
                .fused,
        );
        Ok(())
    }))
}

/// The T5-XXL config (`google/t5-v1_1-xxl`) cut to one layer.
pub fn t5_xxl_one_layer() -> serde_json::Value {
    serde_json::json!({
        "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 1, "num_heads": 64,
        "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
        "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu"
    })
}

fn t5_layer(device: &Device, weights: Weights) -> Result<Bench> {
    let cfg: T5Config = serde_json::from_value(t5_xxl_one_layer())
        .map_err(|e| Error::config("T5 config", e.to_string()))?;
    let enc = with_weights("t5_layer", device, weights, |vb| {
        T5Encoder::load_transformers(vb, &cfg)
    })?;
    let x = input_tensor([1, 512, 4096], 1, device);
    Ok(Bench::new("t5_layer", move || {
        sync(enc.forward_embeds(x.clone(), None)?.last_hidden_state);
        Ok(())
    }))
}

fn flux_block(name: &str, device: &Device, weights: Weights) -> Result<Bench> {
    let (dim, heads, hd) = (3072, 24, 128);
    let (txt_len, grid) = (512usize, 32usize);
    let mut idv = vec![0f32; txt_len * 3];
    for r in 0..grid {
        for col in 0..grid {
            idv.extend_from_slice(&[0.0, r as f32, col as f32]);
        }
    }
    let ids = Tensor::<2>::from_data(TensorData::new(idv, [txt_len + grid * grid, 3]), device);
    let rope = FluxPosEmbed::new(10000.0, vec![16, 56, 56]).forward(ids)?;
    let img = input_tensor([1, grid * grid, dim], 1, device);
    let txt = input_tensor([1, txt_len, dim], 2, device);
    let temb = input_tensor([1, dim], 3, device);
    if name == "flux_double" {
        let block = with_weights(name, device, weights, |vb| {
            Ok(FluxTransformerBlock::load(vb, dim, heads, hd))
        })?;
        Ok(Bench::new(name, move || {
            sync(
                block
                    .forward(img.clone(), txt.clone(), temb.clone(), &rope)
                    .1,
            );
            Ok(())
        }))
    } else {
        let block = with_weights(name, device, weights, |vb| {
            Ok(FluxSingleTransformerBlock::load(vb, dim, heads, hd))
        })?;
        let joint = Tensor::cat(vec![txt, img], 1);
        Ok(Bench::new(name, move || {
            sync(block.forward(joint.clone(), temb.clone(), &rope));
            Ok(())
        }))
    }
}

fn attention_bench(name: &str, shape: [usize; 4], device: &Device) -> Result<Bench> {
    use faceclip_pipeline::core::layers::{AttentionMask, attention};
    let (q, k, v) = (
        input_tensor(shape, 1, device),
        input_tensor(shape, 2, device),
        input_tensor(shape, 3, device),
    );
    Ok(Bench::new(name, move || {
        sync(attention(
            q.clone(),
            k.clone(),
            v.clone(),
            None,
            AttentionMask::None,
            None,
        ));
        Ok(())
    }))
}

fn vae_decode(device: &Device, weights: Weights) -> Result<Bench> {
    let cfg = AutoencoderKLConfig::from_value(&manifest_config("sdxl_vae")?)?;
    let vae = with_weights("vae_decode", device, weights, |vb| {
        AutoencoderKL::new(&cfg, vb)
    })?;
    let z = input_tensor([1, 4, 64, 64], 1, device);
    Ok(Bench::new("vae_decode", move || {
        sync(vae.decode(z.clone())?);
        Ok(())
    }))
}

/// The UNet on `[batch, 4, h, w]` latents (the image is 8x that).
fn unet(name: &str, [batch, h, w]: [usize; 3], device: &Device, weights: Weights) -> Result<Bench> {
    let cfg = UNet2DConditionConfig::from_value(&manifest_config("sdxl_unet")?)?;
    let unet = with_weights(name, device, weights, |vb| {
        UNet2DConditionModel::new(&cfg, vb)
    })?;
    let x = input_tensor([batch, 4, h, w], 1, device);
    let ehs = input_tensor([batch, 77, 2048], 2, device);
    let text = input_tensor([batch, 1280], 3, device);
    let (ids, _) = faceclip_pipeline::MicroConditioning::default().time_ids(8 * h, 8 * w);
    let ids: Vec<f32> = (0..batch).flat_map(|_| ids.to_vec()).collect();
    let time_ids = Tensor::<2>::from_data(TensorData::new(ids, [batch, 6]), device);
    let t = Tensor::<1>::from_data(TensorData::new(vec![500f32; batch], [batch]), device);
    Ok(Bench::new(name, move || {
        sync(unet.forward(
            x.clone(),
            t.clone(),
            ehs.clone(),
            Some(text.clone()),
            Some(time_ids.clone()),
        )?);
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_deterministic_and_in_range() {
        let a: Vec<f32> = {
            let mut f = Fill::new(0, "x");
            (0..1000).map(|_| f.next()).collect()
        };
        let b: Vec<f32> = {
            let mut f = Fill::new(0, "x");
            (0..1000).map(|_| f.next()).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean = a.iter().sum::<f32>() / 1000.0;
        assert!(mean.abs() < 0.1, "mean {mean}");
    }

    #[test]
    fn every_compared_component_is_listed() {
        for n in COMPARE_DEFAULT {
            assert!(component(n).is_some(), "{n}");
        }
    }
}
