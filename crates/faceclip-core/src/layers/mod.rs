//! Layers shared by more than one model. Each owns its upstream parameter names.

mod activation;
mod attention;
mod conv;
mod embeddings;
pub(crate) mod host;
mod host_attention;
mod linear;
mod norm;

pub use activation::Activation;
pub use attention::{
    AttentionMask, attention, attention_cpu_kernel, causal_mask, merge_heads, split_heads,
};
pub use conv::Conv2d;
pub use embeddings::{Embedding, timestep_embedding};
pub use linear::Linear;
pub use norm::{BatchNorm, GroupNorm, LayerNorm, RmsNorm};
