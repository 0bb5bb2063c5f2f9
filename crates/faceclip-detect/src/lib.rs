//! FaceCLIP in Rust: MTCNN face detection (facenet-pytorch) and ArcFace-template alignment (insightface norm_crop).

pub mod parity;
