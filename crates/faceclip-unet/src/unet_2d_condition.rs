//! diffusers `unet_2d_condition.py`: `UNet2DConditionModel` (SD 1.x/2.x, SDXL).

use std::path::Path;

use faceclip_core::layers::{Activation, Conv2d, GroupNorm};
use faceclip_core::lora::LoraTarget;
use faceclip_core::{
    Checkpoint, Device, Error, Pretrained, Result, Tensor, TensorData, Trace, VarBuilder,
};

use crate::config::{PerBlock, UNet2DConditionConfig};
use crate::embeddings::{TimestepEmbedding, Timesteps};
use crate::folder;
use crate::resnet::ResnetSettings;
use crate::unet_2d_blocks::{
    CrossAttnSettings, DownBlock2D, UNetMidBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D,
};

/// The mid block a config asks for.
#[derive(Debug, Clone)]
pub enum MidBlock {
    CrossAttn(UNetMidBlock2DCrossAttn),
    Plain(UNetMidBlock2D),
}

/// SDXL's added conditioning (`addition_embed_type = "text_time"`): sinusoids of the six
/// time ids (`add_time_proj`) after the pooled text embeds, through `add_embedding`.
#[derive(Debug, Clone)]
pub struct TextTimeEmbedding {
    pub add_time_proj: Timesteps,
    pub add_embedding: TimestepEmbedding,
    input_dim: usize,
}

/// diffusers `UNet2DConditionModel`, built from its `config.json` unchanged and loaded from
/// diffusers key names.
#[derive(Debug, Clone)]
pub struct UNet2DConditionModel {
    pub conv_in: Conv2d,
    pub time_proj: Timesteps,
    pub time_embedding: TimestepEmbedding,
    pub text_time: Option<TextTimeEmbedding>,
    pub down_blocks: Vec<DownBlock2D>,
    pub mid_block: Option<MidBlock>,
    pub up_blocks: Vec<UpBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    act: Activation,
    time_embed_act: Option<Activation>,
    cross_attention_dims: Vec<usize>,
    config: UNet2DConditionConfig,
}

/// Loading: diffusers key names, under a `module.`, `unet.` or `state_dict.` wrapper or not;
/// LoRA files for the SDXL UNet.
impl Pretrained for UNet2DConditionModel {
    type Config = UNet2DConditionConfig;
    const COMPONENT: &'static str = "unet";

    fn build(config: &UNet2DConditionConfig, vb: &VarBuilder) -> Result<Self> {
        Self::new(config, vb)
    }

    fn read_config(path: &Path) -> Result<UNet2DConditionConfig> {
        UNet2DConditionConfig::from_file(path)
    }

    fn adapt(checkpoint: Checkpoint, _config: &UNet2DConditionConfig) -> Result<Checkpoint> {
        Ok(folder::strip_wrapper_prefixes(
            &checkpoint,
            &["module.", "unet.", "state_dict."],
        ))
    }

    fn lora_target(config: &UNet2DConditionConfig) -> Option<LoraTarget> {
        let layers_per_block = match &config.layers_per_block {
            PerBlock::One(n) => Some(*n),
            PerBlock::Each(v) => v.first().copied().filter(|n| v.iter().all(|m| m == n)),
        };
        Some(LoraTarget::SdxlUnet { layers_per_block })
    }
}

