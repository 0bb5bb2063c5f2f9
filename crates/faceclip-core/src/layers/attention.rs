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
