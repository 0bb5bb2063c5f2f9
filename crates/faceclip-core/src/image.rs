//! Images <-> tensors: decoding to torchvision `ToTensor` values, PyTorch's bilinear resize,
//! EXIF orientation, and PNG / JPEG / WebP output with metadata.

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

    /// Decodes image bytes (at most [`MAX_PIXELS`] pixels, 16384 a side) with [`decode_rgb8`]
    /// (EXIF orientation applied); the error says why they are not a usable image.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let rgb = decode_rgb8(bytes, MAX_PIXELS)?;
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

/// Decodes PNG, JPEG or WebP bytes to RGB8 (alpha dropped, grey expanded), with the EXIF
/// orientation (phone photos) applied first, so that the pixels are upright. The size is read
/// from the header and refused above `max_pixels` before anything is decoded (a small file
/// can declare a huge image); at most 16384 pixels a side and 1 GiB of decoder memory. The
/// error says why the bytes are not a usable image.
pub fn decode_rgb8(bytes: &[u8], max_pixels: u64) -> std::result::Result<image::RgbImage, String> {
    use image::ImageDecoder;
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let format = image::guess_format(bytes).map_err(|e| format!("not an image: {e}"))?;
    let (w, h) = image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| format!("cannot decode: {e}"))?;
    if u64::from(w) * u64::from(h) > max_pixels {
        let side = max_pixels.isqrt();
        let square = if side * side == max_pixels {
            format!(" ({side}x{side})")
        } else {
            String::new()
        };
        return Err(format!(
            "the image is {w}x{h}, more than the {max_pixels} pixels{square} a face photo may have; scale it down"
        ));
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(1 << 30);
    reader.limits(limits.clone());
    let cannot = |e: image::ImageError| format!("cannot decode: {e}");
    let mut decoder = reader.into_decoder().map_err(cannot)?;
    // What `ImageReader::decode` does: the output buffer counts against the limits.
    limits.reserve(decoder.total_bytes()).map_err(cannot)?;
    decoder.set_limits(limits).map_err(cannot)?;
    let orientation = decoder.orientation().map_err(cannot)?;
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(cannot)?;
    if img.width() == 0 || img.height() == 0 {
        return Err("the image has zero size".into());
    }
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// An output image format, chosen by the file extension: `.png` (lossless, metadata in text
/// chunks), `.jpg`/`.jpeg` (quality [`JPEG_QUALITY`], metadata in `COM` segments) or
/// `.webp` (lossless, no metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Png,
    Jpeg,
    WebP,
}

/// The quality [`save_rgb8`] writes JPEG files with.
pub const JPEG_QUALITY: u8 = 95;

impl OutputFormat {
    /// The file extensions [`OutputFormat::from_path`] accepts (case-insensitive).
    pub const EXTENSIONS: [&'static str; 4] = ["png", "jpg", "jpeg", "webp"];

    /// The format `path`'s extension names (case-insensitive `.png`, `.jpg`, `.jpeg`,
    /// `.webp`); any other extension, or none, is an [`Error::Image`] naming the path and
    /// the supported extensions.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("png") => Ok(Self::Png),
            Some("jpg" | "jpeg") => Ok(Self::Jpeg),
            Some("webp") => Ok(Self::WebP),
            other => Err(Error::Image {
                path: path.into(),
                reason: format!(
                    "{}; expected a file name ending in .png, .jpg, .jpeg or .webp",
                    match other {
                        Some(e) => format!("unsupported output format `.{e}`"),
                        None => "no file extension to choose the output format by".into(),
                    }
                ),
            }),
        }
    }

    /// The usual extension (`png`, `jpg`, `webp`).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::WebP => "webp",
        }
    }

    /// The largest width or height the format can store (PNG 2³¹−1, JPEG 65535, WebP
    /// 16383).
    pub fn max_side(self) -> usize {
        match self {
            Self::Png => (1 << 31) - 1,
            Self::Jpeg => 65_535,
            Self::WebP => 16_383,
        }
    }

    /// Whether files of this format carry [`save_rgb8`]'s metadata (PNG, JPEG: yes; WebP: no).
    pub fn carries_metadata(self) -> bool {
        !matches!(self, Self::WebP)
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Png => "PNG",
            Self::Jpeg => "JPEG",
            Self::WebP => "WebP",
        })
    }
}

