//! Reading checkpoints: `.safetensors` (memory-mapped, single or sharded through
//! `*.safetensors.index.json`), `.gguf` (memory-mapped; Q8_0/Q4_0 blocks dequantized on
//! read, see [`crate::gguf`]) and PyTorch `.pt/.pth/.bin` (zip and legacy pickle, read by
//! burn-store's pickle reader, which never executes code). Tensors are listed without being
//! read, and read one at a time into `f32`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::store::pytorch_reader::{DType as PtDType, PytorchReader, Tensor as PtTensor};
use burn::tensor::TensorData;
use memmap2::Mmap;
use safetensors::{Dtype as StDtype, SafeTensors};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufMetadata};
use crate::quant::QuantType;

/// Element type of a stored tensor, as the file records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    /// GGML's `Q8_0` blocks (GGUF files): read as `f32` by dequantizing.
    Q8_0,
    /// GGML's `Q4_0` blocks (GGUF files): read as `f32` by dequantizing.
    Q4_0,
    /// Any other type (complex, fp8, other GGML blocks, ...): listed, never loaded.
    Other,
}

impl StoredDType {
    /// Bytes per element (0 for the block types and [`StoredDType::Other`]; see
    /// [`StoredDType::bytes_for`]).
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
            Self::Q8_0 | Self::Q4_0 | Self::Other => 0,
        }
    }

    /// Bytes that `numel` elements take, blocks included; `None` for
    /// [`StoredDType::Other`], on overflow, or when a block type's `numel` is not a whole
    /// number of blocks.
    pub fn bytes_for(self, numel: usize) -> Option<usize> {
        match self.quant() {
            Some(q) => q.bytes_for(numel),
            None if self == Self::Other => None,
            None => numel.checked_mul(self.size()),
        }
    }

    /// The block quantization of [`StoredDType::Q8_0`] and [`StoredDType::Q4_0`].
    pub fn quant(self) -> Option<QuantType> {
        match self {
            Self::Q8_0 => Some(QuantType::Q8_0),
            Self::Q4_0 => Some(QuantType::Q4_0),
            _ => None,
        }
    }

    /// The stored type of a block quantization.
    pub fn from_quant(q: QuantType) -> Self {
        match q {
            QuantType::Q8_0 => Self::Q8_0,
            QuantType::Q4_0 => Self::Q4_0,
        }
    }

    /// The type of GGML type id `id` (a GGUF tensor's type); [`StoredDType::Other`] for the
    /// ids this crate does not read (other block formats, unknown ids).
    pub fn from_ggml_type(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            30 => Self::BF16,
            28 => Self::F64,
            24 => Self::I8,
            25 => Self::I16,
            26 => Self::I32,
            27 => Self::I64,
            8 => Self::Q8_0,
            2 => Self::Q4_0,
            _ => Self::Other,
        }
    }

    /// GGML's type id of this type, `None` where GGUF has none (`uint8`, `bool`, other).
    pub fn ggml_type(self) -> Option<u32> {
        Some(match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::BF16 => 30,
            Self::F64 => 28,
            Self::I8 => 24,
            Self::I16 => 25,
            Self::I32 => 26,
            Self::I64 => 27,
            Self::Q8_0 => 8,
            Self::Q4_0 => 2,
            Self::U8 | Self::Bool | Self::Other => return None,
        })
    }

    /// The PyTorch-style name used in manifests (`float32`, `bfloat16`, ...).
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F64 => "float64",
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::I16 => "int16",
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::Bool => "bool",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Other => "other",
        }
    }

    /// Parses a PyTorch dtype name (`float32`, `torch.bfloat16`, ...).
    pub fn from_torch_name(name: &str) -> Self {
        match name.trim_start_matches("torch.") {
            "float64" | "double" => Self::F64,
            "float32" | "float" => Self::F32,
            "float16" | "half" => Self::F16,
            "bfloat16" => Self::BF16,
            "int64" | "long" => Self::I64,
            "int32" | "int" => Self::I32,
            "int16" => Self::I16,
            "int8" => Self::I8,
            "uint8" => Self::U8,
            "bool" => Self::Bool,
            "q8_0" => Self::Q8_0,
            "q4_0" => Self::Q4_0,
            _ => Self::Other,
        }
    }

    fn from_st(d: StDtype) -> Self {
        match d {
            StDtype::F64 => Self::F64,
            StDtype::F32 => Self::F32,
            StDtype::F16 => Self::F16,
            StDtype::BF16 => Self::BF16,
            StDtype::I64 => Self::I64,
            StDtype::I32 => Self::I32,
            StDtype::I16 => Self::I16,
            StDtype::I8 => Self::I8,
            StDtype::U8 => Self::U8,
            StDtype::BOOL => Self::Bool,
            _ => Self::Other,
        }
    }

    fn from_pt(d: PtDType) -> Self {
        match d {
            PtDType::F64 => Self::F64,
            PtDType::F32 => Self::F32,
            PtDType::F16 => Self::F16,
            PtDType::BF16 => Self::BF16,
            PtDType::I64 => Self::I64,
            PtDType::I32 => Self::I32,
            PtDType::I16 => Self::I16,
            PtDType::I8 => Self::I8,
            PtDType::U8 => Self::U8,
            PtDType::Bool => Self::Bool,
            _ => Self::Other,
        }
    }

    /// True for the floating-point types a model weight can be loaded from (the block types
    /// included: they read as `f32`).
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Self::F64 | Self::F32 | Self::F16 | Self::BF16 | Self::Q8_0 | Self::Q4_0
        )
    }
}

