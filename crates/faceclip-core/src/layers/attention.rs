//! The one multi-head scaled-dot-product attention, used by every model.

use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor};

/// What restricts which keys a query may see.
#[derive(Debug, Clone, Default)]
pub enum AttentionMask {
    /// Every query sees every key.
    #[default]
    None,
    /// Query `i` sees keys `0..=i` (CLIP's text tower).
    Causal,
    /// `true` marks a key a query must not see; `[B or 1, H or 1, Lq, Lk]`.
    Bool(Tensor<4, Bool>),
}

/// Scaled-dot-product attention on `[B, H, L, Dh]` tensors:
/// `softmax(q·kᵀ·scale + bias, masked) · v`, with `scale` defaulting to `1/sqrt(Dh)`.
/// `bias` (`[B or 1, H or 1, Lq, Lk]`) is added before the softmax (T5's relative
/// position bias). Returns `[B, H, Lq, Dv]`.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Option<Tensor<4>>,
    mask: AttentionMask,
    scale: Option<f64>,
) -> Tensor<4> {
    let [b, h, lq, dk] = q.dims();
    let lk = k.dims()[2];
    // q·kᵀ and p·v (causal attention counts the whole square, as the reference computes it).
    crate::flops::add_matmul(b * h, lq, dk, lk);
    crate::flops::add_matmul(b * h, lq, lk, v.dims()[3]);
    // The kernel reads every operand as f32 on the host; anything else takes burn's path.
    if super::host::applies(&q)
        && super::host::applies(&k)
        && super::host::applies(&v)
        && bias.as_ref().is_none_or(super::host::applies)
        && let Some(kernel) = super::host_attention::kernel()
    {
        return host(kernel, [q, k, v], bias, mask, scale);
    }
    let (mask, is_causal) = match mask {
        AttentionMask::None => (None, false),
        AttentionMask::Causal => (None, true),
        AttentionMask::Bool(m) => (Some(m.expand([b, h, lq, lk])), false),
    };
    let bias = bias.map(|t| t.expand([b, h, lq, lk]));
    burn::tensor::module::attention(
        q,
        k,
        v,
        mask,
        bias,
        AttentionModuleOptions {
            scale,
            softcap: None,
            is_causal,
        },
    )
}

/// The tiled CPU kernel [`attention`] runs on flex in f32 on this CPU (`avx2+fma 6x16`), or
/// `None` where it takes burn's attention (no AVX2, not x86-64, `FACECLIP_CPU_KERNEL=off`).
pub fn attention_cpu_kernel() -> Option<&'static str> {
    super::host_attention::kernel().map(super::host_attention::name)
}

/// [`attention`] by the tiled CPU kernel (flex, f32): the bias and a boolean mask are read in
/// place, broadcast over batch and heads by zero steps.
fn host(
    kernel: crate::packed::CpuKernel,
    [q, k, v]: [Tensor<4>; 3],
    bias: Option<Tensor<4>>,
    mask: AttentionMask,
    scale: Option<f64>,
) -> Tensor<4> {
    use super::host_attention::{Bias, Dims, Masking};
    let [b, h, lq, d] = q.dims();
    let [_, _, lk, dv] = v.dims();
    let device = q.device();
    // The steps of a `[B or 1, H or 1, Lq, Lk]` operand's leading axes (0 where broadcast).
    let steps = |dims: [usize; 4]| {
        let tile = lq * lk;
        (
            if dims[0] == 1 { 0 } else { dims[1] * tile },
            if dims[1] == 1 { 0 } else { tile },
        )
    };
    // A broadcast along Lq or Lk (never made by the models) is expanded to the full shape.
    let full = |dims: [usize; 4]| dims[2] == lq && dims[3] == lk;
    let bias = bias.map(|t| {
        let t = if full(t.dims()) {
            t
        } else {
            t.expand([b, h, lq, lk])
        };
        let dims = t.dims();
        (super::host::host_vec(t), steps(dims))
    });
    let mask_data = match &mask {
        AttentionMask::Bool(m) => {
            let m = if full(m.dims()) {
                m.clone()
            } else {
                m.clone().expand([b, h, lq, lk])
            };
            let dims = m.dims();
            Some((
                m.into_data().iter::<bool>().collect::<Vec<bool>>(),
                steps(dims),
            ))
        }
        _ => None,
    };
    let masking = match (&mask, &mask_data) {
        (AttentionMask::Causal, _) => Masking::Causal,
        (_, Some((m, (batch_step, head_step)))) => Masking::Bool {
            mask: m,
            batch_step: *batch_step,
            head_step: *head_step,
        },
        _ => Masking::None,
    };
    let out = super::host_attention::attention(
        kernel,
        &super::host::host_vec(q),
        &super::host::host_vec(k),
        &super::host::host_vec(v),
        Dims {
            b,
            h,
            lq,
            lk,
            d,
            dv,
        },
        bias.as_ref().map(|(data, (batch_step, head_step))| Bias {
            data,
            batch_step: *batch_step,
            head_step: *head_step,
        }),
        masking,
        scale.unwrap_or(1.0 / (d as f64).sqrt()) as f32,
    );
    Tensor::from_data(burn::tensor::TensorData::new(out, [b, h, lq, dv]), &device)
}

/// `[B, L, H·Dh]` -> `[B, H, L, Dh]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, l, d] = x.dims();
    x.reshape([b, l, heads, d / heads]).swap_dims(1, 2)
}

/// `[B, H, L, Dh]` -> `[B, L, H·Dh]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, l, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, l, h * d])
}

/// A `[1, 1, L, L]` mask, `true` above the diagonal (the keys a causal query must not see).
pub fn causal_mask(len: usize, device: &burn::tensor::Device) -> Tensor<4, Bool> {
    let ones = Tensor::<2, burn::tensor::Int>::ones([len, len], device);
    ones.triu(1).bool().reshape([1, 1, len, len])
}
