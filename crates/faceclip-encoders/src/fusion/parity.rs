//! Parity hooks of the fusion module: fixtures `fuser_deformable`, `fuser_vanilla`,
//! `faceclip_encoder`, `facet5_encoder`; manifests `faceclip_encoder_full`,
//! `facet5_encoder_full`.

use faceclip_core::{
    Checkpoint, Comparison, CoverageReport, Device, Error, Fixture, Manifest, ParityOutcome,
    ParityReport, Result, VarBuilder,
};

use super::{
    BatchMode, FaceClipSdxlConfig, FaceClipSdxlEncoder, FaceT5Encoder, FaceT5EncoderConfig,
    FaceT5FluxConfig, FaceT5FluxEncoder, FuserConfig, FuserVariant, TextFaceEmbeddingFuser, Trace,
};

/// Runs a fixture of a kind this module ports; `None` otherwise.
pub(crate) fn parity(fixture: &Fixture, device: &Device) -> ParityOutcome {
    let kind = match fixture.kind() {
        Ok(k) => k.to_string(),
        Err(e) => return Some(Err(e)),
    };
    match kind.as_str() {
        "fuser_deformable" => {
            Some(fuser_parity(fixture, device, FuserVariant::FaceClip).map(|(r, _)| r))
        }
        "fuser_vanilla" => {
            Some(fuser_parity(fixture, device, FuserVariant::FaceT5).map(|(r, _)| r))
        }
        "faceclip_encoder" => Some(faceclip_parity(fixture, device)),
        "facet5_encoder" => Some(facet5_parity(fixture, device)),
        _ => None,
    }
}

/// Checks the full-size manifests `faceclip_encoder_full` (`FaceCLIP_L_G_Wrapper`) and
/// `facet5_encoder_full` (`FaceT5FluxWrapper`): the model is built from the manifest's
/// `config` and walked over its listing (no weights allocated). `Ok` carries the coverage
/// report (exact or not); `None` for other manifests.
pub fn check_manifest(manifest: &Manifest, device: &Device) -> Option<Result<CoverageReport>> {
    match manifest.name.as_str() {
        "faceclip_encoder_full" => Some(FaceClipSdxlConfig::from_value(&manifest.config).and_then(
            |cfg| FaceClipSdxlEncoder::check_listing(manifest.checkpoint(), &cfg, device),
        )),
        "facet5_encoder_full" => Some(
            FaceT5FluxConfig::from_value(&manifest.config).and_then(|cfg| {
                FaceT5FluxEncoder::check_listing(manifest.checkpoint(), &cfg, device)
            }),
        ),
        _ => None,
    }
}