/// Name, shape and dtype of one stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: StoredDType,
}

#[derive(Clone)]
enum Entry {
    /// Byte range in the memory map of shard `file` (safetensors, GGUF).
    Mapped {
        file: usize,
        start: usize,
        end: usize,
    },
    /// Listed but not readable (a GGUF tensor of a type whose layout is unknown here): why.
    Unreadable(Arc<str>),
    Pytorch(PtTensor),
    /// Already in memory (a converted or generated checkpoint).
    Memory(Arc<Vec<u8>>),
    /// A listing only (a manifest): shape and dtype, no data.
    Listing,
}

#[derive(Clone)]
struct Stored {
    info: TensorInfo,
    entry: Entry,
}

/// An opened checkpoint: the tensor list is parsed at open, tensor bytes are read on demand.
#[derive(Clone)]
pub struct Checkpoint {
    path: PathBuf,
    shards: Vec<Arc<Mmap>>,
    tensors: BTreeMap<String, Stored>,
    /// The metadata of a GGUF file.
    gguf: Option<Arc<GgufMetadata>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

const SAFETENSORS_EXT: &str = ".safetensors";
const INDEX_EXT: &str = ".safetensors.index.json";
const GGUF_EXT: &str = ".gguf";

impl Checkpoint {
    /// Opens a checkpoint, choosing the reader from the file name and checking the contents:
    /// `.safetensors`, `*.safetensors.index.json` (sharded), `.gguf`, `.pt`, `.pth`, `.bin`,
    /// `.ckpt`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::UnsupportedFormat {
                path: path.into(),
                reason: "is a directory".into(),
            });
        }
        if meta.len() == 0 {
            return Err(Error::checkpoint(path, "the file is empty"));
        }
        if name.ends_with(INDEX_EXT) {
            Self::open_index(path)
        } else if name.ends_with(SAFETENSORS_EXT) {
            let mut ck = Self::empty(path);
            ck.add_safetensors_shard(path, None)?;
            Ok(ck)
        } else if name.ends_with(GGUF_EXT) {
            Self::open_gguf(path)
        } else if [".pt", ".pth", ".bin", ".ckpt"]
            .iter()
            .any(|e| name.ends_with(e))
        {
            Self::open_pytorch(path)
        } else {
            Err(Error::UnsupportedFormat {
                path: path.into(),
                reason: format!("unknown extension of `{name}`"),
            })
        }
    }

    fn empty(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            shards: Vec::new(),
            tensors: BTreeMap::new(),
            gguf: None,
        }
    }

    /// A checkpoint built in memory from `(name, shape, f32 values)`; used for converted
    /// layouts and tests.
    pub fn from_f32(
        label: impl Into<PathBuf>,
        tensors: impl IntoIterator<Item = (String, Vec<usize>, Vec<f32>)>,
    ) -> Result<Self> {
        let mut ck = Self::empty(&label.into());
        for (name, shape, values) in tensors {
            if checked_numel(&shape) != Some(values.len()) {
                return Err(Error::shape(
                    format!("in-memory tensor `{name}` (shape {shape:?})"),
                    &[checked_numel(&shape).unwrap_or(usize::MAX)],
                    &[values.len()],
                ));
            }
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            ck.tensors.insert(
                name.clone(),
                Stored {
                    info: TensorInfo {
                        name,
                        shape,
                        dtype: StoredDType::F32,
                    },
                    entry: Entry::Memory(Arc::new(bytes)),
                },
            );
        }
        Ok(ck)
    }

    /// A checkpoint parsed from safetensors bytes held in memory (weights embedded in a
    /// crate with `include_bytes!`); `label` stands for the path in messages.
    pub fn from_safetensors_bytes(label: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self> {
        let mut ck = Self::empty(&label.into());
        check_safetensors_header(&ck.path, bytes)?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            Error::checkpoint(&ck.path, format!("not a valid safetensors file: {e}"))
        })?;
        for (name, view) in st.iter() {
            ck.tensors.insert(
                name.to_string(),
                Stored {
                    info: TensorInfo {
                        name: name.to_string(),
                        shape: view.shape().to_vec(),
                        dtype: StoredDType::from_st(view.dtype()),
                    },
                    entry: Entry::Memory(Arc::new(view.data().to_vec())),
                },
            );
        }
        Ok(ck)
    }

    /// A listing without data (a manifest): only coverage checks are possible.
    pub fn from_listing(
        label: impl Into<PathBuf>,
        tensors: impl IntoIterator<Item = TensorInfo>,
    ) -> Self {
        let mut ck = Self::empty(&label.into());
        for info in tensors {
            ck.tensors.insert(
                info.name.clone(),
                Stored {
                    info,
                    entry: Entry::Listing,
                },
            );
        }
        ck
    }

    fn open_index(path: &Path) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let index: Index = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(path, format!("bad index json: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut files: Vec<&String> = index.weight_map.values().collect();
        files.sort();
        files.dedup();
        let mut ck = Self::empty(path);
        for f in files {
            if f.contains("..") || Path::new(f).is_absolute() {
                return Err(Error::checkpoint(
                    path,
                    format!("shard name `{f}` leaves the folder"),
                ));
            }
            let shard = dir.join(f);
            let wanted: Vec<&str> = index
                .weight_map
                .iter()
                .filter(|(_, v)| *v == f)
                .map(|(k, _)| k.as_str())
                .collect();
            ck.add_safetensors_shard(&shard, Some(&wanted))?;
        }
        for k in index.weight_map.keys() {
            if !ck.tensors.contains_key(k) {
                return Err(Error::checkpoint(
                    path,
                    format!(
                        "index lists `{k}` in `{}`, which does not hold it",
                        index.weight_map[k]
                    ),
                ));
            }
        }
        Ok(ck)
    }

    fn add_safetensors_shard(&mut self, path: &Path, only: Option<&[&str]>) -> Result<()> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; a file changed underneath us gives wrong numbers,
        // not memory unsafety beyond what reading a file concurrently modified implies.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        check_safetensors_header(path, &mmap)?;
        let st = SafeTensors::deserialize(&mmap)
            .map_err(|e| Error::checkpoint(path, format!("not a valid safetensors file: {e}")))?;
        let (header_len, _) = SafeTensors::read_metadata(&mmap)
            .map_err(|e| Error::checkpoint(path, format!("not a valid safetensors file: {e}")))?;
        let base = 8 + header_len;
        let idx = self.shards.len();
        for (name, view) in st.iter() {
            if let Some(only) = only
                && !only.contains(&name)
            {
                continue;
            }
            let data = view.data();
            // The view borrows from the map: recover its byte range (checked against the map,
            // so a reader bug cannot turn into an out-of-bounds slice later).
            let start = (data.as_ptr() as usize).wrapping_sub(mmap.as_ptr() as usize);
            if start < base
                || start
                    .checked_add(data.len())
                    .is_none_or(|end| end > mmap.len())
            {
                return Err(Error::checkpoint(
                    path,
                    format!("tensor `{name}`: data range outside the file"),
                ));
            }
            self.tensors.insert(
                name.to_string(),
                Stored {
                    info: TensorInfo {
                        name: name.to_string(),
                        shape: view.shape().to_vec(),
                        dtype: StoredDType::from_st(view.dtype()),
                    },
                    entry: Entry::Mapped {
                        file: idx,
                        start,
                        end: start + data.len(),
                    },
                },
            );
        }
        drop(st);
        self.shards.push(Arc::new(mmap));
        Ok(())
    }

    fn open_gguf(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: as for safetensors shards: a read-only map.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let parsed = GgufFile::parse(path, &mmap)?;
        let mut ck = Self::empty(path);
        ck.add_gguf(parsed, |r| Entry::Mapped {
            file: 0,
            start: r.start,
            end: r.end,
        });
        ck.shards.push(Arc::new(mmap));
        Ok(ck)
    }

    /// A checkpoint parsed from GGUF bytes held in memory (each tensor's data copied);
    /// `label` stands for the path in messages.
    pub fn from_gguf_bytes(label: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self> {
        let mut ck = Self::empty(&label.into());
        let parsed = GgufFile::parse(&ck.path, bytes)?;
        ck.add_gguf(parsed, |r| {
            Entry::Memory(Arc::new(bytes.get(r).unwrap_or_default().to_vec()))
        });
        Ok(ck)
    }

    /// Lists the tensors of a parsed GGUF file, each tensor's checked byte range turned into
    /// an entry by `entry`.
    fn add_gguf(&mut self, parsed: GgufFile, entry: impl Fn(std::ops::Range<usize>) -> Entry) {
        for t in parsed.tensors {
            let entry = match t.range {
                Some(r) => entry(r),
                None => Entry::Unreadable(
                    format!(
                        "GGML type {} ({}) is not one this crate reads",
                        t.ggml_type,
                        crate::gguf::ggml_type_name(t.ggml_type).unwrap_or("unknown")
                    )
                    .into(),
                ),
            };
            self.tensors.insert(
                t.name.clone(),
                Stored {
                    info: TensorInfo {
                        name: t.name,
                        shape: t.shape,
                        dtype: t.dtype,
                    },
                    entry,
                },
            );
        }
        self.gguf = Some(Arc::new(parsed.metadata));
    }

    fn open_pytorch(path: &Path) -> Result<Self> {
        let file_len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        // burn's reader never runs pickle code (a call it does not know becomes an opaque
        // value); a pickle that calls a code-running function is still refused by name, as
        // a hostile file, rather than loaded for the tensors beside it.
        if let Ok(root) = PytorchReader::read_pickle_data(path, None)
            && let Some(call) = hostile_call(&root)
        {
            return Err(Error::checkpoint(
                path,
                format!(
                    "the pickle calls `{call}`, which a Python loader would execute; refused \
                     (nothing was executed: this reader never runs pickle code)"
                ),
            ));
        }
        let reader = PytorchReader::new(path).map_err(|e| {
            Error::checkpoint(path, format!("not a readable PyTorch checkpoint: {e}"))
        })?;
        let mut ck = Self::empty(path);
        for (name, t) in reader.into_tensors() {
            let bytes = checked_numel(t.shape()).and_then(|n| n.checked_mul(t.dtype().size()));
            match bytes {
                Some(b) if (b as u64) <= file_len => {}
                _ => {
                    return Err(Error::checkpoint(
                        path,
                        format!(
                            "tensor `{name}`: shape {:?} of {:?} needs {} bytes, more than the whole \
                             file holds ({file_len} bytes)",
                            t.shape(),
                            t.dtype(),
                            bytes.map_or("more than usize::MAX".to_string(), |b| b.to_string()),
                        ),
                    ));
                }
            }
            ck.tensors.insert(
                name.clone(),
                Stored {
                    info: TensorInfo {
                        name,
                        shape: t.shape().to_vec(),
                        dtype: StoredDType::from_pt(t.dtype()),
                    },
                    entry: Entry::Pytorch(t),
                },
            );
        }
        if ck.tensors.is_empty() {
            return Err(Error::checkpoint(path, "holds no tensors"));
        }
        Ok(ck)
    }

    /// The metadata key/values of a GGUF checkpoint (`None` for other formats).
    pub fn gguf_metadata(&self) -> Option<&GgufMetadata> {
        self.gguf.as_deref()
    }

    /// The block quantization tensor `name` is stored in, if any (GGUF `Q8_0`/`Q4_0`):
    /// [`Checkpoint::read_raw`] gives its blocks as stored.
    pub fn quant_type(&self, name: &str) -> Option<QuantType> {
        self.info(name).and_then(|i| i.dtype.quant())
    }

    /// The file (or index, or label) this checkpoint came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor's name, shape and dtype, sorted by name.
    pub fn list(&self) -> Vec<TensorInfo> {
        self.tensors.values().map(|s| s.info.clone()).collect()
    }

    /// Name, shape and dtype of one tensor.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name).map(|s| &s.info)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when the checkpoint holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// True when the checkpoint only lists tensors (a manifest) and holds no data.
    pub fn is_listing(&self) -> bool {
        self.tensors
            .values()
            .next()
            .is_some_and(|s| matches!(s.entry, Entry::Listing))
    }

    /// A new checkpoint whose names are rewritten by `f` (entries mapped to `None` are
    /// dropped). Data is shared, not copied.
    pub fn rename(&self, mut f: impl FnMut(&str) -> Option<String>) -> Self {
        let mut out = Self {
            path: self.path.clone(),
            shards: self.shards.clone(),
            tensors: BTreeMap::new(),
            gguf: self.gguf.clone(),
        };
        for (k, s) in &self.tensors {
            if let Some(n) = f(k) {
                let mut s = s.clone();
                s.info.name = n.clone();
                out.tensors.insert(n, s);
            }
        }
        out
    }

    /// Keeps the tensors under `prefix` and strips it from their names.
    pub fn strip_prefix(&self, prefix: &str) -> Self {
        self.rename(|k| k.strip_prefix(prefix).map(str::to_string))
    }

    fn raw_bytes(&self, name: &str) -> Result<(TensorInfo, std::borrow::Cow<'_, [u8]>)> {
        let s = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            key: name.into(),
        })?;
        let bytes: std::borrow::Cow<'_, [u8]> = match &s.entry {
            Entry::Mapped { file, start, end } => std::borrow::Cow::Borrowed(
                self.shards
                    .get(*file)
                    .and_then(|m| m.get(*start..*end))
                    .ok_or_else(|| {
                        Error::checkpoint(
                            &self.path,
                            format!("tensor `{name}`: data range outside the file"),
                        )
                    })?,
            ),
            Entry::Pytorch(t) => std::borrow::Cow::Owned(
                t.read()
                    .map_err(|e| Error::checkpoint(&self.path, format!("tensor `{name}`: {e}")))?,
            ),
            Entry::Memory(b) => std::borrow::Cow::Borrowed(b.as_slice()),
            Entry::Unreadable(why) => {
                return Err(Error::checkpoint(
                    &self.path,
                    format!("tensor `{name}`: {why}"),
                ));
            }
            Entry::Listing => {
                return Err(Error::checkpoint(
                    &self.path,
                    format!("`{name}` is only listed (a manifest holds no data)"),
                ));
            }
        };
        let want = checked_numel(&s.info.shape).and_then(|n| s.info.dtype.bytes_for(n));
        if s.info.dtype != StoredDType::Other && want != Some(bytes.len()) {
            return Err(Error::checkpoint(
                &self.path,
                format!(
                    "tensor `{name}` holds {} bytes, its shape {:?} and dtype {} need {}",
                    bytes.len(),
                    s.info.shape,
                    s.info.dtype.torch_name(),
                    want.map_or("more than usize::MAX".to_string(), |w| w.to_string()),
                ),
            ));
        }
        Ok((s.info.clone(), bytes))
    }

    /// Reads one floating-point tensor as `f32` values (f64/f16/bf16 converted, Q8_0/Q4_0
    /// blocks dequantized).
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        if let Some(info) = self.info(name)
            && !info.dtype.is_float()
        {
            return Err(Error::DType {
                path: self.path.clone(),
                key: name.into(),
                dtype: info.dtype.torch_name().into(),
            });
        }
        let (info, b) = self.raw_bytes(name)?;
        let v: Vec<f32> = match info.dtype {
            StoredDType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StoredDType::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(le8(c)) as f32)
                .collect(),
            StoredDType::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            StoredDType::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            StoredDType::Q8_0 | StoredDType::Q4_0 => {
                let (Some(q), Some(n)) = (info.dtype.quant(), checked_numel(&info.shape)) else {
                    return Err(Error::checkpoint(
                        &self.path,
                        format!("tensor `{name}`: shape {:?} overflows", info.shape),
                    ));
                };
                // raw_bytes checked `b.len() == q.bytes_for(n)`.
                let mut v = vec![0f32; n];
                crate::quant::dequantize_into(q, &b, &mut v);
                v
            }
            other => {
                return Err(Error::DType {
                    path: self.path.clone(),
                    key: name.into(),
                    dtype: other.torch_name().into(),
                });
            }
        };
        Ok((info.shape, v))
    }

    /// Reads one integer, bool or float tensor as `i64` values (floats are truncated).
    pub fn read_i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let (info, b) = self.raw_bytes(name)?;
        let v: Vec<i64> = match info.dtype {
            StoredDType::I64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(le8(c)))
                .collect(),
            StoredDType::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            StoredDType::I16 => b
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            StoredDType::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
            StoredDType::U8 | StoredDType::Bool => b.iter().map(|&x| x as i64).collect(),
            StoredDType::Other => {
                return Err(Error::DType {
                    path: self.path.clone(),
                    key: name.into(),
                    dtype: "other".into(),
                });
            }
            _ => {
                drop(b);
                return Ok({
                    let (s, v) = self.read_f32(name)?;
                    (s, v.into_iter().map(|x| x as i64).collect())
                });
            }
        };
        Ok((info.shape, v))
    }

    /// Reads one tensor as burn [`TensorData`]: floats as `f32`, integers and bools as `i64`.
    pub fn read_data(&self, name: &str) -> Result<TensorData> {
        let info = self.info(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            key: name.into(),
        })?;
        if info.dtype.is_float() {
            let (s, v) = self.read_f32(name)?;
            Ok(TensorData::new(v, s))
        } else {
            let (s, v) = self.read_i64(name)?;
            Ok(TensorData::new(v, s))
        }
    }

    /// Hands the memory-mapped pages of tensor `name` back to the OS once it has been copied
    /// out, so that loading a model peaks at about its own size rather than twice it (the
    /// file's pages would otherwise stay resident until the checkpoint is dropped). Pages are
    /// re-read from the file if the tensor is read again. A no-op for other storage.
    pub fn release(&self, name: &str) {
        #[cfg(unix)]
        if let Some(Entry::Mapped { file, start, end }) = self.tensors.get(name).map(|s| &s.entry)
            && let Some(m) = self.shards.get(*file)
        {
            // SAFETY: a read-only shared file mapping: MADV_DONTNEED drops the pages and a
            // later access faults the same bytes back in from the file.
            let _ = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, *start, end - start)
            };
        }
    }

    /// Raw little-endian bytes of a tensor as stored (for bit-exact comparisons).
    pub fn read_raw(&self, name: &str) -> Result<(TensorInfo, Vec<u8>)> {
        let (info, b) = self.raw_bytes(name)?;
        Ok((info, b.into_owned()))
    }

    /// Writes every float tensor to a `.safetensors` file as `f32` (`faceclip convert`).
    pub fn save_safetensors(&self, out: &Path) -> Result<()> {
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>, StDtype)> = Vec::new();
        for info in self.list() {
            if info.dtype.is_float() {
                let (shape, v) = self.read_f32(&info.name)?;
                owned.push((
                    info.name,
                    shape,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    StDtype::F32,
                ));
            } else {
                let (shape, v) = self.read_i64(&info.name)?;
                owned.push((
                    info.name,
                    shape,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    StDtype::I64,
                ));
            }
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
            .iter()
            .map(|(n, s, b, d)| {
                safetensors::tensor::TensorView::new(*d, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::checkpoint(out, e))
            })
            .collect::<Result<_>>()?;
        crate::io::write_atomic(out, |path| {
            safetensors::serialize_to_file(
                views.iter().map(|(n, v)| (n.as_str(), v.clone())),
                None,
                path,
            )
            .map_err(|e| Error::checkpoint(path, e))
        })
    }
}

