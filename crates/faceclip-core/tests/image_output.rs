//! Output by extension (PNG, JPEG, WebP), UTF-8 metadata, output-path checks, and EXIF
//! orientation on decode.

mod common;

use std::path::Path;

use common::scratch;
use faceclip_core::Error;
use faceclip_core::image::{
    MAX_PIXELS, OutputFormat, RgbImage, check_output, read_metadata, read_png_text, save_rgb8,
    save_rgb8_png,
};

/// A smooth `w x h` RGB8 picture (gradients, so that JPEG stays close) with a distinct value
/// in every pixel of the first row.
fn picture(w: usize, h: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            px.push((x * 255 / (w - 1)) as u8);
            px.push((y * 255 / (h - 1)) as u8);
            px.push(((x + y) * 127 / (w + h - 2)) as u8 + 64);
        }
    }
    px
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const UNICODE: &str = "a portrait — “quoted” 東京 😀";

#[test]
fn unicode_metadata_round_trips_in_png() {
    let dir = scratch("utf8");
    let path = dir.join("out.png");
    let meta = [
        ("prompt", UNICODE.to_string()),
        ("negative_prompt", "ugly, blurry".to_string()),
        ("seed", "42".to_string()),
        ("empty", String::new()),
    ];
    save_rgb8_png(&picture(5, 4), 5, 4, &path, &meta).unwrap();
    let text = read_png_text(&path).unwrap();
    let want: Vec<(String, String)> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(text, want);
    // The same through the extension-driven writer and the format-agnostic reader.
    let path2 = dir.join("out2.PNG");
    assert_eq!(
        save_rgb8(&picture(5, 4), 5, 4, &path2, &meta).unwrap(),
        OutputFormat::Png
    );
    assert_eq!(read_metadata(&path2).unwrap(), want);
}

#[test]
fn each_format_is_written_as_its_extension_says() {
    let dir = scratch("formats");
    let (w, h) = (37, 23);
    let pixels = picture(w, h);
    let meta = [("prompt", UNICODE.to_string()), ("seed", "7".to_string())];
    let want_meta: Vec<(String, String)> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for (name, format, magic) in [
        ("a.png", OutputFormat::Png, &b"\x89PNG\r\n\x1a\n"[..]),
        ("b.jpg", OutputFormat::Jpeg, &b"\xFF\xD8\xFF"[..]),
        ("c.JPEG", OutputFormat::Jpeg, &b"\xFF\xD8\xFF"[..]),
        ("d.webp", OutputFormat::WebP, &b"RIFF"[..]),
    ] {
        let path = dir.join(name);
        assert_eq!(check_output(&path).unwrap(), format, "{name}");
        assert_eq!(save_rgb8(&pixels, w, h, &path, &meta).unwrap(), format);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(magic), "{name}: {:?}", &bytes[..8]);
        let guessed = image::guess_format(&bytes).unwrap();
        let want = match format {
            OutputFormat::Png => image::ImageFormat::Png,
            OutputFormat::Jpeg => image::ImageFormat::Jpeg,
            OutputFormat::WebP => image::ImageFormat::WebP,
        };
        assert_eq!(guessed, want, "{name}");
        let back = image::load_from_memory_with_format(&bytes, want)
            .unwrap()
            .to_rgb8();
        assert_eq!((back.width() as usize, back.height() as usize), (w, h));
        let diffs: Vec<i32> = back
            .as_raw()
            .iter()
            .zip(&pixels)
            .map(|(&a, &b)| (a as i32 - b as i32).abs())
            .collect();
        let max = *diffs.iter().max().unwrap();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        match format {
            OutputFormat::Png | OutputFormat::WebP => {
                assert_eq!(back.as_raw(), &pixels, "{name} is lossless")
            }
            OutputFormat::Jpeg => assert!(
                mean < 2.0 && max <= 16,
                "{name}: mean |diff| {mean}, max {max}"
            ),
        }
        let got_meta = read_metadata(&path).unwrap();
        if format.carries_metadata() {
            assert_eq!(got_meta, want_meta, "{name}");
        } else {
            assert!(got_meta.is_empty(), "{name}: {got_meta:?}");
        }
    }
    // Only the four files: no temporary file left behind.
    assert_eq!(files_in(&dir), ["a.png", "b.jpg", "c.JPEG", "d.webp"]);
}

#[test]
fn unsupported_extensions_are_refused_before_writing() {
    let dir = scratch("bad_ext");
    let pixels = picture(4, 3);
    for name in ["out.gif", "out", "out.png.bak", "out.tiff"] {
        let path = dir.join(name);
        for e in [
            OutputFormat::from_path(&path).unwrap_err(),
            check_output(&path).unwrap_err(),
            save_rgb8(&pixels, 4, 3, &path, &[]).unwrap_err(),
        ] {
            let msg = e.to_string();
            assert!(matches!(e, Error::Image { .. }), "{msg}");
            assert!(
                msg.contains(name) && msg.contains(".png, .jpg, .jpeg or .webp"),
                "{msg}"
            );
        }
    }
    assert!(files_in(&dir).is_empty());
    assert_eq!(
        OutputFormat::from_path(Path::new("X.WebP")).unwrap(),
        OutputFormat::WebP
    );
    assert_eq!(
        OutputFormat::from_path(Path::new("dir.d/x.Jpg")).unwrap(),
        OutputFormat::Jpeg
    );
}

