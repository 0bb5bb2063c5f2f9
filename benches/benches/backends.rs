//! CPU backend choice: f32 matmul 1024³, a 3x3 conv at SDXL widths, attention over 4096
//! tokens, on every compiled-in backend; and a FLUX-sized linear layer (1536 tokens,
//! 3072 -> 3072) with its weight in f32 (packed for the CPU kernel, and as a plain tensor
//! through burn's matmul), Q8_0 and Q4_0 blocks (`quant_linear`).

use criterion::{Criterion, criterion_group, criterion_main};
use faceclip_benches::bench_devices;
use faceclip_pipeline::core::burn::tensor::Distribution;
use faceclip_pipeline::core::layers::{AttentionMask, attention};
use faceclip_pipeline::core::{Tensor, burn};

fn sync<const D: usize>(t: Tensor<D>) {
    let _ = t.into_data();
}

fn backends(c: &mut Criterion) {
    for (name, device) in bench_devices() {
        let mut g = c.benchmark_group(format!("backend/{name}"));
        g.sample_size(10);
        let a = Tensor::<2>::random([1024, 1024], Distribution::Default, &device);
        let b = Tensor::<2>::random([1024, 1024], Distribution::Default, &device);
        g.bench_function("matmul_1024", |bench| {
            bench.iter(|| sync(a.clone().matmul(b.clone())))
        });

        let x = Tensor::<4>::random([1, 320, 64, 64], Distribution::Default, &device);
        let w = Tensor::<4>::random([320, 320, 3, 3], Distribution::Default, &device);
        g.bench_function("conv3x3_320x64x64", |bench| {
            bench.iter(|| {
                sync(burn::tensor::module::conv2d(
                    x.clone(),
                    w.clone(),
                    None,
                    burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
                ))
            })
        });

        let q = Tensor::<4>::random([1, 5, 4096, 64], Distribution::Default, &device);
        g.bench_function("attention_4096x5x64", |bench| {
            bench.iter(|| {
                sync(attention(
                    q.clone(),
                    q.clone(),
                    q.clone(),
                    None,
                    AttentionMask::None,
                    None,
                ))
            })
        });
        g.finish();
    }
}

/// A FLUX linear layer at 512x512 (1024 image + 512 text tokens, 3072 wide): the dense f32
/// product and the block formats' (flex: the tile-expanding kernel).
fn quant_linear(c: &mut Criterion) {
    use faceclip_pipeline::core::layers::Linear;
    use faceclip_pipeline::core::{Checkpoint, QuantType, VarBuilder};
    let (m, d) = (1536, 3072);
    let w: Vec<f32> = (0..d * d).map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 1e5).collect();
    let ck = Checkpoint::from_f32("bench", vec![("l.weight".to_string(), vec![d, d], w)])
        .expect("a well-formed in-memory weight");
    for (name, device) in bench_devices() {
        let mut g = c.benchmark_group(format!("quant_linear/{name}"));
        g.sample_size(10);
        let x = Tensor::<2>::random([m, d], Distribution::Default, &device);
        let vb = VarBuilder::from_checkpoint(ck.clone(), &device);
        let plain = Linear::from_tensors(vb.pp("l").tensor("weight", [d, d]).val(), None);
        g.bench_function(format!("f32_burn_matmul_{m}x{d}x{d}"), |bench| {
            bench.iter(|| sync(plain.forward(x.clone())))
        });
        for quant in [None, Some(QuantType::Q8_0), Some(QuantType::Q4_0)] {
            let mut vb = VarBuilder::from_checkpoint(ck.clone(), &device);
            if let Some(q) = quant {
                vb = vb.with_quant(q, |_| true);
            }
            let l = Linear::load(&vb.pp("l"), d, d, false);
            let label = quant.map_or("f32", |q| q.name());
            g.bench_function(format!("{label}_{m}x{d}x{d}"), |bench| {
                bench.iter(|| sync(l.forward(x.clone())))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, backends, quant_linear);
criterion_main!(benches);
