//! `--dtype bf16` / `f16`: the whole pipeline runs in reduced precision, the PNG says so, and
//! the image stays close to the f32 one; misuse is a one-line error.

use std::path::{Path, PathBuf};
use std::process::Command;

use faceclip_pipeline::core::device::{Precision, parse_device, set_precision};
use faceclip_pipeline::core::image::{RgbImage, read_png_text};
use faceclip_pipeline::core::{Tensor, TensorData};

fn run(model: &str, dtype: &str, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_faceclip"))
        .args([model, "--demo", "--seed", "11", "--dtype", dtype, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

fn mean_abs_diff(a: &Path, b: &Path) -> f64 {
    let (a, b) = (RgbImage::open(a).unwrap(), RgbImage::open(b).unwrap());
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn reduced_precision_runs_end_to_end_close_to_f32() {
    let dir = std::env::temp_dir().join(format!("faceclip-precision-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for model in ["sdxl", "flux"] {
        let reference: PathBuf = dir.join(format!("{model}_f32.png"));
        assert!(run(model, "f32", &reference).status.success());
        for dtype in ["bf16", "f16"] {
            let out = dir.join(format!("{model}_{dtype}.png"));
            let o = run(model, dtype, &out);
            assert!(
                o.status.success(),
                "{model} {dtype}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let text = read_png_text(&out).unwrap();
            assert!(text.contains(&("dtype".into(), dtype.into())), "{text:?}");
            assert_ne!(
                std::fs::read(&out).unwrap(),
                std::fs::read(&reference).unwrap(),
                "{model} {dtype}: same bytes as f32"
            );
            // Measured on the demo models: 1-7 levels of 255 on average.
            let d = mean_abs_diff(&out, &reference);
            assert!(d < 16.0, "{model} {dtype}: mean |diff| {d} levels from f32");
        }
    }
}

#[test]
fn unknown_dtype_is_a_usage_error_listing_the_dtypes() {
    let out = std::env::temp_dir().join("faceclip-precision-bad.png");
    let o = run("sdxl", "f64", &out);
    let err = String::from_utf8_lossy(&o.stderr);
    // `--dtype` is a clap `ValueEnum`: a usage error naming the value and listing the choices.
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value 'f64' for '--dtype") && err.contains("f32, bf16, f16"),
        "{err}"
    );
}

#[test]
fn precision_is_set_before_the_first_tensor_or_refused() {
    assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::BF16);
    let mut device = parse_device("flex").unwrap();
    let _t = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device);
    let e = set_precision(&mut device, Precision::BF16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot switch to bf16"), "{e}");
    // f32 on a device already in f32 is fine.
    set_precision(&mut device, Precision::F32).unwrap();
}
