//! `TransformerEncoderLayer` of GroundingDINO's `transformer_vanilla.py` (FaceT5's copy is the
//! same up to no-op dtype casts): a post-norm layer around `torch.nn.MultiheadAttention`.
//! The fusion encoder uses it as the text enhancer (`nhead/2` heads, FFN `ffn/2`, `q = k =
//! text + pos`, `v = text`) and, in FaceT5, as the image-side layer (see
//! [`super::transformer_vanilla`]).

use faceclip_core::burn::module::Param;
use faceclip_core::layers::{
    Activation, AttentionMask, LayerNorm, Linear, attention, merge_heads, split_heads,
};
use faceclip_core::{Tensor, VarBuilder};

/// `torch.nn.MultiheadAttention(d, heads)` without masks, on batch-first tensors: keys
/// `in_proj_weight` `[3d, d]`, `in_proj_bias` `[3d]`, `out_proj.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct MultiheadAttention {
    in_proj_weight: Param<Tensor<2>>,
    in_proj_bias: Param<Tensor<1>>,
    out_proj: Linear,
    embed_dim: usize,
    num_heads: usize,
}

impl MultiheadAttention {
    pub fn load(vb: &VarBuilder, embed_dim: usize, num_heads: usize) -> Self {
        Self {
            in_proj_weight: vb.tensor("in_proj_weight", [3 * embed_dim, embed_dim]),
            in_proj_bias: vb.tensor("in_proj_bias", [3 * embed_dim]),
            out_proj: Linear::load(&vb.pp("out_proj"), embed_dim, embed_dim, true),
            embed_dim,
            num_heads,
        }
    }

    /// Rows `which·d .. (which+1)·d` of the packed input projection (0 = q, 1 = k, 2 = v), as
    /// a core [`Linear`] (built per call: the packed parameter stays lazy in dry walks).
    fn in_proj(&self, which: usize) -> Linear {
        let d = self.embed_dim;
        Linear::from_tensors(
            self.in_proj_weight.val().narrow(0, which * d, d),
            Some(self.in_proj_bias.val().narrow(0, which * d, d)),
        )
    }

    /// `query`, `key` `[N, L, d]`, `value` `[N, L, d]` -> `[N, L, d]`: softmax attention over
    /// `L` independently for each of the `N` rows, scale `head_dim^-0.5`.
    pub fn forward(&self, query: Tensor<3>, key: Tensor<3>, value: Tensor<3>) -> Tensor<3> {
        let h = self.num_heads;
        let q = split_heads(self.in_proj(0).forward(query), h);
        let k = split_heads(self.in_proj(1).forward(key), h);
        let v = split_heads(self.in_proj(2).forward(value), h);
        let out = attention(q, k, v, None, AttentionMask::None, None);
        self.out_proj.forward(merge_heads(out))
    }
}

/// `TransformerEncoderLayer(d_model, nhead, dim_feedforward, activation="relu")`, post-norm:
/// keys `self_attn.*`, `linear1`, `linear2`, `norm1`, `norm2` (LayerNorm eps 1e-5).
#[derive(Debug, Clone)]
pub struct TransformerEncoderLayer {
    self_attn: MultiheadAttention,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    activation: Activation,
}

impl TransformerEncoderLayer {
    /// Loads under `vb` (upstream `encoder.text_layers.{i}` or, in FaceT5, `encoder.layers.{i}`).
    pub fn load(
        vb: &VarBuilder,
        d_model: usize,
        nhead: usize,
        dim_feedforward: usize,
        activation: Activation,
    ) -> Self {
        Self {
            self_attn: MultiheadAttention::load(&vb.pp("self_attn"), d_model, nhead),
            linear1: Linear::load(&vb.pp("linear1"), d_model, dim_feedforward, true),
            linear2: Linear::load(&vb.pp("linear2"), dim_feedforward, d_model, true),
            norm1: LayerNorm::load(&vb.pp("norm1"), d_model, 1e-5),
            norm2: LayerNorm::load(&vb.pp("norm2"), d_model, 1e-5),
            activation,
        }
    }

    /// `src` `[N, L, d]` with attention over `L` per row, `pos` (broadcastable to `src`)
    /// added to the queries and keys only -> `[N, L, d]`.
    ///
    /// Upstream runs it sequence-first on `(L, N, d)`; this takes the batch-first layout of
    /// the same tensor. No attention mask: the `src_mask` / `src_key_padding_mask` uses are
    /// commented out upstream.
    pub fn forward(&self, src: Tensor<3>, pos: Option<Tensor<3>>) -> Tensor<3> {
        let qk = match pos {
            Some(p) => src.clone() + p,
            None => src.clone(),
        };
        let src2 = self.self_attn.forward(qk.clone(), qk, src.clone());
        let src = self.norm1.forward(src + src2);
        let src2 = self
            .linear2
            .forward(self.activation.forward(self.linear1.forward(src.clone())));
        self.norm2.forward(src + src2)
    }
}
