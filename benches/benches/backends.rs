//! CPU backend choice: f32 matmul 1024³, a 3x3 conv at SDXL widths, attention over 4096
//! tokens, on every compiled-in backend.

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

criterion_group!(benches, backends);
criterion_main!(benches);
