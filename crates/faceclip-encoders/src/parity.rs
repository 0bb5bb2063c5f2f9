//! Parity hooks: run a fixture of a kind this crate ports, or check a full-size manifest.

use faceclip_core::{CoverageReport, Device, Fixture, Manifest, ParityOutcome, Result};

/// Runs `fixture` when its kind belongs to this crate; `None` otherwise.
pub fn run_fixture(fixture: &Fixture, device: &Device) -> ParityOutcome {
    let hooks: [fn(&Fixture, &Device) -> ParityOutcome; 5] = [
        crate::tokenizer_clip::parity,
        crate::tokenizer_t5::parity,
        crate::clip_text_model::parity,
        crate::t5_encoder::parity,
        crate::face_vit::parity,
    ];
    hooks.iter().find_map(|h| h(fixture, device))
}

/// Checks a full-size manifest this crate knows (by its name); `None` otherwise.
pub fn check_manifest(manifest: &Manifest, device: &Device) -> Option<Result<CoverageReport>> {
    let _ = (manifest, device);
    None
}
