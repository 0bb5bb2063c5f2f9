//! diffusers `EulerAncestralDiscreteScheduler` (0.33.1). Not fixture-checked: tested for
//! internal consistency only.

use faceclip_core::{Error, Result, Tensor};
use serde::Deserialize;

use super::euler_discrete::SchedulerStepOutput;
use super::rng::Generator;
use super::schedule::{self, BetaSchedule, PredictionType, TimestepSpacing};
use super::{Scheduler, config_constructors};

/// `EulerAncestralDiscreteScheduler`'s `scheduler_config.json` (diffusers 0.33.1 defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct EulerAncestralDiscreteConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: PredictionType,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: i64,
    pub rescale_betas_zero_snr: bool,
}

impl Default for EulerAncestralDiscreteConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: TimestepSpacing::Linspace,
            steps_offset: 0,
            rescale_betas_zero_snr: false,
        }
    }
}

/// diffusers `EulerAncestralDiscreteScheduler`: Euler down to
/// `σ_down = sqrt(σ_to² - σ_up²)`, then fresh noise `σ_up = sqrt(σ_to²(σ_from² - σ_to²)/σ_from²)`
/// drawn from the scheduler's host-side [`Generator`] (seed it with [`Scheduler::set_generator`]).
/// Sigmas, timesteps and `init_noise_sigma` are those of [`EulerDiscreteScheduler`](super::EulerDiscreteScheduler)
/// with linear interpolation and no Karras option.
#[derive(Debug, Clone)]
pub struct EulerAncestralDiscreteScheduler {
    config: EulerAncestralDiscreteConfig,
    alphas_cumprod: Vec<f32>,
    train_sigmas: Vec<f32>,
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    step_index: Option<usize>,
    begin_index: Option<usize>,
    generator: Generator,
}

config_constructors!(
    EulerAncestralDiscreteScheduler,
    EulerAncestralDiscreteConfig
);

impl EulerAncestralDiscreteScheduler {
    /// Builds the training schedule; the generator starts at seed 0.
    pub fn new(config: EulerAncestralDiscreteConfig) -> Result<Self> {
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
        sigmas.push(0.0);
        let timesteps = schedule::np_linspace(0.0, (t - 1) as f64, t)
            .into_iter()
            .rev()
            .map(|x| x as f32)
            .collect();
        Ok(Self {
            config,
            alphas_cumprod,
            train_sigmas,
            timesteps,
            sigmas,
            step_index: None,
            begin_index: None,
            generator: Generator::default(),
        })
    }

    /// The config this scheduler was built from.
    pub fn config(&self) -> &EulerAncestralDiscreteConfig {
        &self.config
    }

    /// `alphas_cumprod` (float32).
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// The current sigmas (N+1 after `set_timesteps`, the last 0).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// Starts the step counter at `begin_index` (diffusers `set_begin_index`).
    pub fn set_begin_index(&mut self, begin_index: usize) {
        self.begin_index = Some(begin_index);
    }

    fn current(&mut self, timestep: f32) -> Result<(usize, f32, f32)> {
        let i = match self.step_index {
            Some(i) => i,
            None => {
                let i = match self.begin_index {
                    Some(b) => b,
                    None => schedule::index_for_timestep(&self.timesteps, timestep).ok_or_else(
                        || {
                            Error::invalid(format!(
                                "timestep {timestep} is not one of the scheduler's timesteps"
                            ))
                        },
                    )?,
                };
                self.step_index = Some(i);
                i
            }
        };
        if i + 1 >= self.sigmas.len() {
            return Err(Error::invalid(format!(
                "step {i} is past the end of the {}-step schedule; call set_timesteps again",
                self.sigmas.len() - 1
            )));
        }
        Ok((i, self.sigmas[i], self.sigmas[i + 1]))
    }

    /// diffusers `step`: the next sample (with ancestral noise) and the predicted clean sample.
    pub fn step_full<const D: usize>(
        &mut self,
        model_output: Tensor<D>,
        timestep: f32,
        sample: Tensor<D>,
    ) -> Result<SchedulerStepOutput<D>> {
        schedule::check_same_shape(
            "EulerAncestralDiscreteScheduler.step",
            &model_output,
            &sample,
        )?;
        let (i, sigma, sigma_to) = self.current(timestep)?;
        let pred_original_sample = match self.config.prediction_type {
            PredictionType::Epsilon => sample.clone().sub(model_output.clone().mul_scalar(sigma)),
            PredictionType::VPrediction => {
                let s2 = sigma * sigma + 1.0;
                model_output
                    .clone()
                    .mul_scalar(-sigma / s2.sqrt())
                    .add(sample.clone().div_scalar(s2))
            }
            p => {
                return Err(Error::invalid(format!(
                    "EulerAncestralDiscreteScheduler supports prediction_type epsilon and v_prediction, not {p:?}"
                )));
            }
        };
        let sigma_from = sigma;
        let sigma_up = (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
            / (sigma_from * sigma_from))
            .sqrt();
        let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).sqrt();
        let derivative = sample
            .clone()
            .sub(pred_original_sample.clone())
            .div_scalar(sigma);
        let dt = sigma_down - sigma;
        let prev = sample.add(derivative.mul_scalar(dt));
        let noise = self.generator.randn_like(&model_output);
        let prev_sample = prev.add(noise.mul_scalar(sigma_up));
        self.step_index = Some(i + 1);
        Ok(SchedulerStepOutput {
            prev_sample,
            pred_original_sample,
        })
    }
}

impl Scheduler for EulerAncestralDiscreteScheduler {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::invalid("num_inference_steps must be at least 1"));
        }
        let t = self.config.num_train_timesteps;
        let timesteps: Vec<f32> = match self.config.timestep_spacing {
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
                schedule::np_arange_f64(t as f64, 0.0, -(t as f64 / n as f64))?
                    .into_iter()
                    .map(|x| schedule::np_round(x) as f32 - 1.0)
                    .collect()
            }
        };
        let sig = schedule::interp_sigmas(&timesteps, &self.train_sigmas);
        self.sigmas = sig
            .into_iter()
            .chain(std::iter::once(0.0))
            .map(|s| s as f32)
            .collect();
        self.timesteps = timesteps;
        self.step_index = None;
        self.begin_index = None;
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
        let (_, sigma, _) = self.current(timestep)?;
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
