//! Shared layers against straightforward f64 references computed here.

mod common;

use faceclip_core::device::default_device;
use faceclip_core::layers::{
    Activation, AttentionMask, BatchNorm, GroupNorm, LayerNorm, Linear, RmsNorm, attention,
    causal_mask, timestep_embedding,
};
use faceclip_core::{Checkpoint, Device, Tensor, TensorData, VarBuilder, to_vec_f32};

fn pseudo(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 * 4.0 - 2.0) as f32
        })
        .collect()
}

fn t<const D: usize>(v: &[f32], shape: [usize; D], d: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), d)
}

fn close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}"
        );
    }
}

fn vb_with(tensors: Vec<(&str, Vec<usize>, Vec<f32>)>, d: &Device) -> VarBuilder {
    let ck = Checkpoint::from_f32(
        "test",
        tensors.into_iter().map(|(n, s, v)| (n.to_string(), s, v)),
    )
    .unwrap();
    VarBuilder::from_checkpoint(ck, d)
}

#[test]
fn linear_is_x_wt_plus_b() {
    let d = default_device().unwrap();
    let (w, b, x) = (pseudo(12, 1), pseudo(4, 2), pseudo(6, 3));
    let vb = vb_with(
        vec![
            ("weight", vec![4, 3], w.clone()),
            ("bias", vec![4], b.clone()),
        ],
        &d,
    );
    let lin = Linear::load(&vb, 3, 4, true);
    vb.finish().unwrap();
    let y = to_vec_f32(lin.forward(t(&x, [2, 3], &d)));
    let mut want = vec![];
    for r in 0..2 {
        for o in 0..4 {
            let mut s = b[o] as f64;
            for i in 0..3 {
                s += x[r * 3 + i] as f64 * w[o * 3 + i] as f64;
            }
            want.push(s);
        }
    }
    close(&y, &want, 1e-5);
}

#[test]
fn norms_match_their_definitions() {
    let d = default_device().unwrap();
    let (b, c, hw) = (2usize, 6usize, 5usize);
    let x = pseudo(b * c * hw, 4);
    let (g, beta) = (pseudo(c, 5), pseudo(c, 6));
    let vb = vb_with(
        vec![
            ("gn.weight", vec![c], g.clone()),
            ("gn.bias", vec![c], beta.clone()),
            ("ln.weight", vec![hw], g[..hw].to_vec()),
            ("ln.bias", vec![hw], beta[..hw].to_vec()),
            ("rms.weight", vec![hw], g[..hw].to_vec()),
            ("bn.weight", vec![c], g.clone()),
            ("bn.bias", vec![c], beta.clone()),
            ("bn.running_mean", vec![c], pseudo(c, 7)),
            (
                "bn.running_var",
                vec![c],
                pseudo(c, 8).iter().map(|v| v.abs() + 0.5).collect(),
            ),
        ],
        &d,
    );
    let gn = GroupNorm::load(&vb.pp("gn"), 3, c, 1e-6);
    let ln = LayerNorm::load(&vb.pp("ln"), hw, 1e-5);
    let rms = RmsNorm::load(&vb.pp("rms"), hw, 1e-6);
    let bn = BatchNorm::load(&vb.pp("bn"), c, 2e-5);
    // num_batches_tracked is expected but absent here.
    assert_eq!(vb.report().missing, vec!["bn.num_batches_tracked"]);
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();

    // GroupNorm: groups of 2 channels x 5 positions.
    let y = to_vec_f32(gn.forward(t(&x, [b, c, hw], &d)));
    let mut want = vec![0.0; x.len()];
    for bi in 0..b {
        for gi in 0..3 {
            let s = bi * c * hw + gi * 2 * hw;
            let vals = &x64[s..s + 2 * hw];
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / vals.len() as f64;
            for k in 0..2 * hw {
                let ch = gi * 2 + k / hw;
                want[s + k] = (vals[k] - m) / (v + 1e-6).sqrt() * g[ch] as f64 + beta[ch] as f64;
            }
        }
    }
    close(&y, &want, 1e-5);

    // LayerNorm and RMSNorm over the last axis.
    let y = to_vec_f32(ln.forward(t(&x, [b, c, hw], &d)));
    let yr = to_vec_f32(rms.forward(t(&x, [b, c, hw], &d)));
    let (mut wl, mut wr) = (vec![], vec![]);
    for row in x64.chunks(hw) {
        let m = row.iter().sum::<f64>() / hw as f64;
        let v = row.iter().map(|a| (a - m).powi(2)).sum::<f64>() / hw as f64;
        let ms = row.iter().map(|a| a * a).sum::<f64>() / hw as f64;
        for (k, a) in row.iter().enumerate() {
            wl.push((a - m) / (v + 1e-5).sqrt() * g[k] as f64 + beta[k] as f64);
            wr.push(a / (ms + 1e-6).sqrt() * g[k] as f64);
        }
    }
    close(&y, &wl, 1e-5);
    close(&yr, &wr, 1e-5);

    // BatchNorm (eval) on [B, C].
    let xb = &x[..b * c];
    let rm = pseudo(c, 7);
    let rv: Vec<f32> = pseudo(c, 8).iter().map(|v| v.abs() + 0.5).collect();
    let y = to_vec_f32(bn.forward(t(xb, [b, c], &d)));
    let want: Vec<f64> = (0..b * c)
        .map(|i| {
            let ch = i % c;
            (xb[i] as f64 - rm[ch] as f64) / (rv[ch] as f64 + 2e-5).sqrt() * g[ch] as f64
                + beta[ch] as f64
        })
        .collect();
    close(&y, &want, 1e-5);
}

