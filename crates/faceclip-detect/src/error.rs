//! The typed error of [`crate::Mtcnn::detect_and_align`].

/// Why no aligned face came back. Converts into [`faceclip_core::Error`] (as
/// `InvalidInput`, with the same message) so `?` works in code using the core error.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The detector found no face in the image.
    #[error(
        "no face found in the {width}x{height} image (MTCNN, min_face_size {min_face_size}); pass a photo in which a face is at least that many pixels wide"
    )]
    NoFace {
        width: usize,
        height: usize,
        min_face_size: f64,
    },
    /// `face_index` is not below the number of faces found.
    #[error("face index {index} is out of range: {count} face(s) found (index 0 is the largest)")]
    FaceIndexOutOfRange { index: usize, count: usize },
    /// The image's short side is below the smallest face the detector looks for.
    #[error(
        "the {width}x{height} image is too small for face detection: its short side must be at least {min_side} pixels"
    )]
    ImageTooSmall {
        width: usize,
        height: usize,
        min_side: usize,
    },
    /// Anything else (bad buffer size, bad output size, degenerate landmarks, backend failure).
    #[error(transparent)]
    Other(#[from] faceclip_core::Error),
}

impl From<DetectError> for faceclip_core::Error {
    fn from(e: DetectError) -> Self {
        match e {
            DetectError::Other(inner) => inner,
            other => faceclip_core::Error::InvalidInput(other.to_string()),
        }
    }
}
