//! Images that already are ArcFace-aligned face crops (FaceCLIP's own example faces, the
//! output of `faceclip align`), and [`AlignMode`]: whether to detect and align a face image
//! before the encoders see it.

use std::fmt;
use std::str::FromStr;

use faceclip_core::{Error, Result};

use crate::error::DetectError;
use crate::face_align::arcface_template;
use crate::image::{ImageView, RgbU8Image};
use crate::mtcnn::{AlignedFace, Mtcnn};

/// The largest [`alignment_distance`] (pixels at 448) at which a square image counts as an
/// already-aligned ArcFace crop: about what an 8° rotation, a 14 % scale change or a 16 px
/// shift of a crop moves its landmarks by.
///
/// Measured with the embedded MTCNN (default config, flex backend) through
/// [`Mtcnn::aligned_crop_distance`] (`cargo test -p faceclip-detect --test aligned_crop --
/// --ignored` prints them): on the 14 example crops of upstream FaceCLIP (`asset/*.png`)
/// 2.4–9.2 px (mean 4.45); on the five `face_align` fixture crops (`norm_crop` at 448 of
/// MTCNN's landmarks in the photos) 2.6–5.5 px and 16.9 px (the turned face of
/// `aligned_0`). On square head-shot crops of the four `mtcnn_detect` photos with a face
/// (the face box with 0–30 % margin, resized to 448) 30.9–96.8 px. MTCNN's own landmark
/// error is of that order: an example crop rotated by 6° measures 12.0–15.0 px, scaled by
/// 0.9 8.9–17.0 px, shifted by 16 px 15.7–19.3 px, so re-aligning a crop that close to the
/// template would not bring it closer. 16 px lies 1.7x above the largest example-crop value
/// and 1.9x below the smallest head-shot value.
pub const ALIGNED_CROP_MAX_DISTANCE: f32 = 16.0;

/// The side [`Mtcnn::aligned_crop_distance`] resizes a square image to, and the grey border
/// (a quarter of it on every side) it adds before detecting: MTCNN misplaces the landmarks
/// of a face that fills the whole frame (the example crops measure up to 43 px without the
/// border).
const CHECK_SIDE: usize = 448;
const CHECK_BORDER: usize = CHECK_SIDE / 4;
const CHECK_FILL: u8 = 127;

/// Whether a face image is detected and aligned before the encoders see it. The default is
/// [`AlignMode::Auto`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AlignMode {
    /// Use the image as is when it already is an aligned crop ([`Mtcnn::is_aligned_crop`]),
    /// else detect and align.
    #[default]
    Auto,
    /// Always detect and align ([`Mtcnn::detect_and_align`]).
    Always,
    /// Never: the image is used as is (it must already be an aligned crop).
    Never,
}

impl AlignMode {
    /// The names [`FromStr`] accepts.
    pub const NAMES: [&'static str; 3] = ["auto", "always", "never"];
}

impl fmt::Display for AlignMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlignMode::Auto => "auto",
            AlignMode::Always => "always",
            AlignMode::Never => "never",
        })
    }
}

impl FromStr for AlignMode {
    type Err = Error;

