//! FaceCLIP in Rust: tokenizers, CLIP text towers, T5 encoder, face ViT, the face-text
//! fusion encoders and the FaceCLIP-L/G and FaceT5 encoders.

pub mod clip_text_model;
pub mod face_vit;
pub mod fusion;
#[cfg(feature = "parity")]
pub mod parity;
pub mod t5_encoder;
pub mod tokenizer_clip;
pub mod tokenizer_t5;
