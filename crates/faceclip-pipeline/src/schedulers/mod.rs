//! Diffusion schedulers reading diffusers' `scheduler_config.json` unchanged (serde; unknown
//! keys such as `_class_name` are ignored, absent keys take diffusers 0.33's defaults).
//!
//! | type | upstream class | fixture-checked |
//! | --- | --- | --- |
//! | [`EulerDiscreteScheduler`] | `EulerDiscreteScheduler` (SDXL) | yes: `scheduler_euler` |
//! | [`FlowMatchEulerDiscreteScheduler`] | `FlowMatchEulerDiscreteScheduler` (FLUX) | yes: `scheduler_flow_match` |
//! | [`EulerAncestralDiscreteScheduler`] | `EulerAncestralDiscreteScheduler` | no (consistency tests only) |
//! | [`DdimScheduler`] | `DDIMScheduler` | no (consistency tests only) |
//! | [`DpmSolverMultistepScheduler`] | `DPMSolverMultistepScheduler` (DPM++ 2M, Karras) | no (consistency tests only) |
//!
//! All of them implement [`Scheduler`], which a pipeline drives generically; [`AnyScheduler`]
//! picks one at run time from a config's `_class_name` or a [`SchedulerKind`] name.
//! The schedule (timesteps, sigmas, step coefficients) is computed on the host in the float
//! precision diffusers uses; the tensor arithmetic of a step runs on the tensors' device.
//! Noise (ancestral / DDIM eta / SDE steps) comes from a host-side seeded [`Generator`].

pub mod ddim;
pub mod dpmsolver_multistep;
pub mod euler_ancestral_discrete;
pub mod euler_discrete;
pub mod flow_match_euler_discrete;
#[cfg(feature = "parity")]
pub mod parity;
pub mod rng;
pub mod rng_torch;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use faceclip_core::burn::tensor::{DType, FloatDType};
use faceclip_core::{Error, Result, Tensor};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use ddim::{DdimConfig, DdimScheduler};
pub use dpmsolver_multistep::{DpmSolverMultistepConfig, DpmSolverMultistepScheduler};
pub use euler_ancestral_discrete::{EulerAncestralDiscreteConfig, EulerAncestralDiscreteScheduler};
pub use euler_discrete::{EulerDiscreteConfig, EulerDiscreteScheduler, SchedulerStepOutput};
pub use flow_match_euler_discrete::{
    FlowMatchEulerDiscreteConfig, FlowMatchEulerDiscreteScheduler, calculate_shift,
};
pub use rng::Generator;
pub use rng_torch::{NoiseSource, TorchGenerator, TorchKernel, initial_noise};
pub use schedule::{BetaSchedule, FinalSigmasType, PredictionType, TimestepSpacing};

/// What a denoising loop needs from a scheduler, in diffusers' calling convention:
///
/// ```text
/// s.set_timesteps(n)?;
/// let mut x = noise * s.init_noise_sigma();
/// for &t in s.timesteps().to_vec().iter() {
///     let inp = s.scale_model_input(x.clone(), t)?;
///     let out = model(inp, t);
///     x = s.step(out, t, x)?;
/// }
/// ```
///
/// `timestep` values are those of [`Scheduler::timesteps`]; the step index is found lazily from
/// the first value passed after `set_timesteps` (the second match when a value repeats) and
/// then counts up, exactly as in diffusers.
pub trait Scheduler {
    /// Builds the inference schedule of `num_inference_steps` steps (diffusers `set_timesteps(N)`).
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()>;
    /// The inference timesteps, in the order the loop visits them (float32 as diffusers keeps
    /// them; integer-valued for DDIM and DPM-Solver).
    fn timesteps(&self) -> &[f32];
    /// The factor the initial Gaussian noise is multiplied by.
    fn init_noise_sigma(&self) -> f32;
    /// Scales the denoiser input for `timestep` (identity for DDIM, DPM-Solver and flow match).
    fn scale_model_input<const D: usize>(
        &mut self,
        sample: Tensor<D>,
        timestep: f32,
    ) -> Result<Tensor<D>>;
    /// One denoising step: the sample at the next (less noisy) timestep.
    fn step<const D: usize>(
        &mut self,
        model_output: Tensor<D>,
        timestep: f32,
        sample: Tensor<D>,
    ) -> Result<Tensor<D>>;
    /// `num_train_timesteps` of the config.
    fn num_train_timesteps(&self) -> usize;
    /// The image token count for resolution-dependent shifting (FLUX's `calculate_shift`); only
    /// [`FlowMatchEulerDiscreteScheduler`] with `use_dynamic_shifting` uses it. Call before
    /// [`Scheduler::set_timesteps`].
    fn set_image_seq_len(&mut self, _image_seq_len: usize) {}
    /// Replaces the generator that stochastic steps draw their noise from (no-op for
    /// deterministic schedulers).
    fn set_generator(&mut self, _generator: Generator) {}
}

