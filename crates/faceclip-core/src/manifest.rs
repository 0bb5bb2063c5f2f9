//! Manifests (`tests/manifests/*.json`): the exact tensor names, shapes and dtypes of a
//! released full-size checkpoint, made on PyTorch's meta device.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::checkpoint::{Checkpoint, StoredDType, TensorInfo};
use crate::error::{Error, Result};

/// A parsed manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    /// The file stem (`sdxl_unet`), which says which full-size model it lists.
    pub name: String,
    pub tensors: Vec<TensorInfo>,
    /// The upstream config recorded with it.
    pub config: Value,
}

impl Manifest {
    /// Reads `{"tensors": {key: {"shape": [...], "dtype": "..."}}, "config": {...}}`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let v: Value = crate::pretrained::read_config(path)?;
        let map = v
            .get("tensors")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::config(path, "no object `tensors`"))?;
        let mut tensors = Vec::with_capacity(map.len());
        for (k, t) in map {
            let shape = t
                .get("shape")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .map(|d| d.as_u64().map(|d| d as usize))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    Error::config(path, format!("tensor `{k}` has no integer `shape`"))
                })?;
            let dtype = t.get("dtype").and_then(Value::as_str).unwrap_or("float32");
            tensors.push(TensorInfo {
                name: k.clone(),
                shape,
                dtype: StoredDType::from_torch_name(dtype),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            tensors,
            config: v.get("config").cloned().unwrap_or(Value::Null),
        })
    }

    /// The listing as a data-less checkpoint, to walk a model against.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint::from_listing(&self.path, self.tensors.clone())
    }

    /// Total element count.
    pub fn numel(&self) -> usize {
        self.tensors
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
}
