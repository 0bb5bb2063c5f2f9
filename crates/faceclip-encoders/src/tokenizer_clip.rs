//! The CLIP byte-level BPE tokenizer (vocabulary `bpe_simple_vocab_16e6`, 49408 ids) in the
//! three conventions the FaceCLIP pipelines call it with:
//!
//! - [`ClipTokenizer::encode_openclip`]: open_clip's `SimpleTokenizer()(texts)` (open_clip 3.3),
//!   which both FaceCLIP branches use: ftfy + double `html.unescape` + whitespace collapse +
//!   lower-case, `[SOT=49406] + BPE + [EOT=49407]`, **zero** padded to 77; a longer text is cut
//!   to 77 ids and the last one set to EOT.
//! - [`ClipTokenizer::encode_hf`]: transformers' `CLIPTokenizerFast(texts, padding="max_length",
//!   max_length=77, truncation=True)` driven by `tokenizer.json` (NFC + whitespace collapse +
//!   lower-case, no ftfy): `[BOS] + first 75 BPE ids + [EOS]`, padded with `pad_id` (49407 for
//!   SDXL `tokenizer` / FLUX, 0 for SDXL `tokenizer_2`), with the attention mask.
//! - [`ClipTokenizer::encode_hf_slow`]: the slow `CLIPTokenizer` (ftfy installed) with the same
//!   padding and truncation; it differs from the fast one on HTML entities and on what ftfy
//!   changes (fullwidth forms, curly quotes, ligatures, ...).
//!
//! The real vocabulary ships inside the crate ([`ClipTokenizer::new`]); the BPE itself is the
//! `tokenizers` crate's. No text makes these functions panic: a failure is a
//! [`faceclip_core::Error::Tokenizer`].

mod mojibake;
mod text_clean;

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

#[cfg(feature = "parity")]
use faceclip_core::{Comparison, Fixture, ParityOutcome, ParityReport};
use faceclip_core::{Device, Error, Int, Result, Tensor, TensorData};
use tokenizers::models::ModelWrapper;
use tokenizers::{Model, Tokenizer};

pub use text_clean::{ftfy_fix_text, hf_slow_clean, html_unescape, openclip_clean};

/// CLIP's context length (`model_max_length`, open_clip `context_length`).
pub const CONTEXT_LENGTH: usize = 77;
/// `<|startoftext|>` (open_clip `<start_of_text>`).
pub const SOT_ID: i64 = 49406;
/// `<|endoftext|>` (open_clip `<end_of_text>`).
pub const EOT_ID: i64 = 49407;
/// The padding id of open_clip and of SDXL's `tokenizer_2` (`"!"`).
pub const PAD_ZERO: i64 = 0;
/// Texts longer than this many bytes are refused with [`Error::Tokenizer`] instead of being
/// cleaned and tokenised in full (only the first 77 ids would be kept anyway).
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// `tests/fixtures/tokenizer_clip/tokenizer.json` (the CLIP vocabulary and merges as a
/// `tokenizers` JSON), gzip-compressed.
static EMBEDDED_TOKENIZER_GZ: &[u8] = include_bytes!("../assets/clip_tokenizer.json.gz");

// The Python patterns are compiled with `re.IGNORECASE` (the `regex` module). Under it the
// literal alternatives match case-insensitively (simple folding, as `(?i:...)` here), while the
// classes match exactly as without the flag except for U+0345 COMBINING GREEK YPOGEGRAMMENI
// (it folds to a letter): it is then in neither `[\p{L}]` nor `[^\s\p{L}\p{N}]`, so Python
// skips it like whitespace. Checked on every code point; the remaining differences are the
// Unicode versions of the tables (Python `regex` 2026: Unicode 17, Rust `regex`: Unicode 16).
const OPENCLIP_PATTERN: &str = r"(?i:<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d)|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}\x{345}]+";
const HF_SLOW_PATTERN: &str = r"(?i:<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d)|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}\x{345}]+";
const HF_SPECIAL_PATTERN: &str = r"<\|startoftext\|>|<\|endoftext\|>";

/// A batch of fixed-length token rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Row-major `[batch, seq_len]` ids.
    pub ids: Vec<i64>,
    /// Row-major `[batch, seq_len]`: 1 for a real token (including BOS/EOS), 0 for padding.
    pub attention_mask: Vec<u8>,
    /// Per row: the text gave more tokens than fit and was cut.
    pub truncated: Vec<bool>,
    /// Row length (77 for CLIP).
    pub seq_len: usize,
}

