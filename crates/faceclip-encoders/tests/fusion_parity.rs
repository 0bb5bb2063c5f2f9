//! Parity of the fusion encoders and the FaceCLIP / FaceT5 encoders with the upstream
//! reference (fixtures `fuser_deformable`, `fuser_vanilla`, `faceclip_encoder`,
//! `facet5_encoder`), and generalisation beyond the fixtures' exact batches.

use faceclip_core::image::RgbImage;
use faceclip_core::{Checkpoint, Device, Fixture, Tensor, VarBuilder};
use faceclip_encoders::clip_text_model::ClipTextConfig;
use faceclip_encoders::fusion::{
    BatchMode, FaceClipSdxlConfig, FaceClipSdxlEncoder, FaceT5Encoder, FaceT5EncoderConfig,
    FaceT5FluxConfig, FaceT5FluxEncoder, FuserConfig, FuserVariant, TextFaceEmbeddingFuser,
};

fn fixture(name: &str) -> Fixture {
    Fixture::open(format!(
        "{}/../../tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn device() -> Device {
    faceclip_core::device::default_device().unwrap()
}

fn run_hook(name: &str) {
    let f = fixture(name);
    let report = faceclip_encoders::parity::run_fixture(&f, &device())
        .unwrap_or_else(|| panic!("{name}: no hook claimed the fixture"))
        .unwrap();
    for c in &report.comparisons {
        eprintln!(
            "{name}: {} max_abs {:.3e} (atol {}, rtol {})",
            c.name, c.max_abs, c.atol, c.rtol
        );
    }
    assert!(report.pass(), "{name}: {:?}", report.failures());
}

#[test]
fn fuser_deformable_parity() {
    run_hook("fuser_deformable");
}

#[test]
fn fuser_vanilla_parity() {
    run_hook("fuser_vanilla");
}

#[test]
fn faceclip_encoder_parity() {
    let f = fixture("faceclip_encoder");
    let report = faceclip_encoders::parity::run_fixture(&f, &device())
        .unwrap()
        .unwrap();
    // Both weight files are compared (embeddings and pooled for each).
    let names: Vec<&str> = report.comparisons.iter().map(|c| c.name.as_str()).collect();
    assert!(names.iter().any(|n| n.contains("weights.pt")), "{names:?}");
    assert!(
        names.iter().any(|n| n.contains("weights.safetensors")),
        "{names:?}"
    );
    assert_eq!(names.len(), 4);
    run_hook("faceclip_encoder");
}

#[test]
fn facet5_encoder_parity() {
    run_hook("facet5_encoder");
}

/// Max |a - b| between a tensor and rows `rows` of an `out.*` tensor (same trailing shape).
fn max_diff_rows<const D: usize>(
    f: &Fixture,
    name: &str,
    rows: std::ops::Range<usize>,
    got: Tensor<D>,
) -> f64 {
    let (shape, want) = f.f32(&format!("out.{name}")).unwrap();
    let per_row: usize = shape[1..].iter().product();
    let got_shape = got.dims();
    assert_eq!(&got_shape[1..], &shape[1..], "{name}: trailing shape");
    assert_eq!(got_shape[0], rows.len(), "{name}: rows");
    let got = faceclip_core::to_vec_f32(got);
    let want = &want[rows.start * per_row..rows.end * per_row];
    got.iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max)
}

fn row<const D: usize>(t: &Tensor<D>, i: usize) -> Tensor<D> {
    t.clone().narrow(0, i, 1)
}

fn fuser(name: &str, variant: FuserVariant) -> (Fixture, TextFaceEmbeddingFuser) {
    let f = fixture(name);
    let cfg: FuserConfig = f.config_as("").unwrap();
    let vb = VarBuilder::from_checkpoint(f.weights().unwrap(), &device());
    let fuser = TextFaceEmbeddingFuser::load(&vb, &cfg, variant).unwrap();
    vb.finish().unwrap();
    (f, fuser)
}

/// Each row of the fixture batch, run alone, reproduces its row (deformable: no batch
/// mixing at all; vanilla: the per-sample output). A batch of one is the same in both
/// modes, and broadcast `[1, ...]` position tables give the same result as repeated ones.
#[test]
fn fusers_generalise_to_single_rows() {
    let dev = device();
    for (name, variant, per_sample) in [
        ("fuser_deformable", FuserVariant::FaceClip, "memory_text"),
        (
            "fuser_vanilla",
            FuserVariant::FaceT5,
            "memory_text_per_sample",
        ),
    ] {
        let (f, fuser) = fuser(name, variant);
        let text = f.tensor::<3>("in.text_embedding", &dev).unwrap();
        let text_pos = f.tensor::<3>("in.text_pos_embedding", &dev).unwrap();
        let face = f.tensor::<3>("in.face_patch_embed", &dev).unwrap();
        let face_pos = f.tensor::<3>("in.face_pos_embedding", &dev).unwrap();
        for i in 0..text.dims()[0] {
            for mode in [BatchMode::PerSample, BatchMode::Batched] {
                let out = fuser
                    .forward(
                        row(&text, i),
                        row(&text_pos, i),
                        row(&face, i),
                        Some(row(&face_pos, i)),
                        mode,
                    )
                    .unwrap();
                let d = max_diff_rows(&f, per_sample, i..i + 1, out);
                assert!(d < 1e-4, "{name} row {i} {mode:?}: {d}");
            }
        }
        // FaceT5's fuser never reads the face position (use_transformer_ckpt quirk).
        if variant == FuserVariant::FaceT5 {
            assert!(!fuser.uses_face_pos());
            let out = fuser
                .forward(
                    text.clone(),
                    text_pos.clone(),
                    face.clone(),
                    None,
                    BatchMode::PerSample,
                )
                .unwrap();
            let d = max_diff_rows(&f, per_sample, 0..2, out);
            assert!(d < 1e-4, "{name} without face_pos: {d}");
        } else {
            assert!(fuser.uses_face_pos());
            assert!(
                fuser
                    .forward(
                        text.clone(),
                        text_pos.clone(),
                        face.clone(),
                        None,
                        BatchMode::PerSample
                    )
                    .is_err()
            );
        }
        // Bad shapes are errors, not panics.
        let short_face = face.clone().narrow(1, 0, 100);
        assert!(
            fuser
                .forward(
                    text.clone(),
                    text_pos.clone(),
                    short_face,
                    Some(face_pos.clone()),
                    BatchMode::PerSample
                )
                .is_err()
        );
        let short_pos = text_pos.clone().narrow(1, 0, 3);
        assert!(
            fuser
                .forward(
                    text.clone(),
                    short_pos,
                    face.clone(),
                    Some(face_pos.clone()),
                    BatchMode::PerSample
                )
                .is_err()
        );
    }
}

/// A shorter text (other `L`) runs, and per-sample rows agree with batch-of-one calls.
#[test]
fn fuser_handles_other_text_lengths() {
    let dev = device();
    let (f, fuser) = fuser("fuser_vanilla", FuserVariant::FaceT5);
    let text = f
        .tensor::<3>("in.text_embedding", &dev)
        .unwrap()
        .narrow(1, 0, 5);
    let text_pos = f
        .tensor::<3>("in.text_pos_embedding", &dev)
        .unwrap()
        .narrow(1, 0, 5);
    let face = f.tensor::<3>("in.face_patch_embed", &dev).unwrap();
    let both = fuser
        .forward(
            text.clone(),
            text_pos.clone(),
            face.clone(),
            None,
            BatchMode::PerSample,
        )
        .unwrap();
    assert_eq!(both.dims(), [2, 5, 64]);
    let one = fuser
        .forward(
            row(&text, 1),
            row(&text_pos, 1),
            row(&face, 1),
            None,
            BatchMode::PerSample,
        )
        .unwrap();
    let a = faceclip_core::to_vec_f32(row(&both, 1));
    let b = faceclip_core::to_vec_f32(one);
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(d < 1e-5, "{d}");
}

fn faceclip_model(f: &Fixture, ck: Checkpoint) -> FaceClipSdxlEncoder {
    let cfg = FaceClipSdxlConfig::from_value(f.config()).unwrap();
    FaceClipSdxlEncoder::from_checkpoint(ck, &cfg, &device()).unwrap()
}

fn texts(f: &Fixture) -> Vec<String> {
    serde_json::from_value(f.extra()["texts"].clone()).unwrap()
}

/// The FaceCLIP encoder: single rows reproduce the fixture rows, the image API (any size,
/// `None` = the negative branch's zero face) equals the tensor API, and `model.` in key
/// names is stripped as `infer_face_clip_sdxl.py` does.
#[test]
fn faceclip_encoder_generalises() {
    let dev = device();
    let f = fixture("faceclip_encoder");
    let faces = f.tensor::<4>("in.face_image", &dev).unwrap();
    let texts = texts(&f);
    let exist = [true, false];
    let model = faceclip_model(&f, f.weights().unwrap());
    for i in 0..2 {
        let out = model
            .encode_tensor(row(&faces, i), &exist[i..i + 1], &texts[i..i + 1])
            .unwrap();
        assert_eq!(out.prompt_embeds.dims(), [1, 77, 16]);
        let d = max_diff_rows(&f, "embeddings", i..i + 1, out.prompt_embeds);
        assert!(d < 1e-4, "row {i}: {d}");
        let d = max_diff_rows(&f, "pooled", i..i + 1, out.pooled);
        assert!(d < 1e-4, "row {i} pooled: {d}");
    }

    // Images: row 0 as an RgbImage of its own size, row 1 as None (zero face, no prefix).
    let (shape, data) = f.f32("in.face_image").unwrap();
    let (h, w) = (shape[2], shape[3]);
    let img = RgbImage {
        width: w,
        height: h,
        data: data[..3 * h * w].to_vec(),
    };
    let out = model.encode(&[Some(img), None], &texts).unwrap();
    assert!(max_diff_rows(&f, "embeddings", 0..2, out.prompt_embeds) < 1e-4);
    assert!(max_diff_rows(&f, "pooled", 0..2, out.pooled) < 1e-4);

    // Keys with `model.` anywhere (every occurrence is removed).
    let prefixed = f.weights().unwrap().rename(|k| {
        Some(format!(
            "model.{}",
            k.replacen(".fuser.", ".fuser.model.", 1)
        ))
    });
    let model2 = faceclip_model(&f, prefixed);
    let out = model2.encode_tensor(faces.clone(), &exist, &texts).unwrap();
    assert!(max_diff_rows(&f, "embeddings", 0..2, out.prompt_embeds) < 1e-4);

    // The batched mode (one maximum over the batch in the bi-attention) agrees here.
    let model3 = faceclip_model(&f, f.weights().unwrap()).with_batch_mode(BatchMode::Batched);
    let out = model3.encode_tensor(faces.clone(), &exist, &texts).unwrap();
    assert!(max_diff_rows(&f, "embeddings", 0..2, out.prompt_embeds) < 1e-4);
}

/// Tokenisation: the prefix, the face token and the substitution span, checked against the
/// fixture's `mid.l.input_ids` / `mid.l.id_text_mask`.
#[test]
fn faceclip_tokens_match_upstream() {
    let f = fixture("faceclip_encoder");
    let model = faceclip_model(&f, f.weights().unwrap());
    let tokens = model.tokenize(&texts(&f), &[true, false]).unwrap();
    let (_, want_ids) = f.io().read_i64("mid.l.input_ids").unwrap();
    assert_eq!(tokens.ids, want_ids);
    let (_, id_mask) = f.io().read_i64("mid.l.id_text_mask").unwrap();
    let want_sub: Vec<bool> = tokens
        .ids
        .iter()
        .zip(&id_mask)
        .map(|(&id, &m)| id == 1014 && m != 0)
        .collect();
    assert_eq!(tokens.substitute, want_sub);
    assert_eq!(tokens.substitute.iter().filter(|&&s| s).count(), 1);
    // An `id` in the prompt itself, or in a row without a face, is not replaced.
    let t = model
        .tokenize(&["an id card", "an id card"], &[true, false])
        .unwrap();
    assert_eq!(t.substitute.iter().filter(|&&s| s).count(), 1);
    assert!(t.substitute[..77].iter().position(|&s| s) == Some(4));
}

#[test]
fn faceclip_rejects_bad_input() {
    let dev = device();
    let f = fixture("faceclip_encoder");
    let model = faceclip_model(&f, f.weights().unwrap());
    let faces = f.tensor::<4>("in.face_image", &dev).unwrap();
    assert!(
        model
            .encode_tensor(faces.clone(), &[true, false], &["only one"])
            .is_err()
    );
    assert!(model.encode_tensor(faces, &[true], &["a", "b"]).is_err());
    assert!(model.encode::<&str>(&[], &[]).is_err());
    // Missing tensors are reported all at once.
    let partial = f
        .weights()
        .unwrap()
        .rename(|k| (!k.contains("fusion_layers.3.")).then(|| k.to_string()));
    let cfg = FaceClipSdxlConfig::from_value(f.config()).unwrap();
    let err = FaceClipSdxlEncoder::from_checkpoint(partial, &cfg, &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
}

fn facet5_model(f: &Fixture) -> FaceT5Encoder {
    let cfg = FaceT5EncoderConfig::from_value(f.config()).unwrap();
    let vb = VarBuilder::from_checkpoint(f.weights().unwrap(), &device());
    let m = FaceT5Encoder::load(&vb, &cfg).unwrap();
    vb.finish().unwrap();
    m
}

/// FaceT5: each row alone reproduces `fused_b1` in both modes (a batch of one is the same
/// either way); the default mode is per sample; ids must have the buffer's length.
#[test]
fn facet5_encoder_generalises() {
    let dev = device();
    let f = fixture("facet5_encoder");
    let model = facet5_model(&f);
    let faces = f.tensor::<4>("in.face_image", &dev).unwrap();
    let ids = f.tensor_int::<2>("in.input_ids", &dev).unwrap();
    for i in 0..2 {
        for mode in [BatchMode::PerSample, BatchMode::Batched] {
            let out = model
                .forward_mode(row(&faces, i), ids.clone().narrow(0, i, 1), mode)
                .unwrap();
            let d = max_diff_rows(&f, "fused_b1", i..i + 1, out.fused);
            assert!(d < 1e-4, "row {i} {mode:?}: {d}");
        }
    }
    let out = model.forward(faces.clone(), ids.clone()).unwrap();
    assert!(max_diff_rows(&f, "fused_b1", 0..2, out.fused) < 1e-4);
    // The batched call differs from the per-sample one (upstream's batch mixing).
    let out = model
        .forward_mode(faces.clone(), ids.clone(), BatchMode::Batched)
        .unwrap();
    assert!(max_diff_rows(&f, "fused_b1", 0..2, out.fused) > 1e-2);
    // Wrong id length / batch: errors.
    assert!(
        model
            .forward(faces.clone(), ids.clone().narrow(1, 0, 16))
            .is_err()
    );
    assert!(model.forward(row(&faces, 0), ids).is_err());
}

/// Copies every tensor of `ck` under `prefix` into `out` (int buffers as f32 values).
fn collect(ck: &Checkpoint, prefix: &str, out: &mut Vec<(String, Vec<usize>, Vec<f32>)>) {
    for info in ck.list() {
        let (shape, v) = match ck.read_f32(&info.name) {
            Ok(x) => x,
            Err(_) => {
                let (s, v) = ck.read_i64(&info.name).unwrap();
                (s, v.into_iter().map(|x| x as f32).collect())
            }
        };
        out.push((format!("{prefix}{}", info.name), shape, v));
    }
}

/// `FaceT5FluxWrapper` assembled from the `clip_text_hf` (encoder_1) and `facet5_encoder`
/// (encoder_2) fixtures: pooled = CLIP's `pooler_output`, embeddings = FaceT5's `fused_b1`.
#[test]
fn facet5_flux_wrapper_combines_both_encoders() {
    let dev = device();
    let clip = fixture("clip_text_hf");
    let t5 = fixture("facet5_encoder");
    let mut tensors = Vec::new();
    collect(&clip.weights().unwrap(), "encoder_1.", &mut tensors);
    collect(&t5.weights().unwrap(), "encoder_2.", &mut tensors);
    let ck = Checkpoint::from_f32("combined", tensors).unwrap();
    let cfg = FaceT5FluxConfig {
        clip: clip.config_as::<ClipTextConfig>("").unwrap(),
        face_t5: FaceT5EncoderConfig::from_value(t5.config()).unwrap(),
    };
    let model = FaceT5FluxEncoder::from_checkpoint(ck, &cfg, &dev).unwrap();
    let out = model
        .encode_ids(
            t5.tensor::<4>("in.face_image", &dev).unwrap(),
            clip.tensor_int::<2>("in.input_ids", &dev).unwrap(),
            t5.tensor_int::<2>("in.input_ids", &dev).unwrap(),
        )
        .unwrap();
    assert!(max_diff_rows(&clip, "pooler_output", 0..2, out.pooled) < 1e-4);
    assert!(max_diff_rows(&t5, "fused_b1", 0..2, out.prompt_embeds) < 1e-4);
}

/// A tiny SentencePiece-Unigram `tokenizer.json` (ids < 512, the fixture's T5 vocabulary).
fn tiny_t5_tokenizer() -> faceclip_encoders::tokenizer_t5::T5Tokenizer {
    let mut vocab = vec![
        ("<pad>".to_string(), 0.0),
        ("</s>".to_string(), 0.0),
        ("<unk>".to_string(), 0.0),
        ("\u{2581}".to_string(), -2.0),
    ];
    for c in 'a'..='z' {
        vocab.push((c.to_string(), -5.0));
        vocab.push((format!("\u{2581}{c}"), -4.0));
    }
    vocab.push(("\u{2581}photo".to_string(), -1.0));
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "Unigram", "unk_id": 2, "vocab": vocab, "byte_fallback": false}
    });
    faceclip_encoders::tokenizer_t5::T5Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap()
}

