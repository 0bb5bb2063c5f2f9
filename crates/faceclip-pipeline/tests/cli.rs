//! The `faceclip` program end to end on the shipped demo models, and its answers to bad
//! input: one line, non-zero exit, before any model loads.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::copy_dir;

fn faceclip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faceclip"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faceclip-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn png_text(path: &std::path::Path) -> Vec<(String, String)> {
    faceclip_pipeline::core::image::read_png_text(path).unwrap()
}

#[test]
fn demo_runs_write_pngs_with_metadata_and_repeat_bit_for_bit() {
    let dir = scratch("demo");
    for model in ["sdxl", "flux"] {
        let a = dir.join(format!("{model}_a.png"));
        let b = dir.join(format!("{model}_b.png"));
        for out in [&a, &b] {
            let o = faceclip()
                .args([
                    model,
                    "--demo",
                    "--prompt",
                    "a woman in a garden",
                    "--seed",
                    "7",
                    "--out",
                ])
                .arg(out)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{model}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{model}: same seed, different bytes"
        );
        let text = png_text(&a);
        for key in ["prompt", "seed", "steps", "guidance", "model"] {
            assert!(
                text.iter().any(|(k, _)| k == key),
                "{model}: no `{key}` in {text:?}"
            );
        }
        assert!(text.contains(&("seed".into(), "7".into())));
        let img = faceclip_pipeline::core::image::RgbImage::open(&a).unwrap();
        assert_eq!((img.width, img.height), (64, 64));
    }
    // Another seed gives another image.
    let c = dir.join("sdxl_c.png");
    let o = faceclip()
        .args([
            "sdxl",
            "--demo",
            "--seed",
            "8",
            "--prompt",
            "a woman in a garden",
            "--out",
        ])
        .arg(&c)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_ne!(
        std::fs::read(&c).unwrap(),
        std::fs::read(dir.join("sdxl_a.png")).unwrap()
    );
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let dir = scratch("bad");
    let not_image = dir.join("face.png");
    std::fs::write(&not_image, b"not an image").unwrap();
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage").unwrap();
    let out = dir.join("out.png");
    let out_s = out.to_str().unwrap();
    let x_st = dir.join("x.safetensors");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "sdxl",
                "--face",
                "/no/such/face.png",
                "--models",
                "/tmp",
                "--out",
                out_s,
            ],
            "face.png",
        ),
        (
            vec![
                "sdxl",
                "--face",
                not_image.to_str().unwrap(),
                "--models",
                dir.to_str().unwrap(),
                "--out",
                out_s,
            ],
            "face.png",
        ),
        (
            vec![
                "sdxl",
                "--demo",
                "--face",
                not_image.to_str().unwrap(),
                "--out",
                out_s,
            ],
            "not an image",
        ),
        (
            vec![
                "sdxl",
                "--face",
                not_image.to_str().unwrap(),
                "--models",
                "/no/such/models",
                "--out",
                out_s,
            ],
            "/no/such/models",
        ),
        (
            vec!["sdxl", "--demo", "--steps", "0", "--out", out_s],
            "steps 0 must be between",
        ),
        (
            vec!["sdxl", "--demo", "--width", "65", "--out", out_s],
            "multiple of 8",
        ),
        (
            vec!["flux", "--demo", "--height", "72", "--out", out_s],
            "multiple of 16",
        ),
        (
            vec!["sdxl", "--demo", "--out", "/no/such/dir/out.png"],
            "/no/such/dir",
        ),
        (
            vec!["sdxl", "--demo", "--backend", "tpu", "--out", out_s],
            "tpu",
        ),
        (
            vec!["flux", "--demo", "--scheduler", "ddim", "--out", out_s],
            "ddim",
        ),
        (
            vec!["inspect", corrupt.to_str().unwrap()],
            "corrupt.safetensors",
        ),
        (
            vec!["convert", corrupt.to_str().unwrap(), x_st.to_str().unwrap()],
            "corrupt.safetensors",
        ),
        (
            vec!["align", not_image.to_str().unwrap(), "--out", out_s],
            "face.png",
        ),
    ];
    for (args, needle) in cases {
        let o = faceclip()
            .args(&args)
            .env_remove("FACECLIP_VERBOSE")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(err.starts_with("faceclip: error: "), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!out.exists(), "a failed run left an output file");
}

#[test]
fn inspect_and_convert_a_real_pt_checkpoint() {
    let dir = scratch("convert");
    let pt = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/t5_encoder_hf/weights.pt");
    let o = faceclip().arg("inspect").arg(&pt).output().unwrap();
    assert!(o.status.success());
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing.contains("shared.weight\t[512, 32]\tfloat32"),
        "{listing}"
    );
    let out = dir.join("t5.safetensors");
    let o = faceclip()
        .arg("convert")
        .arg(&pt)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = faceclip_pipeline::core::Checkpoint::open(&pt).unwrap();
    let b = faceclip_pipeline::core::Checkpoint::open(&out).unwrap();
    assert_eq!(a.list(), b.list());
    for t in a.list() {
        assert_eq!(a.read_f32(&t.name).unwrap(), b.read_f32(&t.name).unwrap());
    }
}

