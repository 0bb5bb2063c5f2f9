//! Parity of the schedulers against diffusers: fixture kinds `scheduler_euler`
//! (`EulerDiscreteScheduler`) and `scheduler_flow_match` (`FlowMatchEulerDiscreteScheduler`
//! driven as FluxPipeline). The step counts N and image token counts L are read from the
//! fixture's tensor names (`timesteps_N`, `timesteps_N_L`), the step example from
//! `extra.step_example`; nothing is tied to the visible folders' sizes.

use faceclip_core::{
    Comparison, CoverageReport, Device, Error, Fixture, Manifest, ParityOutcome, ParityReport,
    Result, Tensor, TensorData,
};
use serde_json::Value;

use super::{
    EulerDiscreteConfig, EulerDiscreteScheduler, FlowMatchEulerDiscreteConfig,
    FlowMatchEulerDiscreteScheduler, Scheduler,
};

/// Runs `fixture` when its kind is a scheduler; `None` otherwise.
pub fn run_fixture(fixture: &Fixture, device: &Device) -> ParityOutcome {
    match fixture.kind() {
        Ok("scheduler_euler") => Some(run_euler(fixture, device)),
        Ok("scheduler_flow_match") => Some(run_flow_match(fixture, device)),
        _ => None,
    }
}

/// Schedulers have no weights: no manifest is theirs.
pub fn check_manifest(manifest: &Manifest, device: &Device) -> Option<Result<CoverageReport>> {
    let _ = (manifest, device);
    None
}

fn meta_err(fixture: &Fixture, reason: impl std::fmt::Display) -> Error {
    Error::config(fixture.dir.join("meta.json"), reason)
}

/// Compares host values with `out.<name>`.
fn check_vec(
    fixture: &Fixture,
    name: &str,
    values: Vec<f32>,
    shape: Vec<usize>,
) -> Result<Comparison> {
    fixture.check(name, TensorData::new(values, shape))
}

fn check_scalar(fixture: &Fixture, name: &str, v: f32) -> Result<Comparison> {
    check_vec(fixture, name, vec![v], vec![])
}

fn scalar_input(fixture: &Fixture, name: &str) -> Result<f32> {
    let (shape, v) = fixture.f32(name)?;
    if v.len() != 1 {
        return Err(Error::shape(
            format!("fixture tensor `{name}` (a scalar)"),
            &[],
            &shape,
        ));
    }
    Ok(v[0])
}

