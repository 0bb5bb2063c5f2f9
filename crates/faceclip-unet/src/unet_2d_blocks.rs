//! diffusers `unet_2d_blocks.py`: the UNet's down/mid/up blocks (`DownBlock2D`,
//! `CrossAttnDownBlock2D`, `UNetMidBlock2DCrossAttn`, `UNetMidBlock2D`, `UpBlock2D`,
//! `CrossAttnUpBlock2D`) and the VAE's (`DownEncoderBlock2D`, `UpDecoderBlock2D`).

use faceclip_core::{Tensor, VarBuilder};

use crate::attention_processor::Attention;
use crate::downsampling::Downsample2D;
use crate::resnet::{ResnetBlock2D, ResnetSettings};
use crate::transformer_2d::Transformer2DModel;
use crate::upsampling::Upsample2D;

/// The spatial-transformer settings of a cross-attention block.
#[derive(Debug, Clone, Copy)]
pub struct CrossAttnSettings {
    /// Number of heads (`attention_head_dim` in the UNet config); head dim = channels / heads.
    pub heads: usize,
    /// `transformer_layers_per_block` of this block.
    pub transformer_layers: usize,
    pub cross_attention_dim: usize,
    pub use_linear_projection: bool,
    pub only_cross_attention: bool,
}

fn load_transformer(
    vb: &VarBuilder,
    channels: usize,
    groups: usize,
    a: &CrossAttnSettings,
) -> Transformer2DModel {
    Transformer2DModel::load(
        vb,
        a.heads,
        channels / a.heads,
        channels,
        a.transformer_layers,
        a.cross_attention_dim,
        groups,
        a.use_linear_projection,
        a.only_cross_attention,
    )
}

/// diffusers `DownBlock2D` / `CrossAttnDownBlock2D`: `num_layers` resnets (each followed by
/// a `Transformer2DModel` when `cross` is set), then an optional stride-2 `Downsample2D`.
/// Each stage's output is kept for the up path's skip connections.
#[derive(Debug, Clone)]
pub struct DownBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    /// Empty for `DownBlock2D`.
    pub attentions: Vec<Transformer2DModel>,
    pub downsampler: Option<Downsample2D>,
}

impl DownBlock2D {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: &VarBuilder,
        num_layers: usize,
        in_channels: usize,
        out_channels: usize,
        resnet: &ResnetSettings,
        cross: Option<&CrossAttnSettings>,
        add_downsample: bool,
        downsample_padding: usize,
    ) -> Self {
        let resnets = (0..num_layers)
            .map(|i| {
                let cin = if i == 0 { in_channels } else { out_channels };
                ResnetBlock2D::load(&vb.pp("resnets").pp(i), cin, out_channels, resnet)
            })
            .collect();
        let attentions = match cross {
            Some(a) => (0..num_layers)
                .map(|i| {
                    load_transformer(&vb.pp("attentions").pp(i), out_channels, resnet.groups, a)
                })
                .collect(),
            None => Vec::new(),
        };
        let downsampler = add_downsample.then(|| {
            Downsample2D::load(
                &vb.pp("downsamplers").pp(0),
                out_channels,
                out_channels,
                downsample_padding,
            )
        });
        Self {
            resnets,
            attentions,
            downsampler,
        }
    }

    /// `[B, in, H, W]` -> the block output and every stage's output (skip connections).
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        temb: Option<&Tensor<2>>,
        context: Option<&Tensor<3>>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, temb);
            if let (Some(attn), Some(ctx)) = (self.attentions.get(i), context) {
                x = attn.forward(x, ctx);
            }
            skips.push(x.clone());
        }
        if let Some(d) = &self.downsampler {
            x = d.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

/// diffusers `UpBlock2D` / `CrossAttnUpBlock2D`: `num_layers` resnets, each on the
/// concatenation `[x, skip]` (skips popped from the end), each followed by a
/// `Transformer2DModel` when `cross` is set; then an optional `Upsample2D`.
#[derive(Debug, Clone)]
pub struct UpBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    /// Empty for `UpBlock2D`.
    pub attentions: Vec<Transformer2DModel>,
    pub upsampler: Option<Upsample2D>,
}

impl UpBlock2D {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: &VarBuilder,
        num_layers: usize,
        in_channels: usize,
        prev_output_channel: usize,
        out_channels: usize,
        resnet: &ResnetSettings,
        cross: Option<&CrossAttnSettings>,
        add_upsample: bool,
    ) -> Self {
        let resnets = (0..num_layers)
            .map(|i| {
                let skip = if i == num_layers - 1 {
                    in_channels
                } else {
                    out_channels
                };
                let cin = if i == 0 {
                    prev_output_channel
                } else {
                    out_channels
                };
                ResnetBlock2D::load(&vb.pp("resnets").pp(i), cin + skip, out_channels, resnet)
            })
            .collect();
        let attentions = match cross {
            Some(a) => (0..num_layers)
                .map(|i| {
                    load_transformer(&vb.pp("attentions").pp(i), out_channels, resnet.groups, a)
                })
                .collect(),
            None => Vec::new(),
        };
        let upsampler = add_upsample
            .then(|| Upsample2D::load(&vb.pp("upsamplers").pp(0), out_channels, out_channels));
        Self {
            resnets,
            attentions,
            upsampler,
        }
    }

    /// Consumes `resnets.len()` skips from the end of `skips`; `upsample_size` forces the
    /// upsampled size (odd input sizes).
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        skips: &mut Vec<Tensor<4>>,
        temb: Option<&Tensor<2>>,
        context: Option<&Tensor<3>>,
        upsample_size: Option<[usize; 2]>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips
                .pop()
                .expect("the UNet pushes one skip per up-block resnet");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), temb);
            if let (Some(attn), Some(ctx)) = (self.attentions.get(i), context) {
                x = attn.forward(x, ctx);
            }
        }
        match &self.upsampler {
            Some(u) => u.forward(x, upsample_size),
            None => x,
        }
    }
}

