//! Host-side schedule arithmetic shared by the schedulers, reproducing the float precision of
//! diffusers 0.33 (which mixes torch float32 tensors, numpy float32/float64 arrays and Python
//! floats): beta schedules, `alphas_cumprod`, timestep spacings, `np.interp`, Karras and
//! exponential sigmas, `_sigma_to_t`, and the dynamic thresholding of DDIM / DPM-Solver.

use faceclip_core::{Error, Result, Tensor, TensorData};
use serde::Deserialize;

/// How the betas are laid out over the training timesteps (`beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `torch.linspace(beta_start, beta_end, T, float32)`.
    Linear,
    /// `torch.linspace(beta_start**0.5, beta_end**0.5, T, float32) ** 2` (SD / SDXL).
    ScaledLinear,
    /// The cosine schedule (`betas_for_alpha_bar`, max beta 0.999).
    SquaredcosCapV2,
}

/// What the denoising model predicts (`prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The added noise (SD / SDXL).
    Epsilon,
    /// The velocity `alpha*eps - sigma*x0`.
    VPrediction,
    /// The clean sample.
    Sample,
    /// The clean sample (Euler's alias of `sample`).
    OriginalSample,
    /// The flow velocity (DPM-Solver with flow sigmas only).
    FlowPrediction,
}

/// How inference timesteps are spread over the training range (`timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Linspace,
    Leading,
    Trailing,
}

/// The sigma appended after the last inference sigma (`final_sigmas_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmasType {
    /// 0: the last step lands on the clean sample.
    Zero,
    /// The smallest training sigma.
    SigmaMin,
}

/// `torch.linspace(start, end, steps, dtype=float32)` on the CPU: float32 step, the first half
/// counted from `start`, the second half from `end`. PyTorch's x86 builds compile this kernel
/// with FMA contraction (`start + step*i` is one fused multiply-add); with it the SDXL
/// `alphas_cumprod` table matches the reference bit for bit (without it 121 of 1000 entries
/// differ by an ulp).
pub fn torch_linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    let (s, e) = (start as f32, end as f32);
    match steps {
        0 => vec![],
        1 => vec![s],
        _ => {
            let step = (e - s) / (steps - 1) as f32;
            let half = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < half {
                        step.mul_add(i as f32, s)
                    } else {
                        (-step).mul_add((steps - i - 1) as f32, e)
                    }
                })
                .collect()
        }
    }
}

/// `np.linspace(start, stop, num)` in float64 (`i*step + start`, the last value exactly `stop`).
pub fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return vec![];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let mut y: Vec<f64> = if num == 1 {
        vec![0.0 * delta + start]
    } else {
        let step = delta / div;
        if step == 0.0 {
            (0..num).map(|i| (i as f64 / div) * delta + start).collect()
        } else {
            (0..num).map(|i| i as f64 * step + start).collect()
        }
    };
    if num > 1 {
        y[num - 1] = stop;
    }
    y
}

/// `np.arange(start, stop, step)` for floats: `ceil((stop-start)/step)` values, filled as numpy
/// does from the first two (`start`, `start+step`).
pub fn np_arange_f64(start: f64, stop: f64, step: f64) -> Result<Vec<f64>> {
    if step == 0.0 || !step.is_finite() {
        return Err(Error::invalid(format!("arange with step {step}")));
    }
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Ok(vec![]);
    }
    let len = len as usize;
    let b0 = start;
    let b1 = start + step;
    let delta = b1 - b0;
    Ok((0..len)
        .map(|i| match i {
            0 => b0,
            1 => b1,
            _ => b0 + i as f64 * delta,
        })
        .collect())
}

/// `np.round`: round half to even.
pub fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// The training betas in float32, as diffusers' scheduler constructors build them
/// (`trained_betas` wins; `rescale_betas_zero_snr` applied after).
pub fn betas(
    num_train_timesteps: usize,
    beta_start: f64,
    beta_end: f64,
    schedule: BetaSchedule,
    trained_betas: Option<&[f64]>,
    rescale_zero_snr: bool,
) -> Result<Vec<f32>> {
    if num_train_timesteps < 2 {
        return Err(Error::invalid(format!(
            "scheduler num_train_timesteps must be at least 2, got {num_train_timesteps}"
        )));
    }
    let b: Vec<f32> = if let Some(tb) = trained_betas {
        if tb.is_empty() {
            return Err(Error::invalid("scheduler trained_betas is empty"));
        }
        tb.iter().map(|&x| x as f32).collect()
    } else {
        match schedule {
            BetaSchedule::Linear => torch_linspace_f32(beta_start, beta_end, num_train_timesteps),
            BetaSchedule::ScaledLinear => {
                torch_linspace_f32(beta_start.sqrt(), beta_end.sqrt(), num_train_timesteps)
                    .into_iter()
                    .map(|x| x * x)
                    .collect()
            }
            BetaSchedule::SquaredcosCapV2 => betas_for_alpha_bar(num_train_timesteps, 0.999),
        }
    };
    Ok(if rescale_zero_snr {
        rescale_zero_terminal_snr(&b)
    } else {
        b
    })
}