/// The `N` (and `L`) of every output named `prefix_N` (`prefix_N_L`).
fn indices(names: &[String], prefix: &str, parts: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = names
        .iter()
        .filter_map(|n| {
            let rest = n.strip_prefix(prefix)?.strip_prefix('_')?;
            let nums: Vec<usize> = rest
                .split('_')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            (nums.len() == parts).then_some(nums)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The recorded steps `0..k` (as many as `in.model_output_i` exist).
fn step_count(fixture: &Fixture) -> usize {
    (0..)
        .take_while(|i| fixture.has(&format!("in.model_output_{i}")))
        .count()
}

fn step_example_usize(fixture: &Fixture, key: &str) -> Result<usize> {
    fixture
        .extra()
        .pointer(&format!("/step_example/{key}"))
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| meta_err(fixture, format!("no integer extra.step_example.{key}")))
}

/// Runs `body` with the rank of `in.sample` as a const generic.
macro_rules! with_rank {
    ($fixture:expr, $body:ident, $($args:expr),*) => {{
        let (shape, _) = $fixture.f32("in.sample")?;
        match shape.len() {
            1 => $body::<1>($($args),*),
            2 => $body::<2>($($args),*),
            3 => $body::<3>($($args),*),
            4 => $body::<4>($($args),*),
            5 => $body::<5>($($args),*),
            r => Err(Error::invalid(format!("in.sample has rank {r}; ranks 1 to 5 are supported"))),
        }
    }};
}

fn run_euler(fixture: &Fixture, device: &Device) -> Result<ParityReport> {
    let config: EulerDiscreteConfig = fixture.config_as("")?;
    let names = fixture.output_names();
    let mut report = ParityReport::default();

    let fresh = EulerDiscreteScheduler::new(config.clone())?;
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("alphas_cumprod") {
        let v = fresh.alphas_cumprod().to_vec();
        let len = v.len();
        report.push(check_vec(fixture, "alphas_cumprod", v, vec![len])?);
    }
    if has("train_sigmas") {
        let v = fresh.sigmas().to_vec();
        let len = v.len();
        report.push(check_vec(fixture, "train_sigmas", v, vec![len])?);
    }
    if has("init_noise_sigma_before_set_timesteps") {
        report.push(check_scalar(
            fixture,
            "init_noise_sigma_before_set_timesteps",
            fresh.init_noise_sigma(),
        )?);
    }

    let ns = indices(&names, "timesteps", 1);
    if ns.is_empty() {
        return Err(meta_err(fixture, "no out.timesteps_N outputs"));
    }
    for n in ns.iter().map(|v| v[0]) {
        let mut s = fresh.clone();
        s.set_timesteps(n)?;
        let ts = Scheduler::timesteps(&s).to_vec();
        let len = ts.len();
        report.push(check_vec(
            fixture,
            &format!("timesteps_{n}"),
            ts,
            vec![len],
        )?);
        let sig = s.sigmas().to_vec();
        let len = sig.len();
        report.push(check_vec(fixture, &format!("sigmas_{n}"), sig, vec![len])?);
        let name = format!("init_noise_sigma_{n}");
        if has(&name) {
            report.push(check_scalar(fixture, &name, s.init_noise_sigma())?);
        }
    }

    if step_count(fixture) > 0 {
        let n = step_example_usize(fixture, "num_inference_steps")?;
        let mut s = fresh;
        s.set_timesteps(n)?;
        with_rank!(fixture, euler_steps, fixture, device, &mut s, &mut report)?;
    }
    Ok(report)
}

fn euler_steps<const D: usize>(
    fixture: &Fixture,
    device: &Device,
    s: &mut EulerDiscreteScheduler,
    report: &mut ParityReport,
) -> Result<()> {
    let names = fixture.output_names();
    let has = |n: &str| names.iter().any(|x| x == n);
    let mut x: Tensor<D> = fixture.tensor("in.sample", device)?;
    for i in 0..step_count(fixture) {
        let t = scalar_input(fixture, &format!("in.step_timestep_{i}"))?;
        let mo: Tensor<D> = fixture.tensor(&format!("in.model_output_{i}"), device)?;
        let scaled = s.scale_model_input(x.clone(), t)?;
        let name = format!("scaled_model_input_{i}");
        if has(&name) {
            report.push(fixture.check(&name, scaled.into_data())?);
        }
        let out = s.step_full(mo, t, x)?;
        let name = format!("pred_original_sample_{i}");
        if has(&name) {
            report.push(fixture.check(&name, out.pred_original_sample.into_data())?);
        }
        let name = format!("prev_sample_{i}");
        if has(&name) {
            report.push(fixture.check(&name, out.prev_sample.clone().into_data())?);
        }
        x = out.prev_sample;
    }
    Ok(())
}

fn run_flow_match(fixture: &Fixture, device: &Device) -> Result<ParityReport> {
    let config: FlowMatchEulerDiscreteConfig = fixture.config_as("")?;
    let names = fixture.output_names();
    let has = |n: &str| names.iter().any(|x| x == n);
    let mut report = ParityReport::default();
    let (atol, rtol) = fixture.tolerance();

    let fresh = FlowMatchEulerDiscreteScheduler::new(config)?;
    if has("train_sigmas") {
        let v = fresh.sigmas().to_vec();
        let len = v.len();
        report.push(check_vec(fixture, "train_sigmas", v, vec![len])?);
    }
    if has("train_timesteps") {
        let v = Scheduler::timesteps(&fresh).to_vec();
        let len = v.len();
        report.push(check_vec(fixture, "train_timesteps", v, vec![len])?);
    }

    let pairs = indices(&names, "timesteps", 2);
    if pairs.is_empty() {
        return Err(meta_err(fixture, "no out.timesteps_N_L outputs"));
    }
    let mut lens: Vec<usize> = pairs.iter().map(|p| p[1]).collect();
    lens.sort();
    lens.dedup();
    for &l in &lens {
        if let Some(want) = fixture
            .extra()
            .pointer(&format!("/mu/{l}"))
            .and_then(Value::as_f64)
        {
            let got = fresh.mu_for(l)?;
            report.push(Comparison::new(
                &format!("mu_{l}"),
                &[],
                &[got as f32],
                &[],
                &[want as f32],
                atol,
                rtol,
            ));
        }
    }
    for p in &pairs {
        let (n, l) = (p[0], p[1]);
        let mut s = fresh.clone();
        s.set_timesteps_flux(n, l)?;
        let ts = Scheduler::timesteps(&s).to_vec();
        let len = ts.len();
        report.push(check_vec(
            fixture,
            &format!("timesteps_{n}_{l}"),
            ts,
            vec![len],
        )?);
        let sig = s.sigmas().to_vec();
        let len = sig.len();
        report.push(check_vec(
            fixture,
            &format!("sigmas_{n}_{l}"),
            sig,
            vec![len],
        )?);
    }

    if step_count(fixture) > 0 {
        let n = step_example_usize(fixture, "num_inference_steps")?;
        let mut s = fresh;
        let mu = match fixture
            .extra()
            .pointer("/step_example/mu")
            .and_then(Value::as_f64)
        {
            Some(mu) => Some(mu),
            None => match step_example_usize(fixture, "image_seq_len") {
                Ok(l) => Some(s.mu_for(l)?),
                Err(_) => None,
            },
        };
        // FluxPipeline: sigmas linspace(1, 1/N, N), set_timesteps(sigmas=..., mu=mu)
        let sigmas = super::schedule::np_linspace(1.0, 1.0 / n as f64, n);
        s.set_timesteps_with(None, Some(&sigmas), mu)?;
        with_rank!(fixture, flow_steps, fixture, device, &mut s, &mut report)?;
    }
    Ok(report)
}

fn flow_steps<const D: usize>(
    fixture: &Fixture,
    device: &Device,
    s: &mut FlowMatchEulerDiscreteScheduler,
    report: &mut ParityReport,
) -> Result<()> {
    let names = fixture.output_names();
    let mut x: Tensor<D> = fixture.tensor("in.sample", device)?;
    for i in 0..step_count(fixture) {
        let t = scalar_input(fixture, &format!("in.step_timestep_{i}"))?;
        let mo: Tensor<D> = fixture.tensor(&format!("in.model_output_{i}"), device)?;
        x = s.step(mo, t, x)?;
        let name = format!("prev_sample_{i}");
        if names.contains(&name) {
            report.push(fixture.check(&name, x.clone().into_data())?);
        }
    }
    Ok(())
}