/// Reads a `scheduler_config.json`: `path` is the file itself, or a folder holding
/// `scheduler_config.json` or `scheduler/scheduler_config.json` (a diffusers model folder).
/// Returns the file read and its JSON.
pub fn read_scheduler_config(path: impl AsRef<Path>) -> Result<(PathBuf, Value)> {
    let path = path.as_ref();
    let file = if path.is_dir() {
        let candidates = [
            path.join("scheduler_config.json"),
            path.join("scheduler").join("scheduler_config.json"),
        ];
        candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
            Error::config(
                path,
                "folder holds neither scheduler_config.json nor scheduler/scheduler_config.json",
            )
        })?
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let value: Value = serde_json::from_str(&quote_python_non_finite(&text))
        .map_err(|e| Error::config(&file, e))?;
    if !value.is_object() {
        return Err(Error::config(
            &file,
            "a scheduler config must be a JSON object",
        ));
    }
    Ok((file, value))
}

/// Python's `json` writes `-Infinity`, `Infinity` and `NaN` bare (e.g. DPM-Solver's
/// `lambda_min_clipped`); JSON has no such numbers, so they are quoted outside strings.
fn quote_python_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if in_str {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_str = false;
            }
        } else if ch == '"' {
            in_str = true;
        } else if let Some(tok) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push('"');
            out.push_str(tok);
            out.push('"');
            rest = &rest[tok.len()..];
            continue;
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// Deserialises a typed scheduler config (`null` reads as `{}`); `source` names the file in errors.
pub(crate) fn parse_config<T: DeserializeOwned>(value: &Value, source: Option<&Path>) -> Result<T> {
    let src = source
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("<scheduler config>"));
    // a missing config (null) means all defaults
    let value = if value.is_null() {
        Value::Object(Default::default())
    } else {
        value.clone()
    };
    serde_json::from_value(value).map_err(|e| Error::config(src, e))
}

/// Adds `from_config_value` / `from_config_file` to a scheduler with a `new(config)`.
macro_rules! config_constructors {
    ($ty:ty, $cfg:ty) => {
        impl $ty {
            /// Builds the scheduler from a `scheduler_config.json` already parsed to JSON.
            pub fn from_config_value(value: &serde_json::Value) -> faceclip_core::Result<Self> {
                Self::new($crate::schedulers::parse_config::<$cfg>(value, None)?)
            }

            /// Builds the scheduler from a `scheduler_config.json` file, or a folder holding
            /// one (see [`read_scheduler_config`](crate::schedulers::read_scheduler_config)).
            pub fn from_config_file(
                path: impl AsRef<std::path::Path>,
            ) -> faceclip_core::Result<Self> {
                let (file, value) = $crate::schedulers::read_scheduler_config(path)?;
                let config = $crate::schedulers::parse_config::<$cfg>(&value, Some(&file))?;
                Self::new(config).map_err(|e| faceclip_core::Error::config(&file, e))
            }
        }
    };
}
pub(crate) use config_constructors;

/// A scheduler chosen at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// `EulerDiscreteScheduler` (names: `euler`).
    EulerDiscrete,
    /// `EulerAncestralDiscreteScheduler` (names: `euler-a`, `euler-ancestral`).
    EulerAncestralDiscrete,
    /// `FlowMatchEulerDiscreteScheduler` (names: `flow-match`).
    FlowMatchEulerDiscrete,
    /// `DDIMScheduler` (names: `ddim`).
    Ddim,
    /// `DPMSolverMultistepScheduler` with the config as given.
    DpmSolverMultistep,
    /// DPM++ 2M: `DPMSolverMultistepScheduler` forced to `dpmsolver++`, order 2, midpoint,
    /// with `use_karras_sigmas = karras` (names: `dpm++2m`, `dpm++2m-karras`).
    DpmPp2M { karras: bool },
}

impl SchedulerKind {
    /// The kind of a diffusers `_class_name`.
    pub fn from_class_name(name: &str) -> Option<Self> {
        Some(match name {
            "EulerDiscreteScheduler" => Self::EulerDiscrete,
            "EulerAncestralDiscreteScheduler" => Self::EulerAncestralDiscrete,
            "FlowMatchEulerDiscreteScheduler" => Self::FlowMatchEulerDiscrete,
            "DDIMScheduler" => Self::Ddim,
            "DPMSolverMultistepScheduler" => Self::DpmSolverMultistep,
            _ => return None,
        })
    }