/// diffusers `betas_for_alpha_bar` with the cosine `alpha_bar` (Python floats, then float32).
fn betas_for_alpha_bar(n: usize, max_beta: f64) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta) as f32
        })
        .collect()
}

/// `torch.cumprod(1 - betas)` on the CPU: float32 inputs, float64 accumulator, float32 out.
pub fn alphas_cumprod(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|&b| {
            acc *= (1.0f32 - b) as f64;
            acc as f32
        })
        .collect()
}

/// diffusers `rescale_zero_terminal_snr` in float32.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let mut s: Vec<f32> = alphas_cumprod(betas).into_iter().map(f32::sqrt).collect();
    let s0 = s[0];
    let st = s[s.len() - 1];
    let scale = s0 / (s0 - st);
    for v in s.iter_mut() {
        *v = (*v - st) * scale;
    }
    let ab: Vec<f32> = s.iter().map(|v| v * v).collect();
    let mut alphas = vec![ab[0]];
    alphas.extend(ab.windows(2).map(|w| w[1] / w[0]));
    alphas.into_iter().map(|a| 1.0 - a).collect()
}

/// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in float32, indexed by training timestep.
/// The square root is correctly rounded here; PyTorch's CPU `sqrt` goes through MKL's VML
/// (high-accuracy mode, not always correctly rounded), so about a fifth of the SDXL sigmas
/// differ from the reference by one ulp (relative 1.2e-7, inside the fixture's 1e-5).
pub fn train_sigmas(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod
        .iter()
        .map(|&a| ((1.0 - a) / a).sqrt())
        .collect()
}

/// `np.interp(x, xp, fp)` in float64 (`xp` increasing).
pub fn np_interp(x: &[f64], xp: &[f64], fp: &[f64]) -> Vec<f64> {
    let n = xp.len();
    x.iter()
        .map(|&v| {
            if n == 0 {
                return f64::NAN;
            }
            if v > xp[n - 1] {
                return fp[n - 1];
            }
            if v < xp[0] {
                return fp[0];
            }
            // last j with xp[j] <= v
            let j = xp.partition_point(|&p| p <= v).saturating_sub(1);
            if j >= n - 1 || xp[j] == v {
                return fp[j];
            }
            let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
            let r = slope * (v - xp[j]) + fp[j];
            if r.is_nan() {
                let r2 = slope * (v - xp[j + 1]) + fp[j + 1];
                if r2.is_nan() && fp[j] == fp[j + 1] {
                    fp[j]
                } else {
                    r2
                }
            } else {
                r
            }
        })
        .collect()
}

/// `np.interp(timesteps, arange(len(sigmas)), sigmas)` for float32 timesteps and sigmas.
pub fn interp_sigmas(timesteps: &[f32], train_sigmas: &[f32]) -> Vec<f64> {
    let x: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
    let xp: Vec<f64> = (0..train_sigmas.len()).map(|i| i as f64).collect();
    let fp: Vec<f64> = train_sigmas.iter().map(|&s| s as f64).collect();
    np_interp(&x, &xp, &fp)
}

/// The Karras et al. (2022) schedule, rho 7, in float64 (`_convert_to_karras`).
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0f64;
    let min_inv = sigma_min.powf(1.0 / rho);
    let max_inv = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, n)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// `np.exp(np.linspace(log(sigma_max), log(sigma_min), n))` (`_convert_to_exponential`).
pub fn exponential_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    np_linspace(sigma_max.ln(), sigma_min.ln(), n)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// `np.log` of the float32 training sigmas (float32 result).
pub fn log_sigmas(train_sigmas: &[f32]) -> Vec<f32> {
    train_sigmas.iter().map(|s| s.ln()).collect()
}

