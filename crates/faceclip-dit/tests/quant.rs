//! Weight-only quantization of the FLUX transformer (issue #21): the `flux_transformer`
//! fixture run with its linear weights in GGML's Q8_0 and Q4_0 blocks, against the float32
//! reference output.

mod common;

use common::{device, fixture};
use faceclip_core::quant::is_quantizable;
use faceclip_core::{
    Checkpoint, Comparison, Pretrained, QMatrix, QuantType, WeightOptions, to_vec_f32,
};
use faceclip_dit::{FluxTransformer2DModel, FluxTransformerConfig};

/// The fixture's weights with every linear weight replaced by its blocks expanded back to
/// `f32` (what the block kernel must compute with).
fn fake_quantized(ck: &Checkpoint, kind: QuantType) -> Checkpoint {
    let tensors = ck.list().into_iter().map(|info| {
        let (shape, v) = ck.read_f32(&info.name).unwrap();
        let v = if is_quantizable(&info.name, &shape) {
            QMatrix::quantize(kind, shape[0], shape[1], &v).unwrap().dequantize()
        } else {
            v
        };
        (info.name, shape, v)
    });
    Checkpoint::from_f32("fake-quantized", tensors.collect::<Vec<_>>()).unwrap()
}

fn run(weights: Checkpoint, kind: Option<QuantType>) -> (Vec<f32>, usize) {
    let f = fixture("flux_transformer");
    let device = device();
    let config = FluxTransformerConfig::from_value(f.config()).unwrap();
    let model = FluxTransformer2DModel::load_options(
        weights,
        &config,
        &WeightOptions::new().quant(kind),
        &device,
    )
    .unwrap();
    let quantized = [
        &model.transformer_blocks[0].attn.to_q,
        &model.single_transformer_blocks[0].proj_out,
    ]
    .iter()
    .filter(|l| l.quant.is_some())
    .count();
    let guidance = f.tensor::<1>("in.guidance", &device).unwrap();
    let got = model
        .forward(
            f.tensor("in.hidden_states", &device).unwrap(),
            f.tensor("in.encoder_hidden_states", &device).unwrap(),
            f.tensor("in.pooled_projections", &device).unwrap(),
            f.tensor("in.timestep", &device).unwrap(),
            Some(guidance),
            f.tensor("in.img_ids", &device).unwrap(),
            f.tensor("in.txt_ids", &device).unwrap(),
        )
        .unwrap();
    (to_vec_f32(got), quantized)
}

/// Max abs error and that error over the reference's largest magnitude.
fn errors(kind: Option<QuantType>) -> (f64, f64, usize) {
    let f = fixture("flux_transformer");
    let (got, quantized) = run(f.weights().unwrap(), kind);
    let (_, want) = f.f32("out.sample").unwrap();
    // The fixtures' own comparison (shapes were checked by the forward).
    let max_abs = Comparison::new("sample", &[got.len()], &got, &[want.len()], &want, 0.0, 0.0).max_abs;
    let scale = want.iter().map(|w| f64::from(w.abs())).fold(0.0, f64::max);
    eprintln!("flux_transformer quant={kind:?}: max_abs {max_abs:.3e}, relative to max |ref| {:.3e}", max_abs / scale);
    (max_abs, max_abs / scale, quantized)
}

#[test]
fn q8_stays_close_to_float32_and_q4_further() {
    let (f32_abs, _, none) = errors(None);
    let (q8_abs, q8_rel, q8_layers) = errors(Some(QuantType::Q8_0));
    let (q4_abs, q4_rel, q4_layers) = errors(Some(QuantType::Q4_0));
    assert_eq!(none, 0, "no layer is quantized without the option");
    assert_eq!((q8_layers, q4_layers), (2, 2), "the linear layers hold blocks");
    // Quantization really ran: its error is far above float32 rounding ...
    assert!(q8_abs > 10.0 * f32_abs, "q8 {q8_abs:e} vs f32 {f32_abs:e}");
    assert!(q4_abs > q8_abs, "q4 {q4_abs:e} must be coarser than q8 {q8_abs:e}");
    // ... and of quantization's size. Q8_0 rounds each weight to a step of 1/127 of its block's
    // largest, Q4_0 to 1/8 of it: about 0.5 % (Q8_0) of a weight's spread per layer, compounded
    // over the fixture's dozen linear layers in series, and Q4_0's error about 16 times Q8_0's
    // (measured: 1.3 % and 19 % of the output's range).
    assert!(q8_rel < 0.03, "q8 error {q8_rel:e} of the output range");
    assert!(q4_rel < 0.5, "q4 error {q4_rel:e} of the output range");
    let ratio = q4_abs / q8_abs;
    assert!((5.0..50.0).contains(&ratio), "q4/q8 error ratio {ratio}, expected about 16");
}

#[test]
fn block_kernels_compute_what_the_expanded_weights_do() {
    let weights = fixture("flux_transformer").weights().unwrap();
    for kind in [QuantType::Q8_0, QuantType::Q4_0] {
        let (blocks, _) = run(weights.clone(), Some(kind));
        let (expanded, n) = run(fake_quantized(&weights, kind), None);
        assert_eq!(n, 0);
        let scale = expanded.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = common::max_abs_diff(&blocks, &expanded);
        eprintln!("{kind:?}: block kernel vs expanded weights max_abs {diff:.3e} (range {scale})");
        assert!(diff <= 1e-5 * scale.max(1.0), "{kind:?}: {diff}");
    }
}

#[test]
fn gguf_round_trip_loads_the_same_blocks_under_the_upstream_names() {
    let weights = fixture("flux_transformer").weights().unwrap();
    let dir = common::scratch("gguf");
    for kind in [QuantType::Q8_0, QuantType::Q4_0] {
        let path = dir.join(format!("dit-{}.gguf", kind.name()));
        let saved = faceclip_core::gguf::save_quantized(&weights, kind, &path).unwrap();
        assert_eq!(saved.tensors, weights.len());
        assert!(saved.quantized > 0);
        let gguf = Checkpoint::open(&path).unwrap();
        // The same names and shapes as the source, the 2-D weights in blocks.
        let src: Vec<_> = weights.list().into_iter().map(|t| (t.name, t.shape)).collect();
        let got: Vec<_> = gguf.list().into_iter().map(|t| (t.name, t.shape)).collect();
        assert_eq!(src, got);
        let blocks = gguf
            .list()
            .iter()
            .filter(|t| t.dtype.quant() == Some(kind))
            .count();
        assert_eq!(blocks, saved.quantized);
        assert_eq!(
            gguf.info("transformer_blocks.0.attn.to_q.weight").unwrap().dtype.quant(),
            Some(kind)
        );
        assert!(gguf.info("transformer_blocks.0.attn.norm_q.weight").unwrap().dtype.quant().is_none());
        // Loaded as stored (no option): the same output as quantizing at load.
        let (from_file, n) = run(gguf.clone(), None);
        assert_eq!(n, 2, "the GGUF's blocks load as blocks");
        let (at_load, _) = run(weights.clone(), Some(kind));
        assert_eq!(from_file, at_load, "{kind:?}: GGUF blocks differ from quantizing at load");
        // A GGUF file is smaller than the f32 source by about the block ratio.
        let src_bytes: usize = weights.list().iter().map(|t| t.shape.iter().product::<usize>() * 4).sum();
        assert!((saved.bytes as usize) < src_bytes / 3, "{} vs {src_bytes}", saved.bytes);
    }
}
