//! One group per component at the real (full-size) widths, weights lazily zero-filled (the
//! cost of a dense forward does not depend on the values): CLIP-L and bigG text towers on 77
//! tokens, the face ViT at batch 1, FLUX double and single blocks on 1024 image + 512 text
//! tokens, the SDXL VAE decode of a 64x64 latent, the SDXL UNet at latent 32x32 and 64x64,
//! one Euler step. Select backends with `FACECLIP_BENCH_BACKENDS=flex,ndarray` and components
//! with criterion's filter, e.g. `cargo bench -p faceclip-benches --bench components -- flux`.

use criterion::{Criterion, criterion_group, criterion_main};
use faceclip_benches::bench_devices;
use faceclip_pipeline::core::burn::tensor::Distribution;
use faceclip_pipeline::core::{Device, Int, Tensor, TensorData, VarBuilder};
use faceclip_pipeline::dit::{FluxPosEmbed, FluxSingleTransformerBlock, FluxTransformerBlock};
use faceclip_pipeline::encoders::clip_text_model::ClipTextTransformer;
use faceclip_pipeline::encoders::face_vit::{FaceVit, FaceVitConfig};
use faceclip_pipeline::encoders::fusion::{BatchMode, FuserConfig, FuserVariant, TextFaceEmbeddingFuser, TextImageBranch, TextImageBranchConfig};
use faceclip_pipeline::encoders::t5_encoder::{T5Config, T5Encoder};
use faceclip_pipeline::schedulers::{AnyScheduler, Scheduler, SchedulerKind};
use faceclip_pipeline::unet::{AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConditionModel};

fn sync<const D: usize>(t: Tensor<D>) {
    let _ = t.into_data();
}

fn manifest_config(name: &str) -> serde_json::Value {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/manifests/{name}.json"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["config"].clone()
}

fn ids(device: &Device) -> Tensor<2, Int> {
    let mut v = vec![0i64; 77];
    v[0] = 49406;
    for (i, x) in v.iter_mut().enumerate().take(20).skip(1) {
        *x = 320 + i as i64;
    }
    v[20] = 49407;
    Tensor::from_data(TensorData::new(v, [1, 77]), device)
}

fn text_towers(c: &mut Criterion, name: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("text_tower/{name}"));
    g.sample_size(10);
    for (label, cfg) in [("clip_l", TextImageBranchConfig::released_l()), ("clip_bigg", TextImageBranchConfig::released_g())] {
        let vb = VarBuilder::dry(device);
        let tower = ClipTextTransformer::load_open_clip(&vb, &cfg.text_cfg).unwrap();
        let ids = ids(device);
        sync(tower.forward(ids.clone()).unwrap().last_hidden_state);
        g.bench_function(label, |b| b.iter(|| sync(tower.forward(ids.clone()).unwrap().last_hidden_state)));
    }
    g.finish();
}

fn face_vit(c: &mut Criterion, name: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("face_vit/{name}"));
    g.sample_size(10);
    let vb = VarBuilder::dry(device);
    let vit = FaceVit::load(&vb, &FaceVitConfig::released()).unwrap();
    let x = Tensor::<4>::random([1, 3, 112, 112], Distribution::Default, device);
    sync(vit.forward(x.clone()).unwrap().class_token);
    g.bench_function("batch1", |b| b.iter(|| sync(vit.forward(x.clone()).unwrap().class_token)));
    g.finish();
}

fn faceclip_branches(c: &mut Criterion, name: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("faceclip_branch/{name}"));
    g.sample_size(10);
    for (label, cfg) in [("l14", TextImageBranchConfig::released_l()), ("bigg14", TextImageBranchConfig::released_g())] {
        let vb = VarBuilder::dry(device);
        let branch = TextImageBranch::load(&vb, &cfg).unwrap();
        let face = Tensor::<4>::random([1, 3, 448, 448], Distribution::Default, device);
        let ids: Vec<i64> = ids(device).into_data().try_into_vec_as::<i64>().unwrap();
        let mut substitute = vec![false; 77];
        substitute[4] = true;
        let run = || sync(branch.forward(face.clone(), &ids, 77, &substitute, BatchMode::PerSample).unwrap().fused);
        g.bench_function(label, |b| b.iter(run));
    }
    g.finish();
}

fn fusion_and_t5(c: &mut Criterion, name: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("fusion/{name}"));
    g.sample_size(10);
    for (label, width, variant, len) in [
        ("faceclip_l_768", 768, FuserVariant::FaceClip, 77),
        ("faceclip_bigg_1280", 1280, FuserVariant::FaceClip, 77),
        ("facet5_4096", 4096, FuserVariant::FaceT5, 512),
    ] {
        let vb = VarBuilder::dry(device);
        let fuser = TextFaceEmbeddingFuser::load(&vb, &FuserConfig::upstream(width, len), variant).unwrap();
        let text = Tensor::<3>::random([1, len, width], Distribution::Default, device);
        let face = Tensor::<3>::random([1, 144, width], Distribution::Default, device);
        let run = || sync(fuser.forward(text.clone(), text.clone(), face.clone(), Some(face.clone()), BatchMode::PerSample).unwrap());
        g.bench_function(label, |b| b.iter(run));
    }
    // One T5-XXL layer on 512 tokens.
    let t5: T5Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 1, "num_heads": 64,
        "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
        "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu"
    }))
    .unwrap();
    let vb = VarBuilder::dry(device);
    let enc = T5Encoder::load_transformers(&vb, &t5).unwrap();
    let x = Tensor::<3>::random([1, 512, 4096], Distribution::Default, device);
    g.bench_function("t5_xxl_layer_512", |b| b.iter(|| sync(enc.forward_embeds(x.clone(), None).unwrap().last_hidden_state)));
    g.finish();
}

