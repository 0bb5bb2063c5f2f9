//! Parity hooks: run a fixture of a kind this crate ports, or check a full-size manifest.

use faceclip_core::{CoverageReport, Device, Fixture, Manifest, ParityOutcome, Result};

/// Runs `fixture` when its kind belongs to this crate; `None` otherwise.
pub fn run_fixture(fixture: &Fixture, device: &Device) -> ParityOutcome {
    let hooks: [fn(&Fixture, &Device) -> ParityOutcome; 6] = [
        crate::tokenizer_clip::parity,
        crate::tokenizer_t5::parity,
        crate::clip_text_model::parity,
        crate::t5_encoder::parity,
        crate::face_vit::parity,
        crate::fusion::parity,
    ];
    hooks.iter().find_map(|h| h(fixture, device))
}

/// Checks a full-size manifest this crate knows (by its name); `None` otherwise.
///
/// The model is built from the manifest's `config` and walked over its listing (no weights
/// are allocated). `Ok` carries the coverage report even when it is not exact, so that the
/// caller can print the counts; `Err` means the config could not be read.
pub fn check_manifest(manifest: &Manifest, device: &Device) -> Option<Result<CoverageReport>> {
    use faceclip_core::{Error, VarBuilder};
    fn config<T: serde::de::DeserializeOwned>(manifest: &Manifest) -> Result<T> {
        serde_json::from_value(manifest.config.clone())
            .map_err(|e| Error::config(&manifest.path, format!("config: {e}")))
    }
    let vb = || VarBuilder::from_checkpoint(manifest.checkpoint(), device);
    match manifest.name.as_str() {
        "clip_text_l_hf" => Some((|| {
            let vb = vb();
            crate::clip_text_model::ClipTextTransformer::load_hf(&vb, &config(manifest)?)?;
            Ok(vb.report())
        })()),
        "t5_xxl_encoder_hf" => Some((|| {
            let vb = vb();
            crate::t5_encoder::T5Encoder::load_transformers(&vb, &config(manifest)?)?;
            Ok(vb.report())
        })()),
        _ => crate::fusion::check_manifest(manifest, device),
    }
}
