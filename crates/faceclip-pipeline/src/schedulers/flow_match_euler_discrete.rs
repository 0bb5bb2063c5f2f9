//! diffusers `FlowMatchEulerDiscreteScheduler` (0.33.1), with FluxPipeline's
//! resolution-dependent shift (`calculate_shift`) and sigma schedule.

use faceclip_core::{Error, Result, Tensor};
use serde::Deserialize;

use super::schedule;
use super::{Scheduler, config_constructors};

/// The dynamic shift's form (`time_shift_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeShiftType {
    /// `e^mu / (e^mu + (1/σ - 1))` (FLUX).
    Exponential,
    /// `mu / (mu + (1/σ - 1))`.
    Linear,
}

fn d_base_shift() -> Option<f64> {
    Some(0.5)
}
fn d_max_shift() -> Option<f64> {
    Some(1.15)
}
fn d_base_len() -> Option<usize> {
    Some(256)
}
fn d_max_len() -> Option<usize> {
    Some(4096)
}

/// `FlowMatchEulerDiscreteScheduler`'s `scheduler_config.json` (diffusers 0.33.1 defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct FlowMatchEulerDiscreteConfig {
    pub num_train_timesteps: usize,
    /// Static shift, used only when `use_dynamic_shifting` is false.
    pub shift: f64,
    pub use_dynamic_shifting: bool,
    #[serde(default = "d_base_shift")]
    pub base_shift: Option<f64>,
    #[serde(default = "d_max_shift")]
    pub max_shift: Option<f64>,
    #[serde(default = "d_base_len")]
    pub base_image_seq_len: Option<usize>,
    #[serde(default = "d_max_len")]
    pub max_image_seq_len: Option<usize>,
    pub invert_sigmas: bool,
    pub shift_terminal: Option<f64>,
    pub use_karras_sigmas: Option<bool>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    pub time_shift_type: TimeShiftType,
}

impl Default for FlowMatchEulerDiscreteConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            shift: 1.0,
            use_dynamic_shifting: false,
            base_shift: d_base_shift(),
            max_shift: d_max_shift(),
            base_image_seq_len: d_base_len(),
            max_image_seq_len: d_max_len(),
            invert_sigmas: false,
            shift_terminal: None,
            use_karras_sigmas: Some(false),
            use_exponential_sigmas: Some(false),
            use_beta_sigmas: Some(false),
            time_shift_type: TimeShiftType::Exponential,
        }
    }
}

/// FluxPipeline's `calculate_shift`: `mu` linear in the image token count through
/// `(base_seq_len, base_shift)` and `(max_seq_len, max_shift)`, not clamped (float64).
pub fn calculate_shift(
    image_seq_len: usize,
    base_seq_len: usize,
    max_seq_len: usize,
    base_shift: f64,
    max_shift: f64,
) -> f64 {
    let m = (max_shift - base_shift) / (max_seq_len as f64 - base_seq_len as f64);
    let b = base_shift - m * base_seq_len as f64;
    image_seq_len as f64 * m + b
}

