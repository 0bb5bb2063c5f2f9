//! diffusers `resnet.py`: `ResnetBlock2D` (the "default" time-embedding norm).

use faceclip_core::layers::{Activation, Conv2d, GroupNorm, Linear};
use faceclip_core::{Tensor, VarBuilder};

/// diffusers `ResnetBlock2D`: GroupNorm -> act -> conv1 (+ projected time embedding) ->
/// GroupNorm -> act -> conv2, plus the input (through a 1x1 `conv_shortcut` when the
/// channel count changes), divided by `output_scale_factor`.
#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
    act: Activation,
    output_scale_factor: f64,
}

/// Constructor arguments of [`ResnetBlock2D`] that the blocks share.
#[derive(Debug, Clone, Copy)]
pub struct ResnetSettings {
    /// `temb_channels`: width of the time embedding (`None` in the VAE).
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f64,
    pub act: Activation,
    pub output_scale_factor: f64,
}

impl ResnetBlock2D {
    pub fn load(
        vb: &VarBuilder,
        in_channels: usize,
        out_channels: usize,
        s: &ResnetSettings,
    ) -> Self {
        Self {
            norm1: GroupNorm::load(&vb.pp("norm1"), s.groups, in_channels, s.eps),
            conv1: Conv2d::load(&vb.pp("conv1"), in_channels, out_channels, 3, 1, 1, true),
            time_emb_proj: s
                .temb_channels
                .map(|t| Linear::load(&vb.pp("time_emb_proj"), t, out_channels, true)),
            norm2: GroupNorm::load(&vb.pp("norm2"), s.groups, out_channels, s.eps),
            conv2: Conv2d::load(&vb.pp("conv2"), out_channels, out_channels, 3, 1, 1, true),
            conv_shortcut: (in_channels != out_channels).then(|| {
                Conv2d::load(
                    &vb.pp("conv_shortcut"),
                    in_channels,
                    out_channels,
                    1,
                    1,
                    0,
                    true,
                )
            }),
            act: s.act,
            output_scale_factor: s.output_scale_factor,
        }
    }

    /// `[B, in, H, W]` (and `temb` `[B, temb_channels]`) -> `[B, out, H, W]`.
    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let h = self
            .conv1
            .forward(self.norm1.forward_act(x.clone(), Some(self.act)));
        let h = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(t)) => {
                let [b, c] = [t.dims()[0], proj.out_features()];
                h + proj
                    .forward(self.act.forward(t.clone()))
                    .reshape([b, c, 1, 1])
            }
            _ => h,
        };
        let h = self
            .conv2
            .forward(self.norm2.forward_act(h, Some(self.act)));
        let x = match &self.conv_shortcut {
            Some(c) => c.forward(x),
            None => x,
        };
        let out = x + h;
        if self.output_scale_factor == 1.0 {
            out
        } else {
            out / self.output_scale_factor
        }
    }
}
