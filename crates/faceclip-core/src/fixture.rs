//! Parity fixtures (see `tests/fixtures/FORMAT.md`): a folder with `meta.json`,
//! `weights.safetensors` (and sometimes `weights.pt`) and `io.safetensors` holding `in.*`,
//! `out.*` and `mid.*` tensors. Also the comparison every parity check uses.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

/// One opened fixture folder.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub dir: PathBuf,
    pub meta: Value,
    io: Checkpoint,
}

impl Fixture {
    /// Opens `dir/meta.json` and `dir/io.safetensors`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let meta_path = dir.join("meta.json");
        let meta: Value = crate::pretrained::read_config(&meta_path)?;
        let io = Checkpoint::open(dir.join("io.safetensors"))?;
        Ok(Self { dir, meta, io })
    }

    /// The folder name (for reports).
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    /// `meta.json`'s `kind`.
    pub fn kind(&self) -> Result<&str> {
        self.meta
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::config(self.dir.join("meta.json"), "no string field `kind`"))
    }

    /// `meta.json`'s `config`.
    pub fn config(&self) -> &Value {
        self.meta.get("config").unwrap_or(&Value::Null)
    }

    /// `meta.json`'s `extra`.
    pub fn extra(&self) -> &Value {
        self.meta.get("extra").unwrap_or(&Value::Null)
    }

    /// Deserialises `config` (or a sub-object of it) into a typed config.
    pub fn config_as<T: serde::de::DeserializeOwned>(&self, pointer: &str) -> Result<T> {
        let v = if pointer.is_empty() {
            self.config()
        } else {
            self.config().pointer(pointer).ok_or_else(|| {
                Error::config(self.dir.join("meta.json"), format!("no config{pointer}"))
            })?
        };
        serde_json::from_value(v.clone())
            .map_err(|e| Error::config(self.dir.join("meta.json"), format!("config{pointer}: {e}")))
    }

    /// `(atol, rtol)` from `tolerance`.
    pub fn tolerance(&self) -> (f64, f64) {
        let t = self.meta.get("tolerance");
        let get = |k: &str| {
            t.and_then(|t| t.get(k))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        (get("atol"), get("rtol"))
    }

    /// Names (without prefix) of the `out.*` tensors, from `meta.json` `outputs`.
    pub fn output_names(&self) -> Vec<String> {
        self.meta
            .get("outputs")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The io file (for names not covered by the helpers).
    pub fn io(&self) -> &Checkpoint {
        &self.io
    }

    /// True when `io.safetensors` holds `prefix.name`.
    pub fn has(&self, full_name: &str) -> bool {
        self.io.info(full_name).is_some()
    }

    /// Raw f32 values of an io tensor, e.g. `in.sample`.
    pub fn f32(&self, full_name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        self.io.read_f32(full_name)
    }

    /// An io float tensor of rank `D` on `device`.
    pub fn tensor<const D: usize>(&self, full_name: &str, device: &Device) -> Result<Tensor<D>> {
        let (shape, v) = self.io.read_f32(full_name)?;
        check_rank::<D>(full_name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(v, shape), device))
    }

    /// An io integer tensor (ids, masks) of rank `D` on `device`.
    pub fn tensor_int<const D: usize>(
        &self,
        full_name: &str,
        device: &Device,
    ) -> Result<Tensor<D, Int>> {
        let (shape, v) = self.io.read_i64(full_name)?;
        check_rank::<D>(full_name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(v, shape), device))
    }

    /// `weights.safetensors` of this folder.
    pub fn weights(&self) -> Result<Checkpoint> {
        Checkpoint::open(self.dir.join("weights.safetensors"))
    }

    /// `weights.pt` of this folder.
    pub fn weights_pt(&self) -> Result<Checkpoint> {
        Checkpoint::open(self.dir.join("weights.pt"))
    }

    /// A component's weights named by `extra.weights_from.<component>.path` (pipeline
    /// fixtures share their components' files), relative to this folder.
    pub fn weights_from(&self, component: &str) -> Result<Checkpoint> {
        let rel = self
            .extra()
            .pointer(&format!("/weights_from/{component}/path"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::config(
                    self.dir.join("meta.json"),
                    format!("no extra.weights_from.{component}.path"),
                )
            })?;
        Checkpoint::open(self.dir.join(rel))
    }

    /// Compares `got` with `out.<name>` under this fixture's tolerance.
    pub fn check(&self, name: &str, got: TensorData) -> Result<Comparison> {
        let (atol, rtol) = self.tolerance();
        self.check_with(name, got, atol, rtol)
    }

    /// Compares `got` with the io tensor `out.<name>` under an explicit tolerance.
    pub fn check_with(
        &self,
        name: &str,
        got: TensorData,
        atol: f64,
        rtol: f64,
    ) -> Result<Comparison> {
        let (want_shape, want) = self.io.read_f32(&format!("out.{name}"))?;
        let got_shape = got.shape().to_vec();
        let got = got
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::invalid(format!("output `{name}`: {e:?}")))?;
        Ok(Comparison::new(
            name,
            &got_shape,
            &got,
            &want_shape,
            &want,
            atol,
            rtol,
        ))
    }
}

