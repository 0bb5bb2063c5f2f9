//! diffusers `DDIMScheduler` (0.33.1). Not fixture-checked: tested for internal consistency
//! only.

use faceclip_core::{Error, Result, Tensor};
use serde::Deserialize;

use super::euler_discrete::SchedulerStepOutput;
use super::rng::Generator;
use super::schedule::{self, BetaSchedule, PredictionType, TimestepSpacing};
use super::{Scheduler, config_constructors};

/// `DDIMScheduler`'s `scheduler_config.json` (diffusers 0.33.1 defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DdimConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub clip_sample: bool,
    pub set_alpha_to_one: bool,
    pub steps_offset: i64,
    pub prediction_type: PredictionType,
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    pub clip_sample_range: f64,
    pub sample_max_value: f64,
    pub timestep_spacing: TimestepSpacing,
    pub rescale_betas_zero_snr: bool,
}

impl Default for DdimConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            clip_sample: true,
            set_alpha_to_one: true,
            steps_offset: 0,
            prediction_type: PredictionType::Epsilon,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            clip_sample_range: 1.0,
            sample_max_value: 1.0,
            timestep_spacing: TimestepSpacing::Leading,
            rescale_betas_zero_snr: false,
        }
    }
}

/// diffusers `DDIMScheduler`: `x0 = (x - sqrt(1-ᾱ_t)·ε)/sqrt(ᾱ_t)`,
/// `x' = sqrt(ᾱ_prev)·x0 + sqrt(1-ᾱ_prev-σ_t²)·ε (+ σ_t·z)` with `σ_t = η·sqrt(variance)`;
/// the previous timestep is `t - T // N`. `η` (default 0, deterministic) is set with
/// [`Self::set_eta`]; the noise for `η > 0` comes from the scheduler's [`Generator`].
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    config: DdimConfig,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    timesteps: Vec<f32>,
    num_inference_steps: Option<usize>,
    eta: f64,
    use_clipped_model_output: bool,
    generator: Generator,
}

config_constructors!(DdimScheduler, DdimConfig);

impl DdimScheduler {
    /// Builds the training schedule; `eta = 0`.
    pub fn new(config: DdimConfig) -> Result<Self> {
        let betas = schedule::betas(
            config.num_train_timesteps,
            config.beta_start,
            config.beta_end,
            config.beta_schedule,
            config.trained_betas.as_deref(),
            config.rescale_betas_zero_snr,
        )?;
        let alphas_cumprod = schedule::alphas_cumprod(&betas);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let timesteps = (0..alphas_cumprod.len()).rev().map(|t| t as f32).collect();
        Ok(Self {
            config,
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps,
            num_inference_steps: None,
            eta: 0.0,
            use_clipped_model_output: false,
            generator: Generator::default(),
        })
    }

    /// The config this scheduler was built from.
    pub fn config(&self) -> &DdimConfig {
        &self.config
    }

    /// `alphas_cumprod` (float32).
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// The stochasticity `η` of later steps (0 = DDIM, 1 = DDPM-like).
    pub fn set_eta(&mut self, eta: f64) {
        self.eta = eta;
    }

    /// diffusers' `use_clipped_model_output` step argument.
    pub fn set_use_clipped_model_output(&mut self, yes: bool) {
        self.use_clipped_model_output = yes;
    }

    fn alpha_at(&self, t: i64) -> f32 {
        if t >= 0 {
            self.alphas_cumprod[t as usize]
        } else {
            self.final_alpha_cumprod
        }
    }

