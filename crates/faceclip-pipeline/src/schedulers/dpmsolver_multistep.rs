//! diffusers `DPMSolverMultistepScheduler` (0.33.1): DPM-Solver / DPM-Solver++ (orders 1–3,
//! midpoint or Heun), e.g. "DPM++ 2M" and "DPM++ 2M Karras". Not fixture-checked: tested for
//! internal consistency only.

use faceclip_core::{Error, Result, Tensor};
use serde::{Deserialize, Deserializer};

use super::rng::Generator;
use super::schedule::{self, BetaSchedule, FinalSigmasType, PredictionType, TimestepSpacing};
use super::{Scheduler, config_constructors};

/// `algorithm_type` (`deis` reads as `dpmsolver++`, as diffusers does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AlgorithmType {
    #[serde(rename = "dpmsolver")]
    DpmSolver,
    #[serde(rename = "dpmsolver++", alias = "deis")]
    DpmSolverPp,
    #[serde(rename = "sde-dpmsolver")]
    SdeDpmSolver,
    #[serde(rename = "sde-dpmsolver++")]
    SdeDpmSolverPp,
}

/// `solver_type` of the second-order update (`logrho`, `bh1`, `bh2` read as `midpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverType {
    #[serde(alias = "logrho", alias = "bh1", alias = "bh2")]
    Midpoint,
    Heun,
}

/// A float that may be written as Python's JSON `-Infinity` / `Infinity` / `NaN` (which
/// [`read_scheduler_config`](super::read_scheduler_config) turns into strings).
fn py_float<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        N(f64),
        S(String),
    }
    match Option::<F>::deserialize(d)? {
        None => Ok(f64::NEG_INFINITY),
        Some(F::N(x)) => Ok(x),
        Some(F::S(s)) => match s.as_str() {
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "NaN" | "nan" => Ok(f64::NAN),
            _ => Err(serde::de::Error::custom(format!(
                "expected a number, got `{s}`"
            ))),
        },
    }
}

/// `DPMSolverMultistepScheduler`'s `scheduler_config.json` (diffusers 0.33.1 defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DpmSolverMultistepConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub solver_order: usize,
    pub prediction_type: PredictionType,
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    pub sample_max_value: f64,
    pub algorithm_type: AlgorithmType,
    pub solver_type: SolverType,
    pub lower_order_final: bool,
    pub euler_at_final: bool,
    pub use_karras_sigmas: Option<bool>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    pub use_lu_lambdas: Option<bool>,
    pub use_flow_sigmas: Option<bool>,
    pub flow_shift: Option<f64>,
    pub final_sigmas_type: Option<FinalSigmasType>,
    #[serde(deserialize_with = "py_float")]
    pub lambda_min_clipped: f64,
    pub variance_type: Option<String>,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: i64,
    pub rescale_betas_zero_snr: bool,
}

impl Default for DpmSolverMultistepConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            solver_order: 2,
            prediction_type: PredictionType::Epsilon,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            sample_max_value: 1.0,
            algorithm_type: AlgorithmType::DpmSolverPp,
            solver_type: SolverType::Midpoint,
            lower_order_final: true,
            euler_at_final: false,
            use_karras_sigmas: Some(false),
            use_exponential_sigmas: Some(false),
            use_beta_sigmas: Some(false),
            use_lu_lambdas: Some(false),
            use_flow_sigmas: Some(false),
            flow_shift: Some(1.0),
            final_sigmas_type: Some(FinalSigmasType::Zero),
            lambda_min_clipped: f64::NEG_INFINITY,
            variance_type: None,
            timestep_spacing: TimestepSpacing::Linspace,
            steps_offset: 0,
            rescale_betas_zero_snr: false,
        }
    }
}

/// A converted model output kept for the multistep update (flattened, with its shape).
#[derive(Debug, Clone)]
struct Stored {
    data: Tensor<1>,
    dims: Vec<usize>,
}

