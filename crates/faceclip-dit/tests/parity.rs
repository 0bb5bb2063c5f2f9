//! The `flux_transformer` fixture and the full-size `flux_transformer` manifest through the
//! parity hooks, the intermediate activations, the pipeline fixture's transformer calls, and
//! batch generalisation.

mod common;

use common::{device, fixture, manifest_path, max_abs_diff};
use faceclip_core::{Comparison, Manifest, Tensor, TensorData, to_vec_f32};
use faceclip_dit::{FluxTransformer2DModel, FluxTransformerConfig, parity};

fn load_fixture_model() -> (faceclip_core::Fixture, FluxTransformer2DModel) {
    let fx = fixture("flux_transformer");
    let cfg = FluxTransformerConfig::from_value(fx.config()).unwrap();
    let model = FluxTransformer2DModel::load(&fx.weights().unwrap(), &cfg, &device()).unwrap();
    (fx, model)
}

#[test]
fn flux_transformer_fixture_passes() {
    let fx = fixture("flux_transformer");
    let report = parity::run_fixture(&fx, &device())
        .expect("flux_transformer is this crate's kind")
        .unwrap();
    println!(
        "flux_transformer: max_abs={:.3e} max_rel={:.3e} tolerance={:?}",
        report.max_abs(),
        report.max_rel(),
        report.tolerance()
    );
    assert!(report.pass(), "{:?}", report.failures());
}

#[test]
fn other_kinds_are_not_ours() {
    let fx = fixture("pipeline_flux");
    assert!(parity::run_fixture(&fx, &device()).is_none());
}

#[test]
fn flux_transformer_mids_match() {
    let (fx, model) = load_fixture_model();
    let dev = device();
    let (out, trace) = model
        .forward_traced(
            fx.tensor("in.hidden_states", &dev).unwrap(),
            fx.tensor("in.encoder_hidden_states", &dev).unwrap(),
            fx.tensor("in.pooled_projections", &dev).unwrap(),
            fx.tensor("in.timestep", &dev).unwrap(),
            Some(fx.tensor("in.guidance", &dev).unwrap()),
            fx.tensor("in.img_ids", &dev).unwrap(),
            fx.tensor("in.txt_ids", &dev).unwrap(),
        )
        .unwrap();
    let (atol, rtol) = fx.tolerance();
    let mut seen = 0;
    for (name, data) in trace {
        let key = format!("mid.{name}");
        if !fx.has(&key) {
            continue;
        }
        seen += 1;
        let (want_shape, want) = fx.f32(&key).unwrap();
        let got_shape = data.shape().to_vec();
        let got = data.try_into_vec_as::<f32>().unwrap();
        let c = Comparison::new(&name, &got_shape, &got, &want_shape, &want, atol, rtol);
        println!("{name}: max_abs={:.3e}", c.max_abs);
        assert!(c.pass(), "mid {name}: {c:?}");
    }
    assert_eq!(seen, 12, "every fixture mid is traced");
    assert!(fx.check("sample", out.into_data()).unwrap().pass());
}

#[test]
fn flux_transformer_manifest_is_exact() {
    let manifest = Manifest::open(manifest_path("flux_transformer")).unwrap();
    let report = parity::check_manifest(&manifest, &device())
        .expect("flux_transformer is this crate's manifest")
        .unwrap();
    assert!(report.is_exact(), "{report}");
    assert_eq!(report.expected, 1160);
    assert_eq!(report.expected, manifest.tensors.len());
}

/// FluxPipeline's own transformer calls (`pipeline_flux` mids): step 0, conditional and
/// negative, with the pipeline's ids, timestep and guidance.
#[test]
fn pipeline_flux_transformer_calls_match() {
    let fx = fixture("pipeline_flux");
    let dev = device();
    let cfg = FluxTransformerConfig::from_value(&fx.config()["transformer"]).unwrap();
    let weights = fx.weights_from("transformer").unwrap();
    let model = FluxTransformer2DModel::load(&weights, &cfg, &dev).unwrap();
    let rope = model
        .rotary_embedding(
            fx.tensor("mid.txt_ids", &dev).unwrap(),
            fx.tensor("mid.img_ids", &dev).unwrap(),
        )
        .unwrap();
    for (embeds, pooled, want) in [
        (
            "in.prompt_embeds",
            "in.pooled_prompt_embeds",
            "mid.noise_pred_cond_0",
        ),
        (
            "in.negative_prompt_embeds",
            "in.negative_pooled_prompt_embeds",
            "mid.noise_pred_neg_0",
        ),
    ] {
        let out = model
            .forward_with_rope(
                fx.tensor("in.latents", &dev).unwrap(),
                fx.tensor(embeds, &dev).unwrap(),
                fx.tensor(pooled, &dev).unwrap(),
                fx.tensor("mid.transformer_timestep_0", &dev).unwrap(),
                Some(fx.tensor("mid.guidance", &dev).unwrap()),
                &rope,
            )
            .unwrap();
        let (shape, want_v) = fx.f32(want).unwrap();
        let c = Comparison::new(
            want,
            &out.dims(),
            &to_vec_f32(out),
            &shape,
            &want_v,
            1e-4,
            1e-4,
        );
        println!("{want}: max_abs={:.3e}", c.max_abs);
        assert!(c.pass(), "{c:?}");
    }
}