    /// The diffusers class this kind builds.
    pub fn class_name(&self) -> &'static str {
        match self {
            Self::EulerDiscrete => "EulerDiscreteScheduler",
            Self::EulerAncestralDiscrete => "EulerAncestralDiscreteScheduler",
            Self::FlowMatchEulerDiscrete => "FlowMatchEulerDiscreteScheduler",
            Self::Ddim => "DDIMScheduler",
            Self::DpmSolverMultistep | Self::DpmPp2M { .. } => "DPMSolverMultistepScheduler",
        }
    }

    /// The short name (one of [`Self::NAMES`], or the class name).
    pub fn name(&self) -> &'static str {
        match self {
            Self::EulerDiscrete => "euler",
            Self::EulerAncestralDiscrete => "euler-a",
            Self::FlowMatchEulerDiscrete => "flow-match",
            Self::Ddim => "ddim",
            Self::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            Self::DpmPp2M { karras: false } => "dpm++2m",
            Self::DpmPp2M { karras: true } => "dpm++2m-karras",
        }
    }

    /// The short names [`FromStr`] accepts (besides the class names).
    pub const NAMES: &'static [&'static str] = &[
        "euler",
        "euler-a",
        "flow-match",
        "ddim",
        "dpm++2m",
        "dpm++2m-karras",
    ];

    /// Parses a short or class name (see [`FromStr`]).
    pub fn parse(name: &str) -> Result<Self> {
        name.parse()
    }

    /// The pipelines' default: flow match for FLUX, Euler for SDXL.
    pub fn default_for(is_flux: bool) -> Self {
        if is_flux {
            Self::FlowMatchEulerDiscrete
        } else {
            Self::EulerDiscrete
        }
    }

    /// True for the kinds that fit a flow-matching model (FLUX); the others are for
    /// epsilon/v-prediction models (SDXL).
    pub fn is_flow_matching(&self) -> bool {
        matches!(self, Self::FlowMatchEulerDiscrete)
    }
}

impl FromStr for SchedulerKind {
    type Err = Error;

    /// A class name or a short name; case, `_` vs `-` and `pp` vs `++` do not matter.
    fn from_str(s: &str) -> Result<Self> {
        if let Some(k) = Self::from_class_name(s) {
            return Ok(k);
        }
        let n = s
            .trim()
            .to_ascii_lowercase()
            .replace('_', "-")
            .replace("++", "pp");
        Ok(match n.as_str() {
            "euler" | "euler-discrete" => Self::EulerDiscrete,
            "euler-a" | "euler-ancestral" | "euler-ancestral-discrete" => {
                Self::EulerAncestralDiscrete
            }
            "flow-match" | "flowmatch" | "flow-match-euler" | "flow-match-euler-discrete" => {
                Self::FlowMatchEulerDiscrete
            }
            "ddim" => Self::Ddim,
            "dpm-solver" | "dpmsolver" | "dpmsolver-multistep" | "dpm-solver-multistep" => {
                Self::DpmSolverMultistep
            }
            "dpmpp2m" | "dpmpp-2m" => Self::DpmPp2M { karras: false },
            "dpmpp2m-karras" | "dpmpp-2m-karras" => Self::DpmPp2M { karras: true },
            _ => {
                return Err(Error::invalid(format!(
                    "unknown scheduler `{s}`; expected one of {} or a diffusers class name",
                    Self::NAMES.join(", ")
                )));
            }
        })
    }
}

/// One of the ported schedulers, chosen at run time.
#[derive(Debug, Clone)]
pub enum AnyScheduler {
    EulerDiscrete(EulerDiscreteScheduler),
    EulerAncestralDiscrete(EulerAncestralDiscreteScheduler),
    FlowMatchEulerDiscrete(FlowMatchEulerDiscreteScheduler),
    Ddim(DdimScheduler),
    DpmSolverMultistep(DpmSolverMultistepScheduler),
}

impl AnyScheduler {
    /// Builds the class named by the config's `_class_name`.
    pub fn from_config_value(value: &Value) -> Result<Self> {
        let kind = class_of(value, None)?;
        Self::with_kind(kind, value)
    }

    /// Builds the class named by `_class_name` of a `scheduler_config.json` (file or folder).
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Self> {
        let (file, value) = read_scheduler_config(path)?;
        let kind = class_of(&value, Some(&file))?;
        Self::with_kind(kind, &value).map_err(|e| match e {
            Error::Config { .. } => e,
            e => Error::config(&file, e),
        })
    }