/// Checks, before any long computation, everything about an output path that [`save_rgb8`]
/// could fail on: `path` is not a directory, its extension names an [`OutputFormat`], and
/// its folder exists and is writable ([`crate::io::check_writable`]). Returns the format.
pub fn check_output(path: &Path) -> Result<OutputFormat> {
    if path.is_dir() {
        // check_writable's "is a directory" error.
        crate::io::check_writable(path)?;
    }
    let format = OutputFormat::from_path(path)?;
    crate::io::check_writable(path)?;
    Ok(format)
}

/// Writes interleaved RGB8 pixels (`H·W·3` bytes) in the format `path`'s extension names
/// ([`OutputFormat::from_path`]), atomically ([`crate::io::write_atomic`]), and returns the
/// format. `metadata` (prompt, seed, ...) goes into PNG `iTXt` chunks (UTF-8; read back by
/// [`read_png_text`]) or JPEG `COM` segments, one `key: value` each (UTF-8; a value is cut
/// at 65000 bytes there); WebP files carry none. Keys must be 1 to 79 printable ASCII
/// characters without `:`.
pub fn save_rgb8(
    pixels: &[u8],
    width: usize,
    height: usize,
    path: &Path,
    metadata: &[(&str, String)],
) -> Result<OutputFormat> {
    let format = OutputFormat::from_path(path)?;
    write_encoded(format, pixels, width, height, path, metadata)?;
    Ok(format)
}

/// Writes interleaved RGB8 pixels as a PNG with `metadata` in `iTXt` chunks (UTF-8),
/// atomically, whatever `path`'s extension. [`save_rgb8`] picks the format by extension.
pub fn save_rgb8_png(
    pixels: &[u8],
    width: usize,
    height: usize,
    path: &Path,
    text: &[(&str, String)],
) -> Result<()> {
    write_encoded(OutputFormat::Png, pixels, width, height, path, text)
}

/// Writes a `[3, H, W]` tensor with values in `[0, 1]` as an RGB8 PNG with `metadata` in
/// `iTXt` chunks, atomically.
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

/// The longest value a JPEG `COM` segment carries (the segment holds at most 65533 bytes).
const JPEG_COMMENT_MAX: usize = 65_000;

fn write_encoded(
    format: OutputFormat,
    pixels: &[u8],
    width: usize,
    height: usize,
    path: &Path,
    metadata: &[(&str, String)],
) -> Result<()> {
    let image_err = |reason: String| Error::Image {
        path: path.into(),
        reason,
    };
    let want = width.checked_mul(height).and_then(|n| n.checked_mul(3));
    if want != Some(pixels.len()) {
        return Err(Error::shape(
            format!("RGB8 pixels of a {width}x{height} image"),
            &[height, width, 3],
            &[pixels.len()],
        ));
    }
    if width == 0 || height == 0 || width.max(height) > format.max_side() {
        return Err(image_err(format!(
            "cannot write a {width}x{height} image as {format}: each side must be between 1 and {}",
            format.max_side()
        )));
    }
    for (k, _) in metadata {
        if k.is_empty()
            || k.len() > 79
            || !k
                .bytes()
                .all(|b| b == b' ' || (b.is_ascii_graphic() && b != b':'))
        {
            return Err(image_err(format!(
                "metadata key `{k}` must be 1 to 79 printable ASCII characters without `:`"
            )));
        }
    }
    let (w, h) = (width as u32, height as u32);
    let mut bytes = Vec::new();
    match format {
        OutputFormat::Png => {
            let mut enc = png::Encoder::new(&mut bytes, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            for (k, v) in metadata {
                enc.add_itxt_chunk(k.to_string(), v.clone())
                    .map_err(|e| image_err(e.to_string()))?;
            }
            let mut writer = enc.write_header().map_err(|e| image_err(e.to_string()))?;
            writer
                .write_image_data(pixels)
                .map_err(|e| image_err(e.to_string()))?;
            writer.finish().map_err(|e| image_err(e.to_string()))?;
        }
        OutputFormat::Jpeg => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
                .encode(pixels, w, h, image::ExtendedColorType::Rgb8)
                .map_err(|e| image_err(e.to_string()))?;
            bytes = insert_jpeg_comments(bytes, metadata);
        }
        OutputFormat::WebP => {
            image::codecs::webp::WebPEncoder::new_lossless(&mut bytes)
                .encode(pixels, w, h, image::ExtendedColorType::Rgb8)
                .map_err(|e| image_err(e.to_string()))?;
        }
    }
    crate::io::write_atomic(path, |tmp| {
        std::fs::write(tmp, &bytes).map_err(|e| Error::io(path, e))
    })
}

