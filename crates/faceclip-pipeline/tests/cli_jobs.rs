//! The `faceclip` program's user-edge cases on the demo models: Unicode prompts in the
//! metadata, schedulers that do not fit the model, the output format from the extension,
//! micro-conditioning flags, prompt files with `--json`, per-command `--help`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn faceclip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faceclip"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faceclip-jobs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str], out: &Path) -> Output {
    faceclip().args(args).arg("--out").arg(out).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_unicode_prompt_is_written_to_the_metadata() {
    let dir = scratch("unicode");
    let out = dir.join("u.png");
    let prompt = "a portrait — “quoted” 東京 😀";
    let o = run(&["sdxl", "--demo", "--steps", "2", "--prompt", prompt], &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = faceclip_pipeline::core::image::read_png_text(&out).unwrap();
    assert!(
        text.contains(&("prompt".to_string(), prompt.to_string())),
        "{text:?}"
    );
}

#[test]
fn a_scheduler_for_the_other_model_is_one_line_before_loading() {
    let dir = scratch("sched");
    let out = dir.join("x.png");
    // A model folder that does not exist: the scheduler must be refused first.
    for (model, sched, want) in [
        ("flux", "ddim", "flow-match"),
        ("flux", "euler", "flow-match"),
        ("sdxl", "flow-match", "dpm++2m"),
    ] {
        let o = run(
            &[model, "--demo", "--scheduler", sched],
            &out,
        );
        assert!(!o.status.success(), "{model} {sched} was accepted");
        let e = stderr(&o);
        assert!(
            e.contains("does not fit") && e.contains(want) && e.lines().count() == 1,
            "{model} {sched}: {e}"
        );
        assert!(!out.exists());
    }
}

#[test]
fn the_extension_picks_the_format_and_an_unknown_one_is_refused() {
    let dir = scratch("format");
    for (ext, format) in [
        ("png", image::ImageFormat::Png),
        ("jpg", image::ImageFormat::Jpeg),
        ("jpeg", image::ImageFormat::Jpeg),
        ("webp", image::ImageFormat::WebP),
    ] {
        let out = dir.join(format!("x.{ext}"));
        let o = run(&["sdxl", "--demo", "--steps", "2"], &out);
        assert!(o.status.success(), "{ext}: {}", stderr(&o));
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(image::guess_format(&bytes).unwrap(), format, "{ext}");
    }
    let out = dir.join("x.bmp");
    let o = run(&["sdxl", "--demo", "--steps", "2"], &out);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("x.bmp"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn micro_conditioning_flags_change_the_image_and_are_recorded() {
    let dir = scratch("micro");
    let a = dir.join("a.png");
    let b = dir.join("b.png");
    assert!(run(&["sdxl", "--demo", "--steps", "2"], &a).status.success());
    let o = run(
        &[
            "sdxl",
            "--demo",
            "--steps",
            "2",
            "--original-size",
            "1024x768",
            "--crops-coords-top-left",
            "0,32",
        ],
        &b,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let text = faceclip_pipeline::core::image::read_png_text(&b).unwrap();
    assert!(
        text.iter()
            .any(|(k, v)| k == "time_ids" && v.contains("1024.0, 768.0, 0.0, 32.0, 64.0, 64.0")),
        "{text:?}"
    );
    let o = run(&["sdxl", "--demo", "--original-size", "big"], &b);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn a_prompt_file_runs_every_job_and_json_lists_what_was_written() {
    let dir = scratch("batch");
    let face = faceclip_pipeline::models::demo_dir()
        .unwrap()
        .join("face.png");
    std::fs::copy(&face, dir.join("me.png")).unwrap();
    let file = dir.join("jobs.txt");
    std::fs::write(
        &file,
        "a garden\n\n{\"prompt\": \"a beach\", \"seed\": 5, \"face\": \"me.png\"}\n",
    )
    .unwrap();
    let out = dir.join("img.png");
    let o = faceclip()
        .args(["sdxl", "--demo", "--steps", "2", "--num-images", "2", "--json", "--prompt-file"])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 4);
    let names: Vec<String> = listed
        .iter()
        .map(|v| {
            let p = PathBuf::from(v["path"].as_str().unwrap());
            assert!(p.is_file(), "{p:?} not written");
            p.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(
        names,
        ["img_001_1.png", "img_001_2.png", "img_002_1.png", "img_002_2.png"]
    );
    let seeds: Vec<u64> = listed.iter().map(|v| v["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [453563, 453564, 5, 6]);
    assert_eq!(listed[2]["prompt"], "a beach");
    // A bad line is one error naming the file and line, before any model loads.
    std::fs::write(&file, "a garden\n{\"prompt\": 3}\n").unwrap();
    let o = faceclip()
        .args(["sdxl", "--demo", "--prompt-file"])
        .arg(&file)
        .arg("--out")
        .arg(dir.join("bad.png"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
}

#[test]
fn each_command_shows_only_its_own_flags_and_lists_values() {
    let help = |cmd: &str| {
        String::from_utf8(faceclip().args([cmd, "--help"]).output().unwrap().stdout).unwrap()
    };
    let sdxl = help("sdxl");
    let flux = help("flux");
    assert!(sdxl.contains("--cfg") && !sdxl.contains("--true-cfg"));
    assert!(flux.contains("--true-cfg") && !flux.contains("--cfg "));
    assert!(!flux.contains("--original-size"));
    for v in ["euler-a", "dpm++2m-karras", "flow-match", "auto", "always", "never", "bf16"] {
        assert!(sdxl.contains(v), "sdxl --help does not list {v}");
    }
}

#[test]
fn lora_and_rng_flags_reach_the_library() {
    let dir = scratch("lora");
    let out = dir.join("x.png");
    // An SDXL LoRA on FLUX's transformer: refused, naming the file.
    let lora = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lora/sdxl_peft/lora.safetensors");
    let o = faceclip()
        .args(["flux", "--demo", "--steps", "2", "--lora"])
        .arg(format!("{}:0.5", lora.display()))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lora.safetensors"), "{}", stderr(&o));
    assert!(!out.exists());
    // --rng torch draws other latents than the default generator, and says so.
    let a = dir.join("a.png");
    let b = dir.join("b.png");
    assert!(run(&["sdxl", "--demo", "--steps", "2"], &a).status.success());
    let o = run(&["sdxl", "--demo", "--steps", "2", "--rng", "torch"], &b);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let text = faceclip_pipeline::core::image::read_png_text(&b).unwrap();
    assert!(text.contains(&("noise".to_string(), "torch".to_string())), "{text:?}");
}
