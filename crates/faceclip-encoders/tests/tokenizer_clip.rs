//! CLIP tokenizer: the `tokenizer_clip` fixture through the parity hook, per-row exactness of
//! every output, the embedded vocabulary, the other fixtures' open_clip ids, a reference corpus
//! made by the Python implementations (`assets/testdata/clip_cases.json`) and hostile input.

use std::path::PathBuf;
use std::sync::OnceLock;

use faceclip_core::{Error, Fixture};
use faceclip_encoders::tokenizer_clip::{
    self, CONTEXT_LENGTH, ClipTokenizer, EOT_ID, MAX_TEXT_BYTES, PAD_ZERO, SOT_ID,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn fixture() -> Fixture {
    Fixture::open(fixtures().join("tokenizer_clip")).expect("open tokenizer_clip fixture")
}

fn embedded() -> &'static ClipTokenizer {
    static T: OnceLock<ClipTokenizer> = OnceLock::new();
    T.get_or_init(|| ClipTokenizer::new().expect("embedded CLIP tokenizer"))
}

fn strings(f: &Fixture) -> Vec<String> {
    serde_json::from_value(f.extra()["strings"].clone()).unwrap()
}

fn expected_rows(f: &Fixture, name: &str) -> Vec<Vec<i64>> {
    let (shape, v) = f.io().read_i64(&format!("out.{name}")).unwrap();
    v.chunks(shape[1]).map(<[i64]>::to_vec).collect()
}

fn rows<T: Copy + Into<i64>>(v: &[T], l: usize) -> Vec<Vec<i64>> {
    v.chunks(l)
        .map(|r| r.iter().map(|&x| x.into()).collect())
        .collect()
}

#[test]
fn fixture_passes_through_parity_hook() {
    let f = fixture();
    let dev = faceclip_core::device::default_device().unwrap();
    let report = faceclip_encoders::parity::run_fixture(&f, &dev)
        .expect("tokenizer_clip is claimed by faceclip-encoders")
        .expect("parity run");
    let names: Vec<&str> = report.comparisons.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ids_openclip",
            "ids_hf_slow",
            "ids_hf_fast",
            "attention_mask_hf_fast",
            "ids_hf_fast_pad0"
        ]
    );
    for c in &report.comparisons {
        println!("{}: max_abs {} failures {}", c.name, c.max_abs, c.failures);
    }
    assert!(report.pass(), "{:?}", report.failures());
    assert_eq!(report.max_abs(), 0.0);
    assert_eq!(report.tolerance(), (0.0, 0.0));
}

/// Row by row, with the embedded vocabulary, so a failure names the string.
#[test]
fn every_fixture_row_matches_each_convention() {
    let f = fixture();
    let s = strings(&f);
    let tok = embedded();
    let l = CONTEXT_LENGTH;
    let oc = tok.encode_openclip(&s).unwrap();
    let slow = tok.encode_hf_slow(&s, EOT_ID).unwrap();
    let fast = tok.encode_hf(&s, EOT_ID).unwrap();
    let fast0 = tok.encode_hf(&s, PAD_ZERO).unwrap();
    let got = [
        ("ids_openclip", rows(&oc.ids, l)),
        ("ids_hf_slow", rows(&slow.ids, l)),
        ("ids_hf_fast", rows(&fast.ids, l)),
        ("attention_mask_hf_fast", rows(&fast.attention_mask, l)),
        ("ids_hf_fast_pad0", rows(&fast0.ids, l)),
    ];
    for (name, got) in got {
        let want = expected_rows(&f, name);
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{name} row {i} {:?}", s[i]);
        }
    }
    assert_eq!(fast.attention_mask, fast0.attention_mask);
}

#[test]
fn untruncated_bodies_match_fixture_extra() {
    let f = fixture();
    let s = strings(&f);
    let tok = embedded();
    let oc: Vec<Vec<i64>> =
        serde_json::from_value(f.extra()["untruncated_ids_openclip_no_special"].clone()).unwrap();
    let hf: Vec<Vec<i64>> =
        serde_json::from_value(f.extra()["untruncated_ids_hf_fast_no_special"].clone()).unwrap();
    for (i, t) in s.iter().enumerate() {
        assert_eq!(
            tok.encode_openclip_body(t).unwrap(),
            oc[i],
            "openclip {t:?}"
        );
        assert_eq!(tok.encode_hf_body(t).unwrap(), hf[i], "hf fast {t:?}");
    }
}