impl TokenBatch {
    fn with_capacity(rows: usize, seq_len: usize) -> Self {
        Self {
            ids: Vec::with_capacity(rows * seq_len),
            attention_mask: Vec::with_capacity(rows * seq_len),
            truncated: Vec::with_capacity(rows),
            seq_len,
        }
    }

    /// Appends `tokens` (already cut to at most `seq_len`), padded with `pad_id`.
    pub(crate) fn push_row(&mut self, tokens: &[i64], pad_id: i64, truncated: bool) {
        debug_assert!(tokens.len() <= self.seq_len);
        let pad = self.seq_len - tokens.len();
        self.ids.extend_from_slice(tokens);
        self.ids.extend(std::iter::repeat_n(pad_id, pad));
        self.attention_mask
            .extend(std::iter::repeat_n(1u8, tokens.len()));
        self.attention_mask.extend(std::iter::repeat_n(0u8, pad));
        self.truncated.push(truncated);
    }

    /// Number of rows.
    pub fn batch_size(&self) -> usize {
        self.truncated.len()
    }

    /// The ids of row `i` (`seq_len` long). Panics when `i >= batch_size()`.
    pub fn row(&self, i: usize) -> &[i64] {
        &self.ids[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// The attention mask of row `i`. Panics when `i >= batch_size()`.
    pub fn mask_row(&self, i: usize) -> &[u8] {
        &self.attention_mask[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// True when at least one row was truncated (for a CLI warning).
    pub fn any_truncated(&self) -> bool {
        self.truncated.iter().any(|&t| t)
    }

    /// The ids as an int tensor `[batch, seq_len]`.
    pub fn ids_tensor(&self, device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(
            TensorData::new(self.ids.clone(), [self.batch_size(), self.seq_len]),
            device,
        )
    }

    /// The attention mask as an int tensor `[batch, seq_len]` (1 = token, 0 = padding).
    pub fn mask_tensor(&self, device: &Device) -> Tensor<2, Int> {
        let m: Vec<i64> = self.attention_mask.iter().map(|&x| i64::from(x)).collect();
        Tensor::from_data(
            TensorData::new(m, [self.batch_size(), self.seq_len]),
            device,
        )
    }
}

/// `bytes_to_unicode()` of GPT-2 / CLIP: the printable character standing for each byte.
fn byte_encoder() -> &'static [char; 256] {
    static T: OnceLock<[char; 256]> = OnceLock::new();
    T.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut n = 0u32;
        for b in 0..=255u8 {
            let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            table[b as usize] = if printable {
                char::from(b)
            } else {
                n += 1;
                char::from_u32(255 + n).expect("256..=323 are chars")
            };
        }
        table
    })
}

fn regex(cell: &'static OnceLock<regex::Regex>, pattern: &str) -> &'static regex::Regex {
    cell.get_or_init(|| regex::Regex::new(pattern).expect("static regex"))
}

/// Parses a `tokenizer.json` with the `tokenizers` crate, which panics instead of erring on some
/// malformed files (found by fuzzing, `fuzz/artifacts/tokenizer_json/`): a section that is not
/// valid JSON (`decoders::DecoderWrapper`'s `expect("Helper")`), a `Precompiled` normaliser
/// whose charsmap does not parse (`expect("Precompiled")`) and a BPE merge shorter than the
/// `continuing_subword_prefix` (`&b[prefix_len..]` in `BpeBuilder::build`). Those are checked
/// first and reported as [`Error::Tokenizer`]; as a last resort any other panic inside the crate
/// is caught and reported the same way (the panic message is still printed by the panic hook).
pub(crate) fn parse_tokenizer_json(json: &[u8]) -> Result<Tokenizer> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| tok_err("tokenizer.json is not JSON", e))?;
    check_precompiled(&value)?;
    check_bpe_merges(&value)?;
    match std::panic::catch_unwind(|| Tokenizer::from_bytes(json)) {
        Ok(t) => t.map_err(|e| tok_err("cannot read tokenizer.json", e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(tok_err(
                "cannot read tokenizer.json (the tokenizers crate panicked)",
                msg,
            ))
        }
    }
}

/// With a BPE `continuing_subword_prefix`, the second token of every merge must be at least
/// that long (on a character boundary).
fn check_bpe_merges(v: &serde_json::Value) -> Result<()> {
    let Some(model) = v.get("model") else {
        return Ok(());
    };
    let prefix = model
        .get("continuing_subword_prefix")
        .and_then(|p| p.as_str())
        .unwrap_or("");
    let Some(merges) = model.get("merges").and_then(|m| m.as_array()) else {
        return Ok(());
    };
    if prefix.is_empty() {
        return Ok(());
    }
    for m in merges {
        let second = match m {
            serde_json::Value::String(s) => s.split_once(' ').map(|(_, b)| b),
            serde_json::Value::Array(pair) => pair.get(1).and_then(|b| b.as_str()),
            _ => None,
        };
        if let Some(b) = second
            && !b.is_char_boundary(prefix.len())
        {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json: BPE merge {m} is shorter than the continuing_subword_prefix {prefix:?}"
            )));
        }
    }
    Ok(())
}

