//! Parity hooks: run a fixture of a kind this crate ports, or check a full-size manifest.

use faceclip_core::{
    CoverageReport, Device, Fixture, Manifest, ParityOutcome, ParityReport, Pretrained, Result,
};

use crate::config::FluxTransformerConfig;
use crate::transformer_flux::FluxTransformer2DModel;

/// Fixture kind of diffusers' `FluxTransformer2DModel`.
pub const FLUX_TRANSFORMER_KIND: &str = "flux_transformer";
/// Manifest of FLUX.1-dev's `transformer/`.
pub const FLUX_TRANSFORMER_MANIFEST: &str = "flux_transformer";

/// Runs `fixture` when its kind belongs to this crate; `None` otherwise.
pub fn run_fixture(fixture: &Fixture, device: &Device) -> ParityOutcome {
    match fixture.kind() {
        Ok(FLUX_TRANSFORMER_KIND) => Some(run_flux_transformer(fixture, device)),
        _ => None,
    }
}

/// Checks a full-size manifest this crate knows (by its name); `None` otherwise.
pub fn check_manifest(manifest: &Manifest, device: &Device) -> Option<Result<CoverageReport>> {
    (manifest.name == FLUX_TRANSFORMER_MANIFEST).then(|| {
        let config = FluxTransformerConfig::from_value(&manifest.config)?;
        FluxTransformer2DModel::check_listing(manifest.checkpoint(), &config, device)
    })
}

/// `transformer(hidden_states, encoder_hidden_states, pooled_projections, timestep, guidance,
/// img_ids, txt_ids).sample` against `out.sample`.
fn run_flux_transformer(fixture: &Fixture, device: &Device) -> Result<ParityReport> {
    let config = FluxTransformerConfig::from_value(fixture.config())?;
    let model = FluxTransformer2DModel::load(&fixture.weights()?, &config, device)?;
    let guidance = if fixture.has("in.guidance") {
        Some(fixture.tensor::<1>("in.guidance", device)?)
    } else {
        None
    };
    let sample = model.forward(
        fixture.tensor("in.hidden_states", device)?,
        fixture.tensor("in.encoder_hidden_states", device)?,
        fixture.tensor("in.pooled_projections", device)?,
        fixture.tensor("in.timestep", device)?,
        guidance,
        fixture.tensor("in.img_ids", device)?,
        fixture.tensor("in.txt_ids", device)?,
    )?;
    let mut report = ParityReport::default();
    report.push(fixture.check("sample", sample.into_data())?);
    Ok(report)
}
