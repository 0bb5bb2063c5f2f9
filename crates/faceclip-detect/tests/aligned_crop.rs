//! Already-aligned crops: FaceCLIP's own example faces (upstream `asset/*.png`, 448x448
//! ArcFace crops; Apache-2.0, see `tests/assets/NOTICE`) are used as they are under
//! `AlignMode::Auto`; photos, and square head-shots that are not ArcFace crops, are detected
//! and aligned.

use std::path::PathBuf;
use std::sync::OnceLock;

use faceclip_core::device::default_device;
use faceclip_detect::{
    ALIGNED_CROP_MAX_DISTANCE, AlignMode, FaceCrop, Mtcnn, RgbU8Image, alignment_distance,
    arcface_template, warp_affine,
};

fn assets() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/assets");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    v.sort();
    v
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn photos() -> Vec<PathBuf> {
    (0..5)
        .map(|i| fixture(&format!("mtcnn_detect/photo_{i}.png")))
        .collect()
}

fn mtcnn() -> &'static Mtcnn {
    static M: OnceLock<Mtcnn> = OnceLock::new();
    M.get_or_init(|| Mtcnn::new(&default_device().unwrap()).unwrap())
}

fn name(p: &std::path::Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// A square `side`-pixel crop around `bbox` with `margin` (a fraction of the box side) on
/// every side: a plain head-shot, not an ArcFace crop.
fn headshot(photo: &RgbU8Image, bbox: [f32; 4], margin: f64, side: usize) -> RgbU8Image {
    let [x1, y1, x2, y2] = bbox.map(|v| v as f64);
    let box_side = (x2 - x1).max(y2 - y1) * (1.0 + 2.0 * margin);
    let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let s = side as f64 / box_side;
    let c = side as f64 / 2.0;
    let m = [[s, 0.0, c - s * cx], [0.0, s, c - s * cy]];
    let data = warp_affine(&photo.view(), &m, side, side).unwrap();
    RgbU8Image::new(side, side, data).unwrap()
}

/// `img` moved by the similarity (scale `s`, `deg` degrees, shift `(dx, dy)`) about its
/// centre, same size, black outside.
fn perturb(img: &RgbU8Image, s: f64, deg: f64, dx: f64, dy: f64) -> RgbU8Image {
    let c = img.width as f64 / 2.0;
    let (a, b) = (s * deg.to_radians().cos(), s * deg.to_radians().sin());
    let m = [
        [a, b, c + dx - (a * c + b * c)],
        [-b, a, c + dy - (-b * c + a * c)],
    ];
    let data = warp_affine(&img.view(), &m, img.width, img.height).unwrap();
    RgbU8Image::new(img.width, img.height, data).unwrap()
}

#[test]
fn the_example_crops_are_used_as_they_are() {
    let paths = assets();
    assert_eq!(paths.len(), 14, "{paths:?}");
    let mut worst = 0f32;
    for p in &paths {
        let img = RgbU8Image::open(p).unwrap();
        assert_eq!((img.width, img.height), (448, 448), "{}", name(p));
        let d = mtcnn().aligned_crop_distance(&img).unwrap();
        let d = d.unwrap_or_else(|| panic!("{}: no face found", name(p)));
        worst = worst.max(d);
        assert!(d <= ALIGNED_CROP_MAX_DISTANCE, "{}: distance {d}", name(p));
        match mtcnn().face_crop(&img, AlignMode::Auto, 0, 448).unwrap() {
            FaceCrop::AsIs(out) => assert!(out == img, "{}: pixels changed", name(p)),
            FaceCrop::Aligned(_) => panic!("{}: re-aligned under Auto", name(p)),
        }
    }
    eprintln!("example crops: largest alignment distance {worst:.2} px");
    // Never uses the image as is without looking; Always re-aligns, which moves the pixels.
    let img = RgbU8Image::open(&paths[0]).unwrap();
    let never = mtcnn().face_crop(&img, AlignMode::Never, 0, 448).unwrap();
    assert!(never.is_as_is() && never.image() == &img);
    let always = mtcnn().face_crop(&img, AlignMode::Always, 0, 448).unwrap();
    assert!(!always.is_as_is());
    let out = always.into_image();
    assert_eq!((out.width, out.height), (448, 448));
    let mean = out
        .data
        .iter()
        .zip(&img.data)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / img.data.len() as f64;
    assert!(
        mean > 5.0,
        "re-aligning asset 0001 changed it by only {mean:.2}"
    );
}

#[test]
fn photos_and_headshots_are_detected_and_aligned() {
    let mut faces = 0;
    for p in photos() {
        let photo = RgbU8Image::open(&p).unwrap();
        assert!(!mtcnn().is_aligned_crop(&photo).unwrap(), "{}", name(&p));
        let want = mtcnn().detect_and_align(&photo, 0, 448);
        let got = mtcnn().face_crop(&photo, AlignMode::Auto, 0, 448);
        let face = match (got, want) {
            (Ok(FaceCrop::Aligned(got)), Ok(want)) => {
                assert_eq!(got, want, "{}: Auto differs from Always", name(&p));
                got
            }
            // A photo without a face: the same typed error as Always.
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string());
                continue;
            }
            (got, want) => panic!("{}: Auto {got:?}, Always {want:?}", name(&p)),
        };
        faces += 1;
        assert_eq!((face.image.width, face.image.height), (448, 448));
        assert_ne!(face.image, photo);
        // A square head-shot of the same face (the box with 20 % margin) is no ArcFace crop.
        let shot = headshot(&photo, face.detection.bbox, 0.2, 448);
        let d = mtcnn().aligned_crop_distance(&shot).unwrap().unwrap();
        assert!(d > ALIGNED_CROP_MAX_DISTANCE, "{} head-shot: {d}", name(&p));
        match mtcnn().face_crop(&shot, AlignMode::Auto, 0, 448).unwrap() {
            FaceCrop::Aligned(a) => assert_ne!(a.image, shot),
            FaceCrop::AsIs(_) => panic!("{} head-shot used as is", name(&p)),
        }
    }
    assert!(faces >= 4, "only {faces} photos had a face");
}