    /// `auto`, `always` or `never` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AlignMode::Auto),
            "always" => Ok(AlignMode::Always),
            "never" => Ok(AlignMode::Never),
            _ => Err(Error::invalid(format!(
                "align mode `{s}`: expected one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }
}

/// What [`Mtcnn::face_crop`] gives the encoders.
#[derive(Debug, Clone, PartialEq)]
pub enum FaceCrop {
    /// The input image, unchanged (already aligned, or [`AlignMode::Never`]).
    AsIs(RgbU8Image),
    /// A face detected and aligned to the ArcFace template.
    Aligned(AlignedFace),
}

impl FaceCrop {
    /// The crop's pixels.
    pub fn image(&self) -> &RgbU8Image {
        match self {
            FaceCrop::AsIs(img) => img,
            FaceCrop::Aligned(face) => &face.image,
        }
    }

    /// The crop's pixels, owned.
    pub fn into_image(self) -> RgbU8Image {
        match self {
            FaceCrop::AsIs(img) => img,
            FaceCrop::Aligned(face) => face.image,
        }
    }

    /// True when the input was used unchanged.
    pub fn is_as_is(&self) -> bool {
        matches!(self, FaceCrop::AsIs(_))
    }
}

/// How far re-aligning would move a `side × side` image whose face has these five
/// `landmarks`: the similarity that maps the landmarks (scaled to 448) onto the ArcFace
/// template at 448 ([`crate::umeyama`], what `norm_crop(…, 448)` would apply) moves the
/// template's five points by this rms distance, in pixels at 448. 0 for a perfectly aligned
/// crop; the part of the landmarks' scatter no similarity explains does not count. Infinite
/// for degenerate landmarks or `side` 0.
pub fn alignment_distance(landmarks: &[[f32; 2]; 5], side: usize) -> f32 {
    let Ok(template) = arcface_template(448) else {
        return f32::INFINITY;
    };
    if side == 0 {
        return f32::INFINITY;
    }
    let s = 448.0 / side as f32;
    let scaled = landmarks.map(|[x, y]| [x * s, y * s]);
    let Some(m) = crate::face_align::umeyama(&scaled, &template) else {
        return f32::INFINITY;
    };
    let sum: f64 = template
        .iter()
        .map(|t| {
            let (x, y) = (t[0] as f64, t[1] as f64);
            let nx = m[0][0] * x + m[0][1] * y + m[0][2];
            let ny = m[1][0] * x + m[1][1] * y + m[1][2];
            (nx - x).powi(2) + (ny - y).powi(2)
        })
        .sum();
    let d = (sum / 5.0).sqrt() as f32;
    if d.is_finite() { d } else { f32::INFINITY }
}

impl Mtcnn {
    /// [`alignment_distance`] of the largest face in a square image, measured on the image
    /// resized to 448x448 (when it is not) inside a grey border of 112 px; `None` when the
    /// image is not square, is smaller than the detector's smallest face, or holds no face.
    pub fn aligned_crop_distance<'a>(
        &self,
        image: impl Into<ImageView<'a>>,
    ) -> Result<Option<f32>> {
        let img = image.into();
        img.check()?;
        if img.width != img.height || img.width < self.config().min_image_side() {
            return Ok(None);
        }
        let resized;
        let crop = if img.width == CHECK_SIDE {
            img
        } else {
            let buf =
                image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data.to_vec())
                    .ok_or_else(|| Error::invalid("image buffer does not match its size"))?;
            resized = image::imageops::resize(
                &buf,
                CHECK_SIDE as u32,
                CHECK_SIDE as u32,
                image::imageops::FilterType::Triangle,
            )
            .into_raw();
            ImageView::new(CHECK_SIDE, CHECK_SIDE, &resized)?
        };
        let big = CHECK_SIDE + 2 * CHECK_BORDER;
        let mut canvas = RgbU8Image::filled(big, big, [CHECK_FILL; 3]);
        let row = CHECK_SIDE * 3;
        for y in 0..CHECK_SIDE {
            let at = ((y + CHECK_BORDER) * big + CHECK_BORDER) * 3;
            canvas.data[at..at + row].copy_from_slice(&crop.data[y * row..(y + 1) * row]);
        }
        let dets = self.detect(&canvas)?;
        Ok(dets.first().map(|d| {
            let b = CHECK_BORDER as f32;
            alignment_distance(&d.landmarks.map(|[x, y]| [x - b, y - b]), CHECK_SIDE)
        }))
    }

    /// True when `image` already is an ArcFace-aligned crop: it is square and the largest
    /// face's [`alignment_distance`] ([`Mtcnn::aligned_crop_distance`]) is at most
    /// [`ALIGNED_CROP_MAX_DISTANCE`]. Errors only on a pixel buffer of the wrong length or a
    /// backend failure.
    pub fn is_aligned_crop<'a>(&self, image: impl Into<ImageView<'a>>) -> Result<bool> {
        Ok(self
            .aligned_crop_distance(image)?
            .is_some_and(|d| d <= ALIGNED_CROP_MAX_DISTANCE))
    }

    /// The face crop the encoders must see, by `mode`: [`AlignMode::Never`] the image as is;
    /// [`AlignMode::Always`] [`Mtcnn::detect_and_align`]`(image, face_index, size)`;
    /// [`AlignMode::Auto`] the image as is when `face_index` is 0 and it already is an
    /// aligned crop ([`Mtcnn::is_aligned_crop`]; any square size, the encoders resize it),
    /// else what `Always` gives.
    pub fn face_crop<'a>(
        &self,
        image: impl Into<ImageView<'a>>,
        mode: AlignMode,
        face_index: usize,
        size: usize,
    ) -> std::result::Result<FaceCrop, DetectError> {
        let img = image.into();
        img.check()?;
        let as_is = match mode {
            AlignMode::Never => true,
            AlignMode::Always => false,
            AlignMode::Auto => {
                arcface_template(size)?;
                face_index == 0 && self.is_aligned_crop(img)?
            }
        };
        if as_is {
            Ok(FaceCrop::AsIs(img.to_owned()))
        } else {
            self.detect_and_align(img, face_index, size)
                .map(FaceCrop::Aligned)
        }
    }
}