    /// Builds `kind` from another scheduler's config, as diffusers' `Kind.from_config(config)`
    /// does (the keys `kind` knows are taken, the others ignored).
    pub fn with_kind(kind: SchedulerKind, value: &Value) -> Result<Self> {
        Ok(match kind {
            SchedulerKind::EulerDiscrete => {
                Self::EulerDiscrete(EulerDiscreteScheduler::from_config_value(value)?)
            }
            SchedulerKind::EulerAncestralDiscrete => Self::EulerAncestralDiscrete(
                EulerAncestralDiscreteScheduler::from_config_value(value)?,
            ),
            SchedulerKind::FlowMatchEulerDiscrete => Self::FlowMatchEulerDiscrete(
                FlowMatchEulerDiscreteScheduler::from_config_value(value)?,
            ),
            SchedulerKind::Ddim => Self::Ddim(DdimScheduler::from_config_value(value)?),
            SchedulerKind::DpmSolverMultistep => {
                Self::DpmSolverMultistep(DpmSolverMultistepScheduler::from_config_value(value)?)
            }
            SchedulerKind::DpmPp2M { karras } => {
                let mut v = if value.is_null() {
                    Value::Object(Default::default())
                } else {
                    value.clone()
                };
                if let Some(o) = v.as_object_mut() {
                    o.insert("algorithm_type".into(), "dpmsolver++".into());
                    o.insert("solver_order".into(), 2.into());
                    o.insert("solver_type".into(), "midpoint".into());
                    o.insert("use_karras_sigmas".into(), karras.into());
                    o.insert("use_exponential_sigmas".into(), false.into());
                    o.insert("use_beta_sigmas".into(), false.into());
                    o.insert("use_lu_lambdas".into(), false.into());
                }
                Self::DpmSolverMultistep(DpmSolverMultistepScheduler::from_config_value(&v)?)
            }
        })
    }

    /// The class this scheduler is.
    pub fn kind(&self) -> SchedulerKind {
        match self {
            Self::EulerDiscrete(_) => SchedulerKind::EulerDiscrete,
            Self::EulerAncestralDiscrete(_) => SchedulerKind::EulerAncestralDiscrete,
            Self::FlowMatchEulerDiscrete(_) => SchedulerKind::FlowMatchEulerDiscrete,
            Self::Ddim(_) => SchedulerKind::Ddim,
            Self::DpmSolverMultistep(_) => SchedulerKind::DpmSolverMultistep,
        }
    }
}

fn class_of(value: &Value, file: Option<&Path>) -> Result<SchedulerKind> {
    let src = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("<scheduler config>"));
    let name = value
        .get("_class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::config(
                &src,
                "no string `_class_name`; name the scheduler kind explicitly",
            )
        })?;
    SchedulerKind::from_class_name(name).ok_or_else(|| {
        Error::config(
            &src,
            format!(
                "scheduler class `{name}` is not ported (ported: EulerDiscreteScheduler, \
                 EulerAncestralDiscreteScheduler, FlowMatchEulerDiscreteScheduler, DDIMScheduler, \
                 DPMSolverMultistepScheduler)"
            ),
        )
    })
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyScheduler::EulerDiscrete($s) => $e,
            AnyScheduler::EulerAncestralDiscrete($s) => $e,
            AnyScheduler::FlowMatchEulerDiscrete($s) => $e,
            AnyScheduler::Ddim($s) => $e,
            AnyScheduler::DpmSolverMultistep($s) => $e,
        }
    };
}

impl Scheduler for AnyScheduler {
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        dispatch!(self, s => s.set_timesteps(num_inference_steps))
    }
    fn timesteps(&self) -> &[f32] {
        dispatch!(self, s => Scheduler::timesteps(s))
    }
    fn init_noise_sigma(&self) -> f32 {
        dispatch!(self, s => s.init_noise_sigma())
    }
    fn scale_model_input<const D: usize>(
        &mut self,
        sample: Tensor<D>,
        timestep: f32,
    ) -> Result<Tensor<D>> {
        dispatch!(self, s => s.scale_model_input(sample, timestep))
    }
    fn step<const D: usize>(
        &mut self,
        model_output: Tensor<D>,
        timestep: f32,
        sample: Tensor<D>,
    ) -> Result<Tensor<D>> {
        // As diffusers: the update is computed in float32 whatever the model's precision, so
        // that bf16/f16 rounding does not accumulate over the steps.
        let dtype = sample.dtype();
        if dtype == DType::F32 {
            return dispatch!(self, s => Scheduler::step(s, model_output, timestep, sample));
        }
        let (m, x) = (
            model_output.cast(FloatDType::F32),
            sample.cast(FloatDType::F32),
        );
        let out = dispatch!(self, s => Scheduler::step(s, m, timestep, x))?;
        Ok(out.cast(FloatDType::from(dtype)))
    }
    fn num_train_timesteps(&self) -> usize {
        dispatch!(self, s => s.num_train_timesteps())
    }
    fn set_image_seq_len(&mut self, image_seq_len: usize) {
        dispatch!(self, s => s.set_image_seq_len(image_seq_len))
    }
    fn set_generator(&mut self, generator: Generator) {
        dispatch!(self, s => s.set_generator(generator))
    }
}
