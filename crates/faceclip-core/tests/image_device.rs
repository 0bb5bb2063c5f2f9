//! Image decoding, PyTorch-exact bilinear resize, PNG metadata, device names.

mod common;

use common::{fixture_dir, scratch};
use faceclip_core::device::parse_device;
use faceclip_core::image::{RgbImage, read_png_text, resize_bilinear, save_rgb8_png};
use faceclip_core::{Error, Fixture};

#[test]
fn bilinear_resize_matches_torch_interpolate() {
    // face_vit's mid.image_resized = F.interpolate(in.image_src, (112,112), bilinear,
    // align_corners=False): a 168x150 -> 112x112 resize, down in both axes.
    let fx = Fixture::open(fixture_dir("face_vit")).unwrap();
    let (shape, src) = fx.f32("in.image_src").unwrap();
    let (_, want) = fx.f32("mid.image_resized").unwrap();
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let mut got = vec![];
    for i in 0..n {
        got.extend(resize_bilinear(
            &src[i * c * h * w..(i + 1) * c * h * w],
            c,
            h,
            w,
            112,
            112,
        ));
    }
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-6, "max abs diff {max}");
}

#[test]
fn upsampling_clamps_the_source_coordinate_at_zero() {
    // 2 -> 4: torch gives [a, 0.75a+0.25b, 0.25a+0.75b, b].
    let got = resize_bilinear(&[0.0, 1.0], 1, 1, 2, 1, 4);
    assert_eq!(got, vec![0.0, 0.25, 0.75, 1.0]);
}

#[test]
fn decoding_real_pngs_and_rejecting_non_images() {
    let img = RgbImage::open(fixture_dir("mtcnn_detect").join("photo_0.png")).unwrap();
    assert!(img.width > 100 && img.height > 100);
    assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
    let dir = scratch("img");
    let not_image = dir.join("face.png");
    std::fs::write(&not_image, b"this is text").unwrap();
    let e = RgbImage::open(&not_image).unwrap_err();
    assert!(
        matches!(e, Error::Image { .. }) && e.to_string().contains("face.png"),
        "{e}"
    );
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    assert!(
        RgbImage::open(&empty)
            .unwrap_err()
            .to_string()
            .contains("empty")
    );
    assert!(matches!(
        RgbImage::open(dir.join("missing.png")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn png_round_trip_keeps_pixels_and_metadata() {
    let dir = scratch("png");
    let path = dir.join("out.png");
    let pixels: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
    save_rgb8_png(
        &pixels,
        4,
        3,
        &path,
        &[("prompt", "a person".into()), ("seed", "42".into())],
    )
    .unwrap();
    let text = read_png_text(&path).unwrap();
    assert!(text.contains(&("prompt".to_string(), "a person".to_string())));
    assert!(text.contains(&("seed".to_string(), "42".to_string())));
    let back = RgbImage::open(&path).unwrap();
    assert_eq!(back.to_rgb8(), pixels);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // An unwritable destination is an error naming it.
    let bad = dir.join("no/such/folder/out.png");
    let e = save_rgb8_png(&pixels, 4, 3, &bad, &[]).unwrap_err();
    assert!(e.to_string().contains("out.png"), "{e}");
}

#[test]
fn backend_names() {
    assert!(parse_device("cpu").is_ok());
    assert!(parse_device("flex").is_ok());
    assert!(parse_device("ndarray").is_ok());
    let e = parse_device("tpu").unwrap_err();
    assert!(e.to_string().contains("unknown backend"), "{e}");
    if !cfg!(feature = "cuda") {
        let e = parse_device("cuda:1").unwrap_err();
        assert!(e.to_string().contains("--features cuda"), "{e}");
    }
    assert!(parse_device("cuda:x").is_err());
}
