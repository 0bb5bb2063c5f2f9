//! GroundingDINO's `DeformableTransformerEncoderLayer` (`transformer.py`): the FaceCLIP
//! fusion encoder's image-side layer, deformable self-attention over the 12×12 face grid.

use faceclip_core::layers::{Activation, LayerNorm, Linear};
use faceclip_core::{Tensor, VarBuilder};

use super::ms_deform_attn::MultiScaleDeformableAttention;

/// `DeformableTransformerEncoderLayer(d_model, d_ffn, activation, n_levels=1, n_heads,
/// n_points)`, post-norm: keys `self_attn.*`, `norm1`, `linear1`, `linear2`, `norm2`.
#[derive(Debug, Clone)]
pub struct DeformableTransformerEncoderLayer {
    self_attn: MultiScaleDeformableAttention,
    norm1: LayerNorm,
    linear1: Linear,
    linear2: Linear,
    norm2: LayerNorm,
    activation: Activation,
}

impl DeformableTransformerEncoderLayer {
    /// Loads under `vb` (upstream `encoder.layers.{i}`).
    pub fn load(
        vb: &VarBuilder,
        d_model: usize,
        d_ffn: usize,
        activation: Activation,
        n_heads: usize,
        n_points: usize,
    ) -> Self {
        Self {
            self_attn: MultiScaleDeformableAttention::load(
                &vb.pp("self_attn"),
                d_model,
                n_heads,
                n_points,
            ),
            norm1: LayerNorm::load(&vb.pp("norm1"), d_model, 1e-5),
            linear1: Linear::load(&vb.pp("linear1"), d_model, d_ffn, true),
            linear2: Linear::load(&vb.pp("linear2"), d_ffn, d_model, true),
            norm2: LayerNorm::load(&vb.pp("norm2"), d_model, 1e-5),
            activation,
        }
    }

    /// `src` `[B, H·W, D]` (face tokens), `pos` `[B or 1, H·W, D]` (added to the query
    /// only), `reference_points` `[1 or B, H·W, 2]`, `spatial` = `(H, W)` -> `[B, H·W, D]`.
    pub fn forward(
        &self,
        src: Tensor<3>,
        pos: Tensor<3>,
        reference_points: Tensor<3>,
        spatial: (usize, usize),
    ) -> Tensor<3> {
        let src2 =
            self.self_attn
                .forward(src.clone() + pos, src.clone(), reference_points, spatial);
        let src = self.norm1.forward(src + src2);
        let src2 = self
            .linear2
            .forward(self.activation.forward(self.linear1.forward(src.clone())));
        self.norm2.forward(src + src2)
    }

    /// `self_attn.forward` alone (the `deform_attn` intermediate of the fixtures).
    pub fn attention_only(
        &self,
        src: Tensor<3>,
        pos: Tensor<3>,
        reference_points: Tensor<3>,
        spatial: (usize, usize),
    ) -> Tensor<3> {
        self.self_attn
            .forward(src.clone() + pos, src, reference_points, spatial)
    }
}
