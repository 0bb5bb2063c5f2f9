//! Face ViT parity (`face_vit`): the 112² image, the resized `image_src`, intermediates.

use std::path::PathBuf;

use faceclip_core::device::default_device;
use faceclip_core::image::RgbImage;
use faceclip_core::{Comparison, Device, Fixture, Tensor, VarBuilder, to_vec_f32};
use faceclip_encoders::face_vit::{FaceVit, FaceVitConfig};

fn fixture(name: &str) -> Fixture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    Fixture::open(dir).expect("fixture folder")
}

fn check_io<const D: usize>(fx: &Fixture, full_name: &str, got: Tensor<D>) {
    let (atol, rtol) = fx.tolerance();
    let (ws, want) = fx.f32(full_name).unwrap();
    let gs = got.dims().to_vec();
    let c = Comparison::new(full_name, &gs, &to_vec_f32(got), &ws, &want, atol, rtol);
    assert!(c.pass(), "{full_name}: {c:?}");
}

fn load(fx: &Fixture, dev: &Device) -> FaceVit {
    let cfg: FaceVitConfig = fx.config_as("").unwrap();
    let vb = VarBuilder::from_checkpoint(fx.weights().unwrap(), dev);
    let m = FaceVit::load(&vb, &cfg).unwrap();
    vb.finish().unwrap();
    m
}

#[test]
fn face_vit_fixture() {
    let dev = default_device().unwrap();
    let fx = fixture("face_vit");
    let report = faceclip_encoders::parity::run_fixture(&fx, &dev)
        .unwrap()
        .unwrap();
    for c in &report.comparisons {
        println!("face_vit {}: max_abs={:.3e}", c.name, c.max_abs);
    }
    assert!(report.pass(), "{:?}", report.failures());
}

#[test]
fn face_vit_resize_matches_torch() {
    let dev = default_device().unwrap();
    let fx = fixture("face_vit");
    let m = load(&fx, &dev);
    let resized = m
        .resize(fx.tensor::<4>("in.image_src", &dev).unwrap())
        .unwrap();
    check_io(&fx, "mid.image_resized", resized);
    // The RgbImage path gives the same tensor.
    let (shape, v) = fx.f32("in.image_src").unwrap();
    let (h, w) = (shape[2], shape[3]);
    let images: Vec<RgbImage> = (0..shape[0])
        .map(|b| RgbImage {
            width: w,
            height: h,
            data: v[b * 3 * h * w..(b + 1) * 3 * h * w].to_vec(),
        })
        .collect();
    check_io(
        &fx,
        "mid.image_resized",
        m.images_to_tensor(&images, &dev).unwrap(),
    );
}

/// One image alone gives its row of the batched result; the feature head's intermediates
/// are not exposed, but the patch tokens of the batch of one are checked against the batch.
#[test]
fn face_vit_single_row() {
    let dev = default_device().unwrap();
    let fx = fixture("face_vit");
    let (atol, rtol) = fx.tolerance();
    let m = load(&fx, &dev);
    let img = fx.tensor::<4>("in.image", &dev).unwrap();
    let (cs, class) = fx.f32("out.class_token").unwrap();
    let (ps, patch) = fx.f32("out.patch_token").unwrap();
    let (nc, np) = (cs[1], ps[1] * ps[2]);
    let out = m.forward(img.narrow(0, 1, 1)).unwrap();
    let c = Comparison::new(
        "class",
        &[1, nc],
        &to_vec_f32(out.class_token),
        &[1, nc],
        &class[nc..],
        atol,
        rtol,
    );
    assert!(c.pass(), "{c:?}");
    let c = Comparison::new(
        "patch",
        &[1, np],
        &to_vec_f32(out.patch_token),
        &[1, np],
        &patch[np..],
        atol,
        rtol,
    );
    assert!(c.pass(), "{c:?}");
}

#[test]
fn face_vit_bad_inputs_are_errors() {
    let dev = default_device().unwrap();
    let fx = fixture("face_vit");
    let m = load(&fx, &dev);
    assert!(
        m.forward(Tensor::<4>::zeros([1, 3, 108, 108], &dev))
            .is_err()
    );
    assert!(
        m.forward(Tensor::<4>::zeros([1, 1, 112, 112], &dev))
            .is_err()
    );
    assert!(
        m.forward_resized(Tensor::<4>::zeros([1, 3, 0, 7], &dev))
            .is_err()
    );
    assert!(m.images_to_tensor(&[], &dev).is_err());
    let bad = FaceVitConfig {
        norm_layer: "bn".into(),
        ..FaceVitConfig::released()
    };
    assert!(FaceVit::load(&VarBuilder::dry(&dev), &bad).is_err());
}