impl UNet2DConditionModel {
    /// Builds the model described by `config`, taking its weights from `vb` (diffusers key
    /// names at the root). Config errors are returned; weight problems are recorded in `vb`
    /// (call `vb.finish()` after).
    pub fn new(config: &UNet2DConditionConfig, vb: &VarBuilder) -> Result<Self> {
        let p = config.plan()?;
        let bc = &config.block_out_channels;
        let n = p.n;
        let resnet = ResnetSettings {
            temb_channels: Some(p.time_embed_dim),
            groups: p.groups,
            eps: config.norm_eps,
            act: p.act,
            output_scale_factor: 1.0,
        };
        let cross = |i: usize| CrossAttnSettings {
            heads: p.heads[i],
            transformer_layers: p.transformer_layers[i],
            cross_attention_dim: p.cross_attention_dim[i],
            use_linear_projection: config.use_linear_projection,
            only_cross_attention: p.only_cross_attention[i],
        };

        let conv_in = Conv2d::load(
            &vb.pp("conv_in"),
            config.in_channels,
            bc[0],
            config.conv_in_kernel,
            1,
            (config.conv_in_kernel - 1) / 2,
            true,
        );
        let time_proj = Timesteps::new(bc[0], config.flip_sin_to_cos, config.freq_shift);
        let time_embedding = TimestepEmbedding::load(
            &vb.pp("time_embedding"),
            bc[0],
            p.time_embed_dim,
            p.act,
            p.post_act,
        );
        let text_time = p.text_time.map(|(time_dim, input_dim)| TextTimeEmbedding {
            add_time_proj: Timesteps::new(time_dim, config.flip_sin_to_cos, config.freq_shift),
            add_embedding: TimestepEmbedding::load(
                &vb.pp("add_embedding"),
                input_dim,
                p.time_embed_dim,
                Activation::Silu,
                None,
            ),
            input_dim,
        });

        let mut down_blocks = Vec::with_capacity(n);
        let mut out_ch = bc[0];
        for (i, &block_ch) in bc.iter().enumerate() {
            let in_ch = out_ch;
            out_ch = block_ch;
            let c = cross(i);
            let is_cross = config.down_block_types[i] == "CrossAttnDownBlock2D";
            down_blocks.push(DownBlock2D::load(
                &vb.pp("down_blocks").pp(i),
                p.layers_per_block[i],
                in_ch,
                out_ch,
                &resnet,
                is_cross.then_some(&c),
                i + 1 < n,
                config.downsample_padding,
            ));
        }

        let mid_block = match config.mid_block_type.as_deref() {
            Some("UNetMidBlock2DCrossAttn") => {
                let c = cross(n - 1);
                let r = ResnetSettings {
                    output_scale_factor: config.mid_block_scale_factor,
                    ..resnet
                };
                Some(MidBlock::CrossAttn(UNetMidBlock2DCrossAttn::load(
                    &vb.pp("mid_block"),
                    1,
                    bc[n - 1],
                    &r,
                    &c,
                )))
            }
            Some(_) => {
                let r = ResnetSettings {
                    output_scale_factor: config.mid_block_scale_factor,
                    ..resnet
                };
                Some(MidBlock::Plain(UNetMidBlock2D::load(
                    &vb.pp("mid_block"),
                    0,
                    bc[n - 1],
                    &r,
                    false,
                    bc[n - 1],
                )))
            }
            None => None,
        };

        let mut up_blocks = Vec::with_capacity(n);
        let mut out_ch = bc[n - 1];
        for i in 0..n {
            // Up block i mirrors down block n-1-i.
            let j = n - 1 - i;
            let prev = out_ch;
            out_ch = bc[j];
            let in_ch = bc[j.saturating_sub(1)];
            // diffusers reverses `only_cross_attention` per up block too.
            let c = cross(j);
            let is_cross = config.up_block_types[i] == "CrossAttnUpBlock2D";
            up_blocks.push(UpBlock2D::load(
                &vb.pp("up_blocks").pp(i),
                p.layers_per_block[j] + 1,
                in_ch,
                prev,
                out_ch,
                &resnet,
                is_cross.then_some(&c),
                i + 1 < n,
            ));
        }

        let conv_norm_out =
            GroupNorm::load(&vb.pp("conv_norm_out"), p.groups, bc[0], config.norm_eps);
        let conv_out = Conv2d::load(
            &vb.pp("conv_out"),
            bc[0],
            config.out_channels,
            config.conv_out_kernel,
            1,
            (config.conv_out_kernel - 1) / 2,
            true,
        );
        Ok(Self {
            conv_in,
            time_proj,
            time_embedding,
            text_time,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            act: p.act,
            time_embed_act: p.time_embed_act,
            cross_attention_dims: p.cross_attention_dim,
            config: config.clone(),
        })
    }

    /// Builds `config` from `checkpoint` (diffusers key names, a leading `module.`, `unet.`
    /// or `state_dict.` is stripped) and checks the weights cover the model exactly
    /// ([`Pretrained::load`]; with LoRA files: [`Pretrained::load_with`]).
    pub fn load(
        checkpoint: Checkpoint,
        config: &UNet2DConditionConfig,
        device: &Device,
    ) -> Result<Self> {
        <Self as Pretrained>::load(checkpoint, config, device)
    }

    /// Loads a diffusers folder: `dir/config.json` or `dir/unet/config.json`, with
    /// `diffusion_pytorch_model[.fp16].safetensors` (or its sharded index, or `.bin`)
    /// ([`Pretrained::from_folder`]; with LoRA files: [`Pretrained::open_folder`], then
    /// [`Pretrained::load_with`]).
    pub fn from_folder(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        <Self as Pretrained>::from_folder(dir, device)
    }

    /// The config this model was built from.
    pub fn config(&self) -> &UNet2DConditionConfig {
        &self.config
    }

