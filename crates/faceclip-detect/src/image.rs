//! 8-bit RGB images as the detector and the aligner take them (what `np.uint8(img)` gives).

use std::path::Path;

use faceclip_core::{Error, Result};

/// An owned RGB8 image: `data[(y·width + x)·3 + c]`, rows top to bottom, channels R, G, B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbU8Image {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbU8Image {
    /// Wraps interleaved RGB8 pixels; the length must be `width·height·3`.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        ImageView::new(width, height, &data)?;
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// A `width × height` image filled with one colour.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        let mut data = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            data.extend_from_slice(&rgb);
        }
        Self {
            width,
            height,
            data,
        }
    }

    /// Decodes a PNG, JPEG or WebP file (alpha dropped, grey expanded to RGB).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode(&bytes).map_err(|e| match e {
            Error::Image { reason, .. } => Error::Image {
                path: path.into(),
                reason,
            },
            other => other,
        })
    }

    /// Decodes image bytes (PNG, JPEG, WebP; at most 16384 pixels a side) with
    /// [`faceclip_core::image::decode_rgb8`]: EXIF orientation applied, so the face is upright.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let rgb =
            faceclip_core::image::decode_rgb8(bytes, 1 << 28).map_err(|reason| Error::Image {
                path: "<memory>".into(),
                reason,
            })?;
        Ok(Self {
            width: rgb.width() as usize,
            height: rgb.height() as usize,
            data: rgb.into_raw(),
        })
    }

    /// A borrowed view.
    pub fn view(&self) -> ImageView<'_> {
        ImageView {
            width: self.width,
            height: self.height,
            data: &self.data,
        }
    }

    /// Writes a PNG (through faceclip-core's atomic writer).
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.view().check()?;
        let img =
            image::RgbImage::from_raw(self.width as u32, self.height as u32, self.data.clone())
                .ok_or_else(|| Error::invalid("image buffer does not match its size"))?;
        faceclip_core::io::write_atomic(path, |tmp| {
            img.save_with_format(tmp, image::ImageFormat::Png)
                .map_err(|e| Error::Image {
                    path: tmp.into(),
                    reason: e.to_string(),
                })
        })
    }
}

/// A borrowed RGB8 image (same layout as [`RgbU8Image`]). Built from an image or from a
/// `(width, height, &pixels)` tuple; the length is checked where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageView<'a> {
    pub width: usize,
    pub height: usize,
    pub data: &'a [u8],
}

impl<'a> ImageView<'a> {
    /// A checked view of interleaved RGB8 pixels.
    pub fn new(width: usize, height: usize, data: &'a [u8]) -> Result<Self> {
        let v = Self {
            width,
            height,
            data,
        };
        v.check()?;
        Ok(v)
    }

    /// Errors when the pixel count does not match `width·height·3`.
    pub fn check(&self) -> Result<()> {
        let want = self
            .width
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(3))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "image size {}x{} overflows",
                    self.width, self.height
                ))
            })?;
        if self.data.len() != want {
            return Err(Error::shape(
                format!("RGB8 pixels of a {}x{} image", self.width, self.height),
                &[self.height, self.width, 3],
                &[self.data.len()],
            ));
        }
        Ok(())
    }

    /// The byte of channel `c` at `(x, y)` (unchecked beyond slice bounds).
    #[inline]
    pub fn at(&self, x: usize, y: usize, c: usize) -> u8 {
        self.data[(y * self.width + x) * 3 + c]
    }

    /// An owned copy.
    pub fn to_owned(&self) -> RgbU8Image {
        RgbU8Image {
            width: self.width,
            height: self.height,
            data: self.data.to_vec(),
        }
    }
}

impl<'a> From<&'a RgbU8Image> for ImageView<'a> {
    fn from(img: &'a RgbU8Image) -> Self {
        img.view()
    }
}

impl<'a> From<(usize, usize, &'a [u8])> for ImageView<'a> {
    fn from((width, height, data): (usize, usize, &'a [u8])) -> Self {
        Self {
            width,
            height,
            data,
        }
    }
}

impl<'a> From<(usize, usize, &'a Vec<u8>)> for ImageView<'a> {
    fn from((width, height, data): (usize, usize, &'a Vec<u8>)) -> Self {
        Self {
            width,
            height,
            data: data.as_slice(),
        }
    }
}
