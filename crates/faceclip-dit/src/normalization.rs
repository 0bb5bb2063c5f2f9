//! diffusers' adaptive LayerNorms (`normalization.py`) as FLUX uses them: `AdaLayerNormZero`
//! (double blocks), `AdaLayerNormZeroSingle` (single blocks) and `AdaLayerNormContinuous`
//! (`norm_out`). Each is `linear(silu(temb))` chunked into modulation vectors around a
//! LayerNorm without affine parameters (eps 1e-6).

use faceclip_core::layers::{Activation, LayerNorm, Linear};
use faceclip_core::{Tensor, VarBuilder};

const EPS: f64 = 1e-6;

/// `x · (1 + scale) + shift` with `scale`, `shift` `[B, dim]` broadcast over tokens.
pub(crate) fn modulate(x: Tensor<3>, scale: Tensor<2>, shift: Tensor<2>) -> Tensor<3> {
    x * (scale.unsqueeze_dim::<3>(1) + 1.0) + shift.unsqueeze_dim::<3>(1)
}

/// Splits `emb` `[B, n·dim]` into `n` chunks `[B, dim]` (`torch.chunk(n, dim=1)`).
fn chunks(emb: Tensor<2>, n: usize) -> Vec<Tensor<2>> {
    emb.chunk(n, 1)
}

/// The modulation `AdaLayerNormZero` returns besides the normalised input: the attention gate
/// and the feed-forward shift, scale and gate, each `[B, dim]`.
#[derive(Debug, Clone)]
pub struct ZeroModulation {
    pub gate_msa: Tensor<2>,
    pub shift_mlp: Tensor<2>,
    pub scale_mlp: Tensor<2>,
    pub gate_mlp: Tensor<2>,
}

/// diffusers' `AdaLayerNormZero(dim)` (`norm_type="layer_norm"`): `linear` `[6·dim, dim]`;
/// chunks `(shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp)`.
#[derive(Debug, Clone)]
pub struct AdaLayerNormZero {
    pub linear: Linear,
    pub norm: LayerNorm,
}

impl AdaLayerNormZero {
    pub fn load(vb: &VarBuilder, dim: usize) -> Self {
        Self {
            linear: Linear::load(&vb.pp("linear"), dim, 6 * dim, true),
            norm: LayerNorm::load_opt(&vb.pp("norm"), dim, EPS, false, false),
        }
    }

    /// `x` `[B, L, dim]`, `temb` `[B, dim]` -> (`norm(x)·(1+scale_msa)+shift_msa`, the rest).
    pub fn forward(&self, x: Tensor<3>, temb: Tensor<2>) -> (Tensor<3>, ZeroModulation) {
        let emb = self.linear.forward(Activation::Silu.forward(temb));
        let mut c = chunks(emb, 6).into_iter();
        let mut next = || c.next().expect("chunk(6) of a 6·dim axis gives 6 chunks");
        let (shift_msa, scale_msa, gate_msa) = (next(), next(), next());
        let (shift_mlp, scale_mlp, gate_mlp) = (next(), next(), next());
        let x = modulate(self.norm.forward(x), scale_msa, shift_msa);
        (
            x,
            ZeroModulation {
                gate_msa,
                shift_mlp,
                scale_mlp,
                gate_mlp,
            },
        )
    }
}

/// diffusers' `AdaLayerNormZeroSingle(dim)`: `linear` `[3·dim, dim]`; chunks
/// `(shift_msa, scale_msa, gate_msa)`.
#[derive(Debug, Clone)]
pub struct AdaLayerNormZeroSingle {
    pub linear: Linear,
    pub norm: LayerNorm,
}

impl AdaLayerNormZeroSingle {
    pub fn load(vb: &VarBuilder, dim: usize) -> Self {
        Self {
            linear: Linear::load(&vb.pp("linear"), dim, 3 * dim, true),
            norm: LayerNorm::load_opt(&vb.pp("norm"), dim, EPS, false, false),
        }
    }

    /// `x` `[B, L, dim]`, `temb` `[B, dim]` -> (`norm(x)·(1+scale)+shift`, `gate` `[B, dim]`).
    pub fn forward(&self, x: Tensor<3>, temb: Tensor<2>) -> (Tensor<3>, Tensor<2>) {
        let emb = self.linear.forward(Activation::Silu.forward(temb));
        let mut c = chunks(emb, 3).into_iter();
        let mut next = || c.next().expect("chunk(3) of a 3·dim axis gives 3 chunks");
        let (shift, scale, gate) = (next(), next(), next());
        (modulate(self.norm.forward(x), scale, shift), gate)
    }
}

/// diffusers' `AdaLayerNormContinuous(dim, cond_dim, elementwise_affine=False, eps=1e-6)`:
/// `linear` `[2·dim, cond_dim]`; chunks **`(scale, shift)`**, scale first.
#[derive(Debug, Clone)]
pub struct AdaLayerNormContinuous {
    pub linear: Linear,
    pub norm: LayerNorm,
}

impl AdaLayerNormContinuous {
    pub fn load(vb: &VarBuilder, dim: usize, conditioning_dim: usize) -> Self {
        Self {
            linear: Linear::load(&vb.pp("linear"), conditioning_dim, 2 * dim, true),
            norm: LayerNorm::load_opt(&vb.pp("norm"), dim, EPS, false, false),
        }
    }

    /// `x` `[B, L, dim]`, `conditioning` `[B, cond_dim]` -> `norm(x)·(1+scale)+shift`.
    pub fn forward(&self, x: Tensor<3>, conditioning: Tensor<2>) -> Tensor<3> {
        let emb = self.linear.forward(Activation::Silu.forward(conditioning));
        let mut c = chunks(emb, 2).into_iter();
        let mut next = || c.next().expect("chunk(2) of a 2·dim axis gives 2 chunks");
        let (scale, shift) = (next(), next());
        modulate(self.norm.forward(x), scale, shift)
    }
}
