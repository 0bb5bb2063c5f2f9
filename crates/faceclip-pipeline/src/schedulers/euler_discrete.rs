//! diffusers `EulerDiscreteScheduler` (0.33.1): the SDXL sampler.

use faceclip_core::{Error, Result, Tensor};
use serde::Deserialize;

use super::rng::Generator;
use super::schedule::{self, BetaSchedule, FinalSigmasType, PredictionType, TimestepSpacing};
use super::{Scheduler, config_constructors};

/// How inference sigmas are interpolated from the training table (`interpolation_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationType {
    /// `np.interp` on the training sigmas (SDXL).
    Linear,
    /// Not supported by this port (diffusers 0.33 builds an ascending N+2-entry schedule).
    LogLinear,
}

/// Whether timesteps are discrete training indices or `0.25·ln σ` (`timestep_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepType {
    Discrete,
    /// Only with `prediction_type = v_prediction`.
    Continuous,
}

/// `EulerDiscreteScheduler`'s `scheduler_config.json` (diffusers 0.33.1 defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct EulerDiscreteConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: PredictionType,
    pub interpolation_type: InterpolationType,
    pub use_karras_sigmas: Option<bool>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub timestep_spacing: TimestepSpacing,
    pub timestep_type: TimestepType,
    pub steps_offset: i64,
    pub rescale_betas_zero_snr: bool,
    pub final_sigmas_type: FinalSigmasType,
}

impl Default for EulerDiscreteConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            prediction_type: PredictionType::Epsilon,
            interpolation_type: InterpolationType::Linear,
            use_karras_sigmas: Some(false),
            use_exponential_sigmas: Some(false),
            use_beta_sigmas: Some(false),
            sigma_min: None,
            sigma_max: None,
            timestep_spacing: TimestepSpacing::Linspace,
            timestep_type: TimestepType::Discrete,
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            final_sigmas_type: FinalSigmasType::Zero,
        }
    }
}

/// What a step produced: the next sample and the model's estimate of the clean sample.
#[derive(Debug, Clone)]
pub struct SchedulerStepOutput<const D: usize> {
    /// `x_{t-1}`, the input of the next step.
    pub prev_sample: Tensor<D>,
    /// The predicted `x_0`.
    pub pred_original_sample: Tensor<D>,
}

/// Stochastic "churn" of the Euler step (Karras et al. `S_churn`, `S_tmin`, `S_tmax`,
/// `S_noise`); the default (`s_churn = 0`) is the deterministic sampler pipelines use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EulerChurn {
    pub s_churn: f64,
    pub s_tmin: f64,
    pub s_tmax: f64,
    pub s_noise: f64,
}

impl Default for EulerChurn {
    fn default() -> Self {
        Self {
            s_churn: 0.0,
            s_tmin: 0.0,
            s_tmax: f64::INFINITY,
            s_noise: 1.0,
        }
    }
}

/// diffusers `EulerDiscreteScheduler`: sigmas `sqrt((1-ᾱ)/ᾱ)` interpolated at the inference
/// timesteps (N+1 entries, the last 0), `x0 = x - σ·ε`, `x' = x + (x - x0)/σ · (σ_next - σ)`,
/// all in float32 in diffusers' operation order.
#[derive(Debug, Clone)]
pub struct EulerDiscreteScheduler {
    config: EulerDiscreteConfig,
    alphas_cumprod: Vec<f32>,
    /// Training sigmas indexed by training timestep (increasing).
    train_sigmas: Vec<f32>,
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    num_inference_steps: Option<usize>,
    step_index: Option<usize>,
    begin_index: Option<usize>,
    churn: EulerChurn,
    generator: Generator,
}

config_constructors!(EulerDiscreteScheduler, EulerDiscreteConfig);