/// The element count of `shape`, `None` when it overflows `usize`.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Eight bytes of a `chunks_exact(8)` chunk as an array.
fn le8(c: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&c[..8]);
    a
}

/// The largest safetensors JSON header accepted (the `safetensors` crate's limit).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// Checks what a safetensors header declares against the bytes actually there, before any
/// tensor is touched: the header length within the file, each tensor's dtype and shape, its
/// element count (no overflow), its byte size equal to its declared byte range, and that range
/// within the data. Every refusal names the file and the tensor.
fn check_safetensors_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_len = bytes.len() as u64;
    let Some(len_bytes) = bytes.first_chunk::<8>() else {
        return Err(Error::checkpoint(
            path,
            format!(
                "the file holds {file_len} bytes, fewer than the 8-byte safetensors header length"
            ),
        ));
    };
    let header_len = u64::from_le_bytes(*len_bytes);
    if header_len > file_len - 8 {
        return Err(Error::checkpoint(
            path,
            format!(
                "the safetensors header length {header_len} goes beyond the file ({file_len} bytes): truncated or not a safetensors file"
            ),
        ));
    }
    if header_len > MAX_SAFETENSORS_HEADER {
        return Err(Error::checkpoint(
            path,
            format!(
                "the safetensors header length {header_len} is above the {MAX_SAFETENSORS_HEADER}-byte limit"
            ),
        ));
    }
    // header_len <= file_len - 8, so this fits in usize (the bytes are in memory).
    let header_end = 8 + header_len as usize;
    let data_len = file_len - 8 - header_len;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..header_end]).map_err(|e| {
            Error::checkpoint(
                path,
                format!("the safetensors header is not a JSON object: {e}"),
            )
        })?;
    let mut ranges: Vec<(u64, u64, &str)> = Vec::with_capacity(header.len());
    for (name, entry) in &header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: String| Error::checkpoint(path, format!("tensor `{name}`: {what}"));
        let dtype: StDtype = entry
            .get("dtype")
            .cloned()
            .ok_or_else(|| bad("no `dtype` in the header".into()))
            .and_then(|d| {
                serde_json::from_value(d.clone()).map_err(|_| bad(format!("unknown dtype {d}")))
            })?;
        let shape: Vec<u64> = entry
            .get("shape")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .ok_or_else(|| bad("no integer `shape` in the header".into()))?;
        let offsets: [u64; 2] = entry
            .get("data_offsets")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .ok_or_else(|| bad("no `data_offsets: [begin, end]` in the header".into()))?;
        let bits = shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.bitsize() as u64));
        let Some(bits) = bits else {
            return Err(bad(format!(
                "shape {shape:?} has more elements than can be counted"
            )));
        };
        let need = bits.div_ceil(8);
        let [begin, end] = offsets;
        if begin > end {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] end before they begin"
            )));
        }
        if end > data_len {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] go beyond the {data_len} bytes of data the file holds (truncated?)"
            )));
        }
        if need > data_len {
            return Err(bad(format!(
                "shape {shape:?} of {dtype:?} needs {need} bytes, more than the {data_len} bytes of data the file holds"
            )));
        }
        if bits % 8 != 0 || end - begin != need {
            return Err(bad(format!(
                "shape {shape:?} of {dtype:?} needs {need} bytes, its data_offsets [{begin}, {end}] hold {}",
                end - begin
            )));
        }
        ranges.push((begin, end, name));
    }
    // The tensors tile the data exactly, in some order: no overlap, no gap, nothing after.
    ranges.sort_unstable();
    let mut at = 0u64;
    let mut prev: Option<&str> = None;
    for &(begin, end, name) in &ranges {
        if begin != at {
            let after = prev.map_or("the start of the data".to_string(), |p| {
                format!("tensor `{p}`")
            });
            let how = if begin < at {
                "overlap"
            } else {
                "leave a gap after"
            };
            return Err(Error::checkpoint(
                path,
                format!("tensor `{name}`: data_offsets [{begin}, {end}] {how} {after}"),
            ));
        }
        at = end;
        prev = Some(name);
    }
    if at != data_len {
        return Err(Error::checkpoint(
            path,
            format!(
                "the tensors hold {at} bytes, the file {data_len} bytes of data after the header"
            ),
        ));
    }
    Ok(())
}