#[test]
fn truncation_flags() {
    let f = fixture();
    let s = strings(&f);
    let tok = embedded();
    let oc = tok.encode_openclip(&s).unwrap();
    let hf = tok.encode_hf(&s, EOT_ID).unwrap();
    let slow = tok.encode_hf_slow(&s, EOT_ID).unwrap();
    for (i, t) in s.iter().enumerate() {
        let body = tok.encode_openclip_body(t).unwrap().len();
        assert_eq!(oc.truncated[i], body + 2 > CONTEXT_LENGTH, "{t:?}");
        assert_eq!(
            hf.truncated[i],
            tok.encode_hf_body(t).unwrap().len() > CONTEXT_LENGTH - 2,
            "{t:?}"
        );
        assert_eq!(
            slow.truncated[i],
            tok.encode_hf_slow_body(t).unwrap().len() > CONTEXT_LENGTH - 2
        );
        // 75 body tokens fill all 77 slots without truncation.
        if body == 75 {
            assert!(!oc.truncated[i] && !hf.truncated[i]);
            assert_eq!(*oc.row(i).last().unwrap(), EOT_ID);
        }
    }
    assert!(oc.any_truncated());
    // The over-long rows end with EOT and have no padding.
    for i in (0..s.len()).filter(|&i| oc.truncated[i]) {
        assert_eq!(oc.row(i)[CONTEXT_LENGTH - 1], EOT_ID);
        assert_eq!(hf.row(i)[CONTEXT_LENGTH - 1], EOT_ID);
        assert!(hf.mask_row(i).iter().all(|&m| m == 1));
    }
}

#[test]
fn embedded_vocab_equals_fixture_file() {
    let f = fixture();
    let s = strings(&f);
    let from_file = ClipTokenizer::from_file(f.dir.join("tokenizer.json")).unwrap();
    let tok = embedded();
    assert_eq!(
        tok.encode_openclip(&s).unwrap(),
        from_file.encode_openclip(&s).unwrap()
    );
    assert_eq!(
        tok.encode_hf(&s, EOT_ID).unwrap(),
        from_file.encode_hf(&s, EOT_ID).unwrap()
    );
    assert_eq!(
        tok.encode_hf_slow(&s, 0).unwrap(),
        from_file.encode_hf_slow(&s, 0).unwrap()
    );
    assert_eq!((tok.sot_id(), tok.eot_id()), (SOT_ID, EOT_ID));
}

#[test]
fn face_token_and_id_prefix() {
    let tok = embedded();
    // FaceCLIP quirk 10: `tokenizer.encode('id')[0]` = 1014.
    assert_eq!(tok.encode_openclip_body("id").unwrap(), [1014]);
    // 7 = number of non-zero ids of "Photo of a id person." minus 1.
    let b = tok.encode_openclip(&["Photo of a id person."]).unwrap();
    assert_eq!(b.row(0).iter().filter(|&&x| x != 0).count() - 1, 7);
    assert_eq!(
        &b.row(0)[..8],
        &[SOT_ID, 1125, 539, 320, 1014, 2533, 269, EOT_ID]
    );
}

/// The open_clip ids stored by the FaceCLIP fixtures (same tokenizer, other texts).
#[test]
fn other_fixtures_openclip_ids() {
    let tok = embedded();
    for name in ["openclip_text_l", "openclip_text_g"] {
        let f = Fixture::open(fixtures().join(name)).unwrap();
        let texts: Vec<String> = serde_json::from_value(f.extra()["texts"].clone()).unwrap();
        let (_, want) = f.io().read_i64("in.input_ids").unwrap();
        assert_eq!(tok.encode_openclip(&texts).unwrap().ids, want, "{name}");
    }
    let f = Fixture::open(fixtures().join("faceclip_encoder")).unwrap();
    let texts: Vec<String> = serde_json::from_value(f.extra()["texts"].clone()).unwrap();
    let prefix = f.extra()["id_prefix"].as_str().unwrap();
    // Row 0 has a face (prefixed), row 1 is the negative prompt used as given.
    let prompts = [format!("{prefix}{}", texts[0]), texts[1].clone()];
    let ids = tok.encode_openclip(&prompts).unwrap().ids;
    for branch in ["l", "g"] {
        let (_, want) = f.io().read_i64(&format!("mid.{branch}.input_ids")).unwrap();
        assert_eq!(ids, want, "faceclip_encoder {branch}");
    }
}

