//! CLIP text transformer parity: transformers `CLIPTextModel` (`clip_text_hf`) and the
//! open_clip text towers of FaceCLIP (`openclip_text_l`, `openclip_text_g`).

use std::path::PathBuf;

use faceclip_core::device::default_device;
use faceclip_core::{
    Checkpoint, Comparison, Device, Fixture, Int, Tensor, TensorData, VarBuilder, to_vec_f32,
};
use faceclip_encoders::clip_text_model::{
    ClipTextConfig, ClipTextTransformer, OpenClipTextConfig, Pooling, gather_rows,
};

fn fixture(name: &str) -> Fixture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    Fixture::open(dir).expect("fixture folder")
}

fn run_hook(name: &str) {
    let dev = default_device().unwrap();
    let fx = fixture(name);
    let report = faceclip_encoders::parity::run_fixture(&fx, &dev)
        .expect("the kind belongs to faceclip-encoders")
        .expect("the fixture runs");
    for c in &report.comparisons {
        println!(
            "{name} {}: max_abs={:.3e} max_rel={:.3e}",
            c.name, c.max_abs, c.max_rel
        );
    }
    assert!(report.pass(), "{name}: {:?}", report.failures());
}

/// Compares a tensor with an io tensor (`mid.*`) under the fixture tolerance.
fn check_io<const D: usize>(fx: &Fixture, full_name: &str, got: Tensor<D>) {
    let (atol, rtol) = fx.tolerance();
    let (ws, want) = fx.f32(full_name).unwrap();
    let gs = got.dims().to_vec();
    let c = Comparison::new(full_name, &gs, &to_vec_f32(got), &ws, &want, atol, rtol);
    assert!(c.pass(), "{full_name}: {c:?}");
}

fn load_hf(fx: &Fixture, dev: &Device) -> ClipTextTransformer {
    let cfg: ClipTextConfig = fx.config_as("").unwrap();
    let vb = VarBuilder::from_checkpoint(fx.weights().unwrap(), dev);
    let m = ClipTextTransformer::load_hf(&vb, &cfg).unwrap();
    vb.finish().unwrap();
    m
}

fn load_open_clip(fx: &Fixture, dev: &Device) -> ClipTextTransformer {
    let mut cfg: OpenClipTextConfig = fx.config_as("/text_cfg").unwrap();
    cfg.embed_dim = Some(32);
    let vb = VarBuilder::from_checkpoint(fx.weights().unwrap(), dev);
    let m = ClipTextTransformer::load_open_clip(&vb, &cfg).unwrap();
    vb.finish().unwrap();
    m
}

/// Row `row` of an int io tensor `[B, L]`, first `len` positions, as `[1, len]`.
fn ids_row(fx: &Fixture, row: usize, len: usize, dev: &Device) -> Tensor<2, Int> {
    let ids = fx.tensor_int::<2>("in.input_ids", dev).unwrap();
    ids.narrow(0, row, 1).narrow(1, 0, len)
}

#[test]
fn clip_text_hf_fixture() {
    run_hook("clip_text_hf");
}

#[test]
fn openclip_text_l_fixture() {
    run_hook("openclip_text_l");
}

#[test]
fn openclip_text_g_fixture() {
    run_hook("openclip_text_g");
}

#[test]
fn clip_text_hf_hidden_states() {
    let dev = default_device().unwrap();
    let fx = fixture("clip_text_hf");
    let m = load_hf(&fx, &dev);
    let out = m
        .forward(fx.tensor_int::<2>("in.input_ids", &dev).unwrap())
        .unwrap();
    assert_eq!(out.hidden_states.len(), 3);
    for (i, h) in out.hidden_states.into_iter().enumerate() {
        check_io(&fx, &format!("mid.hidden_states_{i}"), h);
    }
    let eos: Vec<usize> = serde_json::from_value(fx.extra()["eos_positions"].clone()).unwrap();
    assert_eq!(out.pool_positions, eos);
}

