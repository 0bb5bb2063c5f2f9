//! The pretrained MTCNN weights embedded in the crate.
//!
//! `assets/mtcnn.safetensors` holds facenet-pytorch 2.6.0's `pnet.pt`, `rnet.pt` and
//! `onet.pt` state dicts unchanged (float32, 50 tensors, 1.99 MB) with their keys prefixed
//! `pnet.`, `rnet.` and `onet.`. facenet-pytorch is MIT-licensed (Copyright (c) 2019 Timothy
//! Esler); the weights descend from davidsandberg/facenet (MIT) and the original Caffe MTCNN
//! of Zhang et al. (2016). See `assets/LICENSE-mtcnn.txt`.

use faceclip_core::{Checkpoint, Error, Result};

/// The bytes of `assets/mtcnn.safetensors`.
pub static MTCNN_SAFETENSORS: &[u8] = include_bytes!("../assets/mtcnn.safetensors");

/// Label used as the checkpoint "path" in messages.
pub const EMBEDDED_LABEL: &str = "<embedded faceclip-detect/assets/mtcnn.safetensors>";

/// Parses safetensors bytes into an in-memory [`Checkpoint`] (float tensors as `f32`).
pub fn checkpoint_from_safetensors_bytes(label: &str, bytes: &[u8]) -> Result<Checkpoint> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::checkpoint(label, e))?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                .collect(),
            other => {
                return Err(Error::DType {
                    path: label.into(),
                    key: name,
                    dtype: format!("{other:?}"),
                });
            }
        };
        tensors.push((name, shape, values));
    }
    Checkpoint::from_f32(label, tensors)
}

/// The embedded MTCNN weights as a checkpoint (keys `pnet.*`, `rnet.*`, `onet.*`).
pub fn embedded_checkpoint() -> Result<Checkpoint> {
    checkpoint_from_safetensors_bytes(EMBEDDED_LABEL, MTCNN_SAFETENSORS)
}
