//! Weight-only quantization of the T5 encoders (issue #21): the `t5_encoder_hf` and
//! `facet5_encoder` fixtures with the T5 linear weights in GGML's Q8_0 and Q4_0 blocks,
//! against the float32 reference outputs.

use std::path::PathBuf;

use faceclip_core::device::default_device;
use faceclip_core::{Comparison, Fixture, QuantType, Tensor, VarBuilder, to_vec_f32};
use faceclip_encoders::fusion::{BatchMode, FaceT5Encoder, FaceT5EncoderConfig};
use faceclip_encoders::t5_encoder::{T5Config, T5Encoder};

fn fixture(name: &str) -> Fixture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    Fixture::open(dir).expect("fixture folder")
}

/// Max abs error against `out.<name>`, and that error over the reference's largest magnitude.
fn error(fx: &Fixture, name: &str, got: Tensor<3>, label: &str) -> (f64, f64) {
    let got = to_vec_f32(got);
    let (_, want) = fx.f32(&format!("out.{name}")).unwrap();
    // The fixtures' own comparison (shapes were checked by the forward).
    let max_abs = Comparison::new(name, &[got.len()], &got, &[want.len()], &want, 0.0, 0.0).max_abs;
    let scale = want.iter().map(|w| f64::from(w.abs())).fold(0.0, f64::max);
    eprintln!("{label}: max_abs {max_abs:.3e}, relative to max |ref| {:.3e}", max_abs / scale);
    (max_abs, max_abs / scale)
}

fn builder(fx: &Fixture, quant: Option<QuantType>, prefix: &'static str) -> VarBuilder {
    let vb = VarBuilder::from_checkpoint(fx.weights().unwrap(), &default_device().unwrap());
    match quant {
        Some(q) => vb.with_quant(q, move |k| k.starts_with(prefix)),
        None => vb,
    }
}

fn t5_hf(quant: Option<QuantType>) -> (f64, f64) {
    let fx = fixture("t5_encoder_hf");
    let dev = default_device().unwrap();
    let cfg: T5Config = fx.config_as("").unwrap();
    let vb = builder(&fx, quant, "encoder.");
    let model = T5Encoder::load_transformers(&vb, &cfg).unwrap();
    vb.finish().unwrap();
    let ids = fx.tensor_int::<2>("in.input_ids", &dev).unwrap();
    let out = model.forward(ids, None).unwrap().last_hidden_state;
    error(&fx, "last_hidden_state", out, &format!("t5_encoder_hf quant={quant:?}"))
}

fn facet5(quant: Option<QuantType>) -> (f64, f64) {
    let fx = fixture("facet5_encoder");
    let dev = default_device().unwrap();
    let cfg = FaceT5EncoderConfig::from_value(fx.config()).unwrap();
    let vb = builder(&fx, quant, "t5_encoder.");
    let model = FaceT5Encoder::load(&vb, &cfg).unwrap();
    vb.finish().unwrap();
    let faces = fx.tensor::<4>("in.face_image", &dev).unwrap();
    let ids = fx.tensor_int::<2>("in.input_ids", &dev).unwrap();
    let out = model.forward_mode(faces, ids, BatchMode::PerSample).unwrap();
    error(&fx, "fused_b1", out.fused, &format!("facet5_encoder quant={quant:?}"))
}

/// Q8_0 rounds each weight to 1/127 of its block's largest, Q4_0 to 1/8: about 0.5 % of a
/// weight's spread per layer for Q8_0, 16 times that for Q4_0 (see the FLUX test).
fn check(run: fn(Option<QuantType>) -> (f64, f64), q8_bound: f64) {
    let (f32_abs, _) = run(None);
    let (q8_abs, q8_rel) = run(Some(QuantType::Q8_0));
    let (q4_abs, _) = run(Some(QuantType::Q4_0));
    assert!(q8_abs > 10.0 * f32_abs, "q8 {q8_abs:e} must be quantization's, f32 {f32_abs:e}");
    assert!(q8_rel < q8_bound, "q8 error {q8_rel:e} of the output range");
    let ratio = q4_abs / q8_abs;
    assert!((5.0..50.0).contains(&ratio), "q4/q8 error ratio {ratio}, expected about 16");
}

#[test]
fn t5_encoder_q8_stays_close_to_float32() {
    check(t5_hf, 0.03);
}

#[test]
fn facet5_encoder_q8_stays_close_to_float32() {
    check(facet5, 0.03);
}
