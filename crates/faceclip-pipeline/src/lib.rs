//! FaceCLIP in Rust: schedulers, the two pipelines, model discovery and the parity dispatch.

pub mod parity;
pub mod schedulers;

pub use faceclip_core as core;
pub use faceclip_detect as detect;
pub use faceclip_dit as dit;
pub use faceclip_encoders as encoders;
pub use faceclip_unet as unet;
