//! T5 tokenizer. No real T5 (SentencePiece) vocabulary is available offline, so these tests
//! write a small Unigram `tokenizer.json` in the layout transformers' `T5TokenizerFast` saves
//! (Metaspace pre-tokenizer, `$A </s>` template, `<pad>`=0, `</s>`=1, `<unk>`=2) and check
//! FLUX's call `tokenizer_2(texts, padding="max_length", max_length=512, truncation=True)`:
//! ids, `</s>`, zero padding, truncation keeping `</s>` last, the mask, and the errors.

use std::path::PathBuf;

use faceclip_core::Error;
use faceclip_encoders::tokenizer_t5::{MAX_TEXT_BYTES, T5_MAX_LENGTH, T5Tokenizer};

/// A tiny T5-style Unigram tokenizer.json.
fn tiny_t5_json() -> String {
    let special = |id: u32, t: &str| {
        format!(
            r#"{{"id":{id},"content":"{t}","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}"#
        )
    };
    let vocab = [
        ("<pad>", 0.0),
        ("</s>", 0.0),
        ("<unk>", 0.0),
        ("▁", -2.0),
        ("▁a", -3.0),
        ("▁photo", -4.0),
        ("▁of", -4.0),
        ("▁cat", -4.0),
        ("▁dog", -4.0),
        ("s", -5.0),
        ("a", -6.0),
        ("c", -6.0),
        ("t", -6.0),
        ("o", -6.0),
        ("g", -6.0),
        ("d", -6.0),
    ];
    let vocab: Vec<String> = vocab
        .iter()
        .map(|(t, s)| format!(r#"["{t}",{s:.1}]"#))
        .collect();
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,
  "added_tokens":[{},{},{}],
  "normalizer":{{"type":"Sequence","normalizers":[{{"type":"Replace","pattern":{{"Regex":" {{2,}}"}},"content":" "}}]}},
  "pre_tokenizer":{{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}},
  "post_processor":{{"type":"TemplateProcessing",
    "single":[{{"Sequence":{{"id":"A","type_id":0}}}},{{"SpecialToken":{{"id":"</s>","type_id":0}}}}],
    "pair":[{{"Sequence":{{"id":"A","type_id":0}}}},{{"SpecialToken":{{"id":"</s>","type_id":0}}}},{{"Sequence":{{"id":"B","type_id":0}}}},{{"SpecialToken":{{"id":"</s>","type_id":0}}}}],
    "special_tokens":{{"</s>":{{"id":"</s>","ids":[1],"tokens":["</s>"]}}}}}},
  "decoder":{{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}},
  "model":{{"type":"Unigram","unk_id":2,"vocab":[{}],"byte_fallback":false}}}}"#,
        special(0, "<pad>"),
        special(1, "</s>"),
        special(2, "<unk>"),
        vocab.join(",")
    )
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faceclip_t5_tok_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tiny() -> T5Tokenizer {
    T5Tokenizer::from_bytes(tiny_t5_json().as_bytes()).expect("tiny T5 tokenizer.json")
}

#[test]
fn pads_to_512_with_eos() {
    let tok = tiny();
    assert_eq!(
        (tok.eos_id(), tok.pad_id(), tok.max_length()),
        (1, 0, T5_MAX_LENGTH)
    );
    let b = tok.encode(&["a photo of a cat", "dogs", ""]).unwrap();
    assert_eq!((b.batch_size(), b.seq_len, b.ids.len()), (3, 512, 3 * 512));
    assert_eq!(&b.row(0)[..7], &[4, 5, 6, 4, 7, 1, 0]);
    assert!(b.row(0)[6..].iter().all(|&x| x == 0));
    assert_eq!(&b.row(1)[..3], &[8, 9, 1]);
    assert_eq!(&b.row(2)[..2], &[1, 0]);
    assert_eq!(b.mask_row(0).iter().map(|&m| m as usize).sum::<usize>(), 6);
    assert_eq!(b.mask_row(2).iter().map(|&m| m as usize).sum::<usize>(), 1);
    assert_eq!(b.truncated, [false, false, false]);
    // The body is what the tokenizer.json's own `$A </s>` template adds `</s>` to.
    assert_eq!(
        tok.encode_body("a photo of a cat").unwrap(),
        [4, 5, 6, 4, 7]
    );
    // Whitespace runs are collapsed by the normaliser, unknown characters become <unk>.
    assert_eq!(tok.encode_body("a   cat").unwrap(), [4, 7]);
    assert!(tok.encode_body("a zebra").unwrap().contains(&2));
}

