//! One group per component at the real (full-size) widths, built by the shared builders of
//! `faceclip_benches` (the same ones the PyTorch side-by-side `compare` program times): CLIP-L
//! and bigG text towers on 77 tokens, the face ViT at batch 1, the FaceCLIP / FaceT5 fusers,
//! the FaceCLIP branches, one T5-XXL layer, FLUX double and single blocks on 1024 image + 512
//! text tokens, the SDXL VAE decode of a 64x64 latent, the SDXL UNet at latent 32x32 and 64x64,
//! one Euler step.
//!
//! Weights are lazily zero-filled by default (no build cost); `FACECLIP_BENCH_WEIGHTS=random`
//! uses the deterministic random fill instead. Select backends with
//! `FACECLIP_BENCH_BACKENDS=flex,ndarray` and components with criterion's filter, e.g.
//! `cargo bench -p faceclip-benches --bench components -- flux`.

use criterion::{Criterion, criterion_group, criterion_main};
use faceclip_benches::{Bench, Weights, bench_devices, build};
use faceclip_pipeline::core::Device;

/// (criterion group, benchmark id, component, sample size); the ids are those of the first
/// baseline (benches/README.md), so that criterion's saved results stay comparable.
const TABLE: &[(&str, &str, &str, usize)] = &[
    ("scheduler", "euler_step_864x1152", "scheduler_step", 100),
    ("face_vit", "batch1", "face_vit", 10),
    ("text_tower", "clip_l", "clip_l_text", 10),
    ("text_tower", "clip_bigg", "clip_bigg_text", 10),
    ("fusion", "faceclip_l_768", "fusion_l", 10),
    ("fusion", "faceclip_bigg_1280", "fusion_bigg", 10),
    ("fusion", "facet5_4096", "fusion_t5", 10),
    ("fusion", "t5_xxl_layer_512", "t5_layer", 10),
    ("faceclip_branch", "l14", "faceclip_l_branch", 10),
    ("faceclip_branch", "bigg14", "faceclip_bigg_branch", 10),
    ("flux_block", "double_1024+512", "flux_double", 10),
    ("flux_block", "single_1536", "flux_single", 10),
    ("vae_decode", "sdxl_64x64", "vae_decode", 10),
    ("unet", "sdxl_latent32", "unet_sdxl_32", 10),
    ("unet", "sdxl_latent64", "unet_sdxl", 10),
];

fn run_one(
    c: &mut Criterion,
    backend: &str,
    device: &Device,
    weights: Weights,
    entry: &(&str, &str, &str, usize),
) {
    let (group, id, component, samples) = *entry;
    let mut g = c.benchmark_group(format!("{group}/{backend}"));
    g.sample_size(samples);
    // Built on first use: criterion only calls the routine when its filter selects this id,
    // so a filtered run does not pay for (or allocate) the other components.
    let mut built: Option<Bench> = None;
    g.bench_function(id, |b| {
        let bench = built.get_or_insert_with(|| {
            let bench = build(component, device, weights)
                .unwrap_or_else(|e| panic!("building {component}: {e}"));
            bench.run().unwrap_or_else(|e| panic!("{component}: {e}"));
            bench
        });
        b.iter(|| bench.run().unwrap())
    });
    g.finish();
}

fn components(c: &mut Criterion) {
    let weights = Weights::from_env(Weights::Zeros);
    for (name, device) in bench_devices() {
        for entry in TABLE {
            run_one(c, &name, &device, weights, entry);
        }
    }
}

criterion_group!(benches, components);
criterion_main!(benches);
