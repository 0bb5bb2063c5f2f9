//! GroundingDINO's `BiAttentionBlock` and its `BiMultiHeadAttention` (`fuse_modules.py`):
//! one bi-directional attention between the face patch tokens (`v`) and the text tokens
//! (`l`), sharing a single logit matrix.

use faceclip_core::burn::module::Param;
use faceclip_core::burn::tensor::activation::softmax;
use faceclip_core::layers::{LayerNorm, Linear, merge_heads, split_heads};
use faceclip_core::{Tensor, VarBuilder};

use super::BatchMode;

/// `BiMultiHeadAttention(v_dim, l_dim, embed_dim, num_heads)`: keys `v_proj`, `l_proj`,
/// `values_v_proj`, `values_l_proj` (`[embed, v_dim|l_dim]`), `out_v_proj`, `out_l_proj`
/// (`[v_dim|l_dim, embed]`), all with bias.
#[derive(Debug, Clone)]
pub struct BiMultiHeadAttention {
    v_proj: Linear,
    l_proj: Linear,
    values_v_proj: Linear,
    values_l_proj: Linear,
    out_v_proj: Linear,
    out_l_proj: Linear,
    num_heads: usize,
    scale: f64,
}

impl BiMultiHeadAttention {
    /// Loads under `vb` (upstream `...attn`). `embed_dim` must be a multiple of `num_heads`
    /// (checked by the caller's config).
    pub fn load(
        vb: &VarBuilder,
        v_dim: usize,
        l_dim: usize,
        embed_dim: usize,
        num_heads: usize,
    ) -> Self {
        let head_dim = embed_dim / num_heads;
        Self {
            v_proj: Linear::load(&vb.pp("v_proj"), v_dim, embed_dim, true),
            l_proj: Linear::load(&vb.pp("l_proj"), l_dim, embed_dim, true),
            values_v_proj: Linear::load(&vb.pp("values_v_proj"), v_dim, embed_dim, true),
            values_l_proj: Linear::load(&vb.pp("values_l_proj"), l_dim, embed_dim, true),
            out_v_proj: Linear::load(&vb.pp("out_v_proj"), embed_dim, v_dim, true),
            out_l_proj: Linear::load(&vb.pp("out_l_proj"), embed_dim, l_dim, true),
            num_heads,
            scale: (head_dim as f64).powf(-0.5),
        }
    }

    /// `v` `[B, Nv, v_dim]`, `l` `[B, Nl, l_dim]` -> `(Δv [B, Nv, v_dim], Δl [B, Nl, l_dim])`.
    ///
    /// Upstream's padding masks (`attention_mask_v` = the all-false `key_padding_mask`,
    /// `attention_mask_l` = `~ones`) only ever fill nothing, so they are not taken.
    pub fn forward(&self, v: Tensor<3>, l: Tensor<3>, mode: BatchMode) -> (Tensor<3>, Tensor<3>) {
        // The scale multiplies the projection output (after its bias), as upstream.
        let query = split_heads(self.v_proj.forward(v.clone()) * self.scale, self.num_heads);
        let key = split_heads(self.l_proj.forward(l.clone()), self.num_heads);
        let value_v = split_heads(self.values_v_proj.forward(v), self.num_heads);
        let value_l = split_heads(self.values_l_proj.forward(l), self.num_heads);

        // [B, H, Nv, Nl]: the one logit matrix both directions share.
        let [b, h, nv, dh] = query.dims();
        let nl = key.dims()[2];
        // q·kᵀ, then both directions' p·v.
        faceclip_core::flops::add_matmul(b * h, nv, dh, nl);
        faceclip_core::flops::add_matmul(b * h, nv, nl, dh);
        faceclip_core::flops::add_matmul(b * h, nl, nv, dh);
        let logits = query.matmul(key.swap_dims(2, 3));
        let (probs_v, probs_l) = stable_softmax_2d(logits, mode);

        let out_v = merge_heads(probs_v.matmul(value_l));
        let out_l = merge_heads(probs_l.matmul(value_v));
        (
            self.out_v_proj.forward(out_v),
            self.out_l_proj.forward(out_l),
        )
    }
}

