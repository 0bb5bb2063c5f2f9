//! diffusers `transformer_2d.py`: `Transformer2DModel` on continuous (image) inputs.

use faceclip_core::layers::{Conv2d, GroupNorm, Linear};
use faceclip_core::{Tensor, VarBuilder};

use crate::attention::BasicTransformerBlock;

/// `proj_in` / `proj_out`: a Linear (`use_linear_projection`, SD 2.x / XL) or a 1x1 conv (SD 1.x).
#[derive(Debug, Clone)]
pub enum Projection {
    Linear(Linear),
    Conv(Conv2d),
}

impl Projection {
    fn load(vb: &VarBuilder, linear: bool, in_dim: usize, out_dim: usize) -> Self {
        if linear {
            Projection::Linear(Linear::load(vb, in_dim, out_dim, true))
        } else {
            Projection::Conv(Conv2d::load(vb, in_dim, out_dim, 1, 1, 0, true))
        }
    }
}

/// diffusers `Transformer2DModel` (continuous input): GroupNorm (eps 1e-6) -> `proj_in` ->
/// `transformer_blocks` over the `H·W` tokens -> `proj_out`, plus the input.
#[derive(Debug, Clone)]
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Projection,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Projection,
}

impl Transformer2DModel {
    /// `heads` x `dim_head` attention on `in_channels` wide features (SD/XL have
    /// `heads·dim_head = in_channels`), `num_layers` blocks.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: &VarBuilder,
        heads: usize,
        dim_head: usize,
        in_channels: usize,
        num_layers: usize,
        cross_attention_dim: usize,
        norm_num_groups: usize,
        use_linear_projection: bool,
        only_cross_attention: bool,
    ) -> Self {
        let inner = heads * dim_head;
        Self {
            norm: GroupNorm::load(&vb.pp("norm"), norm_num_groups, in_channels, 1e-6),
            proj_in: Projection::load(&vb.pp("proj_in"), use_linear_projection, in_channels, inner),
            transformer_blocks: (0..num_layers)
                .map(|i| {
                    BasicTransformerBlock::load(
                        &vb.pp("transformer_blocks").pp(i),
                        inner,
                        heads,
                        dim_head,
                        cross_attention_dim,
                        only_cross_attention,
                    )
                })
                .collect(),
            proj_out: Projection::load(
                &vb.pp("proj_out"),
                use_linear_projection,
                inner,
                in_channels,
            ),
        }
    }

    /// `[B, C, H, W]` with `context` `[B, Lk, cross_attention_dim]` -> `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let normed = self.norm.forward(x.clone());
        // Tokens `[B, H·W, C]`, channels contiguous (one copy, as diffusers' permute+reshape).
        let mut t = match &self.proj_in {
            Projection::Linear(l) => l.forward(to_tokens(normed)),
            Projection::Conv(conv) => to_tokens(conv.forward(normed)),
        };
        for block in &self.transformer_blocks {
            t = block.forward(t, context);
        }
        let out = match &self.proj_out {
            Projection::Linear(l) => from_tokens(l.forward(t), h, w),
            Projection::Conv(conv) => conv.forward(from_tokens(t, h, w)),
        };
        debug_assert_eq!(out.dims(), [b, c, h, w]);
        out + x
    }
}

/// `[B, C, H, W]` -> `[B, H·W, C]`.
fn to_tokens(x: Tensor<4>) -> Tensor<3> {
    let [b, c, h, w] = x.dims();
    x.permute([0, 2, 3, 1]).reshape([b, h * w, c])
}

/// `[B, H·W, C]` -> `[B, C, H, W]`.
fn from_tokens(x: Tensor<3>, h: usize, w: usize) -> Tensor<4> {
    let [b, _, c] = x.dims();
    x.reshape([b, h, w, c]).permute([0, 3, 1, 2])
}
