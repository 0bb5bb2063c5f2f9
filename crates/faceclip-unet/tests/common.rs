//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use faceclip_core::{Comparison, Device, Fixture, TensorData};

pub fn repo_tests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests")
}

pub fn fixture(name: &str) -> Fixture {
    Fixture::open(repo_tests().join("fixtures").join(name)).expect("fixture opens")
}

pub fn device() -> Device {
    faceclip_core::device::default_device().expect("a CPU backend")
}

/// Compares a traced intermediate with `mid.<name>` under the fixture's tolerance.
pub fn check_mid(f: &Fixture, name: &str, got: &TensorData) -> Comparison {
    let (atol, rtol) = f.tolerance();
    let (ws, want) = f.f32(&format!("mid.{name}")).expect("mid tensor");
    let got_shape = got.shape().to_vec();
    let got = got.clone().try_into_vec_as::<f32>().expect("f32");
    Comparison::new(name, &got_shape, &got, &ws, &want, atol, rtol)
}

/// `t[row]` of a batch-first tensor's flat data.
pub fn row(data: &TensorData, row: usize) -> (Vec<usize>, Vec<f32>) {
    let shape = data.shape().to_vec();
    let per: usize = shape[1..].iter().product();
    let v = data.clone().try_into_vec_as::<f32>().expect("f32");
    let mut s = shape.clone();
    s[0] = 1;
    (s, v[row * per..(row + 1) * per].to_vec())
}

/// A fresh scratch folder for one test (removed on drop).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("faceclip-unet-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a fixture's `config` as a diffusers `config.json` into `dir`.
pub fn write_config(f: &Fixture, dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(f.config()).unwrap(),
    )
    .unwrap();
}