#[test]
fn openclip_mids_and_pooling() {
    let dev = default_device().unwrap();
    for name in ["openclip_text_l", "openclip_text_g"] {
        let fx = fixture(name);
        let m = load_open_clip(&fx, &dev);
        let out = m
            .forward(fx.tensor_int::<2>("in.input_ids", &dev).unwrap())
            .unwrap();
        check_io(&fx, "mid.transformer_input", out.hidden_states[0].clone());
        check_io(&fx, "mid.resblock0", out.hidden_states[1].clone());
        check_io(&fx, "mid.resblock1", out.hidden_states[2].clone());
        let (_, eot) = fx.io().read_i64("mid.eot_index").unwrap();
        let eot: Vec<usize> = eot.into_iter().map(|v| v as usize).collect();
        assert_eq!(out.pool_positions, eot, "{name}");
    }
}

/// The pieces a wrapper uses (embed_tokens -> edit -> forward_embeds) give forward()'s
/// result, and an edited token embedding changes the output from that position on only
/// (causal mask).
#[test]
fn embed_then_forward_embeds_and_substitution() {
    let dev = default_device().unwrap();
    let fx = fixture("openclip_text_l");
    let m = load_open_clip(&fx, &dev);
    let ids = fx.tensor_int::<2>("in.input_ids", &dev).unwrap();
    let pos = m.pool_positions(&ids).unwrap();
    let x = m.embed_tokens(ids.clone()).unwrap();
    let a = m.forward_embeds(x.clone(), &pos).unwrap();
    let b = m.forward(ids).unwrap();
    assert_eq!(
        to_vec_f32(a.last_hidden_state.clone()),
        to_vec_f32(b.last_hidden_state)
    );

    // Replace the token at position 4 of row 0 (the "id" of the FaceCLIP prefix).
    let [_, l, w] = x.dims();
    let repl = Tensor::<3>::ones([1, 1, w], &dev);
    let x2 = x.slice_assign([0..1, 4..5, 0..w], repl);
    let c = m.forward_embeds(x2, &pos).unwrap();
    let before = to_vec_f32(a.last_hidden_state.clone().narrow(0, 0, 1).narrow(1, 0, 4));
    let before2 = to_vec_f32(c.last_hidden_state.clone().narrow(0, 0, 1).narrow(1, 0, 4));
    assert_eq!(
        before, before2,
        "positions before the substituted one are unchanged"
    );
    let after = to_vec_f32(
        a.last_hidden_state
            .clone()
            .narrow(0, 0, 1)
            .narrow(1, 4, l - 4),
    );
    let after2 = to_vec_f32(
        c.last_hidden_state
            .clone()
            .narrow(0, 0, 1)
            .narrow(1, 4, l - 4),
    );
    assert_ne!(after, after2);
    let row1 = to_vec_f32(a.last_hidden_state.narrow(0, 1, 1));
    let row1c = to_vec_f32(c.last_hidden_state.narrow(0, 1, 1));
    assert_eq!(row1, row1c, "other rows are unchanged");
}

/// Batch and length generalise: one row alone, and a prefix of the ids, give the same
/// values as the full batch (the attention is causal, so a prefix is exact).
#[test]
fn single_row_and_shorter_length() {
    let dev = default_device().unwrap();
    let fx = fixture("clip_text_hf");
    let (atol, rtol) = fx.tolerance();
    let m = load_hf(&fx, &dev);
    let full = m
        .forward(fx.tensor_int::<2>("in.input_ids", &dev).unwrap())
        .unwrap();
    let (ws, want) = fx.f32("out.last_hidden_state").unwrap();
    let (l, w) = (ws[1], ws[2]);
    // Row 1 alone.
    let one = m.forward(ids_row(&fx, 1, l, &dev)).unwrap();
    let c = Comparison::new(
        "row1",
        &one.last_hidden_state.dims(),
        &to_vec_f32(one.last_hidden_state),
        &[1, l, w],
        &want[l * w..],
        atol,
        rtol,
    );
    assert!(c.pass(), "{c:?}");
    // Row 0, first 20 positions (EOS at 11 is inside): the first 20 rows of the output.
    let short = m.forward(ids_row(&fx, 0, 20, &dev)).unwrap();
    assert_eq!(short.pool_positions, vec![full.pool_positions[0]]);
    let c = Comparison::new(
        "prefix",
        &short.last_hidden_state.dims(),
        &to_vec_f32(short.last_hidden_state),
        &[1, 20, w],
        &want[..20 * w],
        atol,
        rtol,
    );
    assert!(c.pass(), "{c:?}");
    let (_, pooled) = fx.f32("out.pooler_output").unwrap();
    let c = Comparison::new(
        "pooled",
        &short.pooler_output.dims(),
        &to_vec_f32(short.pooler_output),
        &[1, w],
        &pooled[..w],
        atol,
        rtol,
    );
    assert!(c.pass(), "{c:?}");
}