fn flux_blocks(c: &mut Criterion, name: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("flux_block/{name}"));
    g.sample_size(10);
    let (dim, heads, hd) = (3072, 24, 128);
    let vb = VarBuilder::dry(device);
    let double = FluxTransformerBlock::load(&vb.pp("d"), dim, heads, hd);
    let single = FluxSingleTransformerBlock::load(&vb.pp("s"), dim, heads, hd);
    let img = Tensor::<3>::random([1, 1024, dim], Distribution::Default, device);
    let txt = Tensor::<3>::random([1, 512, dim], Distribution::Default, device);
    let temb = Tensor::<2>::random([1, dim], Distribution::Default, device);
    let mut idv = vec![0f32; 512 * 3];
    for r in 0..32 {
        for col in 0..32 {
            idv.extend_from_slice(&[0.0, r as f32, col as f32]);
        }
    }
    let ids = Tensor::<2>::from_data(TensorData::new(idv, [1536, 3]), device);
    let rope = FluxPosEmbed::new(10000.0, vec![16, 56, 56]).forward(ids).unwrap();
    let joint = Tensor::cat(vec![txt.clone(), img.clone()], 1);
    sync(double.forward(img.clone(), txt.clone(), temb.clone(), &rope).1);
    g.bench_function("double_1024+512", |b| b.iter(|| sync(double.forward(img.clone(), txt.clone(), temb.clone(), &rope).1)));
    g.bench_function("single_1536", |b| b.iter(|| sync(single.forward(joint.clone(), temb.clone(), &rope))));
    g.finish();
}

fn vae_decode(c: &mut Criterion, name: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("vae_decode/{name}"));
    g.sample_size(10);
    let cfg = AutoencoderKLConfig::from_value(&manifest_config("sdxl_vae")).unwrap();
    let vb = VarBuilder::dry(device);
    let vae = AutoencoderKL::new(&cfg, &vb).unwrap();
    let z = Tensor::<4>::random([1, 4, 64, 64], Distribution::Default, device);
    g.bench_function("sdxl_64x64", |b| b.iter(|| sync(vae.decode(z.clone()).unwrap())));
    g.finish();
}

fn unet(c: &mut Criterion, name: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("unet/{name}"));
    g.sample_size(10);
    let cfg = UNet2DConditionConfig::from_value(&manifest_config("sdxl_unet")).unwrap();
    let vb = VarBuilder::dry(device);
    let unet = UNet2DConditionModel::new(&cfg, &vb).unwrap();
    let ehs = Tensor::<3>::random([1, 77, 2048], Distribution::Default, device);
    let text = Tensor::<2>::random([1, 1280], Distribution::Default, device);
    let time_ids = faceclip_pipeline::sdxl::time_ids(1024, 1024, 1, device);
    let t = Tensor::<1>::from_data(TensorData::new(vec![500f32], [1]), device);
    for size in [32usize, 64] {
        let x = Tensor::<4>::random([1, 4, size, size], Distribution::Default, device);
        let run = || sync(unet.forward(x.clone(), t.clone(), ehs.clone(), Some(text.clone()), Some(time_ids.clone())).unwrap());
        g.bench_function(format!("sdxl_latent{size}"), |b| b.iter(run));
    }
    g.finish();
}

fn scheduler_step(c: &mut Criterion, name: &str, device: &Device) {
    let mut g = c.benchmark_group(format!("scheduler/{name}"));
    let cfg = serde_json::json!({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
        "timestep_spacing": "leading", "steps_offset": 1});
    let x = Tensor::<4>::random([1, 4, 144, 108], Distribution::Default, device);
    g.bench_function("euler_step_864x1152", |b| {
        b.iter(|| {
            let mut s = AnyScheduler::with_kind(SchedulerKind::EulerDiscrete, &cfg).unwrap();
            s.set_timesteps(50).unwrap();
            let t = s.timesteps()[0];
            let xin = s.scale_model_input(x.clone(), t).unwrap();
            sync(s.step(xin, t, x.clone()).unwrap())
        })
    });
    g.finish();
}

fn components(c: &mut Criterion) {
    for (name, device) in bench_devices() {
        scheduler_step(c, &name, &device);
        face_vit(c, &name, &device);
        text_towers(c, &name, &device);
        fusion_and_t5(c, &name, &device);
        faceclip_branches(c, &name, &device);
        flux_blocks(c, &name, &device);
        vae_decode(c, &name, &device);
        unet(c, &name, &device);
    }
}

criterion_group!(benches, components);
criterion_main!(benches);
