//! diffusers `attention.py`: `BasicTransformerBlock` (layer-norm variant), `FeedForward`
//! and `GEGLU`.

use faceclip_core::layers::{Activation, LayerNorm, Linear};
use faceclip_core::{Tensor, VarBuilder};

use crate::attention_processor::Attention;

/// diffusers `GEGLU`: `proj` to `2·dim_out`, split into `(h, gate)`, `h · gelu(gate)` (erf).
#[derive(Debug, Clone)]
pub struct Geglu {
    pub proj: Linear,
}

impl Geglu {
    pub fn load(vb: &VarBuilder, dim_in: usize, dim_out: usize) -> Self {
        Self {
            proj: Linear::load(&vb.pp("proj"), dim_in, dim_out * 2, true),
        }
    }

    /// `[B, L, dim_in]` -> `[B, L, dim_out]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        Activation::Gelu.forward_gated_halves(self.proj.forward(x))
    }
}

/// diffusers `FeedForward(activation_fn="geglu")`: `net.0` = GEGLU(dim, 4·dim),
/// `net.2` = Linear(4·dim, dim) (`net.1` is dropout).
#[derive(Debug, Clone)]
pub struct FeedForward {
    pub geglu: Geglu,
    pub out: Linear,
}

impl FeedForward {
    pub fn load(vb: &VarBuilder, dim: usize, mult: usize) -> Self {
        let inner = dim * mult;
        Self {
            geglu: Geglu::load(&vb.pp("net").pp(0), dim, inner),
            out: Linear::load(&vb.pp("net").pp(2), inner, dim, true),
        }
    }

    /// `[B, L, dim]` -> `[B, L, dim]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.out.forward(self.geglu.forward(x))
    }
}

/// diffusers `BasicTransformerBlock` with `norm_type="layer_norm"` (eps 1e-5, affine):
/// self-attention (`attn1`, over the context instead when `only_cross_attention`),
/// cross-attention over the context (`attn2`), GEGLU feed-forward; pre-norm, residual.
#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
    only_cross_attention: bool,
}

impl BasicTransformerBlock {
    pub fn load(
        vb: &VarBuilder,
        dim: usize,
        heads: usize,
        dim_head: usize,
        cross_attention_dim: usize,
        only_cross_attention: bool,
    ) -> Self {
        let eps = 1e-5;
        Self {
            norm1: LayerNorm::load(&vb.pp("norm1"), dim, eps),
            attn1: Attention::load(
                &vb.pp("attn1"),
                dim,
                only_cross_attention.then_some(cross_attention_dim),
                heads,
                dim_head,
            ),
            norm2: LayerNorm::load(&vb.pp("norm2"), dim, eps),
            attn2: Attention::load(
                &vb.pp("attn2"),
                dim,
                Some(cross_attention_dim),
                heads,
                dim_head,
            ),
            norm3: LayerNorm::load(&vb.pp("norm3"), dim, eps),
            ff: FeedForward::load(&vb.pp("ff"), dim, 4),
            only_cross_attention,
        }
    }

    /// `[B, L, dim]` with `context` `[B, Lk, cross_attention_dim]` -> `[B, L, dim]`.
    pub fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Tensor<3> {
        let ctx1 = self.only_cross_attention.then_some(context);
        let x = self.attn1.forward(self.norm1.forward(x.clone()), ctx1) + x;
        let x = self
            .attn2
            .forward(self.norm2.forward(x.clone()), Some(context))
            + x;
        self.ff.forward(self.norm3.forward(x.clone())) + x
    }
}
