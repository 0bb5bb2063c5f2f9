//! The one set of normalisations: LayerNorm, GroupNorm, RMSNorm and eval-mode BatchNorm.

use burn::module::Param;
use burn::tensor::Tensor;

use super::Activation;
use crate::var_builder::VarBuilder;

/// `torch.nn.LayerNorm` over the last axis: `weight`, `bias` `[dim]` (either may be absent,
/// as in diffusers' `elementwise_affine=False`).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Option<Param<Tensor<1>>>,
    pub bias: Option<Param<Tensor<1>>>,
    eps: f64,
}

impl LayerNorm {
    /// With affine `weight` and `bias`.
    pub fn load(vb: &VarBuilder, dim: usize, eps: f64) -> Self {
        Self::load_opt(vb, dim, eps, true, true)
    }

    /// With the affine parameters present or not.
    pub fn load_opt(vb: &VarBuilder, dim: usize, eps: f64, weight: bool, bias: bool) -> Self {
        Self {
            weight: weight.then(|| vb.tensor("weight", [dim])),
            bias: bias.then(|| vb.tensor("bias", [dim])),
            eps,
        }
    }

    /// Normalises `[..., dim]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let bias = self.bias.as_ref().map(|b| b.val());
        match &self.weight {
            Some(w) => burn::tensor::module::layer_norm(x, w.val(), bias, self.eps),
            // No affine weight (diffusers' `elementwise_affine=False`): normalise directly
            // rather than allocating a tensor of ones on every call.
            None => {
                let centered = x.clone() - x.mean_dim(D - 1);
                let var = centered.clone().square().mean_dim(D - 1);
                let y = centered / (var + self.eps).sqrt();
                match bias {
                    Some(b) => y + b.unsqueeze::<D>(),
                    None => y,
                }
            }
        }
    }
}

/// `torch.nn.GroupNorm` on `[B, C, ...]`: `weight`, `bias` `[C]`; statistics in f32,
/// variance two-pass (biased), as PyTorch computes it.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    groups: usize,
    channels: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn load(vb: &VarBuilder, groups: usize, channels: usize, eps: f64) -> Self {
        Self {
            weight: vb.tensor("weight", [channels]),
            bias: vb.tensor("bias", [channels]),
            groups,
            channels,
            eps,
        }
    }

    /// Normalises `[B, C, ...]` (any rank >= 3).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.forward_act(x, None)
    }

    /// `act(norm(x))`, the ResNet pattern. On the CPU (flex, f32) a SiLU or no activation is
    /// fused with the norm into one pass ([`super::host`]); elsewhere the burn ops run in turn.
    pub fn forward_act<const D: usize>(&self, x: Tensor<D>, act: Option<Activation>) -> Tensor<D> {
        if matches!(act, None | Some(Activation::Silu)) && super::host::applies(&x) {
            let silu = act.is_some();
            return super::host::group_norm(
                x,
                self.weight.val(),
                self.bias.val(),
                self.groups,
                self.eps,
                silu,
            );
        }
        let dims = x.dims();
        let b = dims[0];
        let per_group = x.shape().num_elements() / (b * self.groups);
        let g = x.reshape([b, self.groups, per_group]);
        let mean = g.clone().mean_dim(2);
        let centered = g - mean;
        let var = centered.clone().square().mean_dim(2);
        let normed = centered / (var + self.eps).sqrt();
        let mut shape = [1usize; D];
        shape[1] = self.channels;
        let w = self.weight.val().reshape(shape);
        let bias = self.bias.val().reshape(shape);
        let y = normed.reshape(dims) * w + bias;
        match act {
            Some(a) => a.forward(y),
            None => y,
        }
    }
}

/// RMSNorm (T5's `T5LayerNorm`, FLUX's qk-norm): `x / sqrt(mean(x²) + eps) · weight`, no
/// mean, no bias.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    eps: f64,
}

impl RmsNorm {
    pub fn load(vb: &VarBuilder, dim: usize, eps: f64) -> Self {
        Self {
            weight: vb.tensor("weight", [dim]),
            eps,
        }
    }

    /// Normalises `[..., dim]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let var = x.clone().square().mean_dim(D - 1);
        let w = self.weight.val().unsqueeze::<D>();
        x * (var + self.eps).sqrt().recip() * w
    }
}

/// `torch.nn.BatchNorm1d/2d` in eval mode on `[B, C, ...]`: `weight`, `bias`,
/// `running_mean`, `running_var` `[C]`; `num_batches_tracked` is expected and unused.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    scale: Param<Tensor<1>>,
    shift: Param<Tensor<1>>,
    pub running_mean: Param<Tensor<1>>,
    pub running_var: Param<Tensor<1>>,
    eps: f64,
}

impl BatchNorm {
    pub fn load(vb: &VarBuilder, channels: usize, eps: f64) -> Self {
        vb.expect_unused("num_batches_tracked", &[]);
        Self {
            scale: vb.tensor("weight", [channels]),
            shift: vb.tensor("bias", [channels]),
            running_mean: vb.tensor("running_mean", [channels]),
            running_var: vb.tensor("running_var", [channels]),
            eps,
        }
    }

    /// Normalises `[B, C, ...]` with the running statistics.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut shape = [1usize; D];
        shape[1] = self.scale.shape().as_slice()[0];
        let mean = self.running_mean.val().reshape(shape);
        let std = (self.running_var.val() + self.eps).sqrt().reshape(shape);
        let w = self.scale.val().reshape(shape);
        let b = self.shift.val().reshape(shape);
        (x - mean) / std * w + b
    }
}