/// The bi-attention's own softmax (`stable_softmax_2d`, `clamp_min_for_underflow`,
/// `clamp_max_for_overflow` all on upstream), the one place it lives.
///
/// From the logits `[B, H, Nv, Nl]`:
/// - the face stream: subtract the **global** maximum (over batch, heads and both
///   positions; with [`BatchMode::PerSample`] over each sample, what a B=1 call sees),
///   clamp to ±50000, softmax over the text positions;
/// - the text stream: the transpose of those shifted, clamped logits, minus its per-row
///   maximum, clamped again, softmax over the face positions.
///
/// Returns `(probs_v [B, H, Nv, Nl], probs_l [B, H, Nl, Nv])`.
fn stable_softmax_2d(logits: Tensor<4>, mode: BatchMode) -> (Tensor<4>, Tensor<4>) {
    const LIMIT: f32 = 50_000.0;
    let dims = logits.dims();
    let max = match mode {
        BatchMode::Batched => logits.clone().max().reshape([1, 1, 1, 1]),
        BatchMode::PerSample => logits.clone().max_dims(&[1, 2, 3]),
    };
    let shifted = (logits - max.expand(dims)).clamp(-LIMIT, LIMIT);
    let transposed = shifted.clone().swap_dims(2, 3);
    let row_max = transposed.clone().max_dim(3);
    let shifted_l = (transposed - row_max).clamp(-LIMIT, LIMIT);
    (softmax(shifted, 3), softmax(shifted_l, 3))
}

/// `BiAttentionBlock(v_dim, l_dim, embed_dim, num_heads)`: keys `layer_norm_v`,
/// `layer_norm_l`, `attn.*`, `gamma_v` `[v_dim]`, `gamma_l` `[l_dim]`.
///
/// Pre-norm with the residual added to the **normalised** values:
/// `v = LN(v) + γ_v·Δv`, `l = LN(l) + γ_l·Δl` (drop-path is the identity in eval).
#[derive(Debug, Clone)]
pub struct BiAttentionBlock {
    layer_norm_v: LayerNorm,
    layer_norm_l: LayerNorm,
    attn: BiMultiHeadAttention,
    gamma_v: Param<Tensor<1>>,
    gamma_l: Param<Tensor<1>>,
}

impl BiAttentionBlock {
    /// Loads under `vb` (upstream `encoder.fusion_layers.{i}`).
    pub fn load(
        vb: &VarBuilder,
        v_dim: usize,
        l_dim: usize,
        embed_dim: usize,
        num_heads: usize,
    ) -> Self {
        Self {
            layer_norm_v: LayerNorm::load(&vb.pp("layer_norm_v"), v_dim, 1e-5),
            layer_norm_l: LayerNorm::load(&vb.pp("layer_norm_l"), l_dim, 1e-5),
            attn: BiMultiHeadAttention::load(&vb.pp("attn"), v_dim, l_dim, embed_dim, num_heads),
            gamma_v: vb.tensor("gamma_v", [v_dim]),
            gamma_l: vb.tensor("gamma_l", [l_dim]),
        }
    }

    /// `v` `[B, Nv, v_dim]`, `l` `[B, Nl, l_dim]` -> the updated `(v, l)`.
    pub fn forward(&self, v: Tensor<3>, l: Tensor<3>, mode: BatchMode) -> (Tensor<3>, Tensor<3>) {
        let v = self.layer_norm_v.forward(v);
        let l = self.layer_norm_l.forward(l);
        let (delta_v, delta_l) = self.attn.forward(v.clone(), l.clone(), mode);
        let gamma_v = self.gamma_v.val().reshape([1, 1, -1]);
        let gamma_l = self.gamma_l.val().reshape([1, 1, -1]);
        (v + delta_v * gamma_v, l + delta_l * gamma_l)
    }
}