/// diffusers `DPMSolverMultistepScheduler`. The default config is DPM++ 2M
/// (`dpmsolver++`, order 2, midpoint, lower-order final steps); `use_karras_sigmas` gives
/// DPM++ 2M Karras. Sigmas have N+1 entries (the last `final_sigmas_type`); the step
/// coefficients are computed in float32 on the host; SDE variants draw noise from the
/// scheduler's [`Generator`].
#[derive(Debug, Clone)]
pub struct DpmSolverMultistepScheduler {
    config: DpmSolverMultistepConfig,
    alphas_cumprod: Vec<f32>,
    train_sigmas: Vec<f32>,
    lambda_t: Vec<f32>,
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    num_inference_steps: Option<usize>,
    model_outputs: Vec<Option<Stored>>,
    lower_order_nums: usize,
    step_index: Option<usize>,
    begin_index: Option<usize>,
    generator: Generator,
}

config_constructors!(DpmSolverMultistepScheduler, DpmSolverMultistepConfig);

/// `_sigma_to_alpha_sigma_t` in float32.
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

impl DpmSolverMultistepScheduler {
    /// Builds the training schedule.
    pub fn new(config: DpmSolverMultistepConfig) -> Result<Self> {
        let on = |f: Option<bool>| f.unwrap_or(false);
        let flags = [
            config.use_karras_sigmas,
            config.use_exponential_sigmas,
            config.use_beta_sigmas,
        ];
        if flags.iter().filter(|f| on(**f)).count() > 1 {
            return Err(Error::invalid(
                "only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be set",
            ));
        }
        if on(config.use_beta_sigmas) {
            return Err(Error::invalid(
                "use_beta_sigmas is not supported by this port (needs scipy's beta ppf)",
            ));
        }
        if on(config.use_flow_sigmas) {
            return Err(Error::invalid(
                "use_flow_sigmas is not supported by this port",
            ));
        }
        if !(1..=3).contains(&config.solver_order) {
            return Err(Error::invalid(format!(
                "solver_order must be 1, 2 or 3, got {}",
                config.solver_order
            )));
        }
        if config
            .variance_type
            .as_deref()
            .is_some_and(|v| v.starts_with("learned"))
        {
            return Err(Error::invalid(
                "variance_type learned / learned_range is not supported by this port",
            ));
        }
        if config.prediction_type == PredictionType::OriginalSample
            || config.prediction_type == PredictionType::FlowPrediction
        {
            return Err(Error::invalid(format!(
                "DPMSolverMultistepScheduler here supports prediction_type epsilon, sample and v_prediction, not {:?}",
                config.prediction_type
            )));
        }
        let final_type = config.final_sigmas_type.unwrap_or(FinalSigmasType::Zero);
        let pp = matches!(
            config.algorithm_type,
            AlgorithmType::DpmSolverPp | AlgorithmType::SdeDpmSolverPp
        );
        if !pp && final_type == FinalSigmasType::Zero {
            return Err(Error::invalid(format!(
                "final_sigmas_type zero is not supported for algorithm_type {:?}; use sigma_min",
                config.algorithm_type
            )));
        }
        if config.algorithm_type == AlgorithmType::SdeDpmSolver && config.solver_order == 3 {
            return Err(Error::invalid("sde-dpmsolver has no third-order update"));
        }
        let betas = schedule::betas(
            config.num_train_timesteps,
            config.beta_start,
            config.beta_end,
            config.beta_schedule,
            config.trained_betas.as_deref(),
            config.rescale_betas_zero_snr,
        )?;
        let mut alphas_cumprod = schedule::alphas_cumprod(&betas);
        if config.rescale_betas_zero_snr
            && let Some(last) = alphas_cumprod.last_mut()
        {
            *last = 2f32.powi(-24);
        }
        let lambda_t = alphas_cumprod
            .iter()
            .map(|&a| a.sqrt().ln() - (1.0 - a).sqrt().ln())
            .collect();
        let train_sigmas = schedule::train_sigmas(&alphas_cumprod);
        let t = alphas_cumprod.len();
        let timesteps = schedule::np_linspace(0.0, (t - 1) as f64, t)
            .into_iter()
            .rev()
            .map(|x| x as f32)
            .collect();
        let order = config.solver_order;
        Ok(Self {
            config,
            alphas_cumprod,
            sigmas: train_sigmas.clone(),
            train_sigmas,
            lambda_t,
            timesteps,
            num_inference_steps: None,
            model_outputs: vec![None; order],
            lower_order_nums: 0,
            step_index: None,
            begin_index: None,
            generator: Generator::default(),
        })
    }

    /// The config this scheduler was built from.
    pub fn config(&self) -> &DpmSolverMultistepConfig {
        &self.config
    }