/// Rows do not depend on the batch: a permuted sub-batch gives the same rows, and another
/// context length gives the same prefix.
#[test]
fn rows_are_independent_of_batch_and_length() {
    let f = fixture();
    let s = strings(&f);
    let tok = embedded();
    let full = tok.encode_openclip(&s).unwrap();
    let full_hf = tok.encode_hf(&s, EOT_ID).unwrap();
    let pick = [21usize, 3, 14, 0, 6];
    let sub: Vec<&str> = pick.iter().map(|&i| s[i].as_str()).collect();
    let part = tok.encode_openclip(&sub).unwrap();
    let part_hf = tok.encode_hf(&sub, EOT_ID).unwrap();
    for (j, &i) in pick.iter().enumerate() {
        assert_eq!(part.row(j), full.row(i));
        assert_eq!(part_hf.row(j), full_hf.row(i));
        assert_eq!(part_hf.mask_row(j), full_hf.mask_row(i));
    }
    let short = tok.clone().with_context_length(16).unwrap();
    let b = short.encode_hf(&s, EOT_ID).unwrap();
    assert_eq!(b.seq_len, 16);
    for (i, text) in s.iter().enumerate() {
        let body = tok.encode_hf_body(text).unwrap();
        let n = body.len().min(14);
        let mut want = vec![SOT_ID];
        want.extend_from_slice(&body[..n]);
        want.push(EOT_ID);
        want.resize(16, EOT_ID);
        assert_eq!(b.row(i), &want[..]);
        assert_eq!(b.truncated[i], body.len() > 14);
    }
    assert!(tok.clone().with_context_length(1).is_err());
    assert_eq!(
        embedded()
            .encode_openclip::<&str>(&[])
            .unwrap()
            .batch_size(),
        0
    );
}

#[test]
fn tensor_views() {
    let tok = embedded();
    let dev = faceclip_core::device::default_device().unwrap();
    let b = tok.encode_hf(&["a photo of a cat", ""], EOT_ID).unwrap();
    let t = b.ids_tensor(&dev);
    assert_eq!(t.dims(), [2, 77]);
    let back: Vec<i64> = t.into_data().try_into_vec_as::<i64>().unwrap();
    assert_eq!(back, b.ids);
    let m: Vec<i64> = b
        .mask_tensor(&dev)
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    assert_eq!(m.iter().sum::<i64>(), 7 + 2);
}

/// `assets/testdata/clip_cases.json`, plus the cases of the file named by the environment
/// variable `FACECLIP_CLIP_CASES` when it is set (same format, e.g. a larger random corpus
/// written by a variant of `gen_clip_cases.py`).
fn cases() -> Vec<Value> {
    let mut files =
        vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/testdata/clip_cases.json")];
    if let Some(extra) = std::env::var_os("FACECLIP_CLIP_CASES") {
        files.push(PathBuf::from(extra));
    }
    let mut out = Vec::new();
    for p in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        out.extend(v["cases"].as_array().unwrap().iter().cloned());
    }
    out
}

