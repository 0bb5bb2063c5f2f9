//! Parity hooks: run a fixture of a kind this crate ports, or check a full-size manifest.
//!
//! Fixture kinds: `unet_sdxl` (`out.sample` at `in.timestep`, `out.sample_N` at
//! `in.timestep_N`), `vae_sdxl` / `vae_flux` (`out.image` = decode(`in.latents`);
//! `out.latent_mean`, `out.latent_logvar` = encode(`in.image`)). Manifests: `sdxl_unet`,
//! `sdxl_vae`, `flux_vae`.

use faceclip_core::{
    CoverageReport, Device, Error, Fixture, Manifest, ParityOutcome, ParityReport, Pretrained,
    Result, Tensor, TensorData,
};

use crate::{AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConditionModel};

/// Runs `fixture` when its kind belongs to this crate; `None` otherwise.
pub fn run_fixture(fixture: &Fixture, device: &Device) -> ParityOutcome {
    let kind = fixture.kind().ok()?;
    match kind {
        "unet_sdxl" => Some(unet_fixture(fixture, device)),
        "vae_sdxl" | "vae_flux" => Some(vae_fixture(fixture, device)),
        _ => None,
    }
}

/// Checks a full-size manifest this crate knows (by its name); `None` otherwise. The model
/// is walked over the data-less listing: every parameter stays lazy, nothing is allocated.
pub fn check_manifest(manifest: &Manifest, device: &Device) -> Option<Result<CoverageReport>> {
    match manifest.name.as_str() {
        "sdxl_unet" => Some(
            UNet2DConditionConfig::from_value(&manifest.config).and_then(|config| {
                UNet2DConditionModel::check_listing(manifest.checkpoint(), &config, device)
            }),
        ),
        "sdxl_vae" | "flux_vae" => Some(
            AutoencoderKLConfig::from_value(&manifest.config).and_then(|config| {
                AutoencoderKL::check_listing(manifest.checkpoint(), &config, device)
            }),
        ),
        _ => None,
    }
}

/// A 0-dim (or 1-dim) io tensor as a `[N]` tensor.
fn scalar_or_vector(fixture: &Fixture, name: &str, device: &Device) -> Result<Tensor<1>> {
    let (_, v) = fixture.f32(name)?;
    let n = v.len();
    Ok(Tensor::from_data(TensorData::new(v, [n]), device))
}

/// Loads the fixture's UNet.
pub fn load_unet(fixture: &Fixture, device: &Device) -> Result<UNet2DConditionModel> {
    let config = UNet2DConditionConfig::from_value(fixture.config())?;
    UNet2DConditionModel::load(fixture.weights()?, &config, device)
}

/// Loads the fixture's VAE.
pub fn load_vae(fixture: &Fixture, device: &Device) -> Result<AutoencoderKL> {
    let config = AutoencoderKLConfig::from_value(fixture.config())?;
    AutoencoderKL::load(fixture.weights()?, &config, device)
}

fn unet_fixture(fixture: &Fixture, device: &Device) -> Result<ParityReport> {
    let unet = load_unet(fixture, device)?;
    let sample = fixture.tensor::<4>("in.sample", device)?;
    let ehs = fixture.tensor::<3>("in.encoder_hidden_states", device)?;
    let opt2 = |name: &str| -> Result<Option<Tensor<2>>> {
        if fixture.has(name) {
            fixture.tensor::<2>(name, device).map(Some)
        } else {
            Ok(None)
        }
    };
    let text_embeds = opt2("in.text_embeds")?;
    let time_ids = opt2("in.time_ids")?;
    let mut report = ParityReport::default();
    let mut names = fixture.output_names();
    names.sort();
    for name in names {
        // `out.sample` is run at `in.timestep`, `out.sample_N` at `in.timestep_N`.
        let suffix = name.strip_prefix("sample").ok_or_else(|| {
            Error::config(
                fixture.dir.join("meta.json"),
                format!("unexpected UNet output `{name}`"),
            )
        })?;
        let t = scalar_or_vector(fixture, &format!("in.timestep{suffix}"), device)?;
        let out = unet.forward(
            sample.clone(),
            t,
            ehs.clone(),
            text_embeds.clone(),
            time_ids.clone(),
        )?;
        report.push(fixture.check(&name, out.into_data())?);
    }
    Ok(report)
}

fn vae_fixture(fixture: &Fixture, device: &Device) -> Result<ParityReport> {
    let vae = load_vae(fixture, device)?;
    let mut report = ParityReport::default();
    let names = fixture.output_names();
    if names.iter().any(|n| n == "image") {
        let z = fixture.tensor::<4>("in.latents", device)?;
        report.push(fixture.check("image", vae.decode(z)?.into_data())?);
    }
    if names.iter().any(|n| n.starts_with("latent_")) {
        let x = fixture.tensor::<4>("in.image", device)?;
        let dist = vae.encode(x)?;
        report.push(fixture.check("latent_mean", dist.mean.into_data())?);
        report.push(fixture.check("latent_logvar", dist.logvar.into_data())?);
    }
    Ok(report)
}
