//! The one loading path shared by every model.
//!
//! A model is built by walking its upstream key names with a [`VarBuilder`]: each layer asks
//! for its tensors by name and shape (`vb.pp("to_q").tensor("weight", [out, in])`). The
//! builder records every request, so that after the walk it can report, all at once, what the
//! weights lack, what they hold that the model does not expect, and which shapes differ.
//!
//! The same walk over a manifest (a listing of names and shapes, no data), or with no
//! weights at all, builds the model with lazy parameters that are never allocated: that is
//! how a full-size config is checked against a released checkpoint's layout.
//!
//! LoRA files attached with [`VarBuilder::with_loras`] are merged into each float weight
//! right after it is read (see [`crate::lora`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use burn::module::{Param, ParamId};
use burn::tensor::{Device, Int, Shape, Tensor, TensorData};

use crate::checkpoint::Checkpoint;
use crate::error::{CoverageReport, Error, Result};
use crate::lora::{LoraProblem, LoraSet};
#[cfg(feature = "flex")]
use crate::packed::CpuKernel;
use crate::packed::PackedMatrix;
use crate::quant::{QMatrix, QuantType};

/// Which linear weights are stored in blocks as they load (see [`VarBuilder::with_quant`]).
#[derive(Clone)]
struct QuantPlan {
    kind: QuantType,
    applies: Rc<dyn Fn(&str) -> bool>,
}

/// How [`VarBuilder::fetch`] reads a tensor.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// As `f32`, with the LoRA deltas merged.
    Float,
    /// As `i64`.
    Int,
    /// The stored bytes (blocks), as `u8`.
    Raw,
}

#[derive(Default)]
struct State {
    source: Option<Checkpoint>,
    /// Every key the model asked for, with the shape it expects (`None`: any shape).
    expected: BTreeMap<String, Option<Vec<usize>>>,
    missing: BTreeSet<String>,
    mismatched: BTreeMap<String, (Vec<usize>, Vec<usize>)>,
    unreadable: BTreeMap<String, String>,
    /// Checkpoint keys that may be present without being expected (e.g. an old buffer).
    tolerated: Vec<String>,
    loras: Option<LoraSet>,
    lora_problems: Vec<LoraProblem>,
    quant: Option<QuantPlan>,
    /// Bytes of the weights read so far, as the model holds them.
    loaded_bytes: u64,
}

/// Walks a model's key names and hands each layer its weights; see the module docs.
#[derive(Clone)]
pub struct VarBuilder {
    state: Rc<RefCell<State>>,
    prefix: String,
    device: Device,
}

impl VarBuilder {
    /// Loads from `checkpoint` onto `device`.
    pub fn from_checkpoint(checkpoint: Checkpoint, device: &Device) -> Self {
        Self {
            state: Rc::new(RefCell::new(State {
                source: Some(checkpoint),
                ..State::default()
            })),
            prefix: String::new(),
            device: device.clone(),
        }
    }

    /// Builds without weights: every parameter is lazy and never allocated unless used.
    /// [`VarBuilder::expected`] then lists the model's layout.
    pub fn dry(device: &Device) -> Self {
        Self {
            state: Rc::new(RefCell::new(State::default())),
            prefix: String::new(),
            device: device.clone(),
        }
    }

    /// Merges `loras` into the float weights the walk reads from now on (a listing or a
    /// dry run only checks that they fit). [`VarBuilder::finish`] then also fails on a LoRA
    /// problem or a LoRA module that matched no weight.
    pub fn with_loras(self, loras: LoraSet) -> Self {
        self.state.borrow_mut().loras = Some(loras);
        self
    }

    /// Stores the linear weights whose keys `applies` accepts in `kind`'s blocks, each quantized
    /// right after it is read (and LoRA-merged), so the full-precision weights are never all in
    /// memory. Weights stored in blocks already (a GGUF file) load as stored whatever is asked.
    pub fn with_quant(self, kind: QuantType, applies: impl Fn(&str) -> bool + 'static) -> Self {
        self.state.borrow_mut().quant = Some(QuantPlan {
            kind,
            applies: Rc::new(applies),
        });
        self
    }

