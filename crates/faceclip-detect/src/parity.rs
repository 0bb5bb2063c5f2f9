//! Parity hooks: run a fixture of a kind this crate ports, or check a full-size manifest.

use faceclip_core::{CoverageReport, Device, Fixture, Manifest, ParityOutcome, Result};

/// Runs `fixture` when its kind belongs to this crate; `None` otherwise.
pub fn run_fixture(fixture: &Fixture, device: &Device) -> ParityOutcome {
    let _ = (fixture, device);
    None
}

/// Checks a full-size manifest this crate knows (by its name); `None` otherwise.
pub fn check_manifest(manifest: &Manifest, device: &Device) -> Option<Result<CoverageReport>> {
    let _ = (manifest, device);
    None
}
