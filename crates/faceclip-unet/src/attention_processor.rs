//! diffusers `attention_processor.py`: `Attention` as `AttnProcessor2_0` runs it, in the two
//! forms this crate needs (the spatial transformer's self/cross attention, and the VAE
//! mid-block's single-head attention with its own GroupNorm and residual).

use faceclip_core::layers::{
    AttentionMask, GroupNorm, Linear, attention, merge_heads, split_heads,
};
use faceclip_core::{Tensor, VarBuilder};

/// diffusers `Attention`: `to_q`, `to_k`, `to_v`, `to_out.0` (+ optional `group_norm` and
/// residual connection, as the VAE uses it). Scale `1/sqrt(dim_head)`.
#[derive(Debug, Clone)]
pub struct Attention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub group_norm: Option<GroupNorm>,
    heads: usize,
    residual_connection: bool,
    rescale_output_factor: f64,
}

impl Attention {
    /// A transformer-block attention: `query_dim` wide queries, keys/values from
    /// `cross_attention_dim` wide context (or the queries themselves), no q/k/v bias,
    /// biased output projection.
    pub fn load(
        vb: &VarBuilder,
        query_dim: usize,
        cross_attention_dim: Option<usize>,
        heads: usize,
        dim_head: usize,
    ) -> Self {
        let inner = heads * dim_head;
        let kv_dim = cross_attention_dim.unwrap_or(query_dim);
        Self {
            to_q: Linear::load(&vb.pp("to_q"), query_dim, inner, false),
            to_k: Linear::load(&vb.pp("to_k"), kv_dim, inner, false),
            to_v: Linear::load(&vb.pp("to_v"), kv_dim, inner, false),
            to_out: Linear::load(&vb.pp("to_out").pp(0), inner, query_dim, true),
            group_norm: None,
            heads,
            residual_connection: false,
            rescale_output_factor: 1.0,
        }
    }

    /// The VAE mid-block attention (`UNetMidBlock2D`): `heads = channels / attention_head_dim`
    /// (1 in every diffusers VAE), biased q/k/v, a `group_norm` before, the input added after,
    /// divided by `rescale_output_factor`.
    pub fn load_spatial(
        vb: &VarBuilder,
        channels: usize,
        attention_head_dim: usize,
        groups: usize,
        eps: f64,
        rescale_output_factor: f64,
    ) -> Self {
        let heads = (channels / attention_head_dim.max(1)).max(1);
        let inner = heads * attention_head_dim;
        Self {
            to_q: Linear::load(&vb.pp("to_q"), channels, inner, true),
            to_k: Linear::load(&vb.pp("to_k"), channels, inner, true),
            to_v: Linear::load(&vb.pp("to_v"), channels, inner, true),
            to_out: Linear::load(&vb.pp("to_out").pp(0), inner, channels, true),
            group_norm: Some(GroupNorm::load(&vb.pp("group_norm"), groups, channels, eps)),
            heads,
            residual_connection: true,
            rescale_output_factor,
        }
    }

    /// `[B, L, query_dim]` attending over `context` `[B, Lk, cross_dim]` (itself when `None`)
    /// -> `[B, L, query_dim]`. No group norm or residual here (see [`Self::forward_spatial`]).
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let q = self.to_q.forward(x.clone());
        let ctx = context.cloned().unwrap_or(x);
        let k = self.to_k.forward(ctx.clone());
        let v = self.to_v.forward(ctx);
        let o = attention(
            split_heads(q, self.heads),
            split_heads(k, self.heads),
            split_heads(v, self.heads),
            None,
            AttentionMask::None,
            None,
        );
        self.to_out.forward(merge_heads(o))
    }

    /// `[B, C, H, W]` -> `[B, C, H, W]`: group norm, self-attention over the `H·W` positions,
    /// output projection, plus the input (when `residual_connection`), / rescale factor.
    pub fn forward_spatial(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let normed = match &self.group_norm {
            Some(g) => g.forward(x.clone()),
            None => x.clone(),
        };
        let tokens = normed.reshape([b, c, h * w]).swap_dims(1, 2);
        let out = self.forward(tokens, None);
        let c_out = out.dims()[2];
        let out = out.swap_dims(1, 2).reshape([b, c_out, h, w]);
        let out = if self.residual_connection {
            out + x
        } else {
            out
        };
        if self.rescale_output_factor == 1.0 {
            out
        } else {
            out / self.rescale_output_factor
        }
    }
}