/// A batch of two (the fixture row and a different second row, each with its own timestep
/// and guidance) gives the fixture's output in row 0 and the single-row result in row 1.
#[test]
fn batch_rows_are_independent() {
    let (fx, model) = load_fixture_model();
    let dev = device();
    let hs: Tensor<3> = fx.tensor("in.hidden_states", &dev).unwrap();
    let ehs: Tensor<3> = fx.tensor("in.encoder_hidden_states", &dev).unwrap();
    let pooled: Tensor<2> = fx.tensor("in.pooled_projections", &dev).unwrap();
    let t: Tensor<1> = fx.tensor("in.timestep", &dev).unwrap();
    let g: Tensor<1> = fx.tensor("in.guidance", &dev).unwrap();
    let img_ids: Tensor<2> = fx.tensor("in.img_ids", &dev).unwrap();
    let txt_ids: Tensor<2> = fx.tensor("in.txt_ids", &dev).unwrap();

    let hs2 = hs.clone().flip([1]) * 0.7;
    let ehs2 = ehs.clone().flip([1]) - 0.3;
    let pooled2 = pooled.clone() * -1.0;
    let t2 = Tensor::<1>::from_data(TensorData::new(vec![0.25f32], [1]), &dev);
    let g2 = Tensor::<1>::from_data(TensorData::new(vec![2.0f32], [1]), &dev);

    let batch = model
        .forward(
            Tensor::cat(vec![hs.clone(), hs2.clone()], 0),
            Tensor::cat(vec![ehs.clone(), ehs2.clone()], 0),
            Tensor::cat(vec![pooled.clone(), pooled2.clone()], 0),
            Tensor::cat(vec![t.clone(), t2.clone()], 0),
            Some(Tensor::cat(vec![g.clone(), g2.clone()], 0)),
            img_ids.clone(),
            txt_ids.clone(),
        )
        .unwrap();
    let [b, l, c] = batch.dims();
    assert_eq!((b, l, c), (2, 64, 64));
    let row0 = batch.clone().slice([0..1, 0..l, 0..c]);
    assert!(fx.check("sample", row0.into_data()).unwrap().pass());
    let single = model
        .forward(hs2, ehs2, pooled2, t2, Some(g2), img_ids, txt_ids)
        .unwrap();
    let row1 = batch.slice([1..2, 0..l, 0..c]);
    let d = max_abs_diff(&to_vec_f32(row1), &to_vec_f32(single));
    assert!(d < 1e-5, "batched row 1 differs from its single run by {d}");
}

/// A `[1]` timestep and guidance broadcast over the batch, as diffusers' embedding does.
#[test]
fn scalar_timestep_broadcasts_over_batch() {
    let (fx, model) = load_fixture_model();
    let dev = device();
    let hs: Tensor<3> = fx.tensor("in.hidden_states", &dev).unwrap();
    let ehs: Tensor<3> = fx.tensor("in.encoder_hidden_states", &dev).unwrap();
    let pooled: Tensor<2> = fx.tensor("in.pooled_projections", &dev).unwrap();
    let out = model
        .forward(
            Tensor::cat(vec![hs.clone(), hs], 0),
            Tensor::cat(vec![ehs.clone(), ehs], 0),
            Tensor::cat(vec![pooled.clone(), pooled], 0),
            fx.tensor("in.timestep", &dev).unwrap(),
            Some(fx.tensor("in.guidance", &dev).unwrap()),
            fx.tensor("in.img_ids", &dev).unwrap(),
            fx.tensor("in.txt_ids", &dev).unwrap(),
        )
        .unwrap();
    let [_, l, c] = out.dims();
    for r in 0..2 {
        let row = out.clone().slice([r..r + 1, 0..l, 0..c]);
        assert!(
            fx.check("sample", row.into_data()).unwrap().pass(),
            "row {r}"
        );
    }
}