#[test]
fn truncation_keeps_eos_last() {
    let tok = tiny();
    let exact = vec!["a"; 511].join(" ");
    let over = vec!["a"; 600].join(" ");
    let b = tok.encode(&[exact.as_str(), over.as_str()]).unwrap();
    assert_eq!(b.truncated, [false, true]);
    assert!(b.any_truncated());
    for i in 0..2 {
        let row = b.row(i);
        assert!(row[..511].iter().all(|&x| x == 4));
        assert_eq!(row[511], 1);
        assert!(b.mask_row(i).iter().all(|&m| m == 1));
    }
    // Another length, same rule.
    let short = tiny().with_max_length(4).unwrap();
    let b = short.encode(&["a photo of a cat", "a"]).unwrap();
    assert_eq!(b.ids, [4, 5, 6, 1, 4, 1, 0, 0]);
    assert_eq!(b.truncated, [true, false]);
    let one = tiny().with_max_length(1).unwrap();
    assert_eq!(one.encode(&["a cat"]).unwrap().ids, [1]);
    assert!(tiny().with_max_length(0).is_err());
}

#[test]
fn rows_do_not_depend_on_the_batch() {
    let tok = tiny();
    let texts = ["a photo of a cat", "dogs", "", "cat of a dog"];
    let all = tok.encode(&texts).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let one = tok.encode(&[t]).unwrap();
        assert_eq!(one.row(0), all.row(i));
    }
    let dev = faceclip_core::device::default_device().unwrap();
    assert_eq!(all.ids_tensor(&dev).dims(), [4, 512]);
}

#[test]
fn file_errors() {
    let dir = tmp_dir("files");
    let good = dir.join("tokenizer.json");
    std::fs::write(&good, tiny_t5_json()).unwrap();
    let tok = T5Tokenizer::from_file(&good).unwrap();
    assert_eq!(&tok.encode(&["a cat"]).unwrap().ids[..3], &[4, 7, 1]);

    assert!(matches!(
        T5Tokenizer::from_file(dir.join("missing.json")),
        Err(Error::Io { .. })
    ));
    let corrupt = dir.join("corrupt.json");
    std::fs::write(&corrupt, &tiny_t5_json()[..200]).unwrap();
    let e = T5Tokenizer::from_file(&corrupt).unwrap_err();
    assert!(
        matches!(&e, Error::Tokenizer(m) if m.contains("corrupt.json")),
        "{e}"
    );
    std::fs::write(&corrupt, b"\xff\xfe not json").unwrap();
    assert!(matches!(
        T5Tokenizer::from_file(&corrupt),
        Err(Error::Tokenizer(_))
    ));
    // A tokenizer without `</s>` is not a T5 vocabulary.
    let no_eos = tiny_t5_json().replace("</s>", "<eos>");
    assert!(matches!(
        T5Tokenizer::from_bytes(no_eos.as_bytes()),
        Err(Error::Tokenizer(_))
    ));
    // Padding / truncation sections in the file do not change the rows.
    let configured = tiny_t5_json().replace(
        r#""truncation":null,"padding":null"#,
        r#""truncation":{"direction":"Right","max_length":3,"strategy":"LongestFirst","stride":0},
           "padding":{"strategy":{"Fixed":10},"direction":"Right","pad_to_multiple_of":null,
                      "pad_id":0,"pad_type_id":0,"pad_token":"<pad>"}"#,
    );
    assert_ne!(configured, tiny_t5_json());
    let texts = ["a photo of a cat", "dogs"];
    let with_cfg = T5Tokenizer::from_bytes(configured.as_bytes()).unwrap();
    assert_eq!(
        with_cfg.encode(&texts).unwrap(),
        tiny().encode(&texts).unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hostile_text_never_panics() {
    let tok = tiny();
    let mut texts: Vec<String> = vec![
        "\0\u{FFFD}\u{10FFFF}".into(),
        "\u{301}".repeat(100),
        "</s><pad><unk>".repeat(50),
        "▁".repeat(1000),
        String::from_utf8_lossy(&(0..=255u8).cycle().take(4096).collect::<Vec<_>>()).into_owned(),
    ];
    let mut x: u64 = 99;
    for _ in 0..30 {
        texts.push(
            (0..64)
                .filter_map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    char::from_u32(((x >> 33) % 0x110000) as u32)
                })
                .collect(),
        );
    }
    for t in &texts {
        let b = tok.encode(&[t]).unwrap();
        assert_eq!(b.ids.len(), 512);
        assert!(b.ids.contains(&1));
    }
    let big = "a cat ".repeat(MAX_TEXT_BYTES / 8);
    assert!(tok.encode(&[&big]).unwrap().truncated[0]);
    let huge = "a".repeat(MAX_TEXT_BYTES + 1);
    assert!(matches!(tok.encode(&[&huge]), Err(Error::Tokenizer(_))));
}
