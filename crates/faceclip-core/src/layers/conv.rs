use burn::module::Param;
use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;

use crate::var_builder::VarBuilder;

/// `torch.nn.Conv2d`: `weight` `[out, in/groups, kh, kw]`, optional `bias`; NCHW in and out.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Param<Tensor<4>>,
    pub bias: Option<Param<Tensor<1>>>,
    stride: [usize; 2],
    padding: [usize; 2],
    groups: usize,
}

impl Conv2d {
    /// Loads a square-kernel convolution.
    pub fn load(
        vb: &VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Self {
        Self {
            weight: vb.tensor("weight", [out_channels, in_channels, kernel, kernel]),
            bias: bias.then(|| vb.tensor("bias", [out_channels])),
            stride: [stride, stride],
            padding: [padding, padding],
            groups: 1,
        }
    }

    /// `[B, in, H, W]` -> `[B, out, H', W']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let weight = self.weight.val();
        let bias = self.bias.as_ref().map(|b| b.val());
        {
            let ([b, _, h, w], [out, in_g, kh, kw]) = (x.dims(), weight.dims());
            let oh = (h + 2 * self.padding[0]).saturating_sub(kh) / self.stride[0] + 1;
            let ow = (w + 2 * self.padding[1]).saturating_sub(kw) / self.stride[1] + 1;
            crate::flops::add(b * out * oh * ow * in_g * kh * kw);
        }
        #[cfg(feature = "flex")]
        let (x, weight, bias) = {
            let [_, _, kh, kw] = weight.dims();
            // 1x1 convolutions are already one strided GEMM in burn-flex.
            if self.groups == 1 && kh * kw > 1 && super::host::applies(&x) {
                match super::host::conv2d(x, weight, bias, self.stride, self.padding) {
                    Ok(y) => return y,
                    Err(args) => *args,
                }
            } else {
                (x, weight, bias)
            }
        };
        burn::tensor::module::conv2d(
            x,
            weight,
            bias,
            ConvOptions::new(self.stride, self.padding, [1, 1], self.groups),
        )
    }
}