/// An old file's `text_model.embeddings.position_ids` buffer is tolerated.
#[test]
fn position_ids_tolerated() {
    let dev = default_device().unwrap();
    let fx = fixture("clip_text_hf");
    let w = fx.weights().unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = w
        .list()
        .into_iter()
        .map(|i| {
            let (s, v) = w.read_f32(&i.name).unwrap();
            (i.name, s, v)
        })
        .collect();
    tensors.push((
        "text_model.embeddings.position_ids".into(),
        vec![1, 77],
        (0..77).map(|v| v as f32).collect(),
    ));
    let ck = Checkpoint::from_f32("with_position_ids", tensors).unwrap();
    let cfg: ClipTextConfig = fx.config_as("").unwrap();
    let vb = VarBuilder::from_checkpoint(ck, &dev);
    ClipTextTransformer::load_hf(&vb, &cfg).unwrap();
    let r = vb.finish().unwrap();
    assert!(r.is_exact());
}

#[test]
fn pooling_rules() {
    // Legacy argmax: first occurrence of the largest id.
    let ids = [49406, 320, 49407, 49407, 0, 1, 2, 49407];
    assert_eq!(Pooling::Argmax.positions(&ids, 2, 4), vec![2, 3]);
    // New rule: the first position equal to eos_token_id, 0 when absent.
    assert_eq!(Pooling::FirstId(2).positions(&ids, 2, 4), vec![0, 2]);
    let cfg = ClipTextConfig {
        eos_token_id: 49407,
        ..ClipTextConfig::default()
    };
    let dev = default_device().unwrap();
    let m = ClipTextTransformer::load_hf(&VarBuilder::dry(&dev), &cfg).unwrap();
    assert_eq!(m.pooling(), Pooling::FirstId(49407));
}

#[test]
fn gather_rows_picks_positions() {
    let dev = default_device().unwrap();
    let x = Tensor::<3>::from_data(
        TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [2, 3, 2]),
        &dev,
    );
    assert_eq!(
        to_vec_f32(gather_rows(x, &[2, 0])),
        vec![4.0, 5.0, 6.0, 7.0]
    );
}

#[test]
fn bad_inputs_are_errors() {
    let dev = default_device().unwrap();
    let fx = fixture("clip_text_hf");
    let m = load_hf(&fx, &dev);
    let too_long = Tensor::<2, Int>::zeros([1, 78], &dev);
    assert!(m.forward(too_long).is_err());
    let out_of_vocab =
        Tensor::<2, Int>::from_data(TensorData::new(vec![49408i64, 1], [1, 2]), &dev);
    assert!(m.forward(out_of_vocab).is_err());
    let x = Tensor::<3>::zeros([1, 5, 32], &dev);
    assert!(m.forward_embeds(x.clone(), &[5]).is_err());
    assert!(m.forward_embeds(x, &[0, 1]).is_err());
    let bad = ClipTextConfig {
        hidden_size: 30,
        num_attention_heads: 4,
        ..ClipTextConfig::default()
    };
    assert!(ClipTextTransformer::load_hf(&VarBuilder::dry(&dev), &bad).is_err());
}