/// `jpeg` with one `COM` segment `key: value` per entry, placed after the JFIF `APP0`
/// segment (or right after SOI when there is none).
fn insert_jpeg_comments(jpeg: Vec<u8>, metadata: &[(&str, String)]) -> Vec<u8> {
    if metadata.is_empty() || jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] {
        return jpeg;
    }
    let mut at = 2;
    if jpeg[2..4] == [0xFF, 0xE0] && jpeg.len() >= 6 {
        let len = u16::from_be_bytes([jpeg[4], jpeg[5]]) as usize;
        at = (4 + len).min(jpeg.len());
    }
    let mut out = Vec::with_capacity(jpeg.len() + 64 * metadata.len());
    out.extend_from_slice(&jpeg[..at]);
    for (k, v) in metadata {
        let mut value = v.as_str();
        if value.len() > JPEG_COMMENT_MAX {
            let mut end = JPEG_COMMENT_MAX;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value = &value[..end];
        }
        let body = format!("{k}: {value}");
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body.as_bytes());
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// Reads the text entries of a PNG file (`tEXt`, `zTXt` and `iTXt`; all of the file,
/// including chunks after the image data), in that order of chunk kinds.
pub fn read_png_text(path: &Path) -> Result<Vec<(String, String)>> {
    let err = |reason: String| Error::Image {
        path: path.into(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().map_err(|e| err(e.to_string()))?;
    // Text after the image data is only seen once the rest of the file is read.
    reader.finish().map_err(|e| err(e.to_string()))?;
    let info = reader.info();
    let mut out: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    for t in &info.compressed_latin1_text {
        let text = t
            .get_text()
            .map_err(|e| err(format!("zTXt `{}`: {e}", t.keyword)))?;
        out.push((t.keyword.clone(), text));
    }
    for t in &info.utf8_text {
        let text = t
            .get_text()
            .map_err(|e| err(format!("iTXt `{}`: {e}", t.keyword)))?;
        out.push((t.keyword.clone(), text));
    }
    Ok(out)
}

/// Reads the metadata [`save_rgb8`] wrote: a PNG's text entries ([`read_png_text`]), a
/// JPEG's `COM` segments split at the first `": "` (a comment without one comes back under
/// the key `comment`), nothing for WebP.
pub fn read_metadata(path: &Path) -> Result<Vec<(String, String)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let err = |reason: String| Error::Image {
        path: path.into(),
        reason,
    };
    match image::guess_format(&bytes).map_err(|e| err(format!("not an image: {e}")))? {
        image::ImageFormat::Png => read_png_text(path),
        image::ImageFormat::Jpeg => jpeg_comments(&bytes).map_err(err).map(|c| {
            c.into_iter()
                .map(|text| match text.split_once(": ") {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => ("comment".to_string(), text),
                })
                .collect()
        }),
        _ => Ok(Vec::new()),
    }
}

/// The `COM` segments of a JPEG before its first scan, as (lossy) UTF-8.
fn jpeg_comments(b: &[u8]) -> std::result::Result<Vec<String>, String> {
    let truncated = || "truncated JPEG header".to_string();
    if b.len() < 2 || b[..2] != [0xFF, 0xD8] {
        return Err("not a JPEG (no SOI marker)".into());
    }
    let mut out = Vec::new();
    let mut i = 2;
    loop {
        if *b.get(i).ok_or_else(truncated)? != 0xFF {
            return Err(format!("JPEG marker expected at byte {i}"));
        }
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let marker = *b.get(i).ok_or_else(truncated)?;
        i += 1;
        match marker {
            0xD9 | 0xDA => return Ok(out),
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len = match b.get(i..i + 2) {
            Some(l) => u16::from_be_bytes([l[0], l[1]]) as usize,
            None => return Err(truncated()),
        };
        if len < 2 {
            return Err(format!("JPEG segment length {len} at byte {i} is below 2"));
        }
        let body = b.get(i + 2..i + len).ok_or_else(truncated)?;
        if marker == 0xFE {
            out.push(String::from_utf8_lossy(body).into_owned());
        }
        i += len;
    }
}