#[test]
fn activations_at_known_points() {
    let d = default_device().unwrap();
    let x = t(&[-1.0, 0.0, 1.0, 7.0], [4], &d);
    let erf_gelu = [-0.158_655_25, 0.0, 0.841_344_75, 7.0];
    let tanh_gelu = [-0.158_808, 0.0, 0.841_192, 7.0];
    let quick = [
        -1.0 / (1.0 + 1.702f64.exp()),
        0.0,
        1.0 / (1.0 + (-1.702f64).exp()),
        7.0 / (1.0 + (-1.702f64 * 7.0).exp()),
    ];
    close(
        &to_vec_f32(Activation::Gelu.forward(x.clone())),
        &erf_gelu,
        2e-6,
    );
    close(
        &to_vec_f32(Activation::GeluTanh.forward(x.clone())),
        &tanh_gelu,
        2e-6,
    );
    close(
        &to_vec_f32(Activation::QuickGelu.forward(x.clone())),
        &quick,
        2e-6,
    );
    close(
        &to_vec_f32(Activation::Relu6.forward(x.clone())),
        &[0.0, 0.0, 1.0, 6.0],
        0.0,
    );
    close(
        &to_vec_f32(Activation::Relu.forward(x.clone())),
        &[0.0, 0.0, 1.0, 7.0],
        0.0,
    );
    let silu: Vec<f64> = [-1.0f64, 0.0, 1.0, 7.0]
        .iter()
        .map(|v| v / (1.0 + (-v).exp()))
        .collect();
    close(&to_vec_f32(Activation::Silu.forward(x)), &silu, 2e-6);
    // Erf and tanh GELU must differ where the fixtures would notice.
    assert!((erf_gelu[0] - tanh_gelu[0]).abs() > 1e-4);
    assert_eq!(
        Activation::from_name("gelu_new"),
        Some(Activation::GeluTanh)
    );
    assert_eq!(
        Activation::from_name("quick_gelu"),
        Some(Activation::QuickGelu)
    );
    assert_eq!(Activation::from_name("nope"), None);
}