    /// `alphas_cumprod` (float32).
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// The current sigmas (N+1 after `set_timesteps`, the last `final_sigmas_type`).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// Starts the step counter at `begin_index` (diffusers `set_begin_index`).
    pub fn set_begin_index(&mut self, begin_index: usize) {
        self.begin_index = Some(begin_index);
    }

    fn init_step_index(&mut self, timestep: f32) -> usize {
        if let Some(i) = self.step_index {
            return i;
        }
        let i = self.begin_index.unwrap_or_else(|| {
            schedule::index_for_timestep(&self.timesteps, timestep)
                .unwrap_or(self.timesteps.len().saturating_sub(1))
        });
        self.step_index = Some(i);
        i
    }

    fn convert_model_output<const D: usize>(
        &self,
        model_output: Tensor<D>,
        sample: &Tensor<D>,
        i: usize,
    ) -> Result<Tensor<D>> {
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[i]);
        let pp = matches!(
            self.config.algorithm_type,
            AlgorithmType::DpmSolverPp | AlgorithmType::SdeDpmSolverPp
        );
        let threshold = |x: Tensor<D>| -> Result<Tensor<D>> {
            if self.config.thresholding {
                schedule::threshold_sample(
                    x,
                    self.config.dynamic_thresholding_ratio,
                    self.config.sample_max_value,
                )
            } else {
                Ok(x)
            }
        };
        if pp {
            let x0 = match self.config.prediction_type {
                PredictionType::Epsilon => sample
                    .clone()
                    .sub(model_output.mul_scalar(sigma_t))
                    .div_scalar(alpha_t),
                PredictionType::Sample => model_output,
                PredictionType::VPrediction => sample
                    .clone()
                    .mul_scalar(alpha_t)
                    .sub(model_output.mul_scalar(sigma_t)),
                p => return Err(Error::invalid(format!("unsupported prediction_type {p:?}"))),
            };
            threshold(x0)
        } else {
            let eps = match self.config.prediction_type {
                PredictionType::Epsilon => model_output,
                PredictionType::Sample => sample
                    .clone()
                    .sub(model_output.mul_scalar(alpha_t))
                    .div_scalar(sigma_t),
                PredictionType::VPrediction => model_output
                    .mul_scalar(alpha_t)
                    .add(sample.clone().mul_scalar(sigma_t)),
                p => return Err(Error::invalid(format!("unsupported prediction_type {p:?}"))),
            };
            if self.config.thresholding {
                let x0 = sample
                    .clone()
                    .sub(eps.mul_scalar(sigma_t))
                    .div_scalar(alpha_t);
                let x0 = threshold(x0)?;
                Ok(sample
                    .clone()
                    .sub(x0.mul_scalar(alpha_t))
                    .div_scalar(sigma_t))
            } else {
                Ok(eps)
            }
        }
    }

    fn stored<const D: usize>(&self, k: usize) -> Result<Tensor<D>> {
        let s = self.model_outputs[k]
            .as_ref()
            .ok_or_else(|| Error::invalid("DPM-Solver history is missing a model output"))?;
        let dims: [usize; D] = s.dims.clone().try_into().map_err(|_| {
            Error::shape(
                "DPM-Solver stored model output (rank)",
                &[D],
                &[s.dims.len()],
            )
        })?;
        Ok(s.data.clone().reshape(dims))
    }
}

/// `lambda = ln(alpha) - ln(sigma)` of a sigma (float32).
fn lambda_of(sigma: f32) -> (f32, f32, f32) {
    let (a, s) = alpha_sigma(sigma);
    (a, s, a.ln() - s.ln())
}

