//! Shared helpers for the criterion benchmarks: which devices to run on.

use faceclip_pipeline::core::Device;
use faceclip_pipeline::core::device::{available_backends, parse_device};

/// The devices to benchmark: `FACECLIP_BENCH_BACKENDS` (comma-separated names) or every
/// backend compiled in.
pub fn bench_devices() -> Vec<(String, Device)> {
    let names: Vec<String> = match std::env::var("FACECLIP_BENCH_BACKENDS") {
        Ok(s) => s.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        Err(_) => available_backends().iter().map(|s| s.to_string()).collect(),
    };
    names
        .into_iter()
        .filter_map(|n| parse_device(&n).ok().map(|d| (n, d)))
        .collect()
}
