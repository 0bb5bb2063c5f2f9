//! Every fixture and manifest of this crate passes its parity hook.

mod common;

use faceclip_core::{Manifest, Tensor};
use faceclip_unet::parity;

fn run(name: &str) {
    let f = common::fixture(name);
    let report = parity::run_fixture(&f, &common::device())
        .expect("a kind this crate ports")
        .expect("the fixture runs");
    for c in &report.comparisons {
        eprintln!(
            "{name}: out.{} max_abs={:.3e} max_rel={:.3e} (atol {}, rtol {}) failures={}",
            c.name, c.max_abs, c.max_rel, c.atol, c.rtol, c.failures
        );
    }
    assert!(report.pass(), "{name}: {:?}", report.failures());
}

#[test]
fn unet_sdxl() {
    run("unet_sdxl");
}

#[test]
fn vae_sdxl() {
    run("vae_sdxl");
}

#[test]
fn vae_flux() {
    run("vae_flux");
}

fn manifest(name: &str) {
    let m = Manifest::open(
        common::repo_tests()
            .join("manifests")
            .join(format!("{name}.json")),
    )
    .expect("manifest");
    let report = parity::check_manifest(&m, &common::device())
        .expect("a manifest this crate knows")
        .expect("the walk succeeds");
    eprintln!(
        "{name}: {} tensors expected, {} listed",
        report.expected,
        m.tensors.len()
    );
    assert!(report.is_exact(), "{report}");
    assert_eq!(report.expected, m.tensors.len());
}

#[test]
fn manifest_sdxl_unet() {
    manifest("sdxl_unet");
}

#[test]
fn manifest_sdxl_vae() {
    manifest("sdxl_vae");
}

#[test]
fn manifest_flux_vae() {
    manifest("flux_vae");
}

/// The intermediate activations match the fixture's `mid.*` (first place to look on failure).
#[test]
fn unet_sdxl_mids() {
    let f = common::fixture("unet_sdxl");
    let dev = common::device();
    let unet = parity::load_unet(&f, &dev).unwrap();
    let (_, t) = f.f32("in.timestep").unwrap();
    let t = Tensor::<1>::from_data(faceclip_core::TensorData::new(t, [1]), &dev);
    let mut trace = faceclip_core::Trace::recording();
    unet.forward_traced(
        f.tensor("in.sample", &dev).unwrap(),
        t,
        f.tensor("in.encoder_hidden_states", &dev).unwrap(),
        Some(f.tensor("in.text_embeds", &dev).unwrap()),
        Some(f.tensor("in.time_ids", &dev).unwrap()),
        Some(&mut trace),
    )
    .unwrap();
    let mut checked = 0;
    for (name, data) in &trace {
        if f.has(&format!("mid.{name}")) {
            let c = common::check_mid(&f, name, data);
            eprintln!("mid.{name}: max_abs={:.3e}", c.max_abs);
            assert!(c.pass(), "mid.{name}: {c:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 8, "every mid of the fixture is traced");
}

#[test]
fn vae_mids() {
    let dev = common::device();
    for name in ["vae_sdxl", "vae_flux"] {
        let f = common::fixture(name);
        let vae = parity::load_vae(&f, &dev).unwrap();
        let mut trace = faceclip_core::Trace::recording();
        vae.encode_traced(f.tensor("in.image", &dev).unwrap(), Some(&mut trace))
            .unwrap();
        vae.decode_traced(f.tensor("in.latents", &dev).unwrap(), Some(&mut trace))
            .unwrap();
        let mut checked = 0;
        for (mid, data) in &trace {
            if f.has(&format!("mid.{mid}")) {
                let c = common::check_mid(&f, mid, data);
                eprintln!("{name} mid.{mid}: max_abs={:.3e}", c.max_abs);
                assert!(c.pass(), "{name} mid.{mid}: {c:?}");
                checked += 1;
            }
        }
        let want = f.meta["mids"].as_object().unwrap().len();
        assert_eq!(checked, want, "{name}: every mid is traced");
    }
}
