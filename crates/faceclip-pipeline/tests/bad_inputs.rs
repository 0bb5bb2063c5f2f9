//! One test per row of README.md "Bad inputs": each bad input given to the `faceclip` program
//! and the one line it answers with (exit 1, `faceclip: error: ...`, no panic), or, for the
//! inputs that are accepted, what happens instead. The needles asserted here are the key part
//! of the message the README table quotes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use faceclip_pipeline::core::{Checkpoint, StoredDType};

mod common;
use common::copy_dir;

fn faceclip() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_faceclip"));
    c.env_remove("FACECLIP_VERBOSE")
        .env_remove("FACECLIP_MODELS");
    c
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faceclip-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `faceclip args`, expects exit 1 with one line `faceclip: error: ...` holding every
/// needle; returns the line.
fn fails(args: &[&str], needles: &[&str]) -> String {
    let o = faceclip().args(args).output().unwrap();
    one_line_error(&o, args, needles)
}

fn one_line_error(o: &Output, args: &[&str], needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(err.starts_with("faceclip: error: "), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: `{n}` not in {err}");
    }
    err
}

/// Runs `faceclip args` and expects success.
fn succeeds(args: &[&str]) -> Output {
    let o = faceclip().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}


/// A copy of the shipped demo models to break.
fn demo_copy(name: &str) -> PathBuf {
    let dir = scratch(name).join("models");
    copy_dir(&root().join("demo/models"), &dir);
    dir
}

/// Writes `(name, dtype, shape, bytes)` as a safetensors file.
fn write_safetensors(path: &Path, tensors: &[(String, &str, Vec<usize>, Vec<u8>)]) {
    let mut header = String::from("{");
    let mut data = Vec::new();
    for (i, (name, dtype, shape, bytes)) in tensors.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{},{}]}}",
            data.len(),
            data.len() + bytes.len()
        ));
        data.extend_from_slice(bytes);
    }
    header.push('}');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

/// The demo FaceCLIP-SDXL encoder's tensors as safetensors entries, bytes as stored.
fn encoder_tensors(models: &Path) -> Vec<(String, &'static str, Vec<usize>, Vec<u8>)> {
    let ck = Checkpoint::open(models.join("FaceCLIP/model/face_clip_encoder.pt")).unwrap();
    ck.list()
        .into_iter()
        .map(|info| {
            let (info, bytes) = ck.read_raw(&info.name).unwrap();
            let dtype = match info.dtype {
                StoredDType::F32 => "F32",
                StoredDType::F16 => "F16",
                StoredDType::BF16 => "BF16",
                StoredDType::F64 => "F64",
                StoredDType::I64 => "I64",
                StoredDType::I32 => "I32",
                other => panic!("demo encoder holds {other:?}"),
            };
            (info.name, dtype, info.shape, bytes)
        })
        .collect()
}

