//! The T5 tokenizer as FLUX.1 (`tokenizer_2/`, `T5TokenizerFast`) and FaceT5 call it:
//! `tokenizer(texts, padding="max_length", max_length=512, truncation=True)`.
//!
//! The vocabulary comes from a `tokenizer.json` (the SentencePiece Unigram model converted by
//! transformers, as shipped in FLUX.1-dev `tokenizer_2/` and by FaceCLIP). Each row is the
//! text's ids cut to `max_length - 1`, then `</s>` (id 1), then `<pad>` (id 0) up to
//! `max_length`; FaceT5 requires exactly 512 ids per row.
//!
//! No real T5 vocabulary is available offline, so the tests build a small Unigram
//! `tokenizer.json` themselves and check padding, `</s>`, truncation and the errors on a
//! missing or corrupt file; the normaliser / pre-tokeniser / Unigram segmentation are the
//! `tokenizers` crate's.

use std::path::Path;

#[cfg(feature = "parity")]
use faceclip_core::{Device, Fixture, ParityOutcome};
use faceclip_core::{Error, Result};
use tokenizers::Tokenizer;

use crate::tokenizer_clip::TokenBatch;

/// FLUX's `max_sequence_length` and FaceT5's required length.
pub const T5_MAX_LENGTH: usize = 512;
/// Texts longer than this many bytes are refused with [`Error::Tokenizer`].
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// A T5 (SentencePiece Unigram) tokenizer loaded from `tokenizer.json`.
#[derive(Clone)]
pub struct T5Tokenizer {
    tokenizer: Tokenizer,
    eos: i64,
    pad: i64,
    max_length: usize,
}

impl std::fmt::Debug for T5Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("T5Tokenizer")
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("max_length", &self.max_length)
            .finish()
    }
}

impl T5Tokenizer {
    /// Loads `tokenizer.json` (e.g. FLUX.1-dev `tokenizer_2/tokenizer.json`). A missing file is
    /// [`Error::Io`], a file that is not a tokenizer or has no `</s>` is [`Error::Tokenizer`].
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
        let mut tokenizer = crate::tokenizer_clip::parse_tokenizer_json(json)?;
        // A `padding` / `truncation` section in the file would act on the bare ids: the rows
        // are built in `encode` instead.
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?
            .with_padding(None);
        let eos = tokenizer.token_to_id("</s>").ok_or_else(|| {
            Error::Tokenizer("tokenizer.json: no `</s>` token (not a T5 vocabulary)".into())
        })?;
        // T5's `<pad>` is id 0; `padding="max_length"` uses `pad_token_id`.
        let pad = tokenizer.token_to_id("<pad>").unwrap_or(0);
        Ok(Self {
            tokenizer,
            eos: i64::from(eos),
            pad: i64::from(pad),
            max_length: T5_MAX_LENGTH,
        })
    }

    /// Uses `n` (at least 1) instead of 512 as the row length.
    pub fn with_max_length(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::invalid("T5 max_length must be at least 1"));
        }
        self.max_length = n;
        Ok(self)
    }

    /// The row length (512 unless changed).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// `</s>` (1 in T5's vocabulary).
    pub fn eos_id(&self) -> i64 {
        self.eos
    }

    /// `<pad>` (0 in T5's vocabulary).
    pub fn pad_id(&self) -> i64 {
        self.pad
    }

    /// The ids of `text` without `</s>` (`add_special_tokens=False`), no length limit.
    pub fn encode_body(&self, text: &str) -> Result<Vec<i64>> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(Error::Tokenizer(format!(
                "text of {} bytes is longer than the {MAX_TEXT_BYTES}-byte limit",
                text.len()
            )));
        }
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("encode: {e}")))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// `tokenizer(texts, padding="max_length", max_length, truncation=True)`: per row the first
    /// `max_length - 1` ids, `</s>`, then `<pad>`; mask 1 up to and including `</s>`.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenBatch> {
        let l = self.max_length;
        let mut batch = TokenBatch {
            ids: Vec::with_capacity(texts.len() * l),
            attention_mask: Vec::with_capacity(texts.len() * l),
            truncated: Vec::with_capacity(texts.len()),
            seq_len: l,
        };
        for text in texts {
            let mut ids = self.encode_body(text.as_ref())?;
            let truncated = ids.len() > l - 1;
            ids.truncate(l - 1);
            ids.push(self.eos);
            batch.push_row(&ids, self.pad, truncated);
        }
        Ok(batch)
    }
}

/// No fixture covers T5 tokenisation (no SentencePiece model offline): never claims a fixture.
#[cfg(feature = "parity")]
pub(crate) fn parity(fixture: &Fixture, device: &Device) -> ParityOutcome {
    let _ = (fixture, device);
    None
}
