//! FaceCLIP in Rust: FLUX.1's `FluxTransformer2DModel` (diffusers layout), the latent
//! packing and position ids FluxPipeline feeds it, and the checkpoint layouts it loads
//! (diffusers folders, FaceCLIP's `dit.pt`, Black Forest Labs' single file).

pub mod attention_processor;
pub mod bfl;
pub mod config;
pub mod embeddings;
pub mod normalization;
pub mod packing;
#[cfg(feature = "parity")]
pub mod parity;
pub mod transformer_flux;

pub use config::FluxTransformerConfig;
pub use embeddings::{FluxPosEmbed, FluxRotaryEmbedding};
pub use packing::{image_ids, latent_size, pack_latents, text_ids, unpack_latents};
pub use transformer_flux::{
    FluxSingleTransformerBlock, FluxTransformer2DModel, FluxTransformerBlock,
};
