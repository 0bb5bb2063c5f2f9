//! The full-size FaceCLIP-SDXL and FaceT5-FLUX encoders expect exactly the tensors of the
//! released checkpoints (dry walks over the manifests; no weights are allocated).

use faceclip_core::Manifest;
use faceclip_encoders::fusion::{
    self, FaceClipSdxlConfig, FaceClipSdxlEncoder, FaceT5FluxConfig, FaceT5FluxEncoder,
};

fn manifest(name: &str) -> Manifest {
    Manifest::open(format!(
        "{}/../../tests/manifests/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn assert_exact(name: &str) {
    let dev = faceclip_core::device::default_device().unwrap();
    let m = manifest(name);
    let report = fusion::check_manifest(&m, &dev)
        .expect("a fusion manifest")
        .unwrap();
    assert!(report.is_exact(), "{report}");
    assert_eq!(report.expected, m.tensors.len(), "{name}: expected count");
    // The crate-level hook dispatches to it too once wired; if it answers, it must agree.
    if let Some(r) = faceclip_encoders::parity::check_manifest(&m, &dev) {
        assert!(r.unwrap().is_exact());
    }
}

#[test]
fn faceclip_encoder_full_manifest_is_exact() {
    assert_exact("faceclip_encoder_full");
}

#[test]
fn facet5_encoder_full_manifest_is_exact() {
    assert_exact("facet5_encoder_full");
}

/// The built-in released configs (what `load(path)` uses) cover the manifests as well.
#[test]
fn released_configs_match_the_manifests() {
    let dev = faceclip_core::device::default_device().unwrap();
    let m = manifest("faceclip_encoder_full");
    let r =
        FaceClipSdxlEncoder::check_listing(m.checkpoint(), &FaceClipSdxlConfig::released(), &dev)
            .unwrap();
    assert!(r.is_exact(), "{r}");
    assert_eq!(r.expected, 1686);
    let m = manifest("facet5_encoder_full");
    let r = FaceT5FluxEncoder::check_listing(m.checkpoint(), &FaceT5FluxConfig::released(), &dev)
        .unwrap();
    assert!(r.is_exact(), "{r}");
    assert_eq!(r.expected, 958);
}

/// Keys with `model.` anywhere (infer strips every occurrence): `from_checkpoint`, the path
/// `load(path)` takes, accepts them (on the listing, so nothing is allocated).
#[test]
fn faceclip_keys_with_model_dot_are_renamed() {
    let dev = faceclip_core::device::default_device().unwrap();
    let m = manifest("faceclip_encoder_full");
    let prefixed = faceclip_core::Checkpoint::from_listing(
        "prefixed",
        m.tensors.iter().map(|t| {
            let mut t = t.clone();
            t.name = format!("model.{}", t.name.replacen(".fuser.", ".fuser.model.", 1));
            t
        }),
    );
    FaceClipSdxlEncoder::from_checkpoint(prefixed, &FaceClipSdxlConfig::released(), &dev).unwrap();
    // Without the rename the same listing would not match.
    let prefixed = faceclip_core::Checkpoint::from_listing(
        "prefixed",
        m.tensors.iter().map(|t| {
            let mut t = t.clone();
            t.name = format!("x.{}", t.name);
            t
        }),
    );
    assert!(
        FaceClipSdxlEncoder::from_checkpoint(prefixed, &FaceClipSdxlConfig::released(), &dev)
            .is_err()
    );
}

/// `FaceT5FluxEncoder::from_checkpoint` (what `load(path)` uses) accepts the released layout
/// strictly.
#[test]
fn facet5_released_layout_loads_strictly() {
    let dev = faceclip_core::device::default_device().unwrap();
    let m = manifest("facet5_encoder_full");
    FaceT5FluxEncoder::from_checkpoint(m.checkpoint(), &FaceT5FluxConfig::released(), &dev)
        .unwrap();
    // One extra tensor: refused, as upstream's strict load_state_dict.
    let mut extra = m.tensors.clone();
    let mut t = extra[0].clone();
    t.name = "encoder_2.unexpected".into();
    extra.push(t);
    let ck = faceclip_core::Checkpoint::from_listing("extra", extra);
    let err =
        FaceT5FluxEncoder::from_checkpoint(ck, &FaceT5FluxConfig::released(), &dev).unwrap_err();
    assert!(err.to_string().contains("unexpected"), "{err}");
}