fn naive_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    b: usize,
    h: usize,
    lq: usize,
    lk: usize,
    dh: usize,
    scale: f64,
    bias: Option<&[f32]>,
    masked: &dyn Fn(usize, usize, usize) -> bool,
) -> Vec<f64> {
    let mut out = vec![0.0; b * h * lq * dh];
    for bi in 0..b {
        for hi in 0..h {
            let base_q = (bi * h + hi) * lq * dh;
            let base_k = (bi * h + hi) * lk * dh;
            for i in 0..lq {
                let mut s: Vec<f64> = (0..lk)
                    .map(|j| {
                        if masked(bi, i, j) {
                            return f64::NEG_INFINITY;
                        }
                        let dot: f64 = (0..dh)
                            .map(|e| q[base_q + i * dh + e] as f64 * k[base_k + j * dh + e] as f64)
                            .sum();
                        dot * scale
                            + bias.map_or(0.0, |bb| bb[((bi * h + hi) * lq + i) * lk + j] as f64)
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s
                    .iter_mut()
                    .map(|x| {
                        *x = (*x - m).exp();
                        *x
                    })
                    .sum();
                for e in 0..dh {
                    out[base_q + i * dh + e] = (0..lk)
                        .map(|j| s[j] / z * v[base_k + j * dh + e] as f64)
                        .sum();
                }
            }
        }
    }
    out
}

#[test]
fn attention_with_bias_causal_and_bool_masks() {
    let d = default_device().unwrap();
    let (b, h, l, dh) = (2, 3, 5, 4);
    let n = b * h * l * dh;
    let (q, k, v) = (pseudo(n, 10), pseudo(n, 11), pseudo(n, 12));
    let bias = pseudo(b * h * l * l, 13);
    let tq = t(&q, [b, h, l, dh], &d);
    let tk = t(&k, [b, h, l, dh], &d);
    let tv = t(&v, [b, h, l, dh], &d);
    let none = |_: usize, _: usize, _: usize| false;

    let got = to_vec_f32(attention(
        tq.clone(),
        tk.clone(),
        tv.clone(),
        None,
        AttentionMask::None,
        None,
    ));
    close(
        &got,
        &naive_attention(&q, &k, &v, b, h, l, l, dh, 0.5, None, &none),
        1e-5,
    );

    let got = to_vec_f32(attention(
        tq.clone(),
        tk.clone(),
        tv.clone(),
        Some(t(&bias, [b, h, l, l], &d)),
        AttentionMask::None,
        Some(1.0),
    ));
    close(
        &got,
        &naive_attention(&q, &k, &v, b, h, l, l, dh, 1.0, Some(&bias), &none),
        1e-5,
    );

    let causal = |_: usize, i: usize, j: usize| j > i;
    let got = to_vec_f32(attention(
        tq.clone(),
        tk.clone(),
        tv.clone(),
        None,
        AttentionMask::Causal,
        None,
    ));
    close(
        &got,
        &naive_attention(&q, &k, &v, b, h, l, l, dh, 0.5, None, &causal),
        1e-5,
    );
    let got = to_vec_f32(attention(
        tq.clone(),
        tk.clone(),
        tv.clone(),
        None,
        AttentionMask::Bool(causal_mask(l, &d)),
        None,
    ));
    close(
        &got,
        &naive_attention(&q, &k, &v, b, h, l, l, dh, 0.5, None, &causal),
        1e-5,
    );
}

#[test]
fn timestep_embedding_matches_diffusers_formula() {
    let d = default_device().unwrap();
    let ts = [0.0f32, 1.0, 481.0, 999.0];
    let dim = 8;
    let got = to_vec_f32(timestep_embedding(
        t(&ts, [4], &d),
        dim,
        true,
        0.0,
        1.0,
        10000.0,
    ));
    let mut want = vec![];
    for &tt in &ts {
        let f: Vec<f64> = (0..4)
            .map(|i| (-(10000f64.ln()) * i as f64 / 4.0).exp() * tt as f64)
            .collect();
        want.extend(f.iter().map(|a| a.cos()));
        want.extend(f.iter().map(|a| a.sin()));
    }
    close(&got, &want, 2e-4);
    let got = to_vec_f32(timestep_embedding(
        t(&ts, [4], &d),
        dim,
        false,
        1.0,
        1.0,
        10000.0,
    ));
    let mut want = vec![];
    for &tt in &ts {
        let f: Vec<f64> = (0..4)
            .map(|i| (-(10000f64.ln()) * i as f64 / 3.0).exp() * tt as f64)
            .collect();
        want.extend(f.iter().map(|a| a.sin()));
        want.extend(f.iter().map(|a| a.cos()));
    }
    close(&got, &want, 2e-4);
}

/// The fused CPU kernels (flex, f32) and the generic burn op chains (here on ndarray) agree,
/// for GroupNorm with and without SiLU, a 4-D input, a shared (cloned) input, and the
/// activations fused on the CPU.
#[test]
fn fused_cpu_paths_equal_the_generic_burn_ops() {
    let (flex, nd) = (
        faceclip_core::device::parse_device("flex").unwrap(),
        faceclip_core::device::parse_device("ndarray").unwrap(),
    );
    let (b, c, h, w) = (2usize, 8usize, 3usize, 5usize);
    let x = pseudo(b * c * h * w, 21);
    let tensors = |d: &Device| {
        let vb = vb_with(
            vec![
                ("weight", vec![c], pseudo(c, 22)),
                ("bias", vec![c], pseudo(c, 23)),
            ],
            d,
        );
        GroupNorm::load(&vb, 4, c, 1e-5)
    };
    let (gf, gn) = (tensors(&flex), tensors(&nd));
    for act in [None, Some(Activation::Silu), Some(Activation::Gelu)] {
        let xf = t(&x, [b, c, h, w], &flex);
        let keep = xf.clone(); // shared: the kernel must copy, not write through
        let yf = to_vec_f32(gf.forward_act(xf, act));
        let yn: Vec<f64> = to_vec_f32(gn.forward_act(t(&x, [b, c, h, w], &nd), act))
            .iter()
            .map(|&v| v as f64)
            .collect();
        close(&yf, &yn, 1e-5);
        assert_eq!(to_vec_f32(keep), x, "{act:?}: the input was modified");
    }
    for act in [
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
        Activation::QuickGelu,
    ] {
        // act(x)·y and the GEGLU halves form, against the same burn op chains.
        let y = pseudo(x.len(), 24);
        let got =
            to_vec_f32(act.forward_mul(t(&x, [b * c, h * w], &flex), t(&y, [b * c, h * w], &flex)));
        let want: Vec<f64> =
            to_vec_f32(act.forward(t(&x, [b * c, h * w], &nd)) * t(&y, [b * c, h * w], &nd))
                .iter()
                .map(|&v| v as f64)
                .collect();
        close(&got, &want, 1e-6);
        let got = to_vec_f32(act.forward_gated_halves(t(&x, [b, c * h * w], &flex)));
        let half = c * h * w / 2;
        let xn = t(&x, [b, c * h * w], &nd);
        let want = xn.clone().narrow(1, 0, half) * act.forward(xn.narrow(1, half, half));
        let want: Vec<f64> = to_vec_f32(want).iter().map(|&v| v as f64).collect();
        close(&got, &want, 1e-6);

        let yf = to_vec_f32(act.forward(t(&x, [b * c, h * w], &flex)));
        let yn: Vec<f64> = to_vec_f32(act.forward(t(&x, [b * c, h * w], &nd)))
            .iter()
            .map(|&v| v as f64)
            .collect();
        close(&yf, &yn, 1e-6);
    }
}

/// The CPU convolutions (flex, f32: Winograd F(2x2,3x3) for 3x3 stride 1 with at least 16
/// input channels, banded im2col otherwise) equal burn's generic convolution on ndarray,
/// across odd and even sizes, paddings 0-2, stride 2, bias or none, and a batch of two.
#[test]
fn cpu_convolutions_equal_the_generic_burn_conv() {
    use faceclip_core::layers::Conv2d;
    let (flex, nd) = (
        faceclip_core::device::parse_device("flex").unwrap(),
        faceclip_core::device::parse_device("ndarray").unwrap(),
    );
    // (batch, in, out, h, w, kernel, stride, padding, bias)
    let cases = [
        (2, 16, 24, 7, 9, 3, 1, 1, true), // Winograd, odd output in both axes
        (1, 32, 8, 8, 6, 3, 1, 1, false), // Winograd, even sizes, no bias
        (1, 16, 4, 5, 5, 3, 1, 0, true),  // Winograd, no padding (3x3 output)
        (1, 16, 4, 4, 3, 3, 1, 2, true),  // Winograd, padding 2 (wider than the input)
        (1, 4, 8, 9, 7, 3, 1, 1, true),   // few input channels: im2col
        (2, 16, 8, 9, 8, 3, 2, 1, true),  // stride 2: im2col
        (1, 3, 6, 32, 32, 16, 16, 0, true), // ViT patch embedding shape
        (1, 8, 5, 6, 7, 5, 1, 2, false),  // 5x5
    ];
    for (i, &(b, ci, co, h, w, k, s, p, bias)) in cases.iter().enumerate() {
        let x = pseudo(b * ci * h * w, 100 + i as u64);
        let wt = pseudo(co * ci * k * k, 200 + i as u64);
        let bs = pseudo(co, 300 + i as u64);
        let conv = |d: &Device| {
            let mut t = vec![("weight", vec![co, ci, k, k], wt.clone())];
            if bias {
                t.push(("bias", vec![co], bs.clone()));
            }
            Conv2d::load(&vb_with(t, d), ci, co, k, s, p, bias)
        };
        let xf = t(&x, [b, ci, h, w], &flex);
        let keep = xf.clone();
        let yf = conv(&flex).forward(xf);
        let yn = conv(&nd).forward(t(&x, [b, ci, h, w], &nd));
        assert_eq!(yf.dims(), yn.dims(), "case {i}");
        let yn: Vec<f64> = to_vec_f32(yn).iter().map(|&v| v as f64).collect();
        close(&to_vec_f32(yf), &yn, 2e-5);
        assert_eq!(to_vec_f32(keep), x, "case {i}: the input was modified");
    }
}
