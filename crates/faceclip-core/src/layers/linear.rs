use burn::module::Param;
use burn::tensor::Tensor;

use crate::var_builder::VarBuilder;

/// `torch.nn.Linear`: `weight` `[out, in]`, optional `bias` `[out]`; maps `[..., in]` to
/// `[..., out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    /// Loads `weight` (and `bias` when `bias` is true) under `vb`.
    pub fn load(vb: &VarBuilder, in_features: usize, out_features: usize, bias: bool) -> Self {
        Self {
            weight: vb.tensor("weight", [out_features, in_features]),
            bias: bias.then(|| vb.tensor("bias", [out_features])),
        }
    }

    /// `y = x Wᵀ + b` over the last axis.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        burn::tensor::module::linear(
            x,
            self.weight.val().transpose(),
            self.bias.as_ref().map(|b| b.val()),
        )
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.shape().as_slice()[0]
    }
}
