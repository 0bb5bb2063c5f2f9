//! The pretrained MTCNN weights embedded in the crate.
//!
//! `assets/mtcnn.safetensors` holds facenet-pytorch 2.6.0's `pnet.pt`, `rnet.pt` and
//! `onet.pt` state dicts unchanged (float32, 50 tensors, 1.99 MB) with their keys prefixed
//! `pnet.`, `rnet.` and `onet.`. facenet-pytorch is MIT-licensed (Copyright (c) 2019 Timothy
//! Esler); the weights descend from davidsandberg/facenet (MIT) and the original Caffe MTCNN
//! of Zhang et al. (2016). See `assets/LICENSE-mtcnn.txt`.

use faceclip_core::{Checkpoint, Result};

/// The bytes of `assets/mtcnn.safetensors`.
pub static MTCNN_SAFETENSORS: &[u8] = include_bytes!("../assets/mtcnn.safetensors");

/// Label used as the checkpoint "path" in messages.
pub const EMBEDDED_LABEL: &str = "<embedded faceclip-detect/assets/mtcnn.safetensors>";

/// Parses safetensors bytes into an in-memory [`Checkpoint`].
pub fn checkpoint_from_safetensors_bytes(label: &str, bytes: &[u8]) -> Result<Checkpoint> {
    Checkpoint::from_safetensors_bytes(label, bytes)
}

/// The embedded MTCNN weights as a checkpoint (keys `pnet.*`, `rnet.*`, `onet.*`).
pub fn embedded_checkpoint() -> Result<Checkpoint> {
    checkpoint_from_safetensors_bytes(EMBEDDED_LABEL, MTCNN_SAFETENSORS)
}
