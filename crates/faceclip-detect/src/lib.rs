//! FaceCLIP in Rust: MTCNN face detection (facenet-pytorch 2.6.0) and ArcFace-template
//! alignment (insightface `norm_crop`), so that a plain photo can become the aligned face
//! crop FaceCLIP expects.
//!
//! ```no_run
//! # fn main() -> faceclip_core::Result<()> {
//! use faceclip_detect::{Mtcnn, RgbU8Image};
//! let device = faceclip_core::device::default_device()?;
//! let mtcnn = Mtcnn::new(&device)?; // weights embedded in the crate
//! let photo = RgbU8Image::open("photo.jpg")?;
//! let faces = mtcnn.detect(&photo)?; // largest first
//! let face = mtcnn.detect_and_align(&photo, 0, 448)?; // 448×448 ArcFace crop
//! # Ok(()) }
//! ```
//!
//! - [`Mtcnn`]: P-Net, R-Net and O-Net ([`PNet`], [`RNet`], [`ONet`]) on a burn device; the
//!   pyramid, NMS and box arithmetic on the host in the reference's float32 steps.
//! - [`AlignMode`] / [`Mtcnn::face_crop`]: use an image that already is an aligned crop
//!   as is ([`Mtcnn::is_aligned_crop`]), align any other.
//! - [`align`] / [`face_align`]: Umeyama similarity to the ArcFace template and OpenCV's
//!   fixed-point `warpAffine` ([`warp_affine`]), bit-exact.
//! - The pretrained MTCNN weights (facenet-pytorch, MIT) are embedded: [`weights`].

pub mod aligned;
pub mod detect_face;
pub mod error;
pub mod face_align;
pub mod image;
pub mod mtcnn;
pub mod onet;
#[cfg(feature = "parity")]
pub mod parity;
pub mod pnet;
pub mod prelu;
pub mod rnet;
pub mod warp_affine;
pub mod weights;

pub use aligned::{ALIGNED_CROP_MAX_DISTANCE, AlignMode, FaceCrop, alignment_distance};
pub use error::DetectError;
pub use face_align::{ARCFACE_DST, Affine, arcface_template, estimate_norm, norm_crop, umeyama};
pub use image::{ImageView, RgbU8Image};
pub use mtcnn::{AlignedFace, Detection, Mtcnn, MtcnnConfig};
pub use onet::ONet;
pub use pnet::PNet;
pub use rnet::RNet;
pub use warp_affine::warp_affine;

/// insightface `norm_crop(image, landmarks, size)`: the `size × size` RGB8 crop that maps the
/// five landmarks onto the ArcFace template × `size/112` (OpenCV-exact bilinear warp, black
/// outside the photo), and the photo → crop matrix.
pub fn align<'a>(
    image: impl Into<ImageView<'a>>,
    landmarks: &[[f32; 2]; 5],
    size: usize,
) -> faceclip_core::Result<(Vec<u8>, Affine)> {
    norm_crop(image, landmarks, size)
}