#[test]
fn any_photo_is_detected_and_aligned_and_a_faceless_one_is_one_line() {
    let dir = scratch("align");
    let photo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/mtcnn_detect/photo_0.png");
    let crop = dir.join("crop.png");
    let o = faceclip()
        .arg("align")
        .arg(&photo)
        .arg("--out")
        .arg(&crop)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = faceclip_pipeline::core::image::RgbImage::open(&crop).unwrap();
    assert_eq!((img.width, img.height), (448, 448));

    let out = dir.join("gen.png");
    let o = faceclip()
        .args(["sdxl", "--demo", "--steps", "2", "--face"])
        .arg(&photo)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file());

    // A uniform grey photo has no face: one line naming the file.
    let grey = dir.join("grey.png");
    faceclip_pipeline::core::image::save_rgb8_png(
        &vec![128u8; 200 * 200 * 3],
        200,
        200,
        &grey,
        &[],
    )
    .unwrap();
    let (c2, g2) = (dir.join("c2.png"), dir.join("g2.png"));
    for args in [
        vec![
            "align",
            grey.to_str().unwrap(),
            "--out",
            c2.to_str().unwrap(),
        ],
        vec![
            "sdxl",
            "--demo",
            "--face",
            grey.to_str().unwrap(),
            "--out",
            g2.to_str().unwrap(),
        ],
    ] {
        let o = faceclip()
            .args(&args)
            .env_remove("FACECLIP_VERBOSE")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("grey.png") && err.contains("no face"), "{err}");
    }
}


/// Mean absolute difference of two same-size images, in 0..255 levels.
fn mean_diff(a: &std::path::Path, b: &std::path::Path) -> f64 {
    let a = faceclip_pipeline::core::image::RgbImage::open(a).unwrap();
    let b = faceclip_pipeline::core::image::RgbImage::open(b).unwrap();
    assert_eq!((a.width, a.height), (b.width, b.height));
    let d: f64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| f64::from((x - y).abs()) * 255.0)
        .sum();
    d / a.data.len() as f64
}

#[test]
fn quantized_flux_from_a_converted_gguf_matches_quantizing_at_load() {
    let dir = scratch("quant");
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../demo/models");
    let models = dir.join("models");
    copy_dir(&demo, &models);
    let dit = models.join("FaceCLIP/model/dit.safetensors");
    let gguf = models.join("FaceCLIP/model/dit.gguf");
    // --quant needs a .gguf output, checked before anything is read.
    let o = faceclip()
        .args(["convert", "--quant", "q8"])
        .arg(&dit)
        .arg(dir.join("x.safetensors"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("must end in .gguf with --quant"), "{err}");
    let o = faceclip()
        .args(["convert", "--quant", "q8"])
        .arg(&dit)
        .arg(&gguf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("in Q8_0"));
    let listed = faceclip().arg("inspect").arg(&gguf).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("transformer_blocks.0.attn.to_q.weight\t[32, 32]\tq8_0"), "{listed}");

    let run = |models: &std::path::Path, quant: Option<&str>, out: &std::path::Path| {
        let mut c = faceclip();
        c.args(["flux", "--steps", "2", "--width", "64", "--height", "64", "--seed", "3"])
            .arg("--face")
            .arg(demo.join("face.png"))
            .arg("--models")
            .arg(models)
            .arg("--out")
            .arg(out);
        if let Some(q) = quant {
            c.args(["--quant", q]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let (f32_png, q8_png, gguf_png, q4_png) = (
        dir.join("f32.png"),
        dir.join("q8.png"),
        dir.join("gguf.png"),
        dir.join("q4.png"),
    );
    run(&demo, None, &f32_png);
    run(&demo, Some("q8"), &q8_png);
    run(&demo, Some("q4"), &q4_png);
    // The folder with dit.gguf: its blocks load as stored; --quant q8 still quantizes T5.
    run(&models, Some("q8"), &gguf_png);
    assert_eq!(
        std::fs::read(&q8_png).unwrap(),
        std::fs::read(&gguf_png).unwrap(),
        "dit.gguf must give the image quantizing at load gives"
    );
    let (q8, q4) = (mean_diff(&f32_png, &q8_png), mean_diff(&f32_png, &q4_png));
    eprintln!("demo FLUX image vs f32: q8 mean {q8:.3} levels, q4 {q4:.3}");
    assert!(q8 > 0.0 && q8 < 2.0, "q8 mean difference {q8}");
    assert!(q4 > q8, "q4 {q4} vs q8 {q8}");
}
