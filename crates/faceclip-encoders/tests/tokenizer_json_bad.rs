//! Malformed `tokenizer.json` files on which the `tokenizers` crate itself panics (found by
//! fuzzing, `fuzz/artifacts/tokenizer_json/`): both tokenizers answer with
//! [`Error::Tokenizer`] instead.

use faceclip_core::Error;
use faceclip_encoders::tokenizer_clip::ClipTokenizer;
use faceclip_encoders::tokenizer_t5::T5Tokenizer;

const T5_TINY: &str = include_str!("../../../fuzz/src/t5_tiny_tokenizer.json");

fn both_refuse(json: &[u8], needle: &str) {
    for err in [
        T5Tokenizer::from_bytes(json).map(|_| ()).unwrap_err(),
        ClipTokenizer::from_bytes(json).map(|_| ()).unwrap_err(),
    ] {
        assert!(matches!(err, Error::Tokenizer(_)), "{err:?}");
        assert!(err.to_string().contains(needle), "`{needle}` not in {err}");
    }
}

#[test]
fn the_tiny_t5_tokenizer_loads() {
    T5Tokenizer::from_bytes(T5_TINY.as_bytes()).unwrap();
}

#[test]
fn a_decoder_section_that_is_not_json_is_an_error() {
    // `"decoder": {"type": "Metaspace" "replacement"...`: a missing comma inside the decoder
    // made `DecoderWrapper::deserialize` panic (`expect("Helper")`).
    let bad = T5_TINY.replacen(
        r#""decoder": {"type": "Metaspace", "#,
        r#""decoder": {"type": "Metaspace" "#,
        1,
    );
    assert_ne!(bad, T5_TINY);
    both_refuse(bad.as_bytes(), "tokenizer.json is not JSON");
    let crash = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/artifacts/tokenizer_json"
    ))
    .unwrap()
    .filter_map(|e| e.ok())
    .map(|e| std::fs::read(e.path()).unwrap());
    for bytes in crash {
        let _ = T5Tokenizer::from_bytes(&bytes);
        let _ = ClipTokenizer::from_bytes(&bytes);
    }
}

#[test]
fn a_precompiled_normalizer_with_a_bad_charsmap_is_an_error() {
    // `NormalizerWrapper::deserialize` did `expect("Precompiled")` on it.
    let bad = T5_TINY.replacen(
        r#""normalizer": {"type": "Sequence", "normalizers": ["#,
        r#""normalizer": {"type": "Sequence", "normalizers": [{"type": "Precompiled", "precompiled_charsmap": "not base64!"}, "#,
        1,
    );
    assert_ne!(bad, T5_TINY);
    both_refuse(bad.as_bytes(), "bad Precompiled normalizer");
}

#[test]
fn a_bpe_merge_shorter_than_the_subword_prefix_is_an_error() {
    // `BpeBuilder::build` sliced `&b[prefix_len..]` out of bounds.
    let clip = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/corpus/tokenizer_json/clip_tiny_tokenizer"
    ))
    .unwrap();
    ClipTokenizer::from_bytes(clip.as_bytes()).unwrap();
    let bad = clip.replacen(
        r#""continuing_subword_prefix": """#,
        r#""continuing_subword_prefix": "patt""#,
        1,
    );
    assert_ne!(bad, clip);
    both_refuse(
        bad.as_bytes(),
        "is shorter than the continuing_subword_prefix \"patt\"",
    );
}