/// Python reference corpus: html.unescape, ftfy.fix_text and the three tokenizers' ids.
#[test]
fn python_reference_corpus() {
    let tok = embedded();
    let mut failures = Vec::new();
    let cases = cases();
    for c in &cases {
        let t = c["text"].as_str().unwrap();
        let checks = [
            (
                "unescape",
                Value::from(tokenizer_clip::html_unescape(t).into_owned()),
            ),
            ("ftfy", Value::from(tokenizer_clip::ftfy_fix_text(t))),
            (
                "openclip",
                Value::from(tok.encode_openclip_body(t).unwrap()),
            ),
            ("hf_slow", Value::from(tok.encode_hf_slow_body(t).unwrap())),
            ("hf_fast", Value::from(tok.encode_hf_body(t).unwrap())),
        ];
        for (name, got) in checks {
            if got != c[name] {
                failures.push(format!("{name} {t:?}: got {got} want {}", c[name]));
            }
        }
    }
    let shown: Vec<&String> = failures.iter().take(40).collect();
    assert!(
        failures.is_empty(),
        "{} checks of {} cases differ:\n{shown:#?}",
        failures.len(),
        cases.len()
    );
}

/// No text panics: odd code points, lone marks, huge inputs.
#[test]
fn hostile_text_never_panics() {
    let tok = embedded();
    let mut texts: Vec<String> = vec![
        "\0".into(),
        "\u{FFFD}\u{FFFF}\u{10FFFF}\u{E0000}".into(),
        "\u{301}\u{301}\u{301}".into(),
        "&".repeat(1000),
        "&amp;".repeat(2000),
        format!("{}x{}", "&amp;".repeat(3), ";".repeat(3)),
        "&#".repeat(500) + "99999999999999999999999999999999",
        "\x1b[".repeat(300),
        "<|endoftext|>".repeat(100),
        "<end_of_text>".repeat(100),
        String::from_utf8_lossy(&(0..=255u8).cycle().take(4096).collect::<Vec<_>>()).into_owned(),
        "\r".repeat(5000),
        "Ã©".repeat(3000),
    ];
    // Pseudo-random code points (deterministic LCG).
    let mut x: u64 = 12345;
    for _ in 0..50 {
        let s: String = (0..64)
            .filter_map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                char::from_u32(((x >> 33) % 0x110000) as u32)
            })
            .collect();
        texts.push(s);
    }
    for t in &texts {
        for b in [
            tok.encode_openclip(&[t]).unwrap(),
            tok.encode_hf(&[t], EOT_ID).unwrap(),
            tok.encode_hf_slow(&[t], 0).unwrap(),
        ] {
            assert_eq!(b.ids.len(), CONTEXT_LENGTH);
            assert_eq!(b.ids[0], SOT_ID);
            assert!(b.ids.contains(&EOT_ID));
        }
    }
    // Large but allowed.
    let big = "a photo of a cat, ".repeat(MAX_TEXT_BYTES / 20);
    let b = tok.encode_openclip(&[&big]).unwrap();
    assert!(b.truncated[0]);
    assert!(tok.encode_hf(&[&big], EOT_ID).unwrap().truncated[0]);
    // Over the limit: a typed error, not a panic.
    let huge = "a".repeat(MAX_TEXT_BYTES + 1);
    for r in [
        tok.encode_openclip(&[&huge]),
        tok.encode_hf(&[&huge], 0),
        tok.encode_hf_slow(&[&huge], 0),
    ] {
        assert!(matches!(r, Err(Error::Tokenizer(_))), "{r:?}");
    }
}

#[test]
fn bad_tokenizer_files() {
    let dir = std::env::temp_dir().join(format!("faceclip_clip_tok_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(matches!(
        ClipTokenizer::from_file(dir.join("missing.json")),
        Err(Error::Io { .. })
    ));
    let corrupt = dir.join("corrupt.json");
    std::fs::write(&corrupt, b"{\"model\": 3").unwrap();
    assert!(matches!(
        ClipTokenizer::from_file(&corrupt),
        Err(Error::Tokenizer(_))
    ));
    // A valid tokenizer.json that is not a CLIP vocabulary.
    let wordlevel = dir.join("wordlevel.json");
    std::fs::write(
        &wordlevel,
        br#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":null,"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"a":0,"<unk>":1},"unk_token":"<unk>"}}"#,
    )
    .unwrap();
    assert!(matches!(
        ClipTokenizer::from_file(&wordlevel),
        Err(Error::Tokenizer(_))
    ));
    std::fs::remove_dir_all(&dir).ok();
}
