//! FaceCLIP in Rust: SDXL UNet2DConditionModel and AutoencoderKL

pub mod parity;
