//! End-to-end detection + alignment, error cases, and images that must not panic.

use std::path::PathBuf;
use std::sync::OnceLock;

use faceclip_core::{Fixture, Trace, device::default_device};
use faceclip_detect::{DetectError, Mtcnn, RgbU8Image, arcface_template, weights};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn mtcnn() -> &'static Mtcnn {
    static M: OnceLock<Mtcnn> = OnceLock::new();
    M.get_or_init(|| Mtcnn::new(&default_device().unwrap()).unwrap())
}

/// A similarity `[[a, b, tx], [-b, a, ty]]` (scale `s`, `deg` counter-clockwise on screen)
/// taking the asset centre `(c, c)` to `centre`.
fn similarity(s: f64, deg: f64, c: f64, centre: (f64, f64)) -> [[f64; 3]; 2] {
    let (a, b) = (s * deg.to_radians().cos(), s * deg.to_radians().sin());
    [
        [a, b, centre.0 - (a * c + b * c)],
        [-b, a, centre.1 - (-b * c + a * c)],
    ]
}

/// Pastes `asset` into a `w × h` grey (127) photo through `s` (asset → photo), float
/// bilinear at exact positions.
fn paste(asset: &RgbU8Image, s: &[[f64; 3]; 2], w: usize, h: usize) -> RgbU8Image {
    let [[a, b, tx], [c, d, ty]] = *s;
    let det = a * d - b * c;
    let mut out = RgbU8Image::filled(w, h, [127, 127, 127]);
    let (aw, ah) = (asset.width as f64, asset.height as f64);
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (x as f64 - tx, y as f64 - ty);
            let qx = (d * px - b * py) / det;
            let qy = (-c * px + a * py) / det;
            if qx < 0.0 || qy < 0.0 || qx > aw - 1.0 || qy > ah - 1.0 {
                continue;
            }
            let (x0, y0) = (qx.floor() as usize, qy.floor() as usize);
            let (x1, y1) = (
                (x0 + 1).min(asset.width - 1),
                (y0 + 1).min(asset.height - 1),
            );
            let (fx, fy) = (qx - x0 as f64, qy - y0 as f64);
            for ch in 0..3 {
                let p = |xx: usize, yy: usize| asset.data[(yy * asset.width + xx) * 3 + ch] as f64;
                let v = (1.0 - fy) * ((1.0 - fx) * p(x0, y0) + fx * p(x1, y0))
                    + fy * ((1.0 - fx) * p(x0, y1) + fx * p(x1, y1));
                out.data[(y * w + x) * 3 + ch] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

fn psnr_and_mean(a: &[u8], b: &[u8]) -> (f64, f64) {
    let n = a.len() as f64;
    let (mut se, mut ae) = (0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let d = x as f64 - y as f64;
        se += d * d;
        ae += d.abs();
    }
    (10.0 * (255.0f64 * 255.0 / (se / n)).log10(), ae / n)
}

/// rms distance (px at 448) by which `m ∘ s` moves the template points, its scale and angle.
fn residual(m: &[[f64; 3]; 2], s: &[[f64; 3]; 2]) -> (f64, f64, f64) {
    let comp = |p: [f64; 2]| {
        let q = [
            s[0][0] * p[0] + s[0][1] * p[1] + s[0][2],
            s[1][0] * p[0] + s[1][1] * p[1] + s[1][2],
        ];
        [
            m[0][0] * q[0] + m[0][1] * q[1] + m[0][2],
            m[1][0] * q[0] + m[1][1] * q[1] + m[1][2],
        ]
    };
    let t = arcface_template(448).unwrap();
    let ms: f64 = t
        .iter()
        .map(|p| {
            let p = [p[0] as f64, p[1] as f64];
            let q = comp(p);
            (q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2)
        })
        .sum::<f64>()
        / 5.0;
    let a = m[0][0] * s[0][0] + m[0][1] * s[1][0];
    let c = m[1][0] * s[0][0] + m[1][1] * s[1][0];
    (ms.sqrt(), a.hypot(c), c.atan2(a).to_degrees())
}

/// The aligned fixture crop, placed rotated and scaled into a grey photo, comes back through
/// detection + alignment about as close as the reference's own end-to-end check
/// (face_align `extra.e2e_summary`): PSNR ≥ its worst `realigned_vs_asset_psnr_db` and mean
/// |diff| ≤ its worst `realigned_vs_asset_mean_abs`. The remaining difference is MTCNN's own
/// landmark error, which depends on pose and background (see `e2e_round_trip_over_photo`).
#[test]
fn e2e_pasted_aligned_crop_comes_back() {
    let meta = Fixture::open(fixtures().join("face_align")).unwrap().meta;
    let summary = &meta["extra"]["e2e_summary"]["over_faces_fully_inside"];
    let worst_psnr = summary["realigned_vs_asset_psnr_db"][0].as_f64().unwrap();
    let worst_mean = summary["realigned_vs_asset_mean_abs"][1].as_f64().unwrap();
    let asset = RgbU8Image::open(fixtures().join("face_align/aligned_0.png")).unwrap();
    assert_eq!((asset.width, asset.height), (448, 448));
    // the pose of the fixture's face 0 (scale 0.55, 12 degrees), and upright at scale 1
    for (scale, deg, w, h, centre) in [
        (0.55, 12.0, 640, 480, (300.0, 250.0)),
        (1.0, 0.0, 720, 640, (360.0, 320.0)),
    ] {
        let s = similarity(scale, deg, 224.0, centre);
        let photo = paste(&asset, &s, w, h);
        let face = mtcnn().detect_and_align(&photo, 0, 448).unwrap();
        assert_eq!((face.image.width, face.image.height), (448, 448));
        let (psnr, mean) = psnr_and_mean(&face.image.data, &asset.data);
        let (rms, rs, rdeg) = residual(&face.matrix, &s);
        eprintln!(
            "e2e scale {scale} angle {deg}: prob {:.4}, psnr {psnr:.2} dB (reference >= {worst_psnr}), mean |diff| {mean:.2} (reference <= {worst_mean}), residual rms {rms:.2} px at 448 (scale {rs:.4}, rotation {rdeg:+.2} deg)",
            face.detection.prob
        );
        assert!(psnr >= worst_psnr, "psnr {psnr:.2} < {worst_psnr}");
        assert!(mean <= worst_mean, "mean |diff| {mean:.2} > {worst_mean}");
        assert!(
            rms < 25.0 && (rs - 1.0).abs() < 0.1 && rdeg.abs() < 12.0,
            "residual {rms} {rs} {rdeg}"
        );
    }
}

/// The aligned crop warped back into its own photo (through the inverse of the fixture
/// matrix, over photo_0's background): detection finds the landmarks again within a few
/// pixels and the realigned crop is close to the original.
#[test]
fn e2e_round_trip_over_photo() {
    let f = Fixture::open(fixtures().join("face_align")).unwrap();
    let (_, m0) = f.f32("out.matrix_0").unwrap();
    let m0: Vec<f64> = m0.iter().map(|&v| v as f64).collect();
    let det = m0[0] * m0[4] - m0[1] * m0[3];
    let inv = [
        [
            m0[4] / det,
            -m0[1] / det,
            (m0[1] * m0[5] - m0[4] * m0[2]) / det,
        ],
        [
            -m0[3] / det,
            m0[0] / det,
            (m0[3] * m0[2] - m0[0] * m0[5]) / det,
        ],
    ];
    let asset = RgbU8Image::open(fixtures().join("face_align/aligned_0.png")).unwrap();
    let photo0 = RgbU8Image::open(fixtures().join("mtcnn_detect/photo_0.png")).unwrap();
    let mut photo = paste(&asset, &inv, photo0.width, photo0.height);
    for (i, px) in photo.data.chunks_exact_mut(3).enumerate() {
        if px == [127, 127, 127] {
            px.copy_from_slice(&photo0.data[i * 3..i * 3 + 3]);
        }
    }
    let want = mtcnn().detect(&photo0).unwrap()[0];
    let face = mtcnn().detect_and_align(&photo, 0, 448).unwrap();
    let worst_px = want
        .landmarks
        .iter()
        .zip(&face.detection.landmarks)
        .map(|(a, b)| (a[0] - b[0]).hypot(a[1] - b[1]))
        .fold(0f32, f32::max);
    let (psnr, mean) = psnr_and_mean(&face.image.data, &asset.data);
    let (rms, _, _) = residual(&face.matrix, &inv);
    eprintln!(
        "e2e round trip: landmarks within {worst_px:.2} px of photo_0's, psnr {psnr:.2} dB, mean |diff| {mean:.2}, residual rms {rms:.2} px at 448"
    );
    assert!(worst_px < 5.0);
    assert!(rms < 10.0);
}

#[test]
fn no_face_is_a_typed_error() {
    let grey = RgbU8Image::filled(320, 240, [127, 127, 127]);
    match mtcnn().detect_and_align(&grey, 0, 448) {
        Err(DetectError::NoFace {
            width: 320,
            height: 240,
            ..
        }) => {}
        other => panic!("expected NoFace, got {other:?}"),
    }
    assert!(mtcnn().detect(&grey).unwrap().is_empty());
    let black = RgbU8Image::filled(200, 300, [0, 0, 0]);
    assert!(matches!(
        mtcnn().detect_and_align(&black, 0, 112),
        Err(DetectError::NoFace { .. })
    ));
    // the core error carries the message
    let e: faceclip_core::Error = mtcnn().detect_and_align(&grey, 0, 448).unwrap_err().into();
    assert!(e.to_string().contains("no face"), "{e}");
}

#[test]
fn face_index_and_size_errors() {
    let photo = RgbU8Image::open(fixtures().join("mtcnn_detect/photo_2.png")).unwrap();
    let faces = mtcnn().detect(&photo).unwrap();
    assert_eq!(faces.len(), 2);
    let second = mtcnn().detect_and_align(&photo, 1, 112).unwrap();
    assert_eq!(second.detection, faces[1]);
    assert_eq!(second.image.data.len(), 112 * 112 * 3);
    match mtcnn().detect_and_align(&photo, 2, 448) {
        Err(DetectError::FaceIndexOutOfRange { index: 2, count: 2 }) => {}
        other => panic!("expected FaceIndexOutOfRange, got {other:?}"),
    }
    assert!(matches!(
        mtcnn().detect_and_align(&photo, 0, 100),
        Err(DetectError::Other(_))
    ));
}

#[test]
fn odd_images_never_panic() {
    let m = mtcnn();
    for (w, h) in [(0, 0), (0, 50), (50, 0), (1, 1), (19, 400), (400, 19)] {
        let img = RgbU8Image::filled(w, h, [200, 10, 10]);
        match m.detect_and_align(&img, 0, 448) {
            Err(DetectError::ImageTooSmall { min_side: 20, .. }) => {}
            other => panic!("{w}x{h}: expected ImageTooSmall, got {other:?}"),
        }
        let r = m.detect(&img);
        if w == 0 || h == 0 {
            assert!(r.is_err(), "{w}x{h}");
        } else {
            assert!(r.unwrap().is_empty(), "{w}x{h}");
        }
    }
    // extreme aspect ratios, smallest usable side, noise
    let mut seed = 12345u32;
    let mut noise = |w: usize, h: usize| {
        let data = (0..w * h * 3)
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 24) as u8
            })
            .collect();
        RgbU8Image::new(w, h, data).unwrap()
    };
    for (w, h) in [(20, 20), (3000, 20), (20, 3000), (21, 1500), (257, 33)] {
        let img = noise(w, h);
        let dets = m.detect(&img).unwrap();
        for d in &dets {
            assert!(d.prob > 0.7 && d.bbox.iter().all(|v| v.is_finite()));
        }
        let _ = m.detect_and_align(&img, 0, 112);
    }
    // a buffer of the wrong length
    assert!(m.detect((10, 10, &[0u8; 5][..])).is_err());
    assert!(matches!(
        m.detect_and_align((30, 30, &[0u8; 5][..]), 0, 112),
        Err(DetectError::Other(_))
    ));
}

