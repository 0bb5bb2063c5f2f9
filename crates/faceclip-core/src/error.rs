//! The one error type of faceclip-rs.

use std::fmt;
use std::path::PathBuf;

/// Result alias used throughout the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure a user can cause: each variant names what to fix (the file, the tensor
/// key, the expected and found shape, the dtype).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file exists but cannot be parsed (corrupt, truncated, empty, hostile).
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    /// A file whose name or contents is not a checkpoint format this library reads.
    #[error("checkpoint {}: unsupported format ({reason}); expected .safetensors, .safetensors.index.json, .gguf, .pt, .pth or .bin", path.display())]
    UnsupportedFormat { path: PathBuf, reason: String },
    /// One tensor of a checkpoint has a dtype the loader cannot convert.
    #[error("checkpoint {}: tensor `{key}` has dtype {dtype}, which is not a float type this model can load", path.display())]
    DType {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    /// A tensor the caller asked for by name is not in the checkpoint.
    #[error("checkpoint {}: no tensor named `{key}`", path.display())]
    MissingTensor { path: PathBuf, key: String },
    /// A tensor (or input) has the wrong shape.
    #[error("{what}: expected shape {expected:?}, found {found:?}")]
    Shape {
        what: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The weights do not cover the model exactly: every missing, unexpected and wrong-shape
    /// tensor is listed at once.
    #[error("{0}")]
    Coverage(Box<CoverageReport>),
    /// A config file (`config.json`, `meta.json`, a manifest) is missing a field or malformed.
    #[error("config {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// An image could not be decoded, is empty, or cannot be encoded.
    #[error("image {}: {reason}", path.display())]
    Image { path: PathBuf, reason: String },
    /// A backend name that is unknown or was left out of this build.
    #[error("backend `{name}`: {reason}")]
    Backend { name: String, reason: String },
    /// A tokenizer could not be loaded or failed on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An argument is out of range (zero steps, a width that is not a multiple of 8, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A numerical failure: NaN or Inf appeared.
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// A step callback asked the run to stop after step `step` (1-based) of image `image`.
    #[error("stopped by the caller after step {step} of image {image}")]
    Cancelled { image: usize, step: usize },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Checkpoint`] for `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl fmt::Display) -> Self {
        Error::Checkpoint {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// An [`Error::Config`] for `path`.
    pub fn config(path: impl Into<PathBuf>, reason: impl fmt::Display) -> Self {
        Error::Config {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// An [`Error::Shape`] for the thing named `what`.
    pub fn shape(what: impl Into<String>, expected: &[usize], found: &[usize]) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        }
    }

    /// An [`Error::InvalidInput`].
    pub fn invalid(reason: impl fmt::Display) -> Self {
        Error::InvalidInput(reason.to_string())
    }
}

/// How a set of weights covers a model: which tensors the model expects that the weights
/// lack, which the weights hold that the model does not expect, and which have another shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoverageReport {
    /// Where the weights came from (a file, a manifest).
    pub source: String,
    /// Keys the model expects and the weights lack.
    pub missing: Vec<String>,
    /// Keys the weights hold and the model does not expect.
    pub unexpected: Vec<String>,
    /// `(key, expected, found)` for each tensor whose shape differs.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Keys that could not be read or converted, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Number of tensors the model expects.
    pub expected: usize,
}

impl CoverageReport {
    /// True when the weights match the model exactly.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.unreadable.is_empty()
    }
}

impl fmt::Display for CoverageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "weights {} do not match the model ({} tensors expected): {} missing, {} unexpected, {} with the wrong shape, {} unreadable",
            self.source,
            self.expected,
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len(),
            self.unreadable.len()
        )?;
        const SHOW: usize = 20;
        let more = |f: &mut fmt::Formatter<'_>, n: usize| {
            if n > SHOW {
                write!(f, "\n    ... and {} more", n - SHOW)
            } else {
                Ok(())
            }
        };
        if !self.missing.is_empty() {
            write!(f, "\n  missing:")?;
            for k in self.missing.iter().take(SHOW) {
                write!(f, "\n    {k}")?;
            }
            more(f, self.missing.len())?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "\n  unexpected:")?;
            for k in self.unexpected.iter().take(SHOW) {
                write!(f, "\n    {k}")?;
            }
            more(f, self.unexpected.len())?;
        }
        if !self.mismatched.is_empty() {
            write!(f, "\n  wrong shape:")?;
            for (k, e, g) in self.mismatched.iter().take(SHOW) {
                write!(f, "\n    {k}: expected {e:?}, found {g:?}")?;
            }
            more(f, self.mismatched.len())?;
        }
        if !self.unreadable.is_empty() {
            write!(f, "\n  unreadable:")?;
            for (k, why) in self.unreadable.iter().take(SHOW) {
                write!(f, "\n    {k}: {why}")?;
            }
            more(f, self.unreadable.len())?;
        }
        Ok(())
    }
}
