//! diffusers `upsampling.py`: `Upsample2D` (nearest x2, then a 3x3 conv).

use faceclip_core::burn::tensor::module::interpolate;
use faceclip_core::burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use faceclip_core::layers::Conv2d;
use faceclip_core::{Tensor, VarBuilder};

/// diffusers `Upsample2D(use_conv=True)`: nearest-neighbour upsampling (x2, or to an
/// explicit size as the UNet asks for odd skip sizes) followed by a 3x3 `conv`.
#[derive(Debug, Clone)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn load(vb: &VarBuilder, channels: usize, out_channels: usize) -> Self {
        Self {
            conv: Conv2d::load(&vb.pp("conv"), channels, out_channels, 3, 1, 1, true),
        }
    }

    /// `[B, C, H, W]` -> `[B, out, 2H, 2W]`, or `[B, out, size]` when `size` is given.
    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let size = size.unwrap_or([2 * h, 2 * w]);
        let x = interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size),
        );
        self.conv.forward(x)
    }
}
