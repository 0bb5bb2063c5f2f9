#![allow(dead_code)]
use std::path::PathBuf;

use faceclip_core::{Device, Fixture};

/// `tests/fixtures/<name>` at the workspace root.
pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// `tests/manifests/<name>.json` at the workspace root.
pub fn manifest_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/manifests")
        .join(format!("{name}.json"))
}

pub fn fixture(name: &str) -> Fixture {
    Fixture::open(fixture_dir(name)).unwrap()
}

pub fn device() -> Device {
    faceclip_core::device::default_device().unwrap()
}

/// A fresh scratch folder under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faceclip-dit-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Max |a - b| over two equal-length slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
