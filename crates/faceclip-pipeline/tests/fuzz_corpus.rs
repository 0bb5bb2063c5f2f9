//! The fuzz smoke of CI: every committed seed (`fuzz/corpus/<target>/`) and every crash
//! artifact ever found (`fuzz/artifacts/<target>/`) replayed through the same target bodies
//! the cargo-fuzz targets run (`fuzz/src/lib.rs`, compiled in here). A panic in any of them is
//! a failure naming the file.

use std::path::PathBuf;

// `unwind_panics` is for the cargo-fuzz binaries only.
#[allow(dead_code)]
#[path = "../../../fuzz/src/lib.rs"]
mod fuzz_targets;

fn replay(target: &str) {
    let body = fuzz_targets::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target `{target}`"));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let (mut seeds, mut failures) = (0, Vec::new());
    for sub in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(sub).join(target)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if sub == "corpus" {
                seeds += 1;
            }
            if let Err(e) = std::panic::catch_unwind(|| body(&data)) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {msg}", file.display()));
            }
        }
    }
    assert!(seeds > 0, "fuzz/corpus/{target}/ is empty");
    assert!(
        failures.is_empty(),
        "{} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn fuzz_corpus_safetensors() {
    replay("safetensors");
}

#[test]
fn fuzz_corpus_gguf() {
    replay("gguf");
}

#[test]
fn fuzz_corpus_pytorch() {
    replay("pytorch");
}

#[test]
fn fuzz_corpus_tokenizers() {
    replay("tokenizers");
}

#[test]
fn fuzz_corpus_tokenizer_json() {
    replay("tokenizer_json");
}

#[test]
fn fuzz_corpus_image() {
    replay("image");
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (name, _) in fuzz_targets::TARGETS {
        let src = std::fs::read_to_string(dir.join(format!("{name}.rs"))).unwrap();
        assert!(
            src.contains(&format!("faceclip_fuzz::{name}(data)")),
            "{name}.rs"
        );
    }
}