#[test]
fn check_output_catches_what_save_would_fail_on() {
    let dir = scratch("check_output");
    let e = check_output(&dir).unwrap_err().to_string();
    assert!(e.contains("is a directory"), "{e}");
    let e = check_output(&dir.join("no/such/out.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("out.png") && e.contains("does not exist"), "{e}");
    assert_eq!(
        check_output(&dir.join("ok.jpeg")).unwrap(),
        OutputFormat::Jpeg
    );
    assert!(files_in(&dir).is_empty(), "the probe is removed");
}

#[test]
fn bad_pixels_sizes_and_keys_are_typed_errors() {
    let dir = scratch("bad_save");
    let out = dir.join("x.png");
    assert!(matches!(
        save_rgb8(&[0; 5], 2, 2, &out, &[]),
        Err(Error::Shape { .. })
    ));
    let e = save_rgb8(&[], 0, 0, &out, &[]).unwrap_err().to_string();
    assert!(e.contains("0x0") && e.contains("x.png"), "{e}");
    // WebP stores at most 16383 pixels a side: refused before encoding.
    let wide = dir.join("wide.webp");
    let e = save_rgb8(&vec![0; 16_384 * 3], 16_384, 1, &wide, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("16384x1") && e.contains("16383"), "{e}");
    let long = "k".repeat(80);
    for key in ["", "a:b", "tab\there", long.as_str()] {
        let e = save_rgb8(&[1, 2, 3], 1, 1, &out, &[(key, "v".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata key"), "{e}");
    }
    assert!(files_in(&dir).is_empty());
}

/// A big-endian EXIF (TIFF) block with one IFD0 entry: Orientation = `o`.
fn exif_orientation(o: u16) -> Vec<u8> {
    let mut t = b"MM\x00\x2A".to_vec();
    t.extend(8u32.to_be_bytes()); // IFD0 offset
    t.extend(1u16.to_be_bytes()); // one entry
    t.extend(0x0112u16.to_be_bytes()); // Orientation
    t.extend(3u16.to_be_bytes()); // SHORT
    t.extend(1u32.to_be_bytes()); // count
    t.extend(o.to_be_bytes());
    t.extend([0, 0]); // value padding
    t.extend(0u32.to_be_bytes()); // no next IFD
    t
}

/// `jpeg` with an `APP1` Exif segment holding `tiff` right after SOI.
fn with_app1_exif(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], b"\xFF\xD8");
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((2 + 6 + tiff.len()) as u16).to_be_bytes());
    out.extend(b"Exif\x00\x00");
    out.extend(tiff);
    out.extend(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied_on_decode() {
    // 64 wide, 32 tall, mid grey, with a red 16x16 block in the stored top-left corner and a
    // blue one in the stored top-right: asymmetric under every rotation and flip.
    let (w, h) = (64usize, 32usize);
    let mut px = vec![128u8; w * h * 3];
    for y in 0..16 {
        for x in 0..16 {
            px[(y * w + x) * 3..][..3].copy_from_slice(&[255, 0, 0]);
            px[(y * w + (w - 1 - x)) * 3..][..3].copy_from_slice(&[0, 0, 255]);
        }
    }
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 100)
        .encode(&px, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .unwrap();
    let colour = |img: &RgbImage, x: usize, y: usize| {
        let rgb = img.to_rgb8();
        let p = &rgb[(y * img.width + x) * 3..][..3];
        if p[0] > 200 && p[1] < 60 && p[2] < 60 {
            'r'
        } else if p[2] > 200 && p[0] < 60 && p[1] < 60 {
            'b'
        } else {
            '.'
        }
    };
    // The colours at the four corners (8 px in), clockwise from the top-left.
    let corners = |img: &RgbImage| -> String {
        let (w, h) = (img.width, img.height);
        [(8, 8), (w - 9, 8), (w - 9, h - 9), (8, h - 9)]
            .iter()
            .map(|&(x, y)| colour(img, x, y))
            .collect()
    };
    let plain = RgbImage::decode(&jpeg).unwrap();
    assert_eq!((plain.width, plain.height), (64, 32));
    assert_eq!(corners(&plain), "rb..");
    // 6: rotate 90 degrees clockwise to display, so the stored top-left goes top-right.
    // 3: rotate 180. 8: rotate 90 counter-clockwise (top-left goes bottom-left).
    for (o, dims, want) in [
        (6u16, (32, 64), ".rb."),
        (3, (64, 32), "..rb"),
        (8, (32, 64), "b..r"),
        (1, (64, 32), "rb.."),
    ] {
        let img = RgbImage::decode(&with_app1_exif(&jpeg, &exif_orientation(o))).unwrap();
        assert_eq!((img.width, img.height), dims, "orientation {o}");
        assert_eq!(corners(&img), want, "orientation {o}");
    }
}

/// A PNG that declares `w x h` RGB8 pixels and holds an empty image stream.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let chunk = |kind: &[u8; 4], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend(kind);
        c.extend(data);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(kind);
        hasher.update(data);
        c.extend(hasher.finalize().to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", b""));
    png
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let e = RgbImage::decode(&png_header_only(16_384, 16_384)).unwrap_err();
    assert!(
        e.contains(&format!(
            "the image is 16384x16384, more than the {MAX_PIXELS} pixels (8192x8192)"
        )),
        "{e}"
    );
    let e = RgbImage::decode(&png_header_only(100_000, 2)).unwrap_err();
    assert!(e.contains("cannot decode"), "{e}");
}