/// A weight file of a fixture and how to open it.
type WeightSource = (&'static str, fn(&Fixture) -> Result<Checkpoint>);

fn renamed(mut c: Comparison, suffix: &str) -> Comparison {
    c.name = format!("{} ({suffix})", c.name);
    c
}

/// `faceclip_encoder`: the wrapper loaded from `weights.safetensors` and from `weights.pt`
/// (both must pass), `embeddings` and `pooled` for each. The fixture's two rows come from
/// two batch-of-one upstream calls; the port runs them as one batch in
/// [`BatchMode::PerSample`].
pub(crate) fn faceclip_parity(fixture: &Fixture, device: &Device) -> Result<ParityReport> {
    faceclip_run(fixture, device, &mut Trace::disabled())
}

pub(crate) fn faceclip_run(
    fixture: &Fixture,
    device: &Device,
    trace: &mut Trace,
) -> Result<ParityReport> {
    let cfg = FaceClipSdxlConfig::from_value(fixture.config())?;
    let faces = fixture.tensor::<4>("in.face_image", device)?;
    let exist: Vec<bool> = fixture
        .tensor_int::<1>("in.face_exist_mask", device)?
        .into_data()
        .try_into_vec_as::<i64>()
        .map_err(|e| Error::invalid(format!("in.face_exist_mask: {e:?}")))?
        .into_iter()
        .map(|m| m != 0)
        .collect();
    let texts: Vec<String> = serde_json::from_value(
        fixture.extra().get("texts").cloned().unwrap_or_default(),
    )
    .map_err(|e| Error::config(fixture.dir.join("meta.json"), format!("extra.texts: {e}")))?;
    let mut report = ParityReport::default();
    let sources: [WeightSource; 2] = [
        ("weights.safetensors", Fixture::weights),
        ("weights.pt", Fixture::weights_pt),
    ];
    for (i, (label, open)) in sources.into_iter().enumerate() {
        let model = FaceClipSdxlEncoder::from_checkpoint(open(fixture)?, &cfg, device)?;
        let mut off = Trace::disabled();
        let t = if i == 0 { &mut *trace } else { &mut off };
        let out = model.encode_tensor_traced(faces.clone(), &exist, &texts, t)?;
        report.push(renamed(
            fixture.check("embeddings", out.prompt_embeds.into_data())?,
            label,
        ));
        report.push(renamed(
            fixture.check("pooled", out.pooled.into_data())?,
            label,
        ));
    }
    Ok(report)
}

/// `facet5_encoder`, loaded from `weights.safetensors` and from `weights.pt`:
/// - `fused_b1` (each row its own upstream call, as `infer_face_t5_flux.py` runs it) against
///   [`BatchMode::PerSample`], the port's default and the target;
/// - `fused` (one batched upstream call, whose image self-attention mixes the two rows: not
///   what inference produces) against the literal [`BatchMode::Batched`];
/// - `face_cls_norm`.
pub(crate) fn facet5_parity(fixture: &Fixture, device: &Device) -> Result<ParityReport> {
    facet5_run(fixture, device, &mut Trace::disabled())
}

pub(crate) fn facet5_run(
    fixture: &Fixture,
    device: &Device,
    trace: &mut Trace,
) -> Result<ParityReport> {
    let cfg = FaceT5EncoderConfig::from_value(fixture.config())?;
    let faces = fixture.tensor::<4>("in.face_image", device)?;
    let ids = fixture.tensor_int::<2>("in.input_ids", device)?;
    let mut report = ParityReport::default();
    let sources: [WeightSource; 2] = [
        ("weights.safetensors", Fixture::weights),
        ("weights.pt", Fixture::weights_pt),
    ];
    for (i, (label, open)) in sources.into_iter().enumerate() {
        let vb = VarBuilder::from_checkpoint(open(fixture)?, device);
        let model = FaceT5Encoder::load(&vb, &cfg)?;
        vb.finish()?;
        let mut off = Trace::disabled();
        let t = if i == 0 { &mut *trace } else { &mut off };
        let per_sample = model.forward_mode(faces.clone(), ids.clone(), BatchMode::PerSample)?;
        report.push(renamed(
            fixture.check("fused_b1", per_sample.fused.into_data())?,
            label,
        ));
        report.push(renamed(
            fixture.check("face_cls_norm", per_sample.face_cls_norm.into_data())?,
            label,
        ));
        // The fixture's mids come from the batched call.
        let batched = model.forward_traced(faces.clone(), ids.clone(), BatchMode::Batched, t)?;
        report.push(renamed(
            fixture.check("fused", batched.fused.into_data())?,
            label,
        ));
    }
    Ok(report)
}

/// A fuser fixture: `memory_text` (and, for FaceT5, `memory_text_per_sample`).
///
/// FaceT5's `memory_text` is one batched upstream call, whose image self-attention mixes the
/// batch; it is compared against [`BatchMode::Batched`]. `memory_text_per_sample` (one call
/// per row, what inference does) against [`BatchMode::PerSample`]. FaceCLIP's fuser has no
/// batch mixing beyond the bi-attention's global maximum: its batched output is compared
/// with both modes' results (they agree to rounding).
pub(crate) fn fuser_parity(
    fixture: &Fixture,
    device: &Device,
    variant: FuserVariant,
) -> Result<(ParityReport, Trace)> {
    let cfg: FuserConfig = fixture.config_as("")?;
    let vb = VarBuilder::from_checkpoint(fixture.weights()?, device);
    let fuser = TextFaceEmbeddingFuser::load(&vb, &cfg, variant)?;
    vb.finish()?;
    let text = fixture.tensor::<3>("in.text_embedding", device)?;
    let text_pos = fixture.tensor::<3>("in.text_pos_embedding", device)?;
    let face = fixture.tensor::<3>("in.face_patch_embed", device)?;
    let face_pos = fixture.tensor::<3>("in.face_pos_embedding", device)?;
    let mut report = ParityReport::default();
    let mut trace = Trace::recording();
    let batched = fuser.forward_traced(
        text.clone(),
        text_pos.clone(),
        face.clone(),
        Some(face_pos.clone()),
        BatchMode::Batched,
        &mut trace,
    )?;
    let batched = fixture.check("memory_text", batched.into_data())?;
    report.push(if fixture.has("out.memory_text_per_sample") {
        renamed(batched, "batched mode")
    } else {
        batched
    });
    let per_sample = fuser.forward(text, text_pos, face, Some(face_pos), BatchMode::PerSample)?;
    if fixture.has("out.memory_text_per_sample") {
        report.push(fixture.check("memory_text_per_sample", per_sample.into_data())?);
    } else {
        report.push(renamed(
            fixture.check("memory_text", per_sample.into_data())?,
            "per-sample mode",
        ));
    }
    Ok((report, trace))
}

#[cfg(test)]
pub(crate) mod debug {
    //! Compares recorded intermediates with a fixture's `mid.*` tensors (for debugging).

    use super::*;

    pub(crate) fn mid_diffs(fixture: &Fixture, trace: &Trace) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for (name, data) in trace.entries() {
            let key = format!("mid.{name}");
            if !fixture.has(&key) {
                continue;
            }
            let Ok((shape, want)) = fixture.f32(&key) else {
                continue;
            };
            let got_shape = data.shape().to_vec();
            let got: Vec<f32> = data.clone().try_into_vec_as::<f32>().unwrap_or_default();
            if got_shape != shape {
                out.push((
                    format!("{name} shape {got_shape:?} vs {shape:?}"),
                    f64::INFINITY,
                ));
                continue;
            }
            let m = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - *b as f64).abs())
                .fold(0.0, f64::max);
            out.push((name.clone(), m));
        }
        out
    }

    #[test]
    fn encoder_mids() {
        let dev = faceclip_core::device::default_device().unwrap();
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");
        let f = Fixture::open(format!("{root}faceclip_encoder")).unwrap();
        let mut trace = Trace::recording();
        let r = faceclip_run(&f, &dev, &mut trace);
        for (n, d) in mid_diffs(&f, &trace) {
            eprintln!("faceclip mid {n}: {d:.3e}");
        }
        for c in &r.unwrap().comparisons {
            eprintln!(
                "faceclip out {}: max_abs {:.3e} pass {}",
                c.name,
                c.max_abs,
                c.pass()
            );
        }
        let f = Fixture::open(format!("{root}facet5_encoder")).unwrap();
        let mut trace = Trace::recording();
        let r = facet5_run(&f, &dev, &mut trace);
        for (n, d) in mid_diffs(&f, &trace) {
            eprintln!("facet5 mid {n}: {d:.3e}");
        }
        for c in &r.unwrap().comparisons {
            eprintln!(
                "facet5 out {}: max_abs {:.3e} pass {}",
                c.name,
                c.max_abs,
                c.pass()
            );
        }
    }

    #[test]
    fn fuser_mids() {
        let dev = faceclip_core::device::default_device().unwrap();
        for (name, variant) in [
            ("fuser_deformable", FuserVariant::FaceClip),
            ("fuser_vanilla", FuserVariant::FaceT5),
        ] {
            let dir =
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/").to_string() + name;
            let f = Fixture::open(dir).unwrap();
            let (report, trace) = fuser_parity(&f, &dev, variant).unwrap();
            for (n, d) in mid_diffs(&f, &trace) {
                eprintln!("{name} mid {n}: {d:.3e}");
            }
            for c in &report.comparisons {
                eprintln!(
                    "{name} out {}: max_abs {:.3e} pass {}",
                    c.name,
                    c.max_abs,
                    c.pass()
                );
            }
        }
    }
}