/// Every `{"type": "Precompiled", ...}` object must deserialize as the crate will.
fn check_precompiled(v: &serde_json::Value) -> Result<()> {
    match v {
        serde_json::Value::Object(map) => {
            if map.get("type").and_then(|t| t.as_str()) == Some("Precompiled") {
                serde_json::from_value::<tokenizers::normalizers::precompiled::Precompiled>(
                    v.clone(),
                )
                .map_err(|e| tok_err("tokenizer.json: bad Precompiled normalizer", e))?;
            }
            map.values().try_for_each(check_precompiled)
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(check_precompiled),
        _ => Ok(()),
    }
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{context}: {e}"))
}

fn check_len(text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::Tokenizer(format!(
            "text of {} bytes is longer than the {MAX_TEXT_BYTES}-byte limit",
            text.len()
        )));
    }
    Ok(())
}

/// The CLIP BPE tokenizer (see the module docs for the three conventions).
#[derive(Clone)]
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    sot: i64,
    eot: i64,
    context_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("sot", &self.sot)
            .field("eot", &self.eot)
            .field("context_length", &self.context_length)
            .finish()
    }
}

impl ClipTokenizer {
    /// The tokenizer with the vocabulary embedded in this crate (no file needed). The first
    /// call decompresses and parses it (~0.2 s); later calls clone the parsed tokenizer.
    pub fn new() -> Result<Self> {
        static CACHED: OnceLock<std::result::Result<ClipTokenizer, String>> = OnceLock::new();
        let cached = CACHED.get_or_init(|| {
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(EMBEDDED_TOKENIZER_GZ)
                .read_to_end(&mut json)
                .map_err(|e| format!("embedded CLIP vocabulary: {e}"))?;
            Self::from_bytes(&json).map_err(|e| match e {
                Error::Tokenizer(m) => format!("embedded CLIP vocabulary: {m}"),
                e => e.to_string(),
            })
        });
        match cached {
            Ok(t) => Ok(t.clone()),
            Err(e) => Err(Error::Tokenizer(e.clone())),
        }
    }