    /// Predicts the noise (or v) for `sample` `[B, in_channels, H, W]` at `timestep` (`[1]`,
    /// broadcast to the batch, or `[B]`), conditioned on `encoder_hidden_states`
    /// `[B, L, cross_attention_dim]` and, for SDXL (`text_time`), `text_embeds` `[B, T]` and
    /// `time_ids` `[B, K]` (K = 6: original size, crop top-left, target size). Returns
    /// `[B, out_channels, H, W]`.
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timestep: Tensor<1>,
        encoder_hidden_states: Tensor<3>,
        text_embeds: Option<Tensor<2>>,
        time_ids: Option<Tensor<2>>,
    ) -> Result<Tensor<4>> {
        self.forward_traced(
            sample,
            timestep,
            encoder_hidden_states,
            text_embeds,
            time_ids,
            None,
        )
    }

    /// [`Self::forward`] that also records intermediate activations into `trace` (names as
    /// the parity fixtures' `mid.*`: `t_emb`, `time_emb`, `add_time_proj`, `aug_emb`, `emb`,
    /// `down_block_{i}`, `mid_block`, `up_block_{i}`).
    pub fn forward_traced(
        &self,
        sample: Tensor<4>,
        timestep: Tensor<1>,
        encoder_hidden_states: Tensor<3>,
        text_embeds: Option<Tensor<2>>,
        time_ids: Option<Tensor<2>>,
        mut trace: Option<&mut Trace>,
    ) -> Result<Tensor<4>> {
        let mut record = |name: &str, data: &dyn Fn() -> TensorData| {
            if let Some(t) = trace.as_deref_mut() {
                t.record(name, data);
            }
        };
        let [b, c, h, w] = sample.dims();
        if c != self.config.in_channels {
            return Err(Error::shape(
                "UNet sample [B, C, H, W]",
                &[b, self.config.in_channels, h, w],
                &[b, c, h, w],
            ));
        }
        if b == 0 || h == 0 || w == 0 {
            return Err(Error::invalid(format!(
                "UNet sample has an empty dimension: {:?}",
                [b, c, h, w]
            )));
        }
        let ehs = encoder_hidden_states.dims();
        if ehs[0] != b || self.cross_attention_dims.iter().any(|d| *d != ehs[2]) {
            return Err(Error::shape(
                "UNet encoder_hidden_states [B, L, cross_attention_dim]",
                &[b, ehs[1], self.cross_attention_dims[0]],
                &ehs,
            ));
        }
        let nt = timestep.dims()[0];
        let timesteps = if nt == b {
            timestep
        } else if nt == 1 {
            timestep.expand([b])
        } else {
            return Err(Error::shape(
                "UNet timestep (one value or one per batch row)",
                &[b],
                &[nt],
            ));
        };

        // Time embedding.
        let t_emb = self.time_proj.forward(timesteps);
        record("t_emb", &|| t_emb.clone().into_data());
        let mut emb = self.time_embedding.forward(t_emb);
        record("time_emb", &|| emb.clone().into_data());
        if let Some(tt) = &self.text_time {
            let (text, ids) = match (text_embeds, time_ids) {
                (Some(t), Some(i)) => (t, i),
                _ => {
                    return Err(Error::invalid(
                        "this UNet (addition_embed_type = \"text_time\") needs `text_embeds` and `time_ids`",
                    ));
                }
            };
            let [tb, tw] = text.dims();
            let [ib, k] = ids.dims();
            let width = tw + k * tt.add_time_proj.num_channels;
            if tb != b || ib != b || width != tt.input_dim {
                return Err(Error::shape(
                    "UNet text_embeds [B, T] ++ time_ids [B, K] (T + K·addition_time_embed_dim = projection_class_embeddings_input_dim)",
                    &[b, tt.input_dim],
                    &[tb, tw, ib, k],
                ));
            }
            let time_embeds = tt.add_time_proj.forward(ids.reshape([b * k]));
            record("add_time_proj", &|| time_embeds.clone().into_data());
            let add = Tensor::cat(
                vec![
                    text,
                    time_embeds.reshape([b, k * tt.add_time_proj.num_channels]),
                ],
                1,
            );
            let aug = tt.add_embedding.forward(add);
            record("aug_emb", &|| aug.clone().into_data());
            emb = emb + aug;
        }
        if let Some(a) = self.time_embed_act {
            emb = a.forward(emb);
        }
        record("emb", &|| emb.clone().into_data());

        // Sizes not divisible by the overall upsampling factor need explicit upsample sizes.
        let factor = 1usize << (self.up_blocks.len() - 1);
        let forward_upsample_size = h % factor != 0 || w % factor != 0;

        let sample = if self.config.center_input_sample {
            sample * 2.0 - 1.0
        } else {
            sample
        };
        let mut x = self.conv_in.forward(sample);
        let mut skips = vec![x.clone()];
        let ctx = &encoder_hidden_states;
        for (i, block) in self.down_blocks.iter().enumerate() {
            x = block.forward(x, Some(&emb), Some(ctx), &mut skips);
            record(&format!("down_block_{i}"), &|| x.clone().into_data());
        }
        if let Some(mid) = &self.mid_block {
            x = match mid {
                MidBlock::CrossAttn(m) => m.forward(x, Some(&emb), ctx),
                MidBlock::Plain(m) => m.forward(x, Some(&emb)),
            };
            record("mid_block", &|| x.clone().into_data());
        }
        let last = self.up_blocks.len() - 1;
        for (i, block) in self.up_blocks.iter().enumerate() {
            let upsample_size = if forward_upsample_size && i < last {
                let rest = skips.len() - block.resnets.len();
                let d = skips[rest - 1].dims();
                Some([d[2], d[3]])
            } else {
                None
            };
            x = block.forward(x, &mut skips, Some(&emb), Some(ctx), upsample_size);
            record(&format!("up_block_{i}"), &|| x.clone().into_data());
        }
        let x = self.conv_norm_out.forward_act(x, Some(self.act));
        Ok(self.conv_out.forward(x))
    }
}
