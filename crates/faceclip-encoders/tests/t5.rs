//! T5 v1.1 encoder parity: transformers `T5EncoderModel` (`t5_encoder_hf`, both layouts of
//! weights file) and the FlashT5 layout against the T5 intermediates of `facet5_encoder`.

use std::path::PathBuf;

use faceclip_core::device::default_device;
use faceclip_core::{Comparison, Device, Fixture, Int, Tensor, VarBuilder, to_vec_f32};
use faceclip_encoders::t5_encoder::{T5Config, T5Encoder, relative_position_bucket};

fn fixture(name: &str) -> Fixture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    Fixture::open(dir).expect("fixture folder")
}

fn check_io<const D: usize>(fx: &Fixture, full_name: &str, got: Tensor<D>) -> f64 {
    let (atol, rtol) = fx.tolerance();
    let (ws, want) = fx.f32(full_name).unwrap();
    let gs = got.dims().to_vec();
    let c = Comparison::new(full_name, &gs, &to_vec_f32(got), &ws, &want, atol, rtol);
    assert!(c.pass(), "{full_name}: {c:?}");
    c.max_abs
}

fn load_hf(fx: &Fixture, dev: &Device, pt: bool) -> T5Encoder {
    let cfg: T5Config = fx.config_as("").unwrap();
    let ck = if pt {
        fx.weights_pt().unwrap()
    } else {
        fx.weights().unwrap()
    };
    let vb = VarBuilder::from_checkpoint(ck, dev);
    let m = T5Encoder::load_transformers(&vb, &cfg).unwrap();
    vb.finish().unwrap();
    m
}

#[test]
fn t5_encoder_hf_fixture() {
    let dev = default_device().unwrap();
    let fx = fixture("t5_encoder_hf");
    let report = faceclip_encoders::parity::run_fixture(&fx, &dev)
        .unwrap()
        .unwrap();
    for c in &report.comparisons {
        println!("t5_encoder_hf {}: max_abs={:.3e}", c.name, c.max_abs);
    }
    assert!(report.pass(), "{:?}", report.failures());
}

#[test]
fn t5_encoder_hf_mids_and_pt_weights() {
    let dev = default_device().unwrap();
    let fx = fixture("t5_encoder_hf");
    let ids = fx.tensor_int::<2>("in.input_ids", &dev).unwrap();
    let m = load_hf(&fx, &dev, false);
    let out = m.forward(ids.clone(), None).unwrap();
    check_io(&fx, "mid.position_bias", out.position_bias.clone());
    for (i, h) in out.hf_hidden_states().into_iter().enumerate() {
        check_io(&fx, &format!("mid.hidden_states_{i}"), h);
    }
    // The torch.save copy of the same weights gives the same numbers.
    let m_pt = load_hf(&fx, &dev, true);
    let out_pt = m_pt.forward(ids, None).unwrap();
    assert_eq!(
        to_vec_f32(out.last_hidden_state),
        to_vec_f32(out_pt.last_hidden_state)
    );
}

/// One row alone and a shorter padded length give the per-row results.
#[test]
fn t5_single_row_and_masked_rows() {
    let dev = default_device().unwrap();
    let fx = fixture("t5_encoder_hf");
    let (atol, rtol) = fx.tolerance();
    let m = load_hf(&fx, &dev, false);
    let ids = fx.tensor_int::<2>("in.input_ids", &dev).unwrap();
    let mask = fx.tensor_int::<2>("in.attention_mask", &dev).unwrap();
    let (ws, want) = fx.f32("out.last_hidden_state_masked").unwrap();
    let (l, d) = (ws[1], ws[2]);
    for row in 0..2 {
        let out = m
            .forward(
                ids.clone().narrow(0, row, 1),
                Some(mask.clone().narrow(0, row, 1).bool()),
            )
            .unwrap();
        let got = to_vec_f32(out.last_hidden_state);
        let c = Comparison::new(
            "row",
            &[1, l, d],
            &got,
            &[1, l, d],
            &want[row * l * d..(row + 1) * l * d],
            atol,
            rtol,
        );
        assert!(c.pass(), "row {row}: {c:?}");
    }
    // Row 0 has 9 real tokens: cutting the padding off changes nothing at those positions
    // when the padding was masked.
    let out = m
        .forward(ids.narrow(0, 0, 1).narrow(1, 0, 9), None)
        .unwrap();
    let got = to_vec_f32(out.last_hidden_state);
    let c = Comparison::new(
        "short",
        &[1, 9, d],
        &got,
        &[1, 9, d],
        &want[..9 * d],
        atol,
        rtol,
    );
    assert!(c.pass(), "{c:?}");
}

/// FlashT5 layout, the same module code: the T5 intermediates of the `facet5_encoder`
/// fixture (weights under `t5_encoder.`).
#[test]
fn flash_t5_layout_matches_facet5_mids() {
    let dev = default_device().unwrap();
    let fx = fixture("facet5_encoder");
    let cfg: T5Config = fx.config_as("/flash_t5").unwrap();
    let ck = fx.weights().unwrap().strip_prefix("t5_encoder.");
    let vb = VarBuilder::from_checkpoint(ck, &dev);
    let m = T5Encoder::load_flash_t5(&vb, &cfg).unwrap();
    vb.finish().unwrap();
    let ids = fx.tensor_int::<2>("in.input_ids", &dev).unwrap();
    let out = m.forward(ids, None).unwrap();
    check_io(&fx, "mid.t5.inputs_embeds", out.inputs_embeds.clone());
    check_io(&fx, "mid.t5.position_bias", out.position_bias.clone());
    for (i, b) in out.block_outputs.iter().enumerate() {
        check_io(&fx, &format!("mid.t5.block{i}"), b.clone());
    }
    let max_abs = check_io(&fx, "mid.text_embedding", out.last_hidden_state);
    println!("facet5_encoder FlashT5 text_embedding: max_abs={max_abs:.3e}");
}

/// transformers' bucket table for 32 buckets / 128 distance at the boundaries where the
/// logarithm lands on an integer (16, 32, 64) and beyond the distance.
#[test]
fn bucket_boundaries() {
    let b = |rp| relative_position_bucket(rp, 32, 128);
    assert_eq!([b(0), b(1), b(7), b(8)], [0, 17, 23, 24]);
    assert_eq!([b(-1), b(-7), b(-8)], [1, 7, 8]);
    assert_eq!(
        [
            b(15),
            b(16),
            b(31),
            b(32),
            b(63),
            b(64),
            b(127),
            b(128),
            b(1000)
        ],
        [25, 26, 27, 28, 29, 30, 31, 31, 31]
    );
    assert_eq!(
        [b(-15), b(-16), b(-32), b(-64), b(-128), b(-1000)],
        [9, 10, 12, 14, 15, 15]
    );
}

#[test]
fn t5_bad_inputs_are_errors() {
    let dev = default_device().unwrap();
    let fx = fixture("t5_encoder_hf");
    let m = load_hf(&fx, &dev, false);
    let ids = Tensor::<2, Int>::full([1, 4], 512, &dev);
    assert!(m.forward(ids, None).is_err());
    let ids = Tensor::<2, Int>::ones([2, 4], &dev);
    let mask = Tensor::<2, Int>::ones([2, 5], &dev).bool();
    assert!(m.forward(ids, Some(mask)).is_err());
    let bad = T5Config {
        feed_forward_proj: "gated-gelu-x".into(),
        ..T5Config::default()
    };
    assert!(T5Encoder::load_transformers(&VarBuilder::dry(&dev), &bad).is_err());
}