impl EulerDiscreteScheduler {
    /// Builds the training schedule (betas, `alphas_cumprod`, the 1000+1 training sigmas).
    pub fn new(config: EulerDiscreteConfig) -> Result<Self> {
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
        if config.interpolation_type == InterpolationType::LogLinear {
            return Err(Error::invalid(
                "interpolation_type `log_linear` is not supported by this port",
            ));
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
        let train_sigmas = schedule::train_sigmas(&alphas_cumprod);
        let t = train_sigmas.len();
        let mut sigmas: Vec<f32> = train_sigmas.iter().rev().copied().collect();
        let timesteps: Vec<f32> = if config.timestep_type == TimestepType::Continuous
            && config.prediction_type == PredictionType::VPrediction
        {
            sigmas.iter().map(|s| 0.25 * s.ln()).collect()
        } else {
            schedule::np_linspace(0.0, (t - 1) as f64, t)
                .into_iter()
                .rev()
                .map(|x| x as f32)
                .collect()
        };
        sigmas.push(0.0);
        Ok(Self {
            config,
            alphas_cumprod,
            train_sigmas,
            timesteps,
            sigmas,
            num_inference_steps: None,
            step_index: None,
            begin_index: None,
            churn: EulerChurn::default(),
            generator: Generator::default(),
        })
    }

    /// The config this scheduler was built from.
    pub fn config(&self) -> &EulerDiscreteConfig {
        &self.config
    }

    /// `alphas_cumprod` (float32, one per training timestep).
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// The current sigmas: N+1 after `set_timesteps` (the last one final), the training
    /// sigmas reversed plus a final 0 before.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The step index (None until the first `scale_model_input` / `step` after `set_timesteps`).
    pub fn step_index(&self) -> Option<usize> {
        self.step_index
    }

    /// Starts the step counter at `begin_index` instead of looking the first timestep up
    /// (diffusers `set_begin_index`, used by img2img).
    pub fn set_begin_index(&mut self, begin_index: usize) {
        self.begin_index = Some(begin_index);
    }

    /// Sets the stochastic churn of later steps.
    pub fn set_churn(&mut self, churn: EulerChurn) {
        self.churn = churn;
    }

    /// The inference timesteps for `n` steps per `timestep_spacing` (float32).
    fn spaced_timesteps(&self, n: usize) -> Result<Vec<f32>> {
        let t = self.config.num_train_timesteps;
        Ok(match self.config.timestep_spacing {
            TimestepSpacing::Linspace => schedule::np_linspace(0.0, (t - 1) as f64, n)
                .into_iter()
                .rev()
                .map(|x| x as f32)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = (t / n) as f64;
                let off = self.config.steps_offset as f32;
                (0..n)
                    .rev()
                    .map(|i| schedule::np_round(i as f64 * ratio) as f32 + off)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = t as f64 / n as f64;
                schedule::np_arange_f64(t as f64, 0.0, -ratio)?
                    .into_iter()
                    .map(|x| schedule::np_round(x) as f32 - 1.0)
                    .collect()
            }
        })
    }

    /// diffusers `set_timesteps(sigmas=...)`: a custom decreasing sigma schedule (N+1 entries,
    /// the last one final); the timesteps are found by `_sigma_to_t`.
    pub fn set_sigmas(&mut self, sigmas: &[f32]) -> Result<()> {
        if sigmas.len() < 2 {
            return Err(Error::invalid(
                "custom sigmas need at least 2 entries (N+1 with the final one)",
            ));
        }
        let log_sigmas = schedule::log_sigmas(&self.train_sigmas);
        let timesteps: Vec<f32> = sigmas[..sigmas.len() - 1]
            .iter()
            .map(|&s| schedule::sigma_to_t(s as f64, &log_sigmas) as f32)
            .collect();
        self.finish(timesteps, sigmas.to_vec());
        Ok(())
    }

    /// diffusers `set_timesteps(timesteps=...)`: custom training timesteps (decreasing).
    pub fn set_custom_timesteps(&mut self, timesteps: &[f32]) -> Result<()> {
        if timesteps.is_empty() {
            return Err(Error::invalid("custom timesteps are empty"));
        }
        if self.config.use_karras_sigmas.unwrap_or(false)
            || self.config.use_exponential_sigmas.unwrap_or(false)
        {
            return Err(Error::invalid(
                "custom timesteps cannot be combined with Karras or exponential sigmas",
            ));
        }
        let sig = schedule::interp_sigmas(timesteps, &self.train_sigmas);
        self.finish_from_f64(timesteps.to_vec(), sig);
        Ok(())
    }

    fn sigma_last(&self) -> f64 {
        match self.config.final_sigmas_type {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => self.train_sigmas[0] as f64,
        }
    }

    fn finish_from_f64(&mut self, timesteps: Vec<f32>, sig: Vec<f64>) {
        let last = self.sigma_last();
        let sigmas: Vec<f32> = sig
            .into_iter()
            .chain(std::iter::once(last))
            .map(|s| s as f32)
            .collect();
        self.finish(timesteps, sigmas);
    }