#[test]
fn strips_do_not_change_the_result() {
    let photo = RgbU8Image::open(fixtures().join("mtcnn_detect/photo_0.png")).unwrap();
    let (mut whole_trace, mut strips_trace) = (Trace::recording(), Trace::recording());
    let whole = mtcnn().detect_traced(&photo, &mut whole_trace).unwrap();
    let strips = mtcnn()
        .clone()
        .with_pnet_strip_pixels(3000)
        .detect_traced(&photo, &mut strips_trace)
        .unwrap();
    let candidates = |t: &Trace| t.get("s1_candidates").unwrap().try_to_vec::<f32>().unwrap();
    let (whole_c, strips_c) = (candidates(&whole_trace), candidates(&strips_trace));
    assert_eq!(whole_c.len(), strips_c.len());
    for (a, b) in whole_c.chunks_exact(9).zip(strips_c.chunks_exact(9)) {
        assert_eq!(a[..4], b[..4]);
        for k in 4..9 {
            assert!((a[k] - b[k]).abs() < 1e-5, "{a:?} {b:?}");
        }
    }
    assert_eq!(whole.len(), strips.len());
    for (a, b) in whole.iter().zip(&strips) {
        for k in 0..4 {
            assert!((a.bbox[k] - b.bbox[k]).abs() < 1e-3);
        }
    }
}

#[test]
fn embedded_weights_are_the_fixture_weights() {
    let bytes = std::fs::read(fixtures().join("mtcnn/weights.safetensors")).unwrap();
    assert!(
        bytes == weights::MTCNN_SAFETENSORS,
        "assets/mtcnn.safetensors differs from the fixture"
    );
    assert_eq!(weights::embedded_checkpoint().unwrap().len(), 50);
}

#[test]
fn png_round_trip() {
    let img = RgbU8Image::new(4, 3, (0..36).map(|v| (v * 7) as u8).collect()).unwrap();
    let path = std::env::temp_dir().join(format!("faceclip_detect_png_{}.png", std::process::id()));
    img.save_png(&path).unwrap();
    let back = RgbU8Image::open(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(back, img);
    assert!(RgbU8Image::new(4, 3, vec![0; 5]).is_err());
    assert!(RgbU8Image::decode(b"not an image").is_err());
}