/// Python callables whose call in a pickle means the file runs code when Python loads it.
/// burn's reader never calls anything, so this is a refusal of hostile files, not a defence.
const HOSTILE_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "_posixsubprocess",
    "sys",
    "shutil",
    "socket",
    "importlib",
    "pickle",
    "_pickle",
    "marshal",
    "runpy",
    "pty",
    "code",
    "codeop",
    "commands",
    "webbrowser",
    "ctypes",
    "multiprocessing",
    "pdb",
    "timeit",
    "asyncio",
    "platform",
];
const HOSTILE_BUILTINS: &[&str] = &[
    "eval",
    "exec",
    "execfile",
    "compile",
    "__import__",
    "getattr",
    "setattr",
    "delattr",
    "open",
    "apply",
    "input",
    "breakpoint",
    "globals",
    "locals",
    "vars",
];

/// The first code-running callable named anywhere in a parsed pickle (`os.system`, ...).
fn hostile_call(value: &burn::store::pytorch_reader::PickleValue) -> Option<String> {
    use burn::store::pytorch_reader::PickleValue as V;
    match value {
        V::Unsupported(name) => {
            let (module, func) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
            let root = module.split('.').next().unwrap_or_default();
            let hostile = HOSTILE_MODULES.contains(&root)
                || (matches!(module, "builtins" | "__builtin__")
                    && HOSTILE_BUILTINS.contains(&func))
                || (module == "operator" && matches!(func, "attrgetter" | "methodcaller"));
            hostile.then(|| name.clone())
        }
        V::List(items) => items.iter().find_map(hostile_call),
        V::Dict(map) => map.values().find_map(hostile_call),
        _ => None,
    }
}
