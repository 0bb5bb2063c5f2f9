//! Every fixture folder and manifest in the repository through the parity dispatch, as
//! `parity tests/fixtures tests/manifests` runs them: nothing may fail, and only the kinds
//! listed in `NOT_PORTED` may be unsupported.

use std::path::PathBuf;

use faceclip_pipeline::core::device::default_device;
use faceclip_pipeline::parity::check_path;

/// Kinds whose port has not landed yet (none: every fixture and manifest is ported).
const NOT_PORTED: &[&str] = &[];

#[test]
fn every_fixture_and_manifest_passes_or_is_listed_as_not_ported() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests");
    let device = default_device().unwrap();
    let mut checked = check_path(&root.join("fixtures"), &device);
    checked.extend(check_path(&root.join("manifests"), &device));
    assert!(checked.len() >= 29, "only {} checks found", checked.len());
    let mut bad = vec![];
    for c in &checked {
        println!("{}", c.line());
        if c.passed() {
            continue;
        }
        if c.unsupported() && NOT_PORTED.contains(&c.name.as_str()) {
            continue;
        }
        bad.push(c.line());
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn a_folder_that_is_neither_is_an_error_line_not_a_panic() {
    let device = default_device().unwrap();
    let dir = std::env::temp_dir().join(format!("faceclip-parity-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let checked = check_path(&dir, &device);
    assert_eq!(checked.len(), 1);
    assert!(!checked[0].passed());
    assert!(
        checked[0].line().starts_with("FAIL"),
        "{}",
        checked[0].line()
    );
}
