// Not built on the `ggus` crate (0.5.1): its parser unwraps and asserts on malformed tensor
// infos, preallocates from untrusted counts, reads v3 only, and its writer holds all tensor data.

//! GGUF files, llama.cpp's format (spec v3; v2 is read too): parsing from a byte slice (the
//! memory map) and writing one tensor at a time.
//!
//! Layout: header (`GGUF`, version, tensor count, metadata count), metadata key/values, tensor
//! infos (name, dims innermost first, GGML type, offset), padding to the alignment, then the
//! tensor data, each tensor at a multiple of the alignment from the data start. Shapes here are
//! in PyTorch order (outermost first): a `Linear` weight `[out, in]` is stored with
//! `ne = [in, out]` and listed as `[out, in]`.
//!
//! Parsing never trusts a count, length, dimension or offset: each is checked against the bytes
//! actually left before anything of that size is allocated, with checked arithmetic, so that a
//! hostile file is refused with an [`Error::Checkpoint`] naming the problem, and never panics,
//! hangs or allocates more than its own size justifies.

use std::collections::HashSet;
use std::fmt;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::checkpoint::{StoredDType, checked_numel};
use crate::error::{Error, Result};
use crate::quant::{BLOCK, QuantType, is_quantizable, quantize_into};

/// The four bytes a GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// The version [`write_gguf`] writes.
pub const VERSION: u32 = 3;
/// The alignment of tensor data when the file does not set [`ALIGNMENT_KEY`].
pub const DEFAULT_ALIGNMENT: usize = 32;
/// The metadata key that sets the alignment (a `uint32`, a multiple of 8).
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// The most dimensions a tensor may have (GGML's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// The deepest nesting of arrays accepted (llama.cpp writes none; the spec allows them).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// The largest alignment accepted (1 GiB).
const MAX_ALIGNMENT: usize = 1 << 30;

/// Bytes of the header: magic, version, tensor count, metadata count.
const HEADER_BYTES: usize = 4 + 4 + 8 + 8;
/// The fewest bytes a metadata entry takes: key length, type, a one-byte value.
const MIN_KV_BYTES: usize = 8 + 4 + 1;
/// The fewest bytes a tensor info takes: name length, dimension count, type, offset.
const MIN_TENSOR_INFO_BYTES: usize = 8 + 4 + 4 + 8;

/// GGML's name of tensor type `id` (`F32`, `Q8_0`, `Q4_K`, ...), `None` for an unknown id.
pub fn ggml_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        _ => return None,
    })
}

/// `F32 (0)`, `Q4_K (12)`, `unknown (77)`: a type id for messages.
fn type_label(id: u32) -> String {
    format!("{} ({id})", ggml_type_name(id).unwrap_or("unknown"))
}

/// The bytes a tensor of GGML type `ggml_type` and `shape` (PyTorch order) takes, after
/// checking the shape: at most [`MAX_DIMS`] dimensions, an element count that fits `usize`,
/// and for the block types rows (the innermost dimension) of whole blocks. `Ok(None)` for a
/// type whose layout this crate does not know ([`StoredDType::Other`]); `Err` says what is
/// wrong.
pub fn tensor_bytes(ggml_type: u32, shape: &[usize]) -> std::result::Result<Option<usize>, String> {
    if shape.len() > MAX_DIMS {
        return Err(format!(
            "{} dimensions, GGUF allows at most {MAX_DIMS}",
            shape.len()
        ));
    }
    let numel = checked_numel(shape)
        .ok_or_else(|| format!("shape {shape:?} has more elements than can be counted"))?;
    let dtype = StoredDType::from_ggml_type(ggml_type);
    if dtype == StoredDType::Other {
        return Ok(None);
    }
    if let Some(q) = dtype.quant() {
        let Some(&cols) = shape.last() else {
            return Err(format!(
                "a {} tensor needs at least one dimension",
                q.ggml_name()
            ));
        };
        if !cols.is_multiple_of(BLOCK) {
            return Err(format!(
                "{} rows of {cols} values (shape {shape:?}) are not a whole number of \
                 {BLOCK}-value blocks",
                q.ggml_name()
            ));
        }
    }
    dtype.bytes_for(numel).map(Some).ok_or_else(|| {
        format!(
            "shape {shape:?} of {} needs more bytes than can be counted",
            type_label(ggml_type)
        )
    })
}

