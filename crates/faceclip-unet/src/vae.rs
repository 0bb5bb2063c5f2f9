//! diffusers `vae.py`: the VAE's `Encoder`, `Decoder` and `DiagonalGaussianDistribution`.

use faceclip_core::layers::{Activation, Conv2d, GroupNorm};
use faceclip_core::{Tensor, Trace, VarBuilder};

use crate::resnet::ResnetSettings;
use crate::unet_2d_blocks::{DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D};

/// GroupNorm eps of every VAE norm.
const VAE_EPS: f64 = 1e-6;

fn record(trace: &mut Option<&mut Trace>, name: &str, x: &Tensor<4>) {
    if let Some(t) = trace.as_deref_mut() {
        t.record_tensor(name, x);
    }
}

/// diffusers `Encoder` (`double_z=True`): `conv_in` -> `DownEncoderBlock2D`s -> mid block ->
/// GroupNorm -> act -> `conv_out` to `2·latent_channels` (mean and log-variance).
#[derive(Debug, Clone)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownEncoderBlock2D>,
    pub mid_block: UNetMidBlock2D,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    act: Activation,
}

impl Encoder {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: &VarBuilder,
        in_channels: usize,
        out_channels: usize,
        block_out_channels: &[usize],
        layers_per_block: usize,
        groups: usize,
        act: Activation,
        mid_block_add_attention: bool,
    ) -> Self {
        let resnet = ResnetSettings {
            temb_channels: None,
            groups,
            eps: VAE_EPS,
            act,
            output_scale_factor: 1.0,
        };
        let bc = block_out_channels;
        let n = bc.len();
        let last = bc[n - 1];
        let mut out_ch = bc[0];
        let down_blocks = (0..n)
            .map(|i| {
                let in_ch = out_ch;
                out_ch = bc[i];
                DownEncoderBlock2D::load(
                    &vb.pp("down_blocks").pp(i),
                    layers_per_block,
                    in_ch,
                    out_ch,
                    &resnet,
                    i + 1 < n,
                    0,
                )
            })
            .collect();
        Self {
            conv_in: Conv2d::load(&vb.pp("conv_in"), in_channels, bc[0], 3, 1, 1, true),
            down_blocks,
            mid_block: UNetMidBlock2D::load(
                &vb.pp("mid_block"),
                1,
                last,
                &resnet,
                mid_block_add_attention,
                last,
            ),
            conv_norm_out: GroupNorm::load(&vb.pp("conv_norm_out"), groups, last, VAE_EPS),
            conv_out: Conv2d::load(&vb.pp("conv_out"), last, 2 * out_channels, 3, 1, 1, true),
            act,
        }
    }

    /// `[B, in, H, W]` -> `[B, 2·latent, H/f, W/f]`.
    pub fn forward(&self, x: Tensor<4>, mut trace: Option<&mut Trace>) -> Tensor<4> {
        let mut x = self.conv_in.forward(x);
        for b in &self.down_blocks {
            x = b.forward(x);
        }
        let x = self.mid_block.forward(x, None);
        record(&mut trace, "encoder_mid_block", &x);
        let x = self.conv_norm_out.forward_act(x, Some(self.act));
        let x = self.conv_out.forward(x);
        record(&mut trace, "encoder_out", &x);
        x
    }
}

/// diffusers `Decoder` (group norm): `conv_in` -> mid block -> `UpDecoderBlock2D`s ->
/// GroupNorm -> act -> `conv_out`.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: UNetMidBlock2D,
    pub up_blocks: Vec<UpDecoderBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    act: Activation,
}

impl Decoder {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: &VarBuilder,
        in_channels: usize,
        out_channels: usize,
        block_out_channels: &[usize],
        layers_per_block: usize,
        groups: usize,
        act: Activation,
        mid_block_add_attention: bool,
    ) -> Self {
        let resnet = ResnetSettings {
            temb_channels: None,
            groups,
            eps: VAE_EPS,
            act,
            output_scale_factor: 1.0,
        };
        let bc = block_out_channels;
        let n = bc.len();
        let last = bc[n - 1];
        let mut out_ch = last;
        let up_blocks = (0..n)
            .map(|i| {
                let prev = out_ch;
                out_ch = bc[n - 1 - i];
                UpDecoderBlock2D::load(
                    &vb.pp("up_blocks").pp(i),
                    layers_per_block + 1,
                    prev,
                    out_ch,
                    &resnet,
                    i + 1 < n,
                )
            })
            .collect();
        Self {
            conv_in: Conv2d::load(&vb.pp("conv_in"), in_channels, last, 3, 1, 1, true),
            mid_block: UNetMidBlock2D::load(
                &vb.pp("mid_block"),
                1,
                last,
                &resnet,
                mid_block_add_attention,
                last,
            ),
            up_blocks,
            conv_norm_out: GroupNorm::load(&vb.pp("conv_norm_out"), groups, bc[0], VAE_EPS),
            conv_out: Conv2d::load(&vb.pp("conv_out"), bc[0], out_channels, 3, 1, 1, true),
            act,
        }
    }

    /// `[B, latent, h, w]` -> `[B, out, h·f, w·f]`.
    pub fn forward(&self, z: Tensor<4>, mut trace: Option<&mut Trace>) -> Tensor<4> {
        let x = self.conv_in.forward(z);
        record(&mut trace, "decoder_conv_in", &x);
        let mut x = self.mid_block.forward(x, None);
        record(&mut trace, "decoder_mid_block", &x);
        for (i, b) in self.up_blocks.iter().enumerate() {
            x = b.forward(x);
            record(&mut trace, &format!("decoder_up_block_{i}"), &x);
        }
        let x = self.conv_norm_out.forward_act(x, Some(self.act));
        self.conv_out.forward(x)
    }
}

/// diffusers `DiagonalGaussianDistribution`: the encoder's moments split into `mean` and
/// `logvar` (clamped to [-30, 20]), each `[B, latent, h, w]`.
#[derive(Debug, Clone)]
pub struct DiagonalGaussianDistribution {
    pub mean: Tensor<4>,
    pub logvar: Tensor<4>,
}

impl DiagonalGaussianDistribution {
    /// Splits `[B, 2·latent, h, w]` moments along the channels.
    pub fn from_moments(moments: Tensor<4>) -> Self {
        let [b, c2, h, w] = moments.dims();
        let c = c2 / 2;
        let mean = moments.clone().slice([0..b, 0..c, 0..h, 0..w]);
        let logvar = moments
            .slice([0..b, c..2 * c, 0..h, 0..w])
            .clamp(-30.0, 20.0);
        Self { mean, logvar }
    }

    /// `exp(0.5·logvar)`.
    pub fn std(&self) -> Tensor<4> {
        (self.logvar.clone() * 0.5).exp()
    }

    /// `mean + std·noise` for a standard-normal `noise` of the same shape.
    pub fn sample(&self, noise: Tensor<4>) -> Tensor<4> {
        self.mean.clone() + self.std() * noise
    }

    /// The mode (= mean).
    pub fn mode(&self) -> Tensor<4> {
        self.mean.clone()
    }
}