#[test]
fn distance_is_size_independent_and_grows_with_misalignment() {
    let img = RgbU8Image::open(&assets()[8]).unwrap();
    let d448 = mtcnn().aligned_crop_distance(&img).unwrap().unwrap();
    // The same crop at 896 (resized back to 448 for the check) measures about the same.
    let buf = image::RgbImage::from_raw(448, 448, img.data.clone()).unwrap();
    let up = image::imageops::resize(&buf, 896, 896, image::imageops::FilterType::Triangle);
    let up = RgbU8Image::new(896, 896, up.into_raw()).unwrap();
    let d896 = mtcnn().aligned_crop_distance(&up).unwrap().unwrap();
    assert!((d896 - d448).abs() < 3.0, "448: {d448}, 896: {d896}");
    assert!(mtcnn().is_aligned_crop(&up).unwrap());
    // Shifted by 48 px it is far from the template.
    let off = perturb(&img, 1.0, 0.0, 0.0, -48.0);
    let d = mtcnn().aligned_crop_distance(&off).unwrap().unwrap();
    assert!(d > 2.0 * ALIGNED_CROP_MAX_DISTANCE, "shifted 48 px: {d}");
    // Not square, too small, or no face: not a crop.
    let grey = RgbU8Image::filled(448, 448, [127; 3]);
    assert_eq!(mtcnn().aligned_crop_distance(&grey).unwrap(), None);
    assert!(
        !mtcnn()
            .is_aligned_crop(&RgbU8Image::filled(10, 10, [0; 3]))
            .unwrap()
    );
    assert!(mtcnn().is_aligned_crop((4, 4, &[0u8; 5][..])).is_err());
}

#[test]
fn alignment_distance_of_template_points() {
    let t = arcface_template(448).unwrap();
    assert!(alignment_distance(&t, 448) < 1e-3);
    let t112 = arcface_template(112).unwrap();
    assert!(alignment_distance(&t112, 112) < 1e-3, "scale invariant");
    // A pure shift by (6, 8) moves every point by 10 px.
    let shifted = t.map(|[x, y]| [x + 6.0, y + 8.0]);
    assert!((alignment_distance(&shifted, 448) - 10.0).abs() < 1e-2);
    assert_eq!(alignment_distance(&[[1.0, 1.0]; 5], 448), f32::INFINITY);
    assert_eq!(alignment_distance(&t, 0), f32::INFINITY);
}

#[test]
fn align_mode_names() {
    for m in [AlignMode::Auto, AlignMode::Always, AlignMode::Never] {
        assert_eq!(m.to_string().parse::<AlignMode>().unwrap(), m);
    }
    assert_eq!("ALWAYS".parse::<AlignMode>().unwrap(), AlignMode::Always);
    assert_eq!(AlignMode::default(), AlignMode::Auto);
    let e = "sometimes".parse::<AlignMode>().unwrap_err().to_string();
    assert!(
        e.contains("sometimes") && e.contains("auto, always, never"),
        "{e}"
    );
    // Auto and Always refuse a crop size the template has no scale for; Never ignores it.
    let img = RgbU8Image::filled(64, 64, [9; 3]);
    assert!(mtcnn().face_crop(&img, AlignMode::Auto, 0, 100).is_err());
    assert!(mtcnn().face_crop(&img, AlignMode::Never, 0, 100).is_ok());
}

/// Prints the numbers [`ALIGNED_CROP_MAX_DISTANCE`]'s documentation quotes.
#[test]
#[ignore = "measurement (about 60 detections)"]
fn measure_alignment_distances() {
    let dist = |img: &RgbU8Image| {
        mtcnn()
            .aligned_crop_distance(img)
            .unwrap()
            .unwrap_or(f32::INFINITY)
    };
    let mut all = vec![];
    for p in assets() {
        let d = dist(&RgbU8Image::open(&p).unwrap());
        all.push(d);
        eprintln!("asset {}: {d:.2}", name(&p));
    }
    eprintln!(
        "assets: mean {:.2}",
        all.iter().sum::<f32>() / all.len() as f32
    );
    for i in 0..5 {
        let img = RgbU8Image::open(fixture(&format!("face_align/aligned_{i}.png"))).unwrap();
        eprintln!("face_align aligned_{i}: {:.2}", dist(&img));
    }
    for p in photos() {
        let photo = RgbU8Image::open(&p).unwrap();
        let Some(&d) = mtcnn().detect(&photo).unwrap().first() else {
            eprintln!("{}: no face", name(&p));
            continue;
        };
        for m in [0.0, 0.1, 0.2, 0.3] {
            let shot = headshot(&photo, d.bbox, m, 448);
            eprintln!("headshot {} margin {m}: {:.2}", name(&p), dist(&shot));
        }
    }
    for p in assets().into_iter().step_by(4) {
        let img = RgbU8Image::open(&p).unwrap();
        for (label, s, deg, dx, dy) in [
            ("rot 6", 1.0, 6.0, 0.0, 0.0),
            ("scale 0.9", 0.9, 0.0, 0.0, 0.0),
            ("shift 16", 1.0, 0.0, 16.0, 0.0),
        ] {
            let d = dist(&perturb(&img, s, deg, dx, dy));
            eprintln!("{} {label}: {d:.2}", name(&p));
        }
    }
}