/// How one output compares with its expectation under `|got - want| <= atol + rtol·|want|`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub name: String,
    pub max_abs: f64,
    pub max_rel: f64,
    pub atol: f64,
    pub rtol: f64,
    /// Elements outside the tolerance (all of them when shapes differ).
    pub failures: usize,
    /// `Some((expected, found))` when the shapes differ.
    pub shape_mismatch: Option<(Vec<usize>, Vec<usize>)>,
}

impl Comparison {
    /// Compares two flat value lists with their shapes. NaN never passes.
    pub fn new(
        name: &str,
        got_shape: &[usize],
        got: &[f32],
        want_shape: &[usize],
        want: &[f32],
        atol: f64,
        rtol: f64,
    ) -> Self {
        let mut c = Comparison {
            name: name.to_string(),
            max_abs: 0.0,
            max_rel: 0.0,
            atol,
            rtol,
            failures: 0,
            shape_mismatch: None,
        };
        if got_shape != want_shape || got.len() != want.len() {
            c.shape_mismatch = Some((want_shape.to_vec(), got_shape.to_vec()));
            c.failures = want.len().max(1);
            c.max_abs = f64::INFINITY;
            c.max_rel = f64::INFINITY;
            return c;
        }
        for (&g, &w) in got.iter().zip(want) {
            let (g, w) = (g as f64, w as f64);
            let d = (g - w).abs();
            let d = if d.is_nan() { f64::INFINITY } else { d };
            c.max_abs = c.max_abs.max(d);
            if w != 0.0 {
                c.max_rel = c.max_rel.max(d / w.abs());
            } else if d > 0.0 {
                c.max_rel = f64::INFINITY;
            }
            if d > atol + rtol * w.abs() {
                c.failures += 1;
            }
        }
        c
    }

    /// True when every element is within tolerance.
    pub fn pass(&self) -> bool {
        self.failures == 0
    }
}

/// The outcome of one parity check: all its comparisons.
#[derive(Debug, Clone, Default)]
pub struct ParityReport {
    pub comparisons: Vec<Comparison>,
}

impl ParityReport {
    pub fn push(&mut self, c: Comparison) {
        self.comparisons.push(c);
    }

    /// True when there is at least one comparison and all pass.
    pub fn pass(&self) -> bool {
        !self.comparisons.is_empty() && self.comparisons.iter().all(Comparison::pass)
    }

    /// Largest absolute error over all comparisons.
    pub fn max_abs(&self) -> f64 {
        self.comparisons
            .iter()
            .map(|c| c.max_abs)
            .fold(0.0, f64::max)
    }

    /// Largest relative error over all comparisons.
    pub fn max_rel(&self) -> f64 {
        self.comparisons
            .iter()
            .map(|c| c.max_rel)
            .fold(0.0, f64::max)
    }

    /// The loosest `(atol, rtol)` used.
    pub fn tolerance(&self) -> (f64, f64) {
        self.comparisons.iter().fold((0.0, 0.0), |(a, r), c| {
            (f64::max(a, c.atol), f64::max(r, c.rtol))
        })
    }

    /// The failing comparisons, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.comparisons
            .iter()
            .filter(|c| !c.pass())
            .map(|c| match &c.shape_mismatch {
                Some((e, g)) => format!("{}: expected shape {e:?}, got {g:?}", c.name),
                None => format!(
                    "{}: {} elements out of tolerance, max_abs={:.3e} max_rel={:.3e}",
                    c.name, c.failures, c.max_abs, c.max_rel
                ),
            })
            .collect()
    }
}

fn check_rank<const D: usize>(name: &str, shape: &[usize]) -> Result<()> {
    if shape.len() != D {
        return Err(Error::Shape {
            what: format!("fixture tensor `{name}` (rank {D} expected)"),
            expected: vec![],
            found: shape.to_vec(),
        });
    }
    Ok(())
}
