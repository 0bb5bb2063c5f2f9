//! diffusers `downsampling.py`: `Downsample2D` (convolutional variant).

use faceclip_core::burn::tensor::ops::PadMode;
use faceclip_core::layers::Conv2d;
use faceclip_core::{Tensor, VarBuilder};

/// diffusers `Downsample2D(use_conv=True)`: a 3x3 stride-2 `conv`. With `padding = 0`
/// (the VAE) the input is first zero-padded by one row/column at the bottom/right
/// (`F.pad(x, (0, 1, 0, 1))`); otherwise the conv pads symmetrically (the UNet, padding 1).
#[derive(Debug, Clone)]
pub struct Downsample2D {
    pub conv: Conv2d,
    padding: usize,
}

impl Downsample2D {
    pub fn load(vb: &VarBuilder, channels: usize, out_channels: usize, padding: usize) -> Self {
        Self {
            conv: Conv2d::load(&vb.pp("conv"), channels, out_channels, 3, 2, padding, true),
            padding,
        }
    }

    /// `[B, C, H, W]` -> `[B, out, H', W']` (H' = ceil(H/2) for padding 0 or 1).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = if self.padding == 0 {
            x.pad((0, 1, 0, 1), PadMode::Constant(0.0))
        } else {
            x
        };
        self.conv.forward(x)
    }
}
