//! faceclip-core: the ground every FaceCLIP model stands on.
//!
//! - [`error`]: the one error type, whose messages name the file, key and shapes.
//! - [`checkpoint`]: `.safetensors` (mmap, sharded) and PyTorch `.pt` reading.
//! - [`var_builder`]: the one loading path; coverage reports; lazy full-size builds.
//! - [`lora`]: LoRA files (diffusers/PEFT, kohya, XLabs) merged into weights as they load.
//! - [`layers`]: linear, conv, norms, activations, attention, embeddings.
//! - [`image`]: image files <-> tensors, PyTorch's bilinear resize, PNG with metadata.
//! - [`device`]: backend names -> burn devices.
//! - [`fixture`], [`manifest`]: the parity ground truth.

pub mod checkpoint;
pub mod device;
pub mod error;
pub mod fixture;
pub mod fuzzing;
pub mod image;
pub mod io;
pub mod layers;
pub mod lora;
pub mod manifest;
pub mod var_builder;

pub use burn;
pub use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
pub use checkpoint::{Checkpoint, StoredDType, TensorInfo};
pub use error::{CoverageReport, Error, Result};
pub use fixture::{Comparison, Fixture, ParityReport};
pub use lora::{LoraLayout, LoraSet, LoraSpec, LoraTarget};
pub use manifest::Manifest;
pub use var_builder::VarBuilder;

/// What a crate's parity hook returns for one fixture or manifest: `None` when the kind is
/// not one this crate ports.
pub type ParityOutcome = Option<Result<ParityReport>>;

/// Reads a tensor's values back to the host as `f32`.
pub fn to_vec_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("converted to f32 just above")
}