/// A sigma array in the precision diffusers holds it in at that point (numpy float32 when the
/// caller passed sigmas, float64 when the scheduler made them).
enum Arr {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Arr {
    fn first(&self) -> f64 {
        match self {
            Arr::F32(v) => v[0] as f64,
            Arr::F64(v) => v[0],
        }
    }
    fn last(&self) -> f64 {
        match self {
            Arr::F32(v) => v[v.len() - 1] as f64,
            Arr::F64(v) => v[v.len() - 1],
        }
    }
    fn len(&self) -> usize {
        match self {
            Arr::F32(v) => v.len(),
            Arr::F64(v) => v.len(),
        }
    }
    fn to_f32(&self) -> Vec<f32> {
        match self {
            Arr::F32(v) => v.clone(),
            Arr::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

/// diffusers `FlowMatchEulerDiscreteScheduler`: `x' = x + (σ_next - σ)·v` on sigmas from 1
/// towards 0 (N+1 entries, the last 0), timesteps `σ·1000`.
///
/// [`Scheduler::set_timesteps`] follows FluxPipeline: sigmas `linspace(1, 1/N, N)` shifted by
/// `mu = calculate_shift(image_seq_len)` (set with [`Scheduler::set_image_seq_len`] when the
/// config uses dynamic shifting). [`Self::set_timesteps_with`] is diffusers' general
/// `set_timesteps(num_inference_steps, sigmas, mu)`.
#[derive(Debug, Clone)]
pub struct FlowMatchEulerDiscreteScheduler {
    config: FlowMatchEulerDiscreteConfig,
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    sigma_min: f32,
    sigma_max: f32,
    image_seq_len: Option<usize>,
    step_index: Option<usize>,
    begin_index: Option<usize>,
}

config_constructors!(
    FlowMatchEulerDiscreteScheduler,
    FlowMatchEulerDiscreteConfig
);

impl FlowMatchEulerDiscreteScheduler {
    /// Builds the training schedule (`σ = t/1000` for t = 1000..1, statically shifted unless
    /// `use_dynamic_shifting`).
    pub fn new(config: FlowMatchEulerDiscreteConfig) -> Result<Self> {
        let flags = [
            config.use_karras_sigmas,
            config.use_exponential_sigmas,
            config.use_beta_sigmas,
        ];
        if flags.iter().filter(|f| f.unwrap_or(false)).count() > 1 {
            return Err(Error::invalid(
                "only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be set",
            ));
        }
        if config.use_beta_sigmas.unwrap_or(false) {
            return Err(Error::invalid(
                "use_beta_sigmas is not supported by this port (needs scipy's beta ppf)",
            ));
        }
        let t = config.num_train_timesteps;
        if t < 1 {
            return Err(Error::invalid("num_train_timesteps must be at least 1"));
        }
        let tf = t as f32;
        let shift = config.shift;
        let sigmas: Vec<f32> = schedule::np_linspace(1.0, t as f64, t)
            .into_iter()
            .rev()
            .map(|x| {
                let s = x as f32 / tf;
                if config.use_dynamic_shifting {
                    s
                } else {
                    (shift as f32 * s) / (1.0 + (shift - 1.0) as f32 * s)
                }
            })
            .collect();
        let timesteps = sigmas.iter().map(|s| s * tf).collect();
        let (sigma_min, sigma_max) = (sigmas[sigmas.len() - 1], sigmas[0]);
        Ok(Self {
            config,
            timesteps,
            sigmas,
            sigma_min,
            sigma_max,
            image_seq_len: None,
            step_index: None,
            begin_index: None,
        })
    }

    /// The config this scheduler was built from.
    pub fn config(&self) -> &FlowMatchEulerDiscreteConfig {
        &self.config
    }

    /// The current sigmas (N+1 after `set_timesteps`, the training sigmas before).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The step index (None until the first `step` after `set_timesteps`).
    pub fn step_index(&self) -> Option<usize> {
        self.step_index
    }

    /// Starts the step counter at `begin_index` (diffusers `set_begin_index`).
    pub fn set_begin_index(&mut self, begin_index: usize) {
        self.begin_index = Some(begin_index);
    }

    /// `mu` for `image_seq_len` image tokens from this config's `base/max_image_seq_len` and
    /// `base/max_shift` (FluxPipeline's `calculate_shift`).
    pub fn mu_for(&self, image_seq_len: usize) -> Result<f64> {
        let c = &self.config;
        match (
            c.base_image_seq_len,
            c.max_image_seq_len,
            c.base_shift,
            c.max_shift,
        ) {
            (Some(bl), Some(ml), Some(bs), Some(ms)) => {
                if bl == ml {
                    return Err(Error::invalid(
                        "base_image_seq_len equals max_image_seq_len: no shift line",
                    ));
                }
                Ok(calculate_shift(image_seq_len, bl, ml, bs, ms))
            }
            _ => Err(Error::invalid(
                "config has null base_image_seq_len / max_image_seq_len / base_shift / max_shift; pass mu explicitly",
            )),
        }
    }

    /// Exactly FluxPipeline 0.33: sigmas `np.linspace(1, 1/N, N)`, `mu = calculate_shift(image_seq_len)`,
    /// then `set_timesteps(sigmas=..., mu=mu)`.
    pub fn set_timesteps_flux(
        &mut self,
        num_inference_steps: usize,
        image_seq_len: usize,
    ) -> Result<()> {
        if num_inference_steps == 0 {
            return Err(Error::invalid("num_inference_steps must be at least 1"));
        }
        let n = num_inference_steps;
        let sigmas = schedule::np_linspace(1.0, 1.0 / n as f64, n);
        let mu = self.mu_for(image_seq_len)?;
        self.set_timesteps_with(None, Some(&sigmas), Some(mu))
    }

    /// diffusers `set_timesteps(num_inference_steps, sigmas=..., mu=...)`: with `sigmas`
    /// (decreasing, N entries, cast to float32) they are shifted; without, N sigmas from
    /// `sigma_max` to `sigma_min` are made in float64. `mu` is required with dynamic shifting.
    pub fn set_timesteps_with(
        &mut self,
        num_inference_steps: Option<usize>,
        sigmas: Option<&[f64]>,
        mu: Option<f64>,
    ) -> Result<()> {
        let c = self.config.clone();
        if c.use_dynamic_shifting && mu.is_none() {
            return Err(Error::invalid(
                "mu must be given when use_dynamic_shifting is set (FLUX: set_image_seq_len / set_timesteps_flux)",
            ));
        }
        let tf = c.num_train_timesteps as f64;
        let mut arr = match (sigmas, num_inference_steps) {
            (Some(s), n) => {
                if n.is_some_and(|n| n != s.len()) {
                    return Err(Error::invalid(
                        "sigmas and num_inference_steps disagree in length",
                    ));
                }
                Arr::F32(s.iter().map(|&x| x as f32).collect())
            }
            (None, Some(n)) => {
                let ts = schedule::np_linspace(
                    self.sigma_max as f64 * tf,
                    self.sigma_min as f64 * tf,
                    n,
                );
                Arr::F64(ts.into_iter().map(|t| t / tf).collect())
            }
            (None, None) => return Err(Error::invalid("pass num_inference_steps or sigmas")),
        };
        if arr.len() == 0 {
            return Err(Error::invalid("num_inference_steps must be at least 1"));
        }
        let n = arr.len();
        // shift
        arr = if c.use_dynamic_shifting {
            let mu = mu.unwrap_or_default();
            let num = match c.time_shift_type {
                TimeShiftType::Exponential => mu.exp(),
                TimeShiftType::Linear => mu,
            };
            match arr {
                Arr::F32(v) => {
                    let e = num as f32;
                    Arr::F32(
                        v.into_iter()
                            .map(|t| e / (e + (1.0f32 / t - 1.0)))
                            .collect(),
                    )
                }
                Arr::F64(v) => Arr::F64(
                    v.into_iter()
                        .map(|t| num / (num + (1.0 / t - 1.0)))
                        .collect(),
                ),
            }
        } else {
            let s = c.shift;
            match arr {
                Arr::F32(v) => {
                    let (a, b) = (s as f32, (s - 1.0) as f32);
                    Arr::F32(v.into_iter().map(|x| a * x / (1.0 + b * x)).collect())
                }
                Arr::F64(v) => Arr::F64(
                    v.into_iter()
                        .map(|x| s * x / (1.0 + (s - 1.0) * x))
                        .collect(),
                ),
            }
        };
        if let Some(term) = c.shift_terminal.filter(|&t| t != 0.0) {
            arr = match arr {
                Arr::F32(v) => {
                    let omz: Vec<f32> = v.iter().map(|t| 1.0 - t).collect();
                    let scale = (omz[n - 1] as f64 / (1.0 - term)) as f32;
                    Arr::F32(omz.into_iter().map(|o| 1.0 - o / scale).collect())
                }
                Arr::F64(v) => {
                    let omz: Vec<f64> = v.iter().map(|t| 1.0 - t).collect();
                    let scale = omz[n - 1] / (1.0 - term);
                    Arr::F64(omz.into_iter().map(|o| 1.0 - o / scale).collect())
                }
            };
        }
        if c.use_karras_sigmas.unwrap_or(false) {
            arr = Arr::F64(schedule::karras_sigmas(arr.last(), arr.first(), n));
        } else if c.use_exponential_sigmas.unwrap_or(false) {
            arr = Arr::F64(schedule::exponential_sigmas(arr.last(), arr.first(), n));
        }
        let mut sig = arr.to_f32();
        let t32 = c.num_train_timesteps as f32;
        let timesteps: Vec<f32>;
        if c.invert_sigmas {
            sig = sig.into_iter().map(|s| 1.0 - s).collect();
            timesteps = sig.iter().map(|s| s * t32).collect();
            sig.push(1.0);
        } else {
            timesteps = sig.iter().map(|s| s * t32).collect();
            sig.push(0.0);
        }
        self.timesteps = timesteps;
        self.sigmas = sig;
        self.step_index = None;
        self.begin_index = None;
        Ok(())
    }

    fn init_step_index(&mut self, timestep: f32) -> Result<usize> {
        if let Some(i) = self.step_index {
            return Ok(i);
        }
        let i = match self.begin_index {
            Some(b) => b,
            None => schedule::index_for_timestep(&self.timesteps, timestep).ok_or_else(|| {
                Error::invalid(format!(
                    "timestep {timestep} is not one of the scheduler's timesteps"
                ))
            })?,
        };
        self.step_index = Some(i);
        Ok(i)
    }
}

impl Scheduler for FlowMatchEulerDiscreteScheduler {
    /// FluxPipeline's schedule: `linspace(1, 1/N, N)` shifted by `mu` of the image token
    /// count given to [`Scheduler::set_image_seq_len`] (required with dynamic shifting).
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        if num_inference_steps == 0 {
            return Err(Error::invalid("num_inference_steps must be at least 1"));
        }
        match (self.config.use_dynamic_shifting, self.image_seq_len) {
            (true, Some(len)) => self.set_timesteps_flux(num_inference_steps, len),
            (true, None) => Err(Error::invalid(
                "this flow-match config uses dynamic shifting: call set_image_seq_len before set_timesteps",
            )),
            (false, _) => {
                let n = num_inference_steps;
                let sigmas = schedule::np_linspace(1.0, 1.0 / n as f64, n);
                self.set_timesteps_with(None, Some(&sigmas), None)
            }
        }
    }

    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    /// 1: flow-match latents start as plain Gaussian noise.
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The identity (flow matching does not scale the model input).
    fn scale_model_input<const D: usize>(
        &mut self,
        sample: Tensor<D>,
        _timestep: f32,
    ) -> Result<Tensor<D>> {
        Ok(sample)
    }

    /// `sample + (σ_next - σ) · model_output` in float32.
    fn step<const D: usize>(
        &mut self,
        model_output: Tensor<D>,
        timestep: f32,
        sample: Tensor<D>,
    ) -> Result<Tensor<D>> {
        schedule::check_same_shape(
            "FlowMatchEulerDiscreteScheduler.step",
            &model_output,
            &sample,
        )?;
        let i = self.init_step_index(timestep)?;
        if i + 1 >= self.sigmas.len() {
            return Err(Error::invalid(format!(
                "step {i} is past the end of the {}-step schedule; call set_timesteps again",
                self.sigmas.len() - 1
            )));
        }
        let dt = self.sigmas[i + 1] - self.sigmas[i];
        self.step_index = Some(i + 1);
        Ok(sample.add(model_output.mul_scalar(dt)))
    }

    fn num_train_timesteps(&self) -> usize {
        self.config.num_train_timesteps
    }

    fn set_image_seq_len(&mut self, image_seq_len: usize) {
        self.image_seq_len = Some(image_seq_len);
    }
}