    /// Loads a `tokenizer.json` of the CLIP layout (a byte-level BPE with the `</w>` suffix and
    /// `<|startoftext|>` / `<|endoftext|>`), e.g. a CLIPTokenizerFast's `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Tokenizer(m) => Error::Tokenizer(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    /// Same as [`from_file`](Self::from_file) from the file's bytes.
    pub fn from_bytes(json: &[u8]) -> Result<Self> {
        let mut tokenizer = parse_tokenizer_json(json)?;
        // A `padding` / `truncation` section in the file would act on the bare ids: each
        // convention builds its rows itself.
        tokenizer
            .with_truncation(None)
            .map_err(|e| tok_err("tokenizer.json", e))?
            .with_padding(None);
        let ModelWrapper::BPE(bpe) = tokenizer.get_model() else {
            return Err(Error::Tokenizer(
                "tokenizer.json: the model is not a BPE model".into(),
            ));
        };
        if bpe.end_of_word_suffix.as_deref() != Some("</w>") {
            return Err(Error::Tokenizer(
                "tokenizer.json: the BPE model has no `</w>` end-of-word suffix (not a CLIP vocabulary)".into(),
            ));
        }
        for &c in byte_encoder().iter() {
            let s = c.to_string();
            if bpe.token_to_id(&s).is_none() || bpe.token_to_id(&format!("{s}</w>")).is_none() {
                return Err(Error::Tokenizer(format!(
                    "tokenizer.json: the vocabulary lacks the byte symbol {c:?} (not a byte-level CLIP vocabulary)"
                )));
            }
        }
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .map(i64::from)
                .ok_or_else(|| Error::Tokenizer(format!("tokenizer.json: no token `{t}`")))
        };
        Ok(Self {
            sot: id("<|startoftext|>")?,
            eot: id("<|endoftext|>")?,
            tokenizer,
            context_length: CONTEXT_LENGTH,
        })
    }

    /// Uses `n` (at least 2) instead of 77 as the row length.
    pub fn with_context_length(mut self, n: usize) -> Result<Self> {
        if n < 2 {
            return Err(Error::invalid(format!("CLIP context length {n} < 2")));
        }
        self.context_length = n;
        Ok(self)
    }

    /// The row length (77 unless changed).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The start id (49406).
    pub fn sot_id(&self) -> i64 {
        self.sot
    }

    /// The end id (49407).
    pub fn eot_id(&self) -> i64 {
        self.eot
    }

    /// BPE ids of one pre-token (byte-level encoded first).
    fn bpe(&self, piece: &str, out: &mut Vec<i64>) -> Result<()> {
        let enc = byte_encoder();
        let word: String = piece.bytes().map(|b| enc[b as usize]).collect();
        let toks = self
            .tokenizer
            .get_model()
            .tokenize(&word)
            .map_err(|e| tok_err("BPE", e))?;
        out.extend(toks.iter().map(|t| i64::from(t.id)));
        Ok(())
    }

    /// open_clip `SimpleTokenizer.encode(text)`: the BPE ids without SOT/EOT, no length limit.
    /// `encode_openclip_body("id")` is `[1014]`, FaceCLIP's face token.
    pub fn encode_openclip_body(&self, text: &str) -> Result<Vec<i64>> {
        static RE: OnceLock<regex::Regex> = OnceLock::new();
        check_len(text)?;
        let clean = openclip_clean(text);
        let mut out = Vec::new();
        for m in regex(&RE, OPENCLIP_PATTERN).find_iter(&clean) {
            match m.as_str() {
                "<start_of_text>" => out.push(self.sot),
                "<end_of_text>" => out.push(self.eot),
                piece => self.bpe(piece, &mut out)?,
            }
        }
        Ok(out)
    }

    /// open_clip `SimpleTokenizer()(texts, context_length)`: `[SOT] + body + [EOT]`, zero padded;
    /// a row over the context length is cut to it with EOT as its last id (`truncated` set).
    pub fn encode_openclip<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenBatch> {
        let l = self.context_length;
        let mut batch = TokenBatch::with_capacity(texts.len(), l);
        for text in texts {
            let mut tokens = vec![self.sot];
            tokens.extend(self.encode_openclip_body(text.as_ref())?);
            tokens.push(self.eot);
            let truncated = tokens.len() > l;
            if truncated {
                tokens.truncate(l);
                tokens[l - 1] = self.eot;
            }
            batch.push_row(&tokens, PAD_ZERO, truncated);
        }
        Ok(batch)
    }

    /// `CLIPTokenizerFast(text, add_special_tokens=False)` ids: `tokenizer.json`'s normaliser and
    /// pre-tokeniser, `<|startoftext|>` / `<|endoftext|>` typed in the text become their ids.
    pub fn encode_hf_body(&self, text: &str) -> Result<Vec<i64>> {
        check_len(text)?;
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| tok_err("encode", e))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// The slow `CLIPTokenizer(text, add_special_tokens=False)` ids (ftfy installed): the text is
    /// split on `<|startoftext|>` / `<|endoftext|>` first, then each part is ftfy-fixed,
    /// whitespace-collapsed and lower-cased before BPE.
    pub fn encode_hf_slow_body(&self, text: &str) -> Result<Vec<i64>> {
        static SPECIAL: OnceLock<regex::Regex> = OnceLock::new();
        static RE: OnceLock<regex::Regex> = OnceLock::new();
        check_len(text)?;
        let mut out = Vec::new();
        let mut last = 0;
        let part = |piece: &str, out: &mut Vec<i64>| -> Result<()> {
            if piece.is_empty() {
                return Ok(());
            }
            let clean = hf_slow_clean(piece);
            for m in regex(&RE, HF_SLOW_PATTERN).find_iter(&clean) {
                match m.as_str() {
                    "<|startoftext|>" => out.push(self.sot),
                    "<|endoftext|>" => out.push(self.eot),
                    p => self.bpe(p, out)?,
                }
            }
            Ok(())
        };
        for m in regex(&SPECIAL, HF_SPECIAL_PATTERN).find_iter(text) {
            part(&text[last..m.start()], &mut out)?;
            out.push(if m.as_str() == "<|startoftext|>" {
                self.sot
            } else {
                self.eot
            });
            last = m.end();
        }
        part(&text[last..], &mut out)?;
        Ok(out)
    }

    fn pack_hf(&self, bodies: Vec<Vec<i64>>, pad_id: i64) -> TokenBatch {
        let l = self.context_length;
        let mut batch = TokenBatch::with_capacity(bodies.len(), l);
        for body in bodies {
            let truncated = body.len() > l - 2;
            let mut tokens = Vec::with_capacity(l);
            tokens.push(self.sot);
            tokens.extend_from_slice(&body[..body.len().min(l - 2)]);
            tokens.push(self.eot);
            batch.push_row(&tokens, pad_id, truncated);
        }
        batch
    }

    /// `CLIPTokenizerFast(texts, padding="max_length", max_length=77, truncation=True)`:
    /// `[BOS] + first 75 ids + [EOS]`, then `pad_id` (49407 = [`EOT_ID`] for SDXL `tokenizer`
    /// and FLUX, 0 = [`PAD_ZERO`] for SDXL `tokenizer_2`); mask 1 on BOS..=EOS.
    pub fn encode_hf<S: AsRef<str>>(&self, texts: &[S], pad_id: i64) -> Result<TokenBatch> {
        let bodies = texts
            .iter()
            .map(|t| self.encode_hf_body(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.pack_hf(bodies, pad_id))
    }

    /// The slow `CLIPTokenizer` with ftfy (what diffusers' SDXL / FLUX pipelines load when the
    /// folder has `vocab.json` + `merges.txt`), same padding and truncation as
    /// [`encode_hf`](Self::encode_hf).
    pub fn encode_hf_slow<S: AsRef<str>>(&self, texts: &[S], pad_id: i64) -> Result<TokenBatch> {
        let bodies = texts
            .iter()
            .map(|t| self.encode_hf_slow_body(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.pack_hf(bodies, pad_id))
    }
}

/// Exact comparison of ids (all < 2^24, so exact in f32).
#[cfg(feature = "parity")]
fn compare(name: &str, got: &[i64], want: (Vec<usize>, Vec<i64>), shape: &[usize]) -> Comparison {
    let f = |v: &[i64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    Comparison::new(name, shape, &f(got), &want.0, &f(&want.1), 0.0, 0.0)
}

/// Fixture kind `tokenizer_clip`: every string of `extra.strings` through the folder's
/// `tokenizer.json`, compared exactly with `ids_openclip`, `ids_hf_slow`, `ids_hf_fast`,
/// `attention_mask_hf_fast` and `ids_hf_fast_pad0` (whichever the fixture holds).
#[cfg(feature = "parity")]
pub(crate) fn parity(fixture: &Fixture, device: &Device) -> ParityOutcome {
    let _ = device;
    match fixture.kind() {
        Ok("tokenizer_clip") => Some(run_parity(fixture)),
        _ => None,
    }
}

#[cfg(feature = "parity")]
fn run_parity(fixture: &Fixture) -> Result<ParityReport> {
    let meta = fixture.dir.join("meta.json");
    let files: Vec<String> = fixture
        .config_as("/files")
        .unwrap_or_else(|_| vec!["tokenizer.json".into()]);
    let file = files
        .iter()
        .find(|f| f.ends_with(".json"))
        .cloned()
        .unwrap_or_else(|| "tokenizer.json".into());
    let len: usize = fixture
        .config_as("/model_max_length")
        .unwrap_or(CONTEXT_LENGTH);
    let tok = ClipTokenizer::from_file(fixture.dir.join(file))?.with_context_length(len)?;
    let strings: Vec<String> =
        serde_json::from_value(fixture.extra().get("strings").cloned().unwrap_or_default())
            .map_err(|e| Error::config(&meta, format!("extra.strings: {e}")))?;
    let shape = [strings.len(), len];
    let mut report = ParityReport::default();
    let mut check = |name: &str, got: &dyn Fn() -> Result<Vec<i64>>| -> Result<()> {
        let key = format!("out.{name}");
        if fixture.has(&key) {
            report.push(compare(name, &got()?, fixture.io().read_i64(&key)?, &shape));
        }
        Ok(())
    };
    check("ids_openclip", &|| Ok(tok.encode_openclip(&strings)?.ids))?;
    check("ids_hf_slow", &|| {
        Ok(tok.encode_hf_slow(&strings, tok.eot_id())?.ids)
    })?;
    check("ids_hf_fast", &|| {
        Ok(tok.encode_hf(&strings, tok.eot_id())?.ids)
    })?;
    check("attention_mask_hf_fast", &|| {
        Ok(tok
            .encode_hf(&strings, tok.eot_id())?
            .attention_mask
            .iter()
            .map(|&m| i64::from(m))
            .collect())
    })?;
    check("ids_hf_fast_pad0", &|| {
        Ok(tok.encode_hf(&strings, PAD_ZERO)?.ids)
    })?;
    if report.comparisons.is_empty() {
        return Err(Error::config(
            meta,
            "tokenizer_clip fixture without any known out.* ids",
        ));
    }
    Ok(report)
}
