//! FaceCLIP in Rust: FLUX.1 FluxTransformer2DModel

pub mod parity;
