//! faceclip-core: the ground every FaceCLIP model stands on.
//!
//! - [`error`]: the one error type, whose messages name the file, key and shapes.
//! - [`checkpoint`]: `.safetensors` (mmap, sharded), `.gguf` and PyTorch `.pt` reading.
//! - [`gguf`]: GGUF files (llama.cpp's format): hostile-input-safe parsing, streaming writing.
//! - [`var_builder`]: the one loading path; coverage reports; lazy full-size builds.
//! - [`lora`]: LoRA files (diffusers/PEFT, kohya, XLabs) merged into weights as they load.
//! - [`pretrained`]: the one model-loading trait ([`Pretrained`]) and config reader
//!   ([`read_config`]).
//! - [`quant`]: weight-only block quantization (GGML's Q8_0, Q4_0) for linear layers.
//! - [`layers`]: linear, conv, norms, activations, attention, embeddings.
//! - [`image`]: image files <-> tensors, PyTorch's bilinear resize, PNG with metadata.
//! - [`device`]: backend names -> burn devices.
//! - [`flops`]: a count of a forward pass's multiply-adds (the benches' GFLOP/s).
//! - [`trace`]: named intermediate values of a forward pass ([`Trace`]), for debugging parity.
//! - With the `parity` feature: `fixture`, `manifest` (the parity ground truth) and `fuzzing`
//!   (the fuzz-target bodies), the test harness of every crate.

pub mod checkpoint;
pub mod device;
pub mod error;
pub mod flops;
#[cfg(feature = "parity")]
pub mod fixture;
#[cfg(feature = "parity")]
pub mod fuzzing;
pub mod gguf;
pub mod image;
pub mod io;
pub mod layers;
pub mod lora;
pub mod packed;
#[cfg(feature = "parity")]
pub mod manifest;
pub mod pretrained;
pub mod quant;
pub mod trace;
pub mod var_builder;

pub use burn;
pub use half;
pub use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
pub use checkpoint::{Checkpoint, StoredDType, TensorInfo};
pub use error::{CoverageReport, Error, Result};
#[cfg(feature = "parity")]
pub use fixture::{Comparison, Fixture, ParityReport};
pub use lora::{LoraLayout, LoraSet, LoraSpec, LoraTarget};
#[cfg(feature = "parity")]
pub use manifest::Manifest;
pub use pretrained::{Pretrained, WeightOptions, read_config};
pub use packed::{CpuKernel, PackedMatrix};
pub use quant::{QMatrix, QuantType};
pub use trace::Trace;
pub use var_builder::VarBuilder;

/// What a crate's parity hook returns for one fixture or manifest: `None` when the kind is
/// not one this crate ports.
#[cfg(feature = "parity")]
pub type ParityOutcome = Option<Result<ParityReport>>;

/// Reads a tensor's values back to the host as `f32`.
pub fn to_vec_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("converted to f32 just above")
}