/// `FaceT5FluxEncoder::encode` (prompts + images) equals `encode_ids` on the same
/// tokenisation, `None` faces are zero images, and a tokenizer of the wrong length is refused.
#[test]
fn facet5_flux_wrapper_encodes_text() {
    let dev = device();
    let clip = fixture("clip_text_hf");
    let t5 = fixture("facet5_encoder");
    let mut tensors = Vec::new();
    collect(&clip.weights().unwrap(), "encoder_1.", &mut tensors);
    collect(&t5.weights().unwrap(), "encoder_2.", &mut tensors);
    let cfg = FaceT5FluxConfig {
        clip: clip.config_as::<ClipTextConfig>("").unwrap(),
        face_t5: FaceT5EncoderConfig::from_value(t5.config()).unwrap(),
    };
    let model = FaceT5FluxEncoder::from_checkpoint(
        Checkpoint::from_f32("combined", tensors).unwrap(),
        &cfg,
        &dev,
    )
    .unwrap();
    let tok = tiny_t5_tokenizer();
    let prompts = ["a photo of a woman", "blurry"];
    let (shape, data) = t5.f32("in.face_image").unwrap();
    let (h, w) = (shape[2], shape[3]);
    let img = RgbImage {
        width: w,
        height: h,
        data: data[..3 * h * w].to_vec(),
    };
    let faces = [Some(img), None];
    assert!(
        model.encode(&faces, &prompts, &tok).is_err(),
        "512-long T5 rows for a 32-long buffer"
    );
    let tok = tok.with_max_length(32).unwrap();
    let out = model.encode(&faces, &prompts, &tok).unwrap();
    assert_eq!(out.prompt_embeds.dims(), [2, 32, 64]);
    assert_eq!(out.pooled.dims(), [2, 32]);

    let clip_ids = faceclip_encoders::tokenizer_clip::ClipTokenizer::new()
        .unwrap()
        .encode_hf_slow(&prompts, faceclip_encoders::tokenizer_clip::EOT_ID)
        .unwrap()
        .ids_tensor(&dev);
    let t5_ids = tok.encode(&prompts).unwrap().ids_tensor(&dev);
    let zeros = Tensor::<4>::zeros([1, 3, h, w], &dev);
    let face_batch = Tensor::cat(
        vec![
            t5.tensor::<4>("in.face_image", &dev)
                .unwrap()
                .narrow(0, 0, 1),
            zeros,
        ],
        0,
    );
    let want = model.encode_ids(face_batch, clip_ids, t5_ids).unwrap();
    let d = |a: Tensor<3>, b: Tensor<3>| {
        faceclip_core::to_vec_f32(a)
            .iter()
            .zip(faceclip_core::to_vec_f32(b))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(d(out.prompt_embeds, want.prompt_embeds) < 1e-5);
    assert!(d(out.pooled.unsqueeze::<3>(), want.pooled.unsqueeze::<3>()) < 1e-5);
}
