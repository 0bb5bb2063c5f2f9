//! FaceCLIP in Rust: SDXL `UNet2DConditionModel` and `AutoencoderKL` (SDXL and FLUX VAEs),
//! ported from diffusers 0.33, loading diffusers folders and FaceCLIP's `unet.pt` by their
//! own key names.
//!
//! One module per upstream file: [`config`], [`embeddings`], [`resnet`], [`downsampling`],
//! [`upsampling`], [`attention_processor`] (`Attention`), [`attention`]
//! (`BasicTransformerBlock`, `FeedForward`, `GEGLU`), [`transformer_2d`],
//! [`unet_2d_blocks`], [`unet_2d_condition`], [`vae`], [`autoencoder_kl`].

pub mod attention;
pub mod attention_processor;
pub mod autoencoder_kl;
pub mod config;
pub mod downsampling;
pub mod embeddings;
pub mod folder;
#[cfg(feature = "parity")]
pub mod parity;
pub mod resnet;
pub mod transformer_2d;
pub mod unet_2d_blocks;
pub mod unet_2d_condition;
pub mod upsampling;
pub mod vae;

pub use autoencoder_kl::{AutoencoderKL, TiledDecode};
pub use config::{AutoencoderKLConfig, PerBlock, UNet2DConditionConfig};
pub use unet_2d_condition::UNet2DConditionModel;
pub use vae::DiagonalGaussianDistribution;
