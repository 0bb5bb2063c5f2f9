//! `torch.nn.PReLU(num_parameters=C)` and the ceil-mode max pool the MTCNN nets share.
//! faceclip-core has neither, so they live here.

use faceclip_core::burn::module::Param;
use faceclip_core::burn::tensor::activation;
use faceclip_core::burn::tensor::module::max_pool2d;
use faceclip_core::burn::tensor::ops::MaxPoolOptions;
use faceclip_core::{Tensor, VarBuilder};

/// `torch.nn.PReLU(C)`: `weight` `[C]`, one slope per channel (dimension 1 of the input).
#[derive(Debug, Clone)]
pub struct PRelu {
    pub weight: Param<Tensor<1>>,
}

impl PRelu {
    /// Loads `weight` `[channels]` under `vb`.
    pub fn load(vb: &VarBuilder, channels: usize) -> Self {
        Self {
            weight: vb.tensor("weight", [channels]),
        }
    }

    /// `max(0, x) + weight[c]·min(0, x)` on `[N, C, ...]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        activation::prelu(x, self.weight.val())
    }
}

/// `torch.nn.MaxPool2d(kernel, stride, ceil_mode=True)` (no padding) on `[N, C, H, W]`.
pub fn max_pool2d_ceil(x: Tensor<4>, kernel: usize, stride: usize) -> Tensor<4> {
    max_pool2d(
        x,
        MaxPoolOptions::new([kernel, kernel])
            .with_stride([stride, stride])
            .with_ceil_mode(true),
    )
}