impl Scheduler for DpmSolverMultistepScheduler {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::invalid("num_inference_steps must be at least 1"));
        }
        let c = &self.config;
        let t_train = c.num_train_timesteps;
        // searchsorted(flip(lambda_t), lambda_min_clipped)
        let clipped_idx = self
            .lambda_t
            .iter()
            .rev()
            .filter(|&&l| (l as f64) < c.lambda_min_clipped)
            .count();
        let last_timestep = (t_train - clipped_idx) as i64;
        let mut timesteps: Vec<f64> = match c.timestep_spacing {
            TimestepSpacing::Linspace => {
                let v = schedule::np_linspace(0.0, (last_timestep - 1) as f64, n + 1);
                v.into_iter()
                    .rev()
                    .take(n)
                    .map(|x| schedule::np_round(x).trunc())
                    .collect()
            }
            TimestepSpacing::Leading => {
                let ratio = last_timestep / (n as i64 + 1);
                (1..=n as i64)
                    .rev()
                    .map(|i| (i * ratio + c.steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                schedule::np_arange_f64(last_timestep as f64, 0.0, -(t_train as f64 / n as f64))?
                    .into_iter()
                    .map(|x| schedule::np_round(x) - 1.0)
                    .collect()
            }
        };
        let on = |f: Option<bool>| f.unwrap_or(false);
        let log_sigmas = schedule::log_sigmas(&self.train_sigmas);
        let round = c.beta_schedule != BetaSchedule::SquaredcosCapV2;
        let smin = self.train_sigmas[0] as f64;
        let smax = self.train_sigmas[self.train_sigmas.len() - 1] as f64;
        let sig: Vec<f64> = if on(c.use_karras_sigmas) {
            let s = schedule::karras_sigmas(smin, smax, n);
            timesteps = s
                .iter()
                .map(|&x| schedule::sigma_to_t(x, &log_sigmas))
                .collect();
            if round {
                timesteps = timesteps.into_iter().map(schedule::np_round).collect();
            }
            s
        } else if on(c.use_lu_lambdas) {
            let lmin = log_sigmas[0] as f64;
            let lmax = log_sigmas[log_sigmas.len() - 1] as f64;
            let s: Vec<f64> = schedule::np_linspace(0.0, 1.0, n)
                .into_iter()
                .map(|r| (lmax + r * (lmin - lmax)).exp())
                .collect();
            timesteps = s
                .iter()
                .map(|&x| schedule::sigma_to_t(x, &log_sigmas))
                .collect();
            if round {
                timesteps = timesteps.into_iter().map(schedule::np_round).collect();
            }
            s
        } else if on(c.use_exponential_sigmas) {
            let s = schedule::exponential_sigmas(smin, smax, n);
            timesteps = s
                .iter()
                .map(|&x| schedule::sigma_to_t(x, &log_sigmas))
                .collect();
            s
        } else {
            let ts32: Vec<f32> = timesteps.iter().map(|&t| t as f32).collect();
            schedule::interp_sigmas(&ts32, &self.train_sigmas)
        };
        let last = match c.final_sigmas_type.unwrap_or(FinalSigmasType::Zero) {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => self.train_sigmas[0] as f64,
        };
        // `.to(int64)` truncates toward zero
        let ts: Vec<f32> = timesteps.iter().map(|t| t.trunc() as i64 as f32).collect();
        if ts.iter().any(|&t| t < 0.0 || t as usize >= t_train) {
            return Err(Error::invalid(format!(
                "DPM-Solver timesteps {ts:?} fall outside 0..{t_train} (check steps_offset)"
            )));
        }
        self.sigmas = sig
            .into_iter()
            .chain(std::iter::once(last))
            .map(|s| s as f32)
            .collect();
        self.num_inference_steps = Some(ts.len());
        self.timesteps = ts;
        self.model_outputs = vec![None; self.config.solver_order];
        self.lower_order_nums = 0;
        self.step_index = None;
        self.begin_index = None;
        Ok(())
    }

    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    /// 1.
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The identity.
    fn scale_model_input<const D: usize>(
        &mut self,
        sample: Tensor<D>,
        _timestep: f32,
    ) -> Result<Tensor<D>> {
        Ok(sample)
    }

    fn step<const D: usize>(
        &mut self,
        model_output: Tensor<D>,
        timestep: f32,
        sample: Tensor<D>,
    ) -> Result<Tensor<D>> {
        schedule::check_same_shape("DPMSolverMultistepScheduler.step", &model_output, &sample)?;
        if self.num_inference_steps.is_none() {
            return Err(Error::invalid(
                "DPMSolverMultistepScheduler.step before set_timesteps",
            ));
        }
        let i = self.init_step_index(timestep);
        if i + 1 >= self.sigmas.len() {
            return Err(Error::invalid(format!(
                "step {i} is past the end of the {}-step schedule; call set_timesteps again",
                self.sigmas.len() - 1
            )));
        }
        let c = self.config.clone();
        let len = self.timesteps.len();
        let lower_order_final = i == len - 1
            && (c.euler_at_final
                || (c.lower_order_final && len < 15)
                || c.final_sigmas_type.unwrap_or(FinalSigmasType::Zero) == FinalSigmasType::Zero);
        let lower_order_second = len >= 2 && i == len - 2 && c.lower_order_final && len < 15;

        let m = self.convert_model_output(model_output, &sample, i)?;
        let order = c.solver_order;
        for k in 0..order - 1 {
            self.model_outputs[k] = self.model_outputs[k + 1].take();
        }
        self.model_outputs[order - 1] = Some(Stored {
            dims: m.dims().to_vec(),
            data: m.clone().flatten::<1>(0, D - 1),
        });

        let sde = matches!(
            c.algorithm_type,
            AlgorithmType::SdeDpmSolver | AlgorithmType::SdeDpmSolverPp
        );
        let noise = if sde {
            Some(self.generator.randn_like(&sample))
        } else {
            None
        };

        let (alpha_t, sigma_t, lambda_t) = lambda_of(self.sigmas[i + 1]);
        let (alpha_s0, sigma_s0, lambda_s0) = lambda_of(self.sigmas[i]);
        let h = lambda_t - lambda_s0;
        // (the history needs i >= 1 / i >= 2; diffusers would wrap around instead)
        let use_first = order == 1 || self.lower_order_nums < 1 || lower_order_final || i < 1;
        let use_second =
            !use_first && (order == 2 || self.lower_order_nums < 2 || lower_order_second || i < 2);

        // x_t = a·sample + b·D0 [+ c·D1 [+ d·D2]] [+ e·noise], signs folded into the scalars
        let prev = if use_first {
            let (a, b, e) = match c.algorithm_type {
                AlgorithmType::DpmSolverPp => {
                    (sigma_t / sigma_s0, -(alpha_t * ((-h).exp() - 1.0)), 0.0)
                }
                AlgorithmType::DpmSolver => (alpha_t / alpha_s0, -(sigma_t * (h.exp() - 1.0)), 0.0),
                AlgorithmType::SdeDpmSolverPp => (
                    sigma_t / sigma_s0 * (-h).exp(),
                    alpha_t * (1.0 - (-2.0 * h).exp()),
                    sigma_t * (1.0 - (-2.0 * h).exp()).sqrt(),
                ),
                AlgorithmType::SdeDpmSolver => (
                    alpha_t / alpha_s0,
                    -(2.0 * (sigma_t * (h.exp() - 1.0))),
                    sigma_t * ((2.0 * h).exp() - 1.0).sqrt(),
                ),
            };
            let mut x = sample.mul_scalar(a).add(m.mul_scalar(b));
            if let Some(z) = noise {
                x = x.add(z.mul_scalar(e));
            }
            x
        } else {
            let (_, _, lambda_s1) = lambda_of(self.sigmas[i - 1]);
            let m0: Tensor<D> = self.stored(order - 1)?;
            let m1: Tensor<D> = self.stored(order - 2)?;
            let h0 = lambda_s0 - lambda_s1;
            let r0 = h0 / h;
            let em = (-h).exp() - 1.0; // exp(-h) - 1
            let ep = h.exp() - 1.0; // exp(h) - 1
            let e2 = 1.0 - (-2.0 * h).exp(); // 1 - exp(-2h)
            if use_second {
                let d1 = m0.clone().sub(m1).mul_scalar(1.0 / r0);
                let (a, b, cc, e) = match (c.algorithm_type, c.solver_type) {
                    (AlgorithmType::DpmSolverPp, SolverType::Midpoint) => (
                        sigma_t / sigma_s0,
                        -(alpha_t * em),
                        -(0.5 * (alpha_t * em)),
                        0.0,
                    ),
                    (AlgorithmType::DpmSolverPp, SolverType::Heun) => (
                        sigma_t / sigma_s0,
                        -(alpha_t * em),
                        alpha_t * (em / h + 1.0),
                        0.0,
                    ),
                    (AlgorithmType::DpmSolver, SolverType::Midpoint) => (
                        alpha_t / alpha_s0,
                        -(sigma_t * ep),
                        -(0.5 * (sigma_t * ep)),
                        0.0,
                    ),
                    (AlgorithmType::DpmSolver, SolverType::Heun) => (
                        alpha_t / alpha_s0,
                        -(sigma_t * ep),
                        -(sigma_t * (ep / h - 1.0)),
                        0.0,
                    ),
                    (AlgorithmType::SdeDpmSolverPp, SolverType::Midpoint) => (
                        sigma_t / sigma_s0 * (-h).exp(),
                        alpha_t * e2,
                        0.5 * (alpha_t * e2),
                        sigma_t * e2.sqrt(),
                    ),
                    (AlgorithmType::SdeDpmSolverPp, SolverType::Heun) => (
                        sigma_t / sigma_s0 * (-h).exp(),
                        alpha_t * e2,
                        alpha_t * (e2 / (-2.0 * h) + 1.0),
                        sigma_t * e2.sqrt(),
                    ),
                    (AlgorithmType::SdeDpmSolver, SolverType::Midpoint) => (
                        alpha_t / alpha_s0,
                        -(2.0 * (sigma_t * ep)),
                        -(sigma_t * ep),
                        sigma_t * ((2.0 * h).exp() - 1.0).sqrt(),
                    ),
                    (AlgorithmType::SdeDpmSolver, SolverType::Heun) => (
                        alpha_t / alpha_s0,
                        -(2.0 * (sigma_t * ep)),
                        -(2.0 * (sigma_t * (ep / h - 1.0))),
                        sigma_t * ((2.0 * h).exp() - 1.0).sqrt(),
                    ),
                };
                let mut x = sample
                    .mul_scalar(a)
                    .add(m0.mul_scalar(b))
                    .add(d1.mul_scalar(cc));
                if let Some(z) = noise {
                    x = x.add(z.mul_scalar(e));
                }
                x
            } else {
                let (_, _, lambda_s2) = lambda_of(self.sigmas[i - 2]);
                let m2: Tensor<D> = self.stored(order - 3)?;
                let h1 = lambda_s1 - lambda_s2;
                let r1 = h1 / h;
                let d1_0 = m0.clone().sub(m1.clone()).mul_scalar(1.0 / r0);
                let d1_1 = m1.sub(m2).mul_scalar(1.0 / r1);
                let diff = d1_0.clone().sub(d1_1);
                let d1 = d1_0.add(diff.clone().mul_scalar(r0 / (r0 + r1)));
                let d2 = diff.mul_scalar(1.0 / (r0 + r1));
                let (a, b, cc, dd, e) = match c.algorithm_type {
                    AlgorithmType::DpmSolverPp => (
                        sigma_t / sigma_s0,
                        -(alpha_t * em),
                        alpha_t * (em / h + 1.0),
                        -(alpha_t * (((-h).exp() - 1.0 + h) / (h * h) - 0.5)),
                        0.0,
                    ),
                    AlgorithmType::DpmSolver => (
                        alpha_t / alpha_s0,
                        -(sigma_t * ep),
                        -(sigma_t * (ep / h - 1.0)),
                        -(sigma_t * ((h.exp() - 1.0 - h) / (h * h) - 0.5)),
                        0.0,
                    ),
                    AlgorithmType::SdeDpmSolverPp => (
                        sigma_t / sigma_s0 * (-h).exp(),
                        alpha_t * e2,
                        alpha_t * (e2 / (-2.0 * h) + 1.0),
                        alpha_t
                            * ((1.0 - (-2.0 * h).exp() - 2.0 * h) / ((2.0 * h) * (2.0 * h)) - 0.5),
                        sigma_t * e2.sqrt(),
                    ),
                    AlgorithmType::SdeDpmSolver => {
                        return Err(Error::invalid("sde-dpmsolver has no third-order update"));
                    }
                };
                let mut x = sample
                    .mul_scalar(a)
                    .add(m0.mul_scalar(b))
                    .add(d1.mul_scalar(cc))
                    .add(d2.mul_scalar(dd));
                if let Some(z) = noise {
                    x = x.add(z.mul_scalar(e));
                }
                x
            }
        };
        if self.lower_order_nums < order {
            self.lower_order_nums += 1;
        }
        self.step_index = Some(i + 1);
        Ok(prev)
    }

    fn num_train_timesteps(&self) -> usize {
        self.config.num_train_timesteps
    }

    fn set_generator(&mut self, generator: Generator) {
        self.generator = generator;
    }
}