    fn finish(&mut self, timesteps: Vec<f32>, sigmas: Vec<f32>) {
        self.timesteps = if self.config.timestep_type == TimestepType::Continuous
            && self.config.prediction_type == PredictionType::VPrediction
        {
            sigmas[..sigmas.len() - 1]
                .iter()
                .map(|s| 0.25 * s.ln())
                .collect()
        } else {
            timesteps
        };
        self.num_inference_steps = Some(self.timesteps.len());
        self.sigmas = sigmas;
        self.step_index = None;
        self.begin_index = None;
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

    fn current_sigmas(&mut self, timestep: f32) -> Result<(usize, f32, f32)> {
        let i = self.init_step_index(timestep)?;
        if i + 1 >= self.sigmas.len() {
            return Err(Error::invalid(format!(
                "step {i} is past the end of the {}-step schedule; call set_timesteps again",
                self.sigmas.len() - 1
            )));
        }
        Ok((i, self.sigmas[i], self.sigmas[i + 1]))
    }

    /// diffusers `step`: the next sample and the predicted clean sample.
    pub fn step_full<const D: usize>(
        &mut self,
        model_output: Tensor<D>,
        timestep: f32,
        sample: Tensor<D>,
    ) -> Result<SchedulerStepOutput<D>> {
        schedule::check_same_shape("EulerDiscreteScheduler.step", &model_output, &sample)?;
        let (i, sigma, sigma_next) = self.current_sigmas(timestep)?;
        let c = self.churn;
        let s64 = sigma as f64;
        let gamma = if c.s_tmin <= s64 && s64 <= c.s_tmax {
            (c.s_churn / (self.sigmas.len() - 1) as f64).min(2f64.sqrt() - 1.0)
        } else {
            0.0
        };
        let sigma_hat = sigma * (gamma + 1.0) as f32;
        let mut sample = sample;
        if gamma > 0.0 {
            let noise = self.generator.randn_like(&sample);
            let eps = noise.mul_scalar(c.s_noise as f32);
            sample = sample.add(eps.mul_scalar((sigma_hat * sigma_hat - sigma * sigma).sqrt()));
        }
        let pred_original_sample = match self.config.prediction_type {
            PredictionType::Epsilon => sample.clone().sub(model_output.mul_scalar(sigma_hat)),
            PredictionType::Sample | PredictionType::OriginalSample => model_output,
            PredictionType::VPrediction => {
                let s2 = sigma * sigma + 1.0;
                let c_out = -sigma / s2.sqrt();
                model_output
                    .mul_scalar(c_out)
                    .add(sample.clone().div_scalar(s2))
            }
            PredictionType::FlowPrediction => {
                return Err(Error::invalid(
                    "EulerDiscreteScheduler does not support prediction_type flow_prediction",
                ));
            }
        };
        let derivative = sample
            .clone()
            .sub(pred_original_sample.clone())
            .div_scalar(sigma_hat);
        let dt = sigma_next - sigma_hat;
        let prev_sample = sample.add(derivative.mul_scalar(dt));
        self.step_index = Some(i + 1);
        Ok(SchedulerStepOutput {
            prev_sample,
            pred_original_sample,
        })
    }
}

impl Scheduler for EulerDiscreteScheduler {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::invalid("num_inference_steps must be at least 1"));
        }
        let timesteps = self.spaced_timesteps(n)?;
        let sig = schedule::interp_sigmas(&timesteps, &self.train_sigmas);
        let karras = self.config.use_karras_sigmas.unwrap_or(false);
        let expo = self.config.use_exponential_sigmas.unwrap_or(false);
        if karras || expo {
            let n_inf = timesteps.len();
            let smin = self.config.sigma_min.unwrap_or(*sig.last().unwrap_or(&0.0));
            let smax = self
                .config
                .sigma_max
                .unwrap_or(*sig.first().unwrap_or(&0.0));
            let sig = if karras {
                schedule::karras_sigmas(smin, smax, n_inf)
            } else {
                schedule::exponential_sigmas(smin, smax, n_inf)
            };
            let log_sigmas = schedule::log_sigmas(&self.train_sigmas);
            let ts: Vec<f32> = sig
                .iter()
                .map(|&s| schedule::sigma_to_t(s, &log_sigmas) as f32)
                .collect();
            self.finish_from_f64(ts, sig);
        } else {
            self.finish_from_f64(timesteps, sig);
        }
        Ok(())
    }

    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    /// See [`schedule::euler_init_noise_sigma`].
    fn init_noise_sigma(&self) -> f32 {
        schedule::euler_init_noise_sigma(&self.sigmas, self.config.timestep_spacing)
    }

    /// `sample / sqrt(σ² + 1)`.
    fn scale_model_input<const D: usize>(
        &mut self,
        sample: Tensor<D>,
        timestep: f32,
    ) -> Result<Tensor<D>> {
        let (_, sigma, _) = self.current_sigmas(timestep)?;
        Ok(schedule::euler_scale_model_input(sample, sigma))
    }

    fn step<const D: usize>(
        &mut self,
        model_output: Tensor<D>,
        timestep: f32,
        sample: Tensor<D>,
    ) -> Result<Tensor<D>> {
        Ok(self.step_full(model_output, timestep, sample)?.prev_sample)
    }

    fn num_train_timesteps(&self) -> usize {
        self.config.num_train_timesteps
    }

    fn set_generator(&mut self, generator: Generator) {
        self.generator = generator;
    }
}
