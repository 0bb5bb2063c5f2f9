//! Images <-> tensors: decoding to torchvision `ToTensor` values, PyTorch's bilinear resize,
//! and PNG output with text metadata.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};

/// The most pixels [`RgbImage::decode`] accepts (8192 x 8192; 768 MiB as planar `f32`).
pub const MAX_PIXELS: u64 = 1 << 26;

/// An RGB image as planar `f32` values in `[0, 1]`: `data[c·H·W + y·W + x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl RgbImage {
    /// From interleaved RGB8 pixels (`H·W·3` bytes), divided by 255 as `ToTensor` does.
    pub fn from_rgb8(width: usize, height: usize, pixels: &[u8]) -> Result<Self> {
        if pixels.len() != width * height * 3 {
            return Err(Error::shape(
                "RGB8 pixels",
                &[height, width, 3],
                &[pixels.len()],
            ));
        }
        let hw = width * height;
        let mut data = vec![0f32; 3 * hw];
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * hw + i] = px[c] as f32 / 255.0;
            }
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Decodes a PNG, JPEG or WebP file (alpha dropped, grey expanded to RGB).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode(&bytes).map_err(|reason| Error::Image {
            path: path.into(),
            reason,
        })
    }

    /// Decodes image bytes (at most [`MAX_PIXELS`] pixels, 16384 a side); the error says why
    /// they are not a usable image.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.is_empty() {
            return Err("the file is empty".into());
        }
        let format = image::guess_format(bytes).map_err(|e| format!("not an image: {e}"))?;
        // The size from the header first: a small file can declare a huge image (a
        // decompression bomb), which would take 15 bytes a pixel here before any check.
        let (w, h) = image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
            .into_dimensions()
            .map_err(|e| format!("cannot decode: {e}"))?;
        if u64::from(w) * u64::from(h) > MAX_PIXELS {
            return Err(format!(
                "the image is {w}x{h}, more than the {MAX_PIXELS} pixels (8192x8192) a face photo may have; scale it down"
            ));
        }
        let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(16_384);
        limits.max_image_height = Some(16_384);
        limits.max_alloc = Some(1 << 30);
        reader.limits(limits);
        let img = reader.decode().map_err(|e| format!("cannot decode: {e}"))?;
        if img.width() == 0 || img.height() == 0 {
            return Err("the image has zero size".into());
        }
        let rgb = img.to_rgb8();
        Self::from_rgb8(rgb.width() as usize, rgb.height() as usize, rgb.as_raw())
            .map_err(|e| e.to_string())
    }

    /// A `[3, H, W]` tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<3> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), [3, self.height, self.width]),
            device,
        )
    }

    /// Resized with [`resize_bilinear`].
    pub fn resize(&self, width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: resize_bilinear(&self.data, 3, self.height, self.width, height, width),
        }
    }

    /// Interleaved RGB8 pixels, values clamped to `[0, 1]` and rounded.
    pub fn to_rgb8(&self) -> Vec<u8> {
        let hw = self.width * self.height;
        let mut out = vec![0u8; hw * 3];
        for i in 0..hw {
            for c in 0..3 {
                out[i * 3 + c] = to_u8(self.data[c * hw + i]);
            }
        }
        out
    }
}

fn to_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// PyTorch's `F.interpolate(x, size=(oh, ow), mode='bilinear', align_corners=False)` with no
/// antialias, on planar `[C, H, W]` values: source coordinate `(dst + 0.5)·(in/out) - 0.5`,
/// clamped at 0, computed in f32 as PyTorch's CPU kernel does.
pub fn resize_bilinear(
    src: &[f32],
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
) -> Vec<f32> {
    fn taps(inp: usize, out: usize) -> Vec<(usize, usize, f32, f32)> {
        let scale = inp as f32 / out as f32;
        (0..out)
            .map(|d| {
                let real = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (real as usize).min(inp - 1);
                let i1 = if i0 < inp - 1 { i0 + 1 } else { i0 };
                let l1 = real - i0 as f32;
                (i0, i1, 1.0 - l1, l1)
            })
            .collect()
    }
    if h == 0 || w == 0 {
        return vec![0.0; c * oh * ow];
    }
    let ys = taps(h, oh);
    let xs = taps(w, ow);
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        let plane = &src[ch * h * w..(ch + 1) * h * w];
        for (oy, &(y0, y1, wy0, wy1)) in ys.iter().enumerate() {
            for (ox, &(x0, x1, wx0, wx1)) in xs.iter().enumerate() {
                let v = wy0 * (wx0 * plane[y0 * w + x0] + wx1 * plane[y0 * w + x1])
                    + wy1 * (wx0 * plane[y1 * w + x0] + wx1 * plane[y1 * w + x1]);
                out[ch * oh * ow + oy * ow + ox] = v;
            }
        }
    }
    out
}

/// Writes a `[3, H, W]` tensor with values in `[0, 1]` as an RGB8 PNG with `tEXt` entries
/// (prompt, seed, ...), atomically.
pub fn save_png(image: &Tensor<3>, path: &Path, text: &[(&str, String)]) -> Result<()> {
    let [c, h, w] = image.dims();
    if c != 3 {
        return Err(Error::shape("image tensor", &[3, h, w], &[c, h, w]));
    }
    let data = image
        .clone()
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Image {
            path: path.into(),
            reason: format!("{e:?}"),
        })?;
    let img = RgbImage {
        width: w,
        height: h,
        data,
    };
    save_rgb8_png(&img.to_rgb8(), w, h, path, text)
}

/// Writes interleaved RGB8 pixels as a PNG with `tEXt` entries, atomically.
pub fn save_rgb8_png(
    pixels: &[u8],
    width: usize,
    height: usize,
    path: &Path,
    text: &[(&str, String)],
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Image {
        path: path.into(),
        reason: e.to_string(),
    };
    crate::io::write_atomic(path, |tmp| {
        let file = std::fs::File::create(tmp).map_err(|e| Error::io(path, e))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in text {
            enc.add_text_chunk(k.to_string(), v.clone())
                .map_err(|e| err(&e))?;
        }
        let mut writer = enc.write_header().map_err(|e| err(&e))?;
        writer.write_image_data(pixels).map_err(|e| err(&e))?;
        writer.finish().map_err(|e| err(&e))?;
        Ok(())
    })
}

/// Reads the `tEXt` entries of a PNG file.
pub fn read_png_text(path: &Path) -> Result<Vec<(String, String)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let reader = decoder.read_info().map_err(|e| Error::Image {
        path: path.into(),
        reason: e.to_string(),
    })?;
    Ok(reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect())
}