    /// diffusers `step`: the next sample and the predicted clean sample.
    pub fn step_full<const D: usize>(
        &mut self,
        model_output: Tensor<D>,
        timestep: f32,
        sample: Tensor<D>,
    ) -> Result<SchedulerStepOutput<D>> {
        schedule::check_same_shape("DDIMScheduler.step", &model_output, &sample)?;
        let n = self
            .num_inference_steps
            .ok_or_else(|| Error::invalid("DDIMScheduler.step before set_timesteps"))?;
        let tlen = self.alphas_cumprod.len();
        if timestep.fract() != 0.0 || timestep < 0.0 || timestep as usize >= tlen {
            return Err(Error::invalid(format!(
                "DDIM timestep {timestep} is not an integer training timestep in 0..{tlen}"
            )));
        }
        let t = timestep as i64;
        let prev_t = t - (self.config.num_train_timesteps / n) as i64;
        let a_t = self.alphas_cumprod[t as usize];
        let a_prev = self.alpha_at(prev_t);
        let b_t = 1.0 - a_t;
        let (mut pred_x0, mut pred_eps) = match self.config.prediction_type {
            PredictionType::Epsilon => (
                sample
                    .clone()
                    .sub(model_output.clone().mul_scalar(b_t.sqrt()))
                    .div_scalar(a_t.sqrt()),
                model_output,
            ),
            PredictionType::Sample | PredictionType::OriginalSample => {
                let eps = sample
                    .clone()
                    .sub(model_output.clone().mul_scalar(a_t.sqrt()))
                    .div_scalar(b_t.sqrt());
                (model_output, eps)
            }
            PredictionType::VPrediction => (
                sample
                    .clone()
                    .mul_scalar(a_t.sqrt())
                    .sub(model_output.clone().mul_scalar(b_t.sqrt())),
                model_output
                    .mul_scalar(a_t.sqrt())
                    .add(sample.clone().mul_scalar(b_t.sqrt())),
            ),
            PredictionType::FlowPrediction => {
                return Err(Error::invalid(
                    "DDIMScheduler does not support prediction_type flow_prediction",
                ));
            }
        };
        if self.config.thresholding {
            pred_x0 = schedule::threshold_sample(
                pred_x0,
                self.config.dynamic_thresholding_ratio,
                self.config.sample_max_value,
            )?;
        } else if self.config.clip_sample {
            let r = self.config.clip_sample_range as f32;
            pred_x0 = pred_x0.clamp(-r, r);
        }
        let b_prev = 1.0 - a_prev;
        let variance = b_prev / b_t * (1.0 - a_t / a_prev);
        let std_dev_t = self.eta as f32 * variance.sqrt();
        if self.use_clipped_model_output {
            pred_eps = sample
                .clone()
                .sub(pred_x0.clone().mul_scalar(a_t.sqrt()))
                .div_scalar(b_t.sqrt());
        }
        let direction = pred_eps.mul_scalar((1.0 - a_prev - std_dev_t * std_dev_t).sqrt());
        let mut prev_sample = pred_x0.clone().mul_scalar(a_prev.sqrt()).add(direction);
        if self.eta > 0.0 {
            let noise = self.generator.randn_like(&sample);
            prev_sample = prev_sample.add(noise.mul_scalar(std_dev_t));
        }
        Ok(SchedulerStepOutput {
            prev_sample,
            pred_original_sample: pred_x0,
        })
    }
}

impl Scheduler for DdimScheduler {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let t = self.config.num_train_timesteps;
        if n == 0 || n > t {
            return Err(Error::invalid(format!(
                "num_inference_steps must be in 1..={t}, got {n}"
            )));
        }
        let ts: Vec<i64> = match self.config.timestep_spacing {
            TimestepSpacing::Linspace => schedule::np_linspace(0.0, (t - 1) as f64, n)
                .into_iter()
                .rev()
                .map(|x| schedule::np_round(x) as i64)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = (t / n) as i64;
                (0..n as i64)
                    .rev()
                    .map(|i| i * ratio + self.config.steps_offset)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                schedule::np_arange_f64(t as f64, 0.0, -(t as f64 / n as f64))?
                    .into_iter()
                    .map(|x| schedule::np_round(x) as i64 - 1)
                    .collect()
            }
        };
        if let Some(bad) = ts.iter().find(|&&x| x < 0 || x >= t as i64) {
            return Err(Error::invalid(format!(
                "DDIM timestep {bad} falls outside 0..{t} (check steps_offset)"
            )));
        }
        self.timesteps = ts.into_iter().map(|x| x as f32).collect();
        self.num_inference_steps = Some(n);
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
        Ok(self.step_full(model_output, timestep, sample)?.prev_sample)
    }

    fn num_train_timesteps(&self) -> usize {
        self.config.num_train_timesteps
    }

    fn set_generator(&mut self, generator: Generator) {
        self.generator = generator;
    }
}
