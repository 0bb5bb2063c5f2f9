//! `TorchGenerator` against `torch.randn` on the CPU generator: every value of
//! `tests/data/torch_randn.safetensors` (written by `tests/data/make_torch_randn.py`) must be
//! reproduced bit for bit.

use std::collections::HashMap;
use std::path::PathBuf;

use faceclip_pipeline::core::device::default_device;
use faceclip_pipeline::core::{Device, to_vec_f32};
use faceclip_pipeline::schedulers::{
    Generator, NoiseSource, TorchGenerator, TorchKernel, initial_noise,
};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// One reference tensor: its shape and float32 values.
struct Draw {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// A run of consecutive `torch.randn` calls on one freshly seeded generator.
struct Case {
    kernel: TorchKernel,
    name: String,
    seed: u64,
    draws: Vec<Draw>,
    initial_noise: Option<(usize, [usize; 3])>,
}

fn fixture() -> (Vec<Case>, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch_randn.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("safetensors header");
    let meta: HashMap<String, String> = meta.metadata().clone().expect("metadata");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let cases: Vec<Value> = serde_json::from_str(&meta["cases"]).expect("cases JSON");
    let cases = cases
        .iter()
        .map(|c| {
            let kernel = match c["kernel"].as_str() {
                Some("avx2") => TorchKernel::Avx2,
                Some("default") => TorchKernel::Portable,
                k => panic!("unknown kernel {k:?}"),
            };
            let draws = c["draws"]
                .as_array()
                .expect("draws")
                .iter()
                .map(|k| {
                    let t = st.tensor(k.as_str().expect("draw name")).expect("tensor");
                    assert_eq!(t.dtype(), Dtype::F32);
                    let values = t
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    Draw {
                        shape: t.shape().to_vec(),
                        values,
                    }
                })
                .collect();
            let initial_noise = c.get("initial_noise").map(|v| {
                let chw: Vec<usize> = serde_json::from_value(v["chw"].clone()).expect("chw");
                (
                    v["n"].as_u64().expect("n") as usize,
                    [chw[0], chw[1], chw[2]],
                )
            });
            Case {
                kernel,
                name: c["name"].as_str().expect("name").to_string(),
                seed: c["seed"].as_u64().expect("seed fits u64"),
                draws,
                initial_noise,
            }
        })
        .collect();
    (cases, meta.get("torch").cloned().unwrap_or_default())
}

fn dev() -> Device {
    default_device().unwrap()
}

/// Index and bits of the first value that differs, if any.
fn first_difference(got: &[f32], want: &[f32]) -> Option<(usize, u32, u32)> {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits())
        .map(|i| (i, got[i].to_bits(), want[i].to_bits()))
}

#[test]
fn randn_matches_torch_bit_for_bit() {
    let (cases, torch) = fixture();
    let mut checked = 0;
    let mut sizes = std::collections::BTreeSet::new();
    for case in cases.iter().filter(|c| c.initial_noise.is_none()) {
        let mut g = TorchGenerator::with_kernel(case.seed, case.kernel);
        for (i, draw) in case.draws.iter().enumerate() {
            let n = draw.shape.iter().product();
            let got = g.randn_vec(n);
            if let Some((at, g_bits, w_bits)) = first_difference(&got, &draw.values) {
                panic!(
                    "{:?} {} draw {i} (shape {:?}): element {at} is {g_bits:#010x}, torch {torch} \
                     gives {w_bits:#010x}",
                    case.kernel, case.name, draw.shape
                );
            }
            checked += n;
            sizes.insert(n);
        }
    }
    // the fixture covers both paths, the tails and several seeds
    for n in [1, 2, 7, 15, 16, 17, 31, 100, 1000] {
        assert!(sizes.contains(&n), "no reference of {n} elements");
    }
    let seeds: std::collections::BTreeSet<u64> = cases.iter().map(|c| c.seed).collect();
    assert!(seeds.contains(&453_563) && seeds.contains(&0) && seeds.contains(&((1 << 32) + 5)));
    assert!(seeds.iter().any(|&s| s > 1 << 63));
    assert!(checked > 30_000, "only {checked} values checked");
}

#[test]
fn randn_tensor_has_the_shape_and_values_of_randn_vec() {
    let (cases, _) = fixture();
    let device = dev();
    let case = cases
        .iter()
        .find(|c| {
            c.kernel == TorchKernel::Avx2 && c.draws.len() == 1 && c.draws[0].shape.len() == 4
        })
        .expect("a 4-d reference");
    let draw = &case.draws[0];
    let shape: [usize; 4] = draw.shape.clone().try_into().expect("4-d");
    let t = TorchGenerator::new(case.seed).randn(shape, &device);
    assert_eq!(t.dims(), shape);
    let got = to_vec_f32(t);
    assert_eq!(first_difference(&got, &draw.values), None);
}

#[test]
fn torch_initial_noise_uses_one_generator_per_image() {
    let (cases, _) = fixture();
    let device = dev();
    let case = cases
        .iter()
        .find(|c| c.kernel == TorchKernel::Avx2 && c.initial_noise.is_some())
        .expect("an initial-noise reference");
    let (n, chw) = case.initial_noise.expect("initial noise");
    assert_eq!(n, 2);
    let noise = initial_noise(NoiseSource::Torch, case.seed, n, chw, &device);
    assert_eq!(noise.dims(), [n, chw[0], chw[1], chw[2]]);
    let got = to_vec_f32(noise);
    assert_eq!(first_difference(&got, &case.draws[0].values), None);

    // image 1 is `randn` seeded with seed + 1; image 0 is the n == 1 noise
    let per_image = chw.iter().product::<usize>();
    let second = TorchGenerator::new(case.seed + 1).randn_vec(per_image);
    assert_eq!(first_difference(&got[per_image..], &second), None);
    let single = to_vec_f32(initial_noise(
        NoiseSource::Torch,
        case.seed,
        1,
        chw,
        &device,
    ));
    assert_eq!(first_difference(&got[..per_image], &single), None);
}

#[test]
fn faceclip_initial_noise_is_one_generator_for_the_batch() {
    let device = dev();
    let chw = [4, 8, 8];
    let got = initial_noise(NoiseSource::Faceclip, 11, 2, chw, &device);
    assert_eq!(got.dims(), [2, 4, 8, 8]);
    let want = Generator::new(11).randn([2, 4, 8, 8], &device);
    assert_eq!(to_vec_f32(got), to_vec_f32(want));
    // and it is not torch's stream
    let torch = initial_noise(NoiseSource::Torch, 11, 2, chw, &device);
    let faceclip = initial_noise(NoiseSource::Faceclip, 11, 2, chw, &device);
    assert_ne!(to_vec_f32(torch), to_vec_f32(faceclip));
}