/// diffusers `UNetMidBlock2DCrossAttn`: resnet, then (`Transformer2DModel`, resnet) x `num_layers`.
#[derive(Debug, Clone)]
pub struct UNetMidBlock2DCrossAttn {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
}

impl UNetMidBlock2DCrossAttn {
    pub fn load(
        vb: &VarBuilder,
        num_layers: usize,
        channels: usize,
        resnet: &ResnetSettings,
        cross: &CrossAttnSettings,
    ) -> Self {
        Self {
            resnets: (0..=num_layers)
                .map(|i| ResnetBlock2D::load(&vb.pp("resnets").pp(i), channels, channels, resnet))
                .collect(),
            attentions: (0..num_layers)
                .map(|i| {
                    load_transformer(&vb.pp("attentions").pp(i), channels, resnet.groups, cross)
                })
                .collect(),
        }
    }

    pub fn forward(
        &self,
        x: Tensor<4>,
        temb: Option<&Tensor<2>>,
        context: &Tensor<3>,
    ) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, temb);
        for (attn, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = resnet.forward(attn.forward(x, context), temb);
        }
        x
    }
}

/// diffusers `UNetMidBlock2D`: resnet, then (single-head spatial `Attention`, resnet) x
/// `num_layers` (the VAE's mid block; the attentions are left out with `add_attention = false`).
#[derive(Debug, Clone)]
pub struct UNetMidBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Option<Attention>>,
}

impl UNetMidBlock2D {
    /// `attention_head_dim` = channels in every diffusers VAE (one head).
    pub fn load(
        vb: &VarBuilder,
        num_layers: usize,
        channels: usize,
        resnet: &ResnetSettings,
        add_attention: bool,
        attention_head_dim: usize,
    ) -> Self {
        Self {
            resnets: (0..=num_layers)
                .map(|i| ResnetBlock2D::load(&vb.pp("resnets").pp(i), channels, channels, resnet))
                .collect(),
            attentions: (0..num_layers)
                .map(|i| {
                    add_attention.then(|| {
                        Attention::load_spatial(
                            &vb.pp("attentions").pp(i),
                            channels,
                            attention_head_dim,
                            resnet.groups,
                            resnet.eps,
                            resnet.output_scale_factor,
                        )
                    })
                })
                .collect(),
        }
    }

    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, temb);
        for (attn, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            if let Some(a) = attn {
                x = a.forward_spatial(x);
            }
            x = resnet.forward(x, temb);
        }
        x
    }
}

/// diffusers `DownEncoderBlock2D`: `num_layers` resnets (no time embedding), then an
/// optional `Downsample2D` (padding 0: pad bottom/right, stride-2 conv).
#[derive(Debug, Clone)]
pub struct DownEncoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsampler: Option<Downsample2D>,
}

impl DownEncoderBlock2D {
    pub fn load(
        vb: &VarBuilder,
        num_layers: usize,
        in_channels: usize,
        out_channels: usize,
        resnet: &ResnetSettings,
        add_downsample: bool,
        downsample_padding: usize,
    ) -> Self {
        Self {
            resnets: (0..num_layers)
                .map(|i| {
                    let cin = if i == 0 { in_channels } else { out_channels };
                    ResnetBlock2D::load(&vb.pp("resnets").pp(i), cin, out_channels, resnet)
                })
                .collect(),
            downsampler: add_downsample.then(|| {
                Downsample2D::load(
                    &vb.pp("downsamplers").pp(0),
                    out_channels,
                    out_channels,
                    downsample_padding,
                )
            }),
        }
    }

    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for r in &self.resnets {
            x = r.forward(x, None);
        }
        match &self.downsampler {
            Some(d) => d.forward(x),
            None => x,
        }
    }
}

/// diffusers `UpDecoderBlock2D`: `num_layers` resnets (no time embedding, no skips), then an
/// optional `Upsample2D`.
#[derive(Debug, Clone)]
pub struct UpDecoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsampler: Option<Upsample2D>,
}

impl UpDecoderBlock2D {
    pub fn load(
        vb: &VarBuilder,
        num_layers: usize,
        in_channels: usize,
        out_channels: usize,
        resnet: &ResnetSettings,
        add_upsample: bool,
    ) -> Self {
        Self {
            resnets: (0..num_layers)
                .map(|i| {
                    let cin = if i == 0 { in_channels } else { out_channels };
                    ResnetBlock2D::load(&vb.pp("resnets").pp(i), cin, out_channels, resnet)
                })
                .collect(),
            upsampler: add_upsample
                .then(|| Upsample2D::load(&vb.pp("upsamplers").pp(0), out_channels, out_channels)),
        }
    }

    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for r in &self.resnets {
            x = r.forward(x, None);
        }
        match &self.upsampler {
            Some(u) => u.forward(x, None),
            None => x,
        }
    }
}