/// diffusers `_sigma_to_t`: the fractional training timestep whose log-sigma interpolates
/// `sigma` (`log_sigmas` float32, increasing in t).
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let n = log_sigmas.len();
    if n < 2 {
        return 0.0;
    }
    let log_sigma = sigma.max(1e-10).ln();
    let ls32 = log_sigma as f32;
    // argmax of cumsum(dists >= 0): the last index where dists >= 0 (0 when there is none)
    let mut low = 0usize;
    for (i, &l) in log_sigmas.iter().enumerate() {
        if ls32 - l >= 0.0 {
            low = i;
        }
    }
    let low = low.min(n - 2);
    let high = low + 1;
    // `low`/`high` are 1-element float32 arrays there, so (numpy 1.x value-based casting)
    // the weight is computed in float32 and only the final blend in float64.
    let lo = log_sigmas[low];
    let hi = log_sigmas[high];
    let w = ((lo - ls32) / (lo - hi)).clamp(0.0, 1.0);
    (1.0f32 - w) as f64 * low as f64 + w as f64 * high as f64
}

/// The lazy step-index rule of diffusers' `index_for_timestep`: the position of `timestep`
/// in `schedule`, the second match when the value repeats.
pub fn index_for_timestep(schedule: &[f32], timestep: f32) -> Option<usize> {
    let mut it = schedule
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == timestep)
        .map(|(i, _)| i);
    let first = it.next()?;
    Some(it.next().unwrap_or(first))
}

/// diffusers `_threshold_sample` (dynamic thresholding, Imagen): per batch row, the
/// `ratio`-quantile `s` of `|x|` clamped to `[1, max_value]`, then `clamp(x, -s, s) / s`.
/// Computed on the host.
pub fn threshold_sample<const D: usize>(
    sample: Tensor<D>,
    ratio: f64,
    max_value: f64,
) -> Result<Tensor<D>> {
    let dims = sample.dims();
    let device = sample.device();
    if D < 2 {
        return Err(Error::invalid(
            "dynamic thresholding needs a sample with a batch and a channel dimension",
        ));
    }
    let b = dims[0];
    let row = dims[1..].iter().product::<usize>();
    let mut v = faceclip_core::to_vec_f32(sample);
    for r in 0..b {
        let x = &mut v[r * row..(r + 1) * row];
        let mut a: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        a.sort_by(|p, q| p.total_cmp(q));
        let pos = ratio * (row.saturating_sub(1)) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(row - 1);
        let frac = (pos - lo as f64) as f32;
        let q = a[lo] + frac * (a[hi] - a[lo]);
        let s = q.clamp(1.0, max_value as f32);
        for e in x.iter_mut() {
            *e = e.clamp(-s, s) / s;
        }
    }
    Ok(Tensor::from_data(
        TensorData::new(v, dims.to_vec()),
        &device,
    ))
}

/// Errors when two tensors that the step combines differ in shape.
pub fn check_same_shape<const D: usize>(what: &str, a: &Tensor<D>, b: &Tensor<D>) -> Result<()> {
    let (da, db) = (a.dims(), b.dims());
    if da != db {
        return Err(Error::shape(
            format!("{what}: model_output vs sample"),
            &db,
            &da,
        ));
    }
    Ok(())
}

/// The Euler family's `init_noise_sigma`: `max σ` for linspace/trailing spacing,
/// `sqrt(max σ² + 1)` for leading (float32); it depends on N because the max is the first
/// inference sigma.
pub fn euler_init_noise_sigma(sigmas: &[f32], spacing: TimestepSpacing) -> f32 {
    let m = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    match spacing {
        TimestepSpacing::Linspace | TimestepSpacing::Trailing => m,
        TimestepSpacing::Leading => (m * m + 1.0).sqrt(),
    }
}

/// The Euler family's `scale_model_input`: `sample / sqrt(σ² + 1)`.
pub fn euler_scale_model_input<const D: usize>(sample: Tensor<D>, sigma: f32) -> Tensor<D> {
    sample.div_scalar((sigma * sigma + 1.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_endpoints() {
        assert_eq!(np_linspace(0.0, 999.0, 1), vec![0.0]);
        let v = np_linspace(1.0, 0.25, 4);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0], 1.0);
        assert_eq!(v[3], 0.25);
    }

    #[test]
    fn interp_on_grid_is_exact() {
        let fp = [1.0f32, 2.5, 7.0];
        assert_eq!(
            interp_sigmas(&[0.0, 1.0, 2.0, 1.5, 9.0, -1.0], &fp),
            vec![1.0, 2.5, 7.0, 4.75, 7.0, 1.0]
        );
    }

    #[test]
    fn second_match_rule() {
        assert_eq!(index_for_timestep(&[5.0, 3.0, 3.0, 1.0], 3.0), Some(2));
        assert_eq!(index_for_timestep(&[5.0, 3.0, 1.0], 3.0), Some(1));
        assert_eq!(index_for_timestep(&[5.0, 3.0, 1.0], 4.0), None);
    }

    #[test]
    fn round_half_even() {
        assert_eq!(np_round(2.5), 2.0);
        assert_eq!(np_round(3.5), 4.0);
    }
}