/// Runs `faceclip sdxl --models models` after `edit` changed the encoder's tensors (written as
/// `face_clip_encoder.safetensors`, which is preferred to the `.pt`); returns the one error
/// line and, with FACECLIP_VERBOSE, the whole report.
fn sdxl_with_encoder(
    name: &str,
    edit: impl FnOnce(&mut Vec<(String, &'static str, Vec<usize>, Vec<u8>)>),
) -> (String, String) {
    let models = demo_copy(name);
    let mut t = encoder_tensors(&models);
    edit(&mut t);
    let st = models.join("FaceCLIP/model/face_clip_encoder.safetensors");
    write_safetensors(&st, &t);
    let out = models.parent().unwrap().join("out.png");
    let face = root().join("demo/models/face.png");
    let args = [
        "sdxl",
        "--models",
        s(&models),
        "--face",
        s(&face),
        "--aligned",
        "--out",
        s(&out),
        "--steps",
        "1",
        "--width",
        "64",
        "--height",
        "64",
    ];
    let line = one_line_error(
        &faceclip().args(args).output().unwrap(),
        &args,
        &["face_clip_encoder.safetensors", "do not match the model"],
    );
    let verbose = faceclip()
        .args(args)
        .env("FACECLIP_VERBOSE", "1")
        .output()
        .unwrap();
    assert!(!out.exists());
    (line, String::from_utf8_lossy(&verbose.stderr).into_owned())
}

// ----------------------------------------------------------------------------- checkpoints

#[test]
fn missing_checkpoint() {
    fails(
        &["inspect", "/no/such/weights.safetensors"],
        &["/no/such/weights.safetensors", "No such file or directory"],
    );
    let models = demo_copy("missing_ck");
    std::fs::remove_file(models.join("FaceCLIP/model/unet.safetensors")).unwrap();
    let out = models.join("out.png");
    let face = root().join("demo/models/face.png");
    fails(
        &[
            "sdxl",
            "--models",
            s(&models),
            "--face",
            s(&face),
            "--aligned",
            "--out",
            s(&out),
        ],
        &["unet.safetensors", "unet.pt not found"],
    );
}

#[test]
fn unreadable_checkpoint() {
    let dir = scratch("unreadable");
    let d = dir.join("weights.safetensors");
    std::fs::create_dir(&d).unwrap();
    fails(
        &["inspect", s(&d)],
        &["weights.safetensors", "unsupported format (is a directory)"],
    );
    // Not readable: only meaningful when not running as root (root reads anything).
    let f = dir.join("locked.safetensors");
    std::fs::copy(
        root().join("tests/fixtures/t5_encoder_hf/weights.safetensors"),
        &f,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&f).is_err() {
        fails(
            &["inspect", s(&f)],
            &["locked.safetensors", "Permission denied"],
        );
    }
    let under_file = f.join("x.safetensors");
    fails(
        &["inspect", s(&under_file)],
        &["locked.safetensors/x.safetensors", "Not a directory"],
    );
}

#[test]
fn corrupt_checkpoint() {
    let dir = scratch("corrupt");
    let p = dir.join("corrupt.safetensors");
    std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage").unwrap();
    fails(
        &["inspect", s(&p)],
        &[
            "corrupt.safetensors",
            "header length 16 goes beyond the file (16 bytes)",
        ],
    );
    let p = dir.join("garbage.safetensors");
    std::fs::write(&p, b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage").unwrap();
    fails(
        &["inspect", s(&p)],
        &[
            "garbage.safetensors",
            "the safetensors header is not a JSON object",
        ],
    );
    let p = dir.join("garbage.pt");
    std::fs::write(&p, b"PK\x03\x04 this is not a zip archive").unwrap();
    fails(
        &["inspect", s(&p)],
        &["garbage.pt", "not a readable PyTorch checkpoint"],
    );
    let p = dir.join("empty.pt");
    std::fs::write(&p, b"").unwrap();
    fails(&["inspect", s(&p)], &["empty.pt", "the file is empty"]);
    // A .pt whose pickle calls os.system: refused, and nothing runs.
    let hostile = root().join("fuzz/corpus/pytorch/hostile_os_system");
    let p = dir.join("hostile.pt");
    std::fs::copy(hostile, &p).unwrap();
    fails(
        &["inspect", s(&p)],
        &[
            "hostile.pt",
            "the pickle calls `os.system`",
            "nothing was executed",
        ],
    );
    assert!(!Path::new("/tmp/faceclip-pwned").exists());
}

#[test]
fn truncated_checkpoint() {
    let dir = scratch("truncated");
    let good =
        std::fs::read(root().join("tests/fixtures/t5_encoder_hf/weights.safetensors")).unwrap();
    let p = dir.join("trunc.safetensors");
    std::fs::write(&p, &good[..good.len() - 100]).unwrap();
    fails(
        &["inspect", s(&p)],
        &[
            "trunc.safetensors",
            "go beyond the",
            "bytes of data the file holds (truncated?)",
        ],
    );
    let p = dir.join("short_header.safetensors");
    std::fs::write(&p, &good[..100]).unwrap();
    fails(
        &["inspect", s(&p)],
        &[
            "short_header.safetensors",
            "goes beyond the file (100 bytes)",
        ],
    );
    let good = std::fs::read(root().join("tests/fixtures/t5_encoder_hf/weights.pt")).unwrap();
    let p = dir.join("trunc.pt");
    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    fails(
        &["inspect", s(&p)],
        &["trunc.pt", "not a readable PyTorch checkpoint"],
    );
}

#[test]
fn wrong_dtype_tensor() {
    let (line, verbose) = sdxl_with_encoder("dtype", |t| {
        let e = t
            .iter_mut()
            .find(|e| e.1 == "F32" && e.2.len() == 2)
            .unwrap();
        let n: usize = e.2.iter().product();
        e.1 = "I64";
        e.3 = vec![0u8; n * 8];
    });
    assert!(
        line.contains("0 missing, 0 unexpected, 0 with the wrong shape, 1 unreadable"),
        "{line}"
    );
    assert!(
        verbose.contains("has dtype int64, which is not a float type this model can load"),
        "{verbose}"
    );
}

#[test]
fn missing_tensor() {
    let mut removed = String::new();
    let (line, verbose) = sdxl_with_encoder("missing", |t| removed = t.remove(0).0);
    assert!(
        line.contains("1 missing, 0 unexpected, 0 with the wrong shape"),
        "{line}"
    );
    assert!(
        verbose.contains(&format!("missing:\n    {removed}")),
        "{verbose}"
    );
}

#[test]
fn unexpected_tensor() {
    let (line, verbose) = sdxl_with_encoder("unexpected", |t| {
        t.push(("stray.weight".into(), "F32", vec![2], vec![0u8; 8]));
    });
    assert!(
        line.contains("0 missing, 1 unexpected, 0 with the wrong shape"),
        "{line}"
    );
    assert!(
        verbose.contains("unexpected:\n    stray.weight"),
        "{verbose}"
    );
}

#[test]
fn wrong_shape_tensor() {
    let mut name = String::new();
    let (line, verbose) = sdxl_with_encoder("shape", |t| {
        let e = t
            .iter_mut()
            .find(|e| e.1 == "F32" && e.2.len() == 2 && e.2[0] > 1)
            .unwrap();
        name = e.0.clone();
        e.2 = vec![e.2[1], e.2[0]];
        if e.2[0] == e.2[1] {
            e.2 = vec![e.2[0] * e.2[1], 1];
        }
    });
    assert!(
        line.contains("0 missing, 0 unexpected, 1 with the wrong shape"),
        "{line}"
    );
    assert!(
        verbose.contains(&format!("wrong shape:\n    {name}: expected")),
        "{verbose}"
    );
}

// ----------------------------------------------------------------------------- face images

#[test]
fn face_that_is_not_an_image() {
    let dir = scratch("notimage");
    let p = dir.join("face.png");
    std::fs::write(&p, b"not an image").unwrap();
    let out = dir.join("out.png");
    fails(
        &["sdxl", "--demo", "--face", s(&p), "--out", s(&out)],
        &["face.png", "not an image"],
    );
    let p = dir.join("empty.jpg");
    std::fs::write(&p, b"").unwrap();
    fails(
        &["sdxl", "--demo", "--face", s(&p), "--out", s(&out)],
        &["empty.jpg", "the file is empty"],
    );
    let p = dir.join("cut.png");
    let png = std::fs::read(root().join("demo/models/face.png")).unwrap();
    std::fs::write(&p, &png[..png.len() / 2]).unwrap();
    fails(
        &["sdxl", "--demo", "--face", s(&p), "--out", s(&out)],
        &["cut.png", "cannot decode"],
    );
    fails(
        &[
            "sdxl",
            "--demo",
            "--face",
            "/no/such/face.png",
            "--out",
            s(&out),
        ],
        &["/no/such/face.png", "No such file or directory"],
    );
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    v.extend_from_slice(&body);
    v.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    v
}

/// A PNG of `w x h` RGB8 pixels by its header, with an empty image stream.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(png_chunk(b"IEND", b""));
    png
}

#[test]
fn huge_face_image() {
    // 16384 x 16384 declared by a 70-byte file: refused from the header, before decoding
    // (a real one compresses to under 1 MB and would need ~4 GB here).
    let dir = scratch("huge");
    let out = dir.join("out.png");
    let p = dir.join("bomb.png");
    std::fs::write(&p, png_header_only(16384, 16384)).unwrap();
    fails(
        &["sdxl", "--demo", "--face", s(&p), "--out", s(&out)],
        &[
            "bomb.png",
            "the image is 16384x16384, more than the 67108864 pixels (8192x8192) a face photo may have",
        ],
    );
    let p = dir.join("wide.png");
    std::fs::write(&p, png_header_only(100_000, 2)).unwrap();
    fails(
        &["align", s(&p), "--out", s(&out)],
        &["wide.png", "cannot decode"],
    );
}

#[test]
fn zero_size_face_image() {
    let dir = scratch("zero");
    let out = dir.join("out.png");
    // A PNG whose header says 0 x 16 (valid chunk CRCs, no pixel data).
    let p = dir.join("zero.png");
    std::fs::write(&p, png_header_only(0, 16)).unwrap();
    fails(
        &["sdxl", "--demo", "--face", s(&p), "--out", s(&out)],
        &["zero.png", "cannot decode", "Invalid image dimensions"],
    );
    // A 1x1 photo decodes, but is too small to hold a face.
    let p = dir.join("one.png");
    faceclip_pipeline::core::image::save_rgb8_png(&[9, 9, 9], 1, 1, &p, &[]).unwrap();
    fails(
        &["sdxl", "--demo", "--face", s(&p), "--out", s(&out)],
        &["one.png", "the 1x1 image is too small for face detection"],
    );
    assert!(!out.exists());
}

// ----------------------------------------------------------------------------- prompts

#[test]
fn empty_prompt_is_accepted() {
    let dir = scratch("empty_prompt");
    let out = dir.join("out.png");
    succeeds(&[
        "sdxl",
        "--demo",
        "--steps",
        "1",
        "--prompt",
        "",
        "--out",
        s(&out),
    ]);
    let text = faceclip_pipeline::core::image::read_png_text(&out).unwrap();
    assert!(
        text.contains(&("prompt".to_string(), String::new())),
        "{text:?}"
    );
}

#[test]
fn over_long_prompt_is_truncated() {
    let dir = scratch("long_prompt");
    let out = dir.join("out.png");
    let long = vec!["garden"; 300].join(" ");
    let o = succeeds(&[
        "sdxl",
        "--demo",
        "--steps",
        "1",
        "--prompt",
        &long,
        "--out",
        s(&out),
    ]);
    // CLIP keeps 77 tokens (open_clip / CLIPTokenizer truncation); the rest is dropped, and
    // the run says so once (the default negative prompt fits: no line for it).
    let err = String::from_utf8_lossy(&o.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("\"garden garden")
            && warnings[0].contains("longer than CLIP's 77 tokens"),
        "{err}"
    );
    // FaceT5-FLUX: T5 keeps its max_sequence_length; the same line names T5.
    let longer = vec!["garden"; 1200].join(" ");
    let o = succeeds(&[
        "flux",
        "--demo",
        "--steps",
        "1",
        "--prompt",
        &longer,
        "--out",
        s(&dir.join("flux.png")),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning:") && l.contains("longer than T5's")),
        "{err}"
    );
    let tok = faceclip_pipeline::encoders::tokenizer_clip::ClipTokenizer::new().unwrap();
    let b = tok.encode_openclip(&[&long]).unwrap();
    assert!(b.any_truncated());
    assert_eq!(b.ids.len(), 77);
    // Longer than 1 MiB (only reachable through the library: argv is limited to 128 KiB).
    let huge = "a".repeat((1 << 20) + 1);
    let err = tok.encode_openclip(&[&huge]).unwrap_err().to_string();
    assert!(
        err.contains("text of 1048577 bytes is longer than the 1048576-byte limit"),
        "{err}"
    );
    let o = faceclip()
        .args(["sdxl", "--demo", "--prompt", &"a".repeat(200_000)])
        .output();
    assert!(o.is_err(), "argv took a 200 kB prompt");
}

// ----------------------------------------------------------------------------- settings

#[test]
fn zero_or_absurd_steps() {
    let out = scratch("steps").join("out.png");
    fails(
        &["sdxl", "--demo", "--steps", "0", "--out", s(&out)],
        &["steps 0 must be between 1 and 1000"],
    );
    fails(
        &["sdxl", "--demo", "--steps", "1001", "--out", s(&out)],
        &["steps 1001 must be between 1 and 1000"],
    );
    let o = faceclip()
        .args(["sdxl", "--demo", "--steps", "-3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "clap's usage error");
    let o = faceclip()
        .args(["sdxl", "--demo", "--steps", "99999999999999999999999"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "clap's usage error");
}

#[test]
fn size_not_a_multiple_of_the_model_factor() {
    let out = scratch("size").join("out.png");
    fails(
        &["sdxl", "--demo", "--width", "65", "--out", s(&out)],
        &["width 65 must be a positive multiple of 8 for FaceCLIP-SDXL"],
    );
    fails(
        &["sdxl", "--demo", "--height", "0", "--out", s(&out)],
        &["height 0 must be a positive multiple of 8 for FaceCLIP-SDXL"],
    );
    fails(
        &["flux", "--demo", "--height", "72", "--out", s(&out)],
        &["height 72 must be a positive multiple of 16 for FaceT5-FLUX"],
    );
    fails(
        &["sdxl", "--demo", "--width", "8192", "--out", s(&out)],
        &["width 8192 is larger than 4096"],
    );
    fails(
        &["sdxl", "--demo", "--num-images", "0", "--out", s(&out)],
        &["num_images 0 must be between 1 and 64"],
    );
}

#[test]
fn unwritable_output_path() {
    let dir = scratch("unwritable");
    fails(
        &["sdxl", "--demo", "--out", "/no/such/dir/out.png"],
        &["/no/such/dir/out.png", "folder /no/such/dir does not exist"],
    );
    let file = dir.join("a_file");
    std::fs::write(&file, b"").unwrap();
    let under = file.join("out.png");
    fails(
        &["sdxl", "--demo", "--out", s(&under)],
        &["a_file/out.png", "folder", "does not exist"],
    );
    let d = dir.join("a_dir");
    std::fs::create_dir(&d).unwrap();
    fails(
        &["sdxl", "--demo", "--out", s(&d)],
        &["a_dir", "is a directory"],
    );
    use std::os::unix::fs::PermissionsExt;
    let ro = dir.join("read_only");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root writes anywhere: the permission case only means something for other users.
    if std::fs::write(ro.join("probe"), b"").is_err() {
        fails(
            &["sdxl", "--demo", "--out", s(&ro.join("out.png"))],
            &["read_only/out.png", "Permission denied"],
        );
    }
    fails(
        &[
            "convert",
            "tests/fixtures/t5_encoder_hf/weights.pt",
            s(&dir.join("out.bin")),
        ],
        &["out.bin must end in .safetensors"],
    );
}

#[test]
fn unknown_backend_or_dtype() {
    let out = scratch("backend").join("out.png");
    fails(
        &["sdxl", "--demo", "--backend", "tpu", "--out", s(&out)],
        &["backend `tpu`"],
    );
    fails(
        &["sdxl", "--demo", "--backend", "cuda:x", "--out", s(&out)],
        &["backend `cuda:x`", "`x` is not a device index"],
    );
    if !cfg!(feature = "wgpu") {
        fails(
            &["sdxl", "--demo", "--backend", "wgpu", "--out", s(&out)],
            &["backend `wgpu`", "not compiled into this build"],
        );
    }
    // Enumerated flags are clap `ValueEnum`s: a usage error (exit 2) listing the values.
    for (flag, value, listed) in [
        ("--dtype", "f8", "f32, bf16, f16"),
        ("--scheduler", "bogus", "euler, euler-a, ddim"),
    ] {
        let o = faceclip()
            .args(["sdxl", "--demo", flag, value, "--out", s(&out)])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(&format!("invalid value '{value}' for '{flag}")), "{err}");
        assert!(err.contains(listed), "{flag}: values not listed: {err}");
    }
}

#[test]
fn bad_tokenizer_json() {
    let models = demo_copy("tokenizer");
    let tok = models.join("FaceCLIP/model/tokenizer/tokenizer.json");
    assert!(tok.is_file());
    let out = models.join("out.png");
    let face = root().join("demo/models/face.png");
    let args = [
        "flux",
        "--models",
        s(&models),
        "--face",
        s(&face),
        "--aligned",
        "--steps",
        "1",
        "--out",
        s(&out),
    ];
    std::fs::write(&tok, b"{\"model\": {\"type\": \"Unigram\"").unwrap();
    fails(&args, &["tokenizer.json", "tokenizer.json is not JSON"]);
    // Valid JSON the `tokenizers` crate panicked on (fuzzing found it): an error line.
    let crash =
        root().join("fuzz/artifacts/tokenizer_json/crash-ed01f38730f1fb181620fee484b14bc1996fde87");
    std::fs::copy(crash, &tok).unwrap();
    fails(
        &args,
        &[
            "tokenizer.json",
            "is shorter than the continuing_subword_prefix",
        ],
    );
    std::fs::write(&tok, b"{}").unwrap();
    fails(&args, &["tokenizer.json", "cannot read tokenizer.json"]);
    assert!(!out.exists());
}