    /// The device parameters are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A builder for the sub-module `name` (`vb.pp("encoder").pp(3)` -> `encoder.3.`).
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let name = name.to_string();
        Self {
            state: self.state.clone(),
            prefix: if self.prefix.is_empty() {
                name
            } else if name.is_empty() {
                self.prefix.clone()
            } else {
                format!("{}.{name}", self.prefix)
            },
            device: self.device.clone(),
        }
    }

    /// The full key of `name` under this builder's prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// True when the weights hold `name` (always false without weights).
    pub fn contains(&self, name: &str) -> bool {
        let key = self.key(name);
        self.state
            .borrow()
            .source
            .as_ref()
            .is_some_and(|c| c.info(&key).is_some())
    }

    /// True when this builder reads real data (not a dry run or a manifest listing).
    pub fn has_data(&self) -> bool {
        self.state
            .borrow()
            .source
            .as_ref()
            .is_some_and(|c| !c.is_listing())
    }

    /// Records `key` as expected with `shape`; returns the values when data is at hand, read
    /// as `read` says (float weights with the LoRA deltas merged), and releases the file's
    /// pages of the tensor.
    fn fetch(&self, name: &str, shape: &[usize], read: Read) -> Option<TensorData> {
        let key = self.key(name);
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        st.expected.insert(key.clone(), Some(shape.to_vec()));
        let source = st.source.as_ref()?;
        let Some(info) = source.info(&key) else {
            st.missing.insert(key);
            return None;
        };
        if info.shape != shape {
            let found = info.shape.clone();
            st.mismatched.insert(key, (shape.to_vec(), found));
            return None;
        }
        if source.is_listing() {
            if read == Read::Float
                && let Some(loras) = st.loras.as_mut()
                && let Err(p) = loras.merge(&key, shape, None)
            {
                st.lora_problems.push(p);
            }
            return None;
        }
        let read = match read {
            Read::Int => source.read_i64(&key).map(|(s, v)| TensorData::new(v, s)),
            Read::Float => source.read_f32(&key).map(|(s, mut v)| {
                if let Some(loras) = st.loras.as_mut()
                    && let Err(p) = loras.merge(&key, shape, Some(&mut v))
                {
                    st.lora_problems.push(p);
                }
                TensorData::new(v, s)
            }),
            Read::Raw => source.read_raw(&key).map(|(_, b)| {
                let n = b.len();
                TensorData::new(b, [n])
            }),
        };
        source.release(&key);
        match read {
            Ok(d) => Some(d),
            Err(e) => {
                st.unreadable.insert(key, e.to_string());
                None
            }
        }
    }

    /// A float parameter `name` of `shape`, in the upstream layout, converted to `f32`.
    pub fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Param<Tensor<D>> {
        match self.fetch(name, &shape, Read::Float) {
            Some(data) => {
                let t = Tensor::from_data(data, &self.device);
                self.count(t.shape().num_elements() as u64 * t.dtype().size() as u64);
                Param::initialized(ParamId::new(), t)
            }
            None => lazy_zeros(shape, &self.device),
        }
    }

    fn count(&self, bytes: u64) {
        self.state.borrow_mut().loaded_bytes += bytes;
    }

    /// Bytes of the float weights read so far, as the model holds them (blocks for quantized
    /// linear weights, the device's float type for the others).
    pub fn loaded_bytes(&self) -> u64 {
        self.state.borrow().loaded_bytes
    }

    /// A linear layer's weight `name` (`[out, in]`) in blocks, when the weights store it so
    /// or [`VarBuilder::with_quant`] asks for it; `None` otherwise (then read it with
    /// [`VarBuilder::tensor`], which also records a missing or mis-shaped key).
    pub fn linear_blocks(&self, name: &str, shape: [usize; 2]) -> Option<QMatrix> {
        let key = self.key(name);
        let (stored, plan, has_loras) = {
            let st = self.state.borrow();
            let source = st.source.as_ref()?;
            let info = source.info(&key)?;
            if info.shape != shape || source.is_listing() || !QMatrix::fits(shape[0], shape[1]) {
                return None;
            }
            let stored = info.dtype.quant();
            let plan = st
                .quant
                .as_ref()
                .filter(|p| (p.applies)(&key))
                .map(|p| p.kind);
            (stored, plan, st.loras.is_some())
        };
        let kind = stored.or(plan)?;
        // Sizes and shapes were checked on the way in (`fits`, the file's byte count), so
        // neither constructor can fail here.
        let q = if stored == Some(kind) && !has_loras {
            let blocks = self
                .fetch(name, &shape, Read::Raw)?
                .try_into_vec::<u8>()
                .ok()?;
            QMatrix::from_blocks(kind, shape[0], shape[1], blocks).ok()?
        } else {
            let data = self.fetch(name, &shape, Read::Float)?;
            QMatrix::quantize(kind, shape[0], shape[1], data.as_slice::<f32>().ok()?).ok()?
        };
        self.count(q.nbytes() as u64);
        Some(q)
    }

    /// A linear layer's weight `name` (`[out, in]`) packed for the CPU's GEMM kernel
    /// ([`crate::packed`]), when the device is the CPU (flex) computing in f32 or bf16, this
    /// CPU has a kernel for it and the weights are at hand; `None` otherwise (then read it
    /// with [`VarBuilder::tensor`], which also records a missing or mis-shaped key).
    pub fn linear_packed(&self, name: &str, shape: [usize; 2]) -> Option<PackedMatrix> {
        #[cfg(feature = "flex")]
        {
            use burn::tensor::FloatDType;
            if self.device != Device::flex() {
                return None;
            }
            let bf16 = match self.device.settings().float_dtype {
                FloatDType::F32 => false,
                FloatDType::BF16 => true,
                _ => return None,
            };
            let kernel = CpuKernel::detect(bf16)?;
            {
                let st = self.state.borrow();
                let source = st.source.as_ref()?;
                let info = source.info(&self.key(name))?;
                if info.shape != shape || source.is_listing() {
                    return None;
                }
            }
            let data = self.fetch(name, &shape, Read::Float)?;
            let packed =
                PackedMatrix::pack(kernel, shape[0], shape[1], data.as_slice::<f32>().ok()?)
                    .ok()?;
            self.count(packed.nbytes() as u64);
            Some(packed)
        }
        #[cfg(not(feature = "flex"))]
        {
            let _ = (name, shape);
            None
        }
    }

    /// A parameter of `shape` that is never allocated unless read (stands for a weight held
    /// elsewhere, e.g. in blocks).
    pub fn placeholder<const D: usize>(&self, shape: [usize; D]) -> Param<Tensor<D>> {
        lazy_zeros(shape, &self.device)
    }

    /// An integer buffer `name` of `shape` (read eagerly; zeros when absent).
    pub fn tensor_int<const D: usize>(&self, name: &str, shape: [usize; D]) -> Tensor<D, Int> {
        match self.fetch(name, &shape, Read::Int) {
            Some(data) => Tensor::from_data(data, &self.device),
            None => Tensor::zeros(shape, &self.device),
        }
    }

    /// Declares a tensor the checkpoint holds that inference never reads (BatchNorm's
    /// `num_batches_tracked`, a training-only head). It counts as expected, is shape-checked
    /// and is not loaded.
    pub fn expect_unused(&self, name: &str, shape: &[usize]) {
        let key = self.key(name);
        let mut st = self.state.borrow_mut();
        st.expected.insert(key.clone(), Some(shape.to_vec()));
        if let Some(source) = st.source.as_ref() {
            match source.info(&key).map(|i| i.shape.clone()) {
                None => {
                    st.missing.insert(key);
                }
                Some(found) if found != shape => {
                    st.mismatched.insert(key, (shape.to_vec(), found));
                }
                Some(_) => {}
            }
        }
    }

    /// Lets the weights hold `name` (under this prefix) without expecting it: an optional
    /// buffer that some files carry (`position_ids`).
    pub fn tolerate(&self, name: &str) {
        let key = self.key(name);
        self.state.borrow_mut().tolerated.push(key);
    }

    /// Every key the walk expected so far, with its shape.
    pub fn expected(&self) -> Vec<(String, Vec<usize>)> {
        self.state
            .borrow()
            .expected
            .iter()
            .map(|(k, s)| (k.clone(), s.clone().unwrap_or_default()))
            .collect()
    }

    /// How the weights cover the model walked so far.
    pub fn report(&self) -> CoverageReport {
        let st = self.state.borrow();
        let mut report = CoverageReport {
            source: st
                .source
                .as_ref()
                .map(|c| c.path().display().to_string())
                .unwrap_or_else(|| "(none)".into()),
            missing: st.missing.iter().cloned().collect(),
            mismatched: st
                .mismatched
                .iter()
                .map(|(k, (e, f))| (k.clone(), e.clone(), f.clone()))
                .collect(),
            unreadable: st
                .unreadable
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            expected: st.expected.len(),
            unexpected: Vec::new(),
        };
        if let Some(source) = st.source.as_ref() {
            report.unexpected = source
                .list()
                .into_iter()
                .map(|i| i.name)
                .filter(|k| !st.expected.contains_key(k) && !st.tolerated.iter().any(|t| t == k))
                .collect();
        }
        report
    }

    /// Ends the walk: `Ok` with the report when the weights match the model exactly,
    /// otherwise [`Error::Coverage`] listing every problem. With LoRAs attached, then an
    /// [`Error::Checkpoint`] naming the LoRA file and module for the first LoRA that does not
    /// fit its weight, or that matched no weight the model asked for.
    pub fn finish(&self) -> Result<CoverageReport> {
        let report = self.report();
        if !report.is_exact() {
            return Err(Error::Coverage(Box::new(report)));
        }
        let st = self.state.borrow();
        if let Some(p) = st.lora_problems.first() {
            return Err(p.error(st.lora_problems.len() - 1));
        }
        if let Some(e) = st.loras.as_ref().and_then(LoraSet::unmatched_error) {
            return Err(e);
        }
        Ok(report)
    }
}

fn lazy_zeros<const D: usize>(shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::uninitialized(
        ParamId::new(),
        move |dev: &Device, _| Tensor::zeros(shape, dev),
        device.clone(),
        false,
        Shape::from(shape),
    )
}
