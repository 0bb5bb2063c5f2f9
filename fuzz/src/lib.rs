//! The fuzz target bodies of faceclip-rs, one plain function per target (`fuzz_targets/*.rs`
//! are one-liners calling them). The same file is compiled into
//! `crates/faceclip-pipeline/tests/fuzz_corpus.rs`, which replays every committed corpus file
//! and crash artifact through [`TARGETS`] in a normal `cargo test`.
//!
//! Each body takes arbitrary bytes and must neither panic, hang nor allocate far beyond the
//! input's size; the assertions check what must hold of a result the library accepted.
//! Only crate paths (`faceclip_core::...`) are used here, never `crate::`, so that the file
//! compiles as a module of the test as well.

use std::sync::OnceLock;

use faceclip_core::image::RgbImage;
use faceclip_detect::detect_face::{
    Window, area_resample_normalised, crop_window, level_size, pyramid_scales,
};
use faceclip_detect::{ImageView, MtcnnConfig, RgbU8Image, norm_crop};
use faceclip_encoders::tokenizer_clip::{
    ClipTokenizer, PAD_ZERO, TokenBatch, ftfy_fix_text, hf_slow_clean, html_unescape,
    openclip_clean,
};
use faceclip_encoders::tokenizer_t5::T5Tokenizer;

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target by name (the folder names under `fuzz/corpus/` and `fuzz/artifacts/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("safetensors", safetensors),
    ("gguf", gguf),
    ("pytorch", pytorch),
    ("tokenizers", tokenizers),
    ("tokenizer_json", tokenizer_json),
    ("image", image),
];

/// `.safetensors` bytes, in memory and as a mapped file; every tensor read
/// ([`faceclip_core::fuzzing::safetensors`]).
pub fn safetensors(data: &[u8]) {
    faceclip_core::fuzzing::safetensors(data);
}

/// `.gguf` bytes, as a mapped file and in memory; every tensor read, then written again and
/// read back ([`faceclip_core::fuzzing::gguf`]).
pub fn gguf(data: &[u8]) {
    faceclip_core::fuzzing::gguf(data);
}

/// `.pt` bytes through burn's pickle reader; every tensor read
/// ([`faceclip_core::fuzzing::pytorch`]).
pub fn pytorch(data: &[u8]) {
    faceclip_core::fuzzing::pytorch(data);
}

/// A small T5 Unigram `tokenizer.json` in the layout `T5TokenizerFast` saves.
const T5_TINY: &str = include_str!("t5_tiny_tokenizer.json");

fn clip() -> &'static ClipTokenizer {
    static T: OnceLock<ClipTokenizer> = OnceLock::new();
    T.get_or_init(|| ClipTokenizer::new().expect("the embedded CLIP vocabulary loads"))
}

fn t5() -> &'static (T5Tokenizer, T5Tokenizer) {
    static T: OnceLock<(T5Tokenizer, T5Tokenizer)> = OnceLock::new();
    T.get_or_init(|| {
        let t = T5Tokenizer::from_bytes(T5_TINY.as_bytes()).expect("the tiny T5 tokenizer loads");
        let short = t.clone().with_max_length(6).expect("6 > 0");
        (t, short)
    })
}

/// One row of `l` ids: `first` then real ids with mask 1, then padding with mask 0; the last
/// real id is `last`; `truncated` exactly when the text did not fit.
fn check_row(b: &TokenBatch, l: usize, first: Option<i64>, last: i64, pad: i64, vocab: usize) {
    assert_eq!(b.batch_size(), 1);
    assert_eq!((b.seq_len, b.ids.len(), b.attention_mask.len()), (l, l, l));
    let n = b.attention_mask.iter().take_while(|&&m| m == 1).count();
    assert!(n >= 1, "no real token: {b:?}");
    assert!(
        b.attention_mask[n..].iter().all(|&m| m == 0),
        "mask not 1s then 0s: {b:?}"
    );
    assert!(
        b.ids[n..].iter().all(|&i| i == pad),
        "padding is not {pad}: {b:?}"
    );
    if let Some(first) = first {
        assert_eq!(b.ids[0], first, "{b:?}");
    }
    assert_eq!(b.ids[n - 1], last, "{b:?}");
    assert!(
        b.ids.iter().all(|&i| i >= 0 && (i as usize) < vocab),
        "id out of the vocabulary: {b:?}"
    );
    if b.truncated[0] {
        assert_eq!(n, l, "a truncated row is full: {b:?}");
    }
}

/// Arbitrary text (lossy UTF-8) through the CLIP tokenizer's three conventions (open_clip,
/// CLIPTokenizerFast, slow CLIPTokenizer with ftfy) and the T5 tokenizer, with the text
/// cleaners on their own; every row checked for length, SOT/EOT, padding and mask.
pub fn tokenizers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let texts = [text.as_ref()];
    let _ = (
        openclip_clean(&text),
        hf_slow_clean(&text),
        ftfy_fix_text(&text),
        html_unescape(&text),
    );
    let c = clip();
    let (sot, eot, l) = (c.sot_id(), c.eot_id(), c.context_length());
    let vocab = 49408;
    let b = c
        .encode_openclip(&texts)
        .expect("open_clip encodes any text under 1 MiB");
    check_row(&b, l, Some(sot), eot, PAD_ZERO, vocab);
    let b = c
        .encode_hf(&texts, eot)
        .expect("CLIPTokenizerFast encodes any text under 1 MiB");
    check_row(&b, l, Some(sot), eot, eot, vocab);
    let b = c
        .encode_hf(&texts, PAD_ZERO)
        .expect("CLIPTokenizerFast encodes any text under 1 MiB");
    let n = b.attention_mask.iter().filter(|&&m| m == 1).count();
    assert_eq!(b.ids[n - 1], eot);
    let b = c
        .encode_hf_slow(&texts, eot)
        .expect("CLIPTokenizer encodes any text under 1 MiB");
    check_row(&b, l, Some(sot), eot, eot, vocab);

    let (t5, t5_short) = t5();
    for t in [t5, t5_short] {
        let b = t.encode(&texts).expect("T5 encodes any text under 1 MiB");
        check_row(&b, t.max_length(), None, t.eos_id(), t.pad_id(), 16);
    }
}

/// For `tokenizer_json`: lets panics unwind instead of aborting at once (libfuzzer-sys's hook),
/// so that a panic inside the `tokenizers` crate that faceclip's loader catches (its last
/// resort, reported as an error) is not a crash; a panic that escapes still reaches
/// libfuzzer-sys's `catch_unwind` around the target and aborts.
pub fn unwind_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// Arbitrary bytes as a `tokenizer.json` for the CLIP and the T5 tokenizer (what a model
/// folder supplies); a tokenizer that loads must encode a few texts into well-formed rows.
pub fn tokenizer_json(data: &[u8]) {
    const TEXTS: [&str; 4] = [
        "a photo of a cat",
        "",
        "<|endoftext|> ÿ\u{301} 日本 &amp;",
        "</s><pad>",
    ];
    if let Ok(t) = ClipTokenizer::from_bytes(data) {
        for text in TEXTS {
            if let Ok(b) = t.encode_hf(&[text], t.eot_id()) {
                assert_eq!(b.ids.len(), t.context_length());
                assert_eq!(b.ids[0], t.sot_id());
            }
            if let Ok(b) = t.encode_openclip(&[text]) {
                assert_eq!(b.ids.len(), t.context_length());
            }
            let _ = t.encode_hf_slow(&[text], PAD_ZERO);
        }
    }
    if let Ok(t) = T5Tokenizer::from_bytes(data) {
        let t = t.with_max_length(8).expect("8 > 0");
        for text in TEXTS {
            if let Ok(b) = t.encode(&[text]) {
                assert_eq!(b.ids.len(), 8);
                assert!(b.ids.contains(&t.eos_id()));
            }
        }
    }
}

/// Image bytes: decode, resize, RGB8 round trip and tensor data
/// ([`faceclip_core::fuzzing::image`]), the detector's decoder (must agree), then the
/// host-side face preprocessing of the pipeline: MTCNN's pyramid and `area` resampling, a
/// crop window, and the ArcFace alignment (`norm_crop`) at 112 px with landmarks taken from
/// the pixels (so they fall inside, outside and on top of each other).
pub fn image(data: &[u8]) {
    let Some((img, rgb)) = faceclip_core::fuzzing::image(data) else {
        return;
    };
    let (w, h) = (img.width, img.height);
    if w * h <= faceclip_core::fuzzing::SMALL_IMAGE
        && let Ok(d) = RgbU8Image::decode(data)
    {
        assert_eq!(
            (d.width, d.height),
            (w, h),
            "the two decoders disagree on the size"
        );
        assert!(d.data == rgb, "the two decoders disagree on the pixels");
    }
    let view = ImageView::new(w, h, &rgb).expect("a decoded image is a valid view");
    face_preprocessing(&img, &view);
}

fn face_preprocessing(img: &RgbImage, view: &ImageView<'_>) {
    let (w, h) = (img.width, img.height);
    let cfg = MtcnnConfig::default();
    let scales = pyramid_scales(h, w, cfg.min_face_size, cfg.factor, 64);
    for s in [scales.first(), scales.last()].into_iter().flatten() {
        let (hs, ws) = level_size(h, w, *s);
        if hs == 0 || ws == 0 {
            continue;
        }
        let rows = 0..hs.min(2);
        let mut out = vec![0f32; 3 * rows.len() * ws];
        area_resample_normalised(view, Window::full(view), hs, ws, rows, &mut out);
        assert!(
            out.iter()
                .all(|v| v.is_finite() && (-1.0..=1.0).contains(v))
        );
    }
    let byte = |i: usize| f32::from(view.data[i % view.data.len()]) / 255.0;
    let bx = [
        (byte(0) * 1.5 - 0.25) * w as f32,
        (byte(1) * 1.5 - 0.25) * h as f32,
        (byte(2) * 1.5 - 0.25) * w as f32,
        (byte(3) * 1.5 - 0.25) * h as f32,
        1.0,
    ];
    if let Some(win) = crop_window(&bx, w, h) {
        assert!(
            win.x0 < win.x1 && win.x1 <= w && win.y0 < win.y1 && win.y1 <= h,
            "{win:?}"
        );
    }
    let lmk: [[f32; 2]; 5] = std::array::from_fn(|k| {
        [
            (byte(4 + 2 * k) * 1.5 - 0.25) * w as f32,
            (byte(5 + 2 * k) * 1.5 - 0.25) * h as f32,
        ]
    });
    if let Ok((crop, m)) = norm_crop(*view, &lmk, 112) {
        assert_eq!(crop.len(), 112 * 112 * 3);
        assert!(m.iter().flatten().all(|v| v.is_finite()), "{m:?}");
    }
}