// ---------------------------------------------------------------------------------- values

/// The type of a metadata value, with the spec's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgufValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl GgufValueType {
    /// The type of id `id` (`GGUF_METADATA_VALUE_TYPE_*`).
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The spec's id.
    pub fn id(self) -> u32 {
        match self {
            Self::U8 => 0,
            Self::I8 => 1,
            Self::U16 => 2,
            Self::I16 => 3,
            Self::U32 => 4,
            Self::I32 => 5,
            Self::F32 => 6,
            Self::Bool => 7,
            Self::String => 8,
            Self::Array => 9,
            Self::U64 => 10,
            Self::I64 => 11,
            Self::F64 => 12,
        }
    }

    /// The spec's name (`uint32`, `string`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::U16 => "uint16",
            Self::I16 => "int16",
            Self::U32 => "uint32",
            Self::I32 => "int32",
            Self::F32 => "float32",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Array => "array",
            Self::U64 => "uint64",
            Self::I64 => "int64",
            Self::F64 => "float64",
        }
    }

    /// The fewest bytes one value of this type takes in a file.
    fn min_bytes(self) -> usize {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::String => 8,
            Self::Array => 4 + 8,
        }
    }
}

impl fmt::Display for GgufValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    /// A string (invalid UTF-8 in a file is replaced by U+FFFD).
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: all elements of one type, stored compactly.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Arrays of arrays (each inner array has its own element type).
    Array(Vec<GgufArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl GgufValue {
    /// The value's type.
    pub fn value_type(&self) -> GgufValueType {
        match self {
            Self::U8(_) => GgufValueType::U8,
            Self::I8(_) => GgufValueType::I8,
            Self::U16(_) => GgufValueType::U16,
            Self::I16(_) => GgufValueType::I16,
            Self::U32(_) => GgufValueType::U32,
            Self::I32(_) => GgufValueType::I32,
            Self::F32(_) => GgufValueType::F32,
            Self::Bool(_) => GgufValueType::Bool,
            Self::String(_) => GgufValueType::String,
            Self::Array(_) => GgufValueType::Array,
            Self::U64(_) => GgufValueType::U64,
            Self::I64(_) => GgufValueType::I64,
            Self::F64(_) => GgufValueType::F64,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer value that is not negative, as `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => i64::try_from(v).ok(),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Any float or integer value as `f64` (large 64-bit integers are rounded).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::U64(v) => Some(v as f64),
            Self::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The bool, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for GgufValue {
            fn from(v: $t) -> Self {
                Self::$v(v)
            }
        }
    )*};
}
value_from!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, GgufArray => Array, u64 => U64, i64 => I64, f64 => F64);

impl From<&str> for GgufValue {
    fn from(v: &str) -> Self {
        Self::String(v.to_string())
    }
}

impl GgufArray {
    /// The type of the elements.
    pub fn elem_type(&self) -> GgufValueType {
        match self {
            Self::U8(_) => GgufValueType::U8,
            Self::I8(_) => GgufValueType::I8,
            Self::U16(_) => GgufValueType::U16,
            Self::I16(_) => GgufValueType::I16,
            Self::U32(_) => GgufValueType::U32,
            Self::I32(_) => GgufValueType::I32,
            Self::F32(_) => GgufValueType::F32,
            Self::Bool(_) => GgufValueType::Bool,
            Self::String(_) => GgufValueType::String,
            Self::Array(_) => GgufValueType::Array,
            Self::U64(_) => GgufValueType::U64,
            Self::I64(_) => GgufValueType::I64,
            Self::F64(_) => GgufValueType::F64,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Array(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }

    /// True when the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Levels of arrays: 1 for an array of scalars or strings.
    fn depth(&self) -> usize {
        match self {
            Self::Array(v) => 1 + v.iter().map(Self::depth).max().unwrap_or(0),
            _ => 1,
        }
    }
}

/// A file's metadata key/values, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufMetadata {
    entries: Vec<(String, GgufValue)>,
}

impl GgufMetadata {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The string value of `key`.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(GgufValue::as_str)
    }

    /// The non-negative integer value of `key`.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(GgufValue::as_u64)
    }

    /// The numeric value of `key` as `f64`.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(GgufValue::as_f64)
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[(String, GgufValue)] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The alignment `value` sets for [`ALIGNMENT_KEY`]: an unsigned integer, a positive multiple
/// of 8, at most 1 GiB.
fn alignment_of(value: &GgufValue) -> std::result::Result<usize, String> {
    let a = match *value {
        GgufValue::U32(a) => u64::from(a),
        GgufValue::U64(a) => a,
        ref other => {
            return Err(format!(
                "`{ALIGNMENT_KEY}` is a {}, not a uint32",
                other.value_type()
            ));
        }
    };
    match usize::try_from(a) {
        Ok(a) if a > 0 && a.is_multiple_of(8) && a <= MAX_ALIGNMENT => Ok(a),
        _ => Err(format!(
            "`{ALIGNMENT_KEY}` = {a} is not a positive multiple of 8 up to {MAX_ALIGNMENT}"
        )),
    }
}

// ---------------------------------------------------------------------------------- parsing

/// One tensor as a GGUF file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// The tensor's name.
    pub name: String,
    /// The shape in PyTorch order (the file's `ne` reversed).
    pub shape: Vec<usize>,
    /// GGML's type id.
    pub ggml_type: u32,
    /// The element type ([`StoredDType::Other`] for a type this crate does not read).
    pub dtype: StoredDType,
    /// The offset of the data from the start of the data section, as stored.
    pub offset: u64,
    /// The data's byte range in the file (checked against the file's length); `None` for a
    /// type whose size this crate does not know.
    pub range: Option<Range<usize>>,
}

/// A parsed GGUF file: everything but the tensor data, which stays in the bytes parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufFile {
    /// The format version (2 or 3).
    pub version: u32,
    /// The alignment of tensor data.
    pub alignment: usize,
    /// The metadata key/values.
    pub metadata: GgufMetadata,
    /// The tensors, in file order.
    pub tensors: Vec<GgufTensorInfo>,
    /// Where the data section starts in the file.
    pub data_start: usize,
}

impl GgufFile {
    /// Parses the GGUF file held in `bytes` (a memory map); `path` names it in errors. Every
    /// tensor's data range is checked against `bytes.len()`; the data itself is not read.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        Parser {
            path,
            bytes,
            pos: 0,
        }
        .file()
    }
}

struct Parser<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

/// `N` bytes of a slice known to hold `N` as an array.
fn le<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    a
}

impl<'a> Parser<'a> {
    fn fail(&self, reason: impl fmt::Display) -> Error {
        Error::checkpoint(self.path, reason)
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes; `what` names them in the error when fewer are left.
    fn take(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(self.fail(format!(
                "truncated: {} needs {n} bytes at offset {}, the file has {} left",
                what(),
                self.pos,
                self.left()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32> {
        self.take(4, what).map(|b| u32::from_le_bytes(le(b)))
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64> {
        self.take(8, what).map(|b| u64::from_le_bytes(le(b)))
    }

    /// A GGUF string's bytes: a `u64` length, checked against the bytes left, then the bytes.
    fn string(&mut self, what: impl Fn() -> String) -> Result<&'a [u8]> {
        let len = self.u64(|| format!("{}'s length", what()))?;
        match usize::try_from(len) {
            Ok(n) if n <= self.left() => self.take(n, what),
            _ => Err(self.fail(format!(
                "{}: string length {len} goes past the end of the file ({} bytes left at \
                 offset {})",
                what(),
                self.left(),
                self.pos
            ))),
        }
    }

    /// A string that must be UTF-8 (a key, a tensor name).
    fn name(&mut self, what: impl Fn() -> String) -> Result<&'a str> {
        let b = self.string(&what)?;
        std::str::from_utf8(b).map_err(|_| self.fail(format!("{} is not UTF-8", what())))
    }

    /// `count` elements of at least `min` bytes each must fit in what is left.
    fn check_count(&self, count: u64, min: usize, what: impl FnOnce() -> String) -> Result<usize> {
        let left = self.left();
        match usize::try_from(count) {
            Ok(n) if n <= left / min => Ok(n),
            _ => Err(self.fail(format!(
                "{} is {count}, more than the {left} bytes left at offset {} can hold ({min} \
                 bytes each at least)",
                what(),
                self.pos
            ))),
        }
    }

    fn file(mut self) -> Result<GgufFile> {
        let len = self.bytes.len();
        if let Some(magic) = self.bytes.get(..4)
            && magic != MAGIC
        {
            return Err(self.fail(format!(
                "not a GGUF file: it starts with {:?}, not \"GGUF\"",
                String::from_utf8_lossy(magic)
            )));
        }
        if len < HEADER_BYTES {
            return Err(self.fail(format!(
                "truncated GGUF header: the file holds {len} bytes, the header needs {HEADER_BYTES}"
            )));
        }
        self.pos = 4;
        let version = self.u32(|| "the version".into())?;
        if !(2..=3).contains(&version) {
            let hint = if version.swap_bytes() <= 3 {
                " (a big-endian file?)"
            } else {
                ""
            };
            return Err(self.fail(format!(
                "GGUF version {version} is not supported, only 2 and 3{hint}"
            )));
        }
        let n_tensors = self.u64(|| "the tensor count".into())?;
        let n_kv = self.u64(|| "the metadata count".into())?;
        let n_kv = self.check_count(n_kv, MIN_KV_BYTES, || "the header's metadata count".into())?;

        let mut entries = Vec::with_capacity(n_kv);
        let mut keys: HashSet<&str> = HashSet::with_capacity(n_kv);
        let mut alignment = DEFAULT_ALIGNMENT;
        for i in 0..n_kv {
            let key = self.name(|| format!("metadata entry {i}'s key"))?;
            // Names in messages are escaped: one line, whatever the file holds.
            let shown = key.escape_debug().to_string();
            if !keys.insert(key) {
                return Err(self.fail(format!("metadata key `{shown}` appears twice")));
            }
            let ty = self.u32(|| format!("metadata `{shown}`'s value type"))?;
            let ty = GgufValueType::from_id(ty)
                .ok_or_else(|| self.fail(format!("metadata `{shown}`: unknown value type {ty}")))?;
            let value = self.value(ty, &shown, 0)?;
            if key == ALIGNMENT_KEY {
                alignment = alignment_of(&value).map_err(|r| self.fail(r))?;
            }
            entries.push((key.to_string(), value));
        }

        let n_tensors = self.check_count(n_tensors, MIN_TENSOR_INFO_BYTES, || {
            "the header's tensor count".into()
        })?;
        let mut raw = Vec::with_capacity(n_tensors);
        let mut names: HashSet<&str> = HashSet::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = self.name(|| format!("tensor info {i}'s name"))?;
            let shown = name.escape_debug().to_string();
            if !names.insert(name) {
                return Err(self.fail(format!("tensor `{shown}` is listed twice")));
            }
            let n_dims = self.u32(|| format!("tensor `{shown}`'s dimension count"))?;
            if n_dims as usize > MAX_DIMS {
                return Err(self.fail(format!(
                    "tensor `{shown}`: {n_dims} dimensions, GGUF allows at most {MAX_DIMS}"
                )));
            }
            let mut shape = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                let ne = self.u64(|| format!("tensor `{shown}`'s dimension {d}"))?;
                let ne = usize::try_from(ne).map_err(|_| {
                    self.fail(format!(
                        "tensor `{shown}`: dimension {d} = {ne} is too large"
                    ))
                })?;
                shape.push(ne);
            }
            shape.reverse();
            let ggml_type = self.u32(|| format!("tensor `{shown}`'s type"))?;
            let offset = self.u64(|| format!("tensor `{shown}`'s offset"))?;
            raw.push((name, shown, shape, ggml_type, offset));
        }

        // The data section starts at the next multiple of the alignment. A file without
        // tensors may end before that.
        let data_start = self
            .pos
            .checked_next_multiple_of(alignment)
            .filter(|&s| s <= len)
            .or_else(|| raw.is_empty().then_some(len))
            .ok_or_else(|| {
                self.fail(format!(
                    "truncated: the tensor data should start at offset {} (the next multiple of \
                     the alignment {alignment}), the file holds {len} bytes",
                    self.pos.saturating_add(alignment - self.pos % alignment)
                ))
            })?;
        let data_len = len - data_start;

        let mut tensors = Vec::with_capacity(raw.len());
        for (name, shown, shape, ggml_type, offset) in raw {
            let bad = |what: String| self.fail(format!("tensor `{shown}`: {what}"));
            let nbytes = tensor_bytes(ggml_type, &shape).map_err(&bad)?;
            if !offset.is_multiple_of(alignment as u64) {
                return Err(bad(format!(
                    "offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            let range = match nbytes {
                Some(n) => {
                    let end = usize::try_from(offset).ok().and_then(|o| o.checked_add(n));
                    match end {
                        Some(end) if end <= data_len => {
                            // offset <= end <= data_len, so neither sum overflows.
                            Some(data_start + offset as usize..data_start + end)
                        }
                        _ => {
                            return Err(bad(format!(
                                "data at offset {offset} of {n} bytes (shape {shape:?} of {}) \
                                 goes beyond the {data_len} bytes of tensor data in the file",
                                type_label(ggml_type)
                            )));
                        }
                    }
                }
                None => {
                    if offset > data_len as u64 {
                        return Err(bad(format!(
                            "offset {offset} is beyond the {data_len} bytes of tensor data in \
                             the file"
                        )));
                    }
                    None
                }
            };
            tensors.push(GgufTensorInfo {
                name: name.to_string(),
                dtype: StoredDType::from_ggml_type(ggml_type),
                shape,
                ggml_type,
                offset,
                range,
            });
        }
        Ok(GgufFile {
            version,
            alignment,
            metadata: GgufMetadata { entries },
            tensors,
            data_start,
        })
    }

    /// A value of type `ty`, the value of metadata `key` (escaped, for messages); `depth`
    /// arrays deep.
    fn value(&mut self, ty: GgufValueType, key: &str, depth: usize) -> Result<GgufValue> {
        let what = || format!("metadata `{key}`");
        Ok(match ty {
            GgufValueType::U8 => GgufValue::U8(self.take(1, what)?[0]),
            GgufValueType::I8 => GgufValue::I8(self.take(1, what)?[0] as i8),
            GgufValueType::U16 => GgufValue::U16(u16::from_le_bytes(le(self.take(2, what)?))),
            GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(le(self.take(2, what)?))),
            GgufValueType::U32 => GgufValue::U32(self.u32(what)?),
            GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(le(self.take(4, what)?))),
            GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(le(self.take(4, what)?))),
            GgufValueType::U64 => GgufValue::U64(self.u64(what)?),
            GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(le(self.take(8, what)?))),
            GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(le(self.take(8, what)?))),
            GgufValueType::Bool => GgufValue::Bool(self.bool(key)?),
            GgufValueType::String => {
                GgufValue::String(String::from_utf8_lossy(self.string(what)?).into_owned())
            }
            GgufValueType::Array => GgufValue::Array(self.array(key, depth + 1)?),
        })
    }

    fn bool(&mut self, key: &str) -> Result<bool> {
        match self.take(1, || format!("metadata `{key}`"))?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.fail(format!(
                "metadata `{key}`: bool byte {b} at offset {} is neither 0 nor 1",
                self.pos - 1
            ))),
        }
    }

    /// An array (element type, count, elements), `depth` levels deep (1 for the outermost).
    fn array(&mut self, key: &str, depth: usize) -> Result<GgufArray> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(self.fail(format!(
                "metadata `{key}`: arrays nested more than {MAX_ARRAY_DEPTH} deep"
            )));
        }
        let what = || format!("metadata `{key}`'s array header");
        let ty = self.u32(what)?;
        let ty = GgufValueType::from_id(ty).ok_or_else(|| {
            self.fail(format!("metadata `{key}`: unknown array element type {ty}"))
        })?;
        let count = self.u64(what)?;
        let n = self.check_count(count, ty.min_bytes(), || {
            format!("metadata `{key}`: the length of the array of {ty}")
        })?;
        let what = || format!("metadata `{key}`'s array of {n} {ty}");
        macro_rules! numbers {
            ($v:ident, $t:ty) => {{
                const S: usize = std::mem::size_of::<$t>();
                let raw = self.take(n * S, what)?;
                GgufArray::$v(
                    raw.chunks_exact(S)
                        .map(|c| <$t>::from_le_bytes(le(c)))
                        .collect(),
                )
            }};
        }
        Ok(match ty {
            GgufValueType::U8 => GgufArray::U8(self.take(n, what)?.to_vec()),
            GgufValueType::I8 => {
                GgufArray::I8(self.take(n, what)?.iter().map(|&b| b as i8).collect())
            }
            GgufValueType::U16 => numbers!(U16, u16),
            GgufValueType::I16 => numbers!(I16, i16),
            GgufValueType::U32 => numbers!(U32, u32),
            GgufValueType::I32 => numbers!(I32, i32),
            GgufValueType::F32 => numbers!(F32, f32),
            GgufValueType::U64 => numbers!(U64, u64),
            GgufValueType::I64 => numbers!(I64, i64),
            GgufValueType::F64 => numbers!(F64, f64),
            GgufValueType::Bool => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.bool(key)?);
                }
                GgufArray::Bool(v)
            }
            GgufValueType::String => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    let s = self.string(|| format!("metadata `{key}`'s string {i}"))?;
                    v.push(String::from_utf8_lossy(s).into_owned());
                }
                GgufArray::String(v)
            }
            GgufValueType::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array(key, depth + 1)?);
                }
                GgufArray::Array(v)
            }
        })
    }
}

// ---------------------------------------------------------------------------------- writing

/// A tensor to write: its name, shape in PyTorch order and GGML type id (e.g.
/// [`crate::QuantType::ggml_type`], or `0` for F32).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorSpec {
    /// The tensor's name.
    pub name: String,
    /// The shape in PyTorch order (written reversed, as GGUF's `ne`).
    pub shape: Vec<usize>,
    /// GGML's type id: one of those [`StoredDType::from_ggml_type`] knows.
    pub ggml_type: u32,
}

impl GgufTensorSpec {
    /// A spec from its parts.
    pub fn new(name: impl Into<String>, shape: impl Into<Vec<usize>>, ggml_type: u32) -> Self {
        Self {
            name: name.into(),
            shape: shape.into(),
            ggml_type,
        }
    }

    /// The bytes the tensor's data takes, after checking the shape and type.
    pub fn nbytes(&self) -> std::result::Result<usize, String> {
        tensor_bytes(self.ggml_type, &self.shape)?.ok_or_else(|| {
            format!(
                "type {} cannot be written (its layout is unknown here)",
                type_label(self.ggml_type)
            )
        })
    }
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_u64(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn put_value(buf: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => buf.push(*x),
        GgufValue::I8(x) => buf.push(*x as u8),
        GgufValue::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => buf.push(u8::from(*x)),
        GgufValue::String(s) => put_str(buf, s),
        GgufValue::Array(a) => put_array(buf, a),
        GgufValue::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(buf: &mut Vec<u8>, a: &GgufArray) {
    put_u32(buf, a.elem_type().id());
    put_u64(buf, a.len() as u64);
    macro_rules! each {
        ($v:expr) => {
            $v.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()))
        };
    }
    match a {
        GgufArray::U8(v) => buf.extend_from_slice(v),
        GgufArray::I8(v) => buf.extend(v.iter().map(|&x| x as u8)),
        GgufArray::U16(v) => each!(v),
        GgufArray::I16(v) => each!(v),
        GgufArray::U32(v) => each!(v),
        GgufArray::I32(v) => each!(v),
        GgufArray::F32(v) => each!(v),
        GgufArray::Bool(v) => buf.extend(v.iter().map(|&x| u8::from(x))),
        GgufArray::String(v) => v.iter().for_each(|s| put_str(buf, s)),
        GgufArray::Array(v) => v.iter().for_each(|a| put_array(buf, a)),
        GgufArray::U64(v) => each!(v),
        GgufArray::I64(v) => each!(v),
        GgufArray::F64(v) => each!(v),
    }
}

/// Writes a GGUF v3 file to `out`: `metadata` in the order given (an [`ALIGNMENT_KEY`] entry
/// sets the alignment, 32 otherwise), then `tensors`, whose data `data(i)` produces, one tensor
/// at a time and in order, as raw little-endian bytes already in the tensor's type (GGML's block
/// layout for Q8_0/Q4_0) — so a model of any size is written with one tensor in memory. Each
/// tensor starts at a multiple of the alignment (zero padding). Every produced length is checked
/// against the tensor's shape and type. The file is written through a temporary file and
/// renamed into place, so an error leaves no partial file.
///
/// Names may be longer than llama.cpp's own limit (63 bytes); scalars (shape `[]`) are written
/// with no dimension.
pub fn write_gguf<B: AsRef<[u8]>>(
    out: &Path,
    metadata: &[(String, GgufValue)],
    tensors: &[GgufTensorSpec],
    mut data: impl FnMut(usize) -> Result<B>,
) -> Result<()> {
    let fail = |reason: String| Error::checkpoint(out, reason);
    let mut alignment = DEFAULT_ALIGNMENT;
    let mut keys = HashSet::with_capacity(metadata.len());
    for (k, v) in metadata {
        if !keys.insert(k.as_str()) {
            return Err(fail(format!(
                "metadata key `{}` given twice",
                k.escape_debug()
            )));
        }
        if k == ALIGNMENT_KEY {
            alignment = alignment_of(v).map_err(fail)?;
        }
        if let GgufValue::Array(a) = v
            && a.depth() > MAX_ARRAY_DEPTH
        {
            return Err(fail(format!(
                "metadata `{}`: arrays nested more than {MAX_ARRAY_DEPTH} deep",
                k.escape_debug()
            )));
        }
    }
    let mut names = HashSet::with_capacity(tensors.len());
    let mut layout = Vec::with_capacity(tensors.len());
    let mut end = 0usize;
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(fail(format!(
                "tensor `{}` given twice",
                t.name.escape_debug()
            )));
        }
        let n = t
            .nbytes()
            .map_err(|r| fail(format!("tensor `{}`: {r}", t.name.escape_debug())))?;
        let offset = end;
        end = offset
            .checked_add(n)
            .and_then(|e| e.checked_next_multiple_of(alignment))
            .ok_or_else(|| fail("the tensors hold more bytes than can be counted".into()))?;
        layout.push((offset, n));
    }

    let mut head = Vec::with_capacity(4096);
    head.extend_from_slice(&MAGIC);
    put_u32(&mut head, VERSION);
    put_u64(&mut head, tensors.len() as u64);
    put_u64(&mut head, metadata.len() as u64);
    for (k, v) in metadata {
        put_str(&mut head, k);
        put_u32(&mut head, v.value_type().id());
        put_value(&mut head, v);
    }
    for (t, &(offset, _)) in tensors.iter().zip(&layout) {
        put_str(&mut head, &t.name);
        put_u32(&mut head, t.shape.len() as u32);
        for &d in t.shape.iter().rev() {
            put_u64(&mut head, d as u64);
        }
        put_u32(&mut head, t.ggml_type);
        put_u64(&mut head, offset as u64);
    }
    if !tensors.is_empty() {
        let padded = head.len().next_multiple_of(alignment);
        head.resize(padded, 0);
    }

    crate::io::write_atomic(out, |tmp| {
        let io = |e: std::io::Error| Error::io(out, e);
        let file = std::fs::File::create(tmp).map_err(io)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        w.write_all(&head).map_err(io)?;
        let mut at = 0usize;
        for (i, (t, &(offset, n))) in tensors.iter().zip(&layout).enumerate() {
            pad(&mut w, offset - at).map_err(io)?;
            let bytes = data(i)?;
            let bytes = bytes.as_ref();
            if bytes.len() != n {
                return Err(fail(format!(
                    "tensor `{}`: {} bytes were given, its shape {:?} of {} needs {n}",
                    t.name.escape_debug(),
                    bytes.len(),
                    t.shape,
                    type_label(t.ggml_type)
                )));
            }
            w.write_all(bytes).map_err(io)?;
            at = offset + n;
        }
        pad(&mut w, end - at).map_err(io)?;
        w.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)
    })
}

/// `n` zero bytes.
fn pad(w: &mut impl Write, n: usize) -> std::io::Result<()> {
    std::io::copy(&mut std::io::repeat(0).take(n as u64), w).map(|_| ())
}

/// What [`save_quantized`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufSaved {
    /// Tensors written.
    pub tensors: usize,
    /// Of those, the ones stored in blocks.
    pub quantized: usize,
    /// The file's size.
    pub bytes: u64,
}

/// Writes `checkpoint` to the GGUF file `out` (`faceclip convert --quant`) with the tensors
/// [`is_quantizable`] accepts in
/// `kind`'s blocks (tensors already in blocks are copied as they are; other floats keep their
/// stored type, f64 becomes f32; integers are written as stored, `uint8`/`bool` as `int64`).
/// One tensor at a time: the peak is about the largest tensor, whatever the model's size.
/// Tensor names are the checkpoint's keys (the upstream names).
pub fn save_quantized(checkpoint: &Checkpoint, kind: QuantType, out: &Path) -> Result<GgufSaved> {
    let list = checkpoint.list();
    let mut quantized = 0;
    let specs: Vec<GgufTensorSpec> = list
        .iter()
        .map(|t| {
            let ty = if t.dtype.quant().is_some() {
                t.dtype
            } else if t.dtype.is_float() && is_quantizable(&t.name, &t.shape) {
                StoredDType::from_quant(kind)
            } else if t.dtype == StoredDType::F64 {
                StoredDType::F32
            } else if t.dtype.is_float() || t.dtype.ggml_type().is_some() {
                t.dtype
            } else if matches!(t.dtype, StoredDType::U8 | StoredDType::Bool) {
                StoredDType::I64
            } else {
                return Err(Error::DType {
                    path: checkpoint.path().to_path_buf(),
                    key: t.name.clone(),
                    dtype: t.dtype.torch_name().into(),
                });
            };
            quantized += usize::from(ty.quant().is_some());
            let ggml = ty.ggml_type().unwrap_or(0);
            Ok(GgufTensorSpec::new(t.name.clone(), t.shape.clone(), ggml))
        })
        .collect::<Result<_>>()?;
    let name = checkpoint
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata = vec![
        (
            "general.architecture".to_string(),
            GgufValue::String("faceclip".into()),
        ),
        ("general.name".to_string(), GgufValue::String(name)),
        (
            "general.quantization_version".to_string(),
            GgufValue::U32(2),
        ),
        (
            "faceclip.quant".to_string(),
            GgufValue::String(kind.name().into()),
        ),
    ];
    write_gguf(out, &metadata, &specs, |i| {
        let (t, spec) = (&list[i], &specs[i]);
        let target = StoredDType::from_ggml_type(spec.ggml_type);
        let bytes = if target == t.dtype {
            checkpoint.read_raw(&t.name)?.1
        } else if let Some(q) = target.quant() {
            let (_, v) = checkpoint.read_f32(&t.name)?;
            let mut b = Vec::new();
            quantize_into(q, &v, &mut b);
            b
        } else if target == StoredDType::F32 {
            let (_, v) = checkpoint.read_f32(&t.name)?;
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        } else {
            let (_, v) = checkpoint.read_i64(&t.name)?;
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        };
        checkpoint.release(&t.name);
        Ok(bytes)
    })?;
    let bytes = std::fs::metadata(out).map_err(|e| Error::io(out, e))?.len();
    Ok(GgufSaved {
        tensors: specs.len(),
        quantized,
        bytes,
    })
}
