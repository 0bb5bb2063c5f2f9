//! Parity dispatch over every crate: a fixture folder runs the module its `meta.json` `kind`
//! names; a manifest file builds its full-size model without allocating weights.

use std::path::{Path, PathBuf};

use faceclip_core::{CoverageReport, Device, Error, Fixture, Manifest, ParityReport, Result, Tensor};
use faceclip_dit::{FluxTransformer2DModel, FluxTransformerConfig, pack_latents};
use faceclip_unet::{AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConditionModel};

use crate::flux::{FluxConditioning, FluxDenoiser};
use crate::pipeline_utils::{Control, Guidance, denoise};
use crate::schedulers::{AnyScheduler, Scheduler, SchedulerKind};
use crate::sdxl::{MicroConditioning, SdxlConditioning, UnetConditioning};

/// What a parity check found.
#[derive(Debug)]
pub enum Outcome {
    /// A fixture ran; the report says whether it passed.
    Fixture(ParityReport),
    /// A manifest was walked; the report says whether it matched exactly.
    Manifest(CoverageReport),
    /// The kind or manifest is not ported yet.
    Unsupported(String),
}

/// One checked path with its outcome.
#[derive(Debug)]
pub struct Checked {
    pub path: PathBuf,
    /// The fixture folder or manifest name shown in reports.
    pub name: String,
    pub outcome: Result<Outcome>,
}

impl Checked {
    /// The one report line: `PASS|FAIL|UNSUPPORTED <name> ...`.
    pub fn line(&self) -> String {
        match &self.outcome {
            Ok(Outcome::Fixture(r)) => {
                let (atol, rtol) = r.tolerance();
                let mut s = format!(
                    "{} {} max_abs={:.3e} max_rel={:.3e} atol={atol:e} rtol={rtol:e}",
                    if r.pass() { "PASS" } else { "FAIL" },
                    self.name,
                    r.max_abs(),
                    r.max_rel()
                );
                for f in r.failures() {
                    s.push_str(&format!("\n    {f}"));
                }
                s
            }
            Ok(Outcome::Manifest(c)) => {
                let mut s = format!(
                    "{} {} missing={} unexpected={} mismatched={}",
                    if c.is_exact() { "PASS" } else { "FAIL" },
                    self.name,
                    c.missing.len(),
                    c.unexpected.len(),
                    c.mismatched.len()
                );
                if !c.is_exact() {
                    s.push_str(&format!("\n    {c}").replace('\n', "\n    "));
                }
                s
            }
            Ok(Outcome::Unsupported(kind)) => format!("UNSUPPORTED {} ({kind})", self.name),
            Err(e) => format!("FAIL {} error: {e}", self.name),
        }
    }

    /// True for a passing fixture or an exact manifest.
    pub fn passed(&self) -> bool {
        match &self.outcome {
            Ok(Outcome::Fixture(r)) => r.pass(),
            Ok(Outcome::Manifest(c)) => c.is_exact(),
            _ => false,
        }
    }

    /// True when the kind is not ported.
    pub fn unsupported(&self) -> bool {
        matches!(self.outcome, Ok(Outcome::Unsupported(_)))
    }
}

/// Runs one fixture folder.
pub fn run_fixture(fixture: &Fixture, device: &Device) -> Result<Outcome> {
    let hooks: [fn(&Fixture, &Device) -> faceclip_core::ParityOutcome; 5] = [
        faceclip_encoders::parity::run_fixture,
        faceclip_unet::parity::run_fixture,
        faceclip_dit::parity::run_fixture,
        faceclip_detect::parity::run_fixture,
        crate::schedulers::parity::run_fixture,
    ];
    for hook in hooks {
        if let Some(r) = hook(fixture, device) {
            return r.map(Outcome::Fixture);
        }
    }
    match fixture.kind()? {
        "pipeline_sdxl" => sdxl_parity(fixture, device).map(Outcome::Fixture),
        "pipeline_flux" => flux_parity(fixture, device).map(Outcome::Fixture),
        kind => Ok(Outcome::Unsupported(kind.to_string())),
    }
}

/// Walks one manifest.
pub fn check_manifest(manifest: &Manifest, device: &Device) -> Result<Outcome> {
    let hooks: [fn(&Manifest, &Device) -> Option<Result<CoverageReport>>; 3] = [
        faceclip_encoders::parity::check_manifest,
        faceclip_unet::parity::check_manifest,
        faceclip_dit::parity::check_manifest,
    ];
    for hook in hooks {
        if let Some(r) = hook(manifest, device) {
            return r.map(Outcome::Manifest);
        }
    }
    Ok(Outcome::Unsupported(manifest.name.clone()))
}

/// Checks `path`: a fixture folder (has `meta.json`), a manifest (`*.json`), or a folder of
/// those (searched one level down, sorted by name).
pub fn check_path(path: &Path, device: &Device) -> Vec<Checked> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    if path.is_dir() {
        if path.join("meta.json").is_file() {
            let outcome = Fixture::open(path).and_then(|f| run_fixture(&f, device));
            return vec![Checked {
                path: path.into(),
                name,
                outcome,
            }];
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                return vec![Checked {
                    path: path.into(),
                    name,
                    outcome: Err(Error::io(path, e)),
                }];
            }
        };
        entries.sort();
        let children: Vec<PathBuf> = entries
            .into_iter()
            .filter(|p| {
                (p.is_dir() && p.join("meta.json").is_file())
                    || p.extension().is_some_and(|e| e == "json")
            })
            .collect();
        if children.is_empty() {
            return vec![Checked {
                path: path.into(),
                name,
                outcome: Err(Error::config(
                    path,
                    "neither a fixture folder (no meta.json) nor a folder of fixtures or manifests",
                )),
            }];
        }
        return children
            .iter()
            .flat_map(|c| check_path(c, device))
            .collect();
    }
    let stem = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(name);
    let outcome = Manifest::open(path).and_then(|m| check_manifest(&m, device));
    vec![Checked {
        path: path.into(),
        name: stem,
        outcome,
    }]
}

/// What a pipeline fixture (`pipeline_sdxl`, `pipeline_flux`) gives both pipelines' parity
/// checks: the scheduler of kind `kind` from its `config.scheduler`, the numbers of its
/// `extra.call`, and its (positive, negative) conditioning `(prompt_embeds, pooled)`.
struct FixtureCall {
    scheduler: AnyScheduler,
    cond: (Tensor<3>, Tensor<2>),
    uncond: (Tensor<3>, Tensor<2>),
    call: serde_json::Value,
    meta: PathBuf,
}

impl FixtureCall {
    fn read(fx: &Fixture, kind: SchedulerKind, device: &Device) -> Result<Self> {
        let meta = fx.dir.join("meta.json");
        let scheduler = AnyScheduler::with_kind(
            kind,
            fx.config()
                .get("scheduler")
                .unwrap_or(&serde_json::Value::Null),
        )?;
        let call = fx
            .extra()
            .get("call")
            .cloned()
            .ok_or_else(|| Error::config(&meta, "no extra.call"))?;
        let embeds = |neg: &str| -> Result<(Tensor<3>, Tensor<2>)> {
            Ok((
                fx.tensor(&format!("in.{neg}prompt_embeds"), device)?,
                fx.tensor(&format!("in.{neg}pooled_prompt_embeds"), device)?,
            ))
        };
        Ok(Self {
            scheduler,
            cond: embeds("")?,
            uncond: embeds("negative_")?,
            call,
            meta,
        })
    }

    /// The number `extra.call.{key}`.
    fn num(&self, key: &str) -> Result<f64> {
        self.call
            .get(key)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| Error::config(&self.meta, format!("no extra.call.{key}")))
    }

    /// The pair `extra.call.{key}` (`[a, b]`), `None` when the call leaves it out.
    fn pair(&self, key: &str) -> Result<Option<(usize, usize)>> {
        let Some(v) = self.call.get(key).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        match v.as_array().map(|a| a.iter().map(|x| x.as_u64()).collect::<Vec<_>>()) {
            Some(a) if a.len() == 2 && a.iter().all(Option::is_some) => {
                Ok(Some((a[0].unwrap_or(0) as usize, a[1].unwrap_or(0) as usize)))
            }
            _ => Err(Error::config(
                &self.meta,
                format!("extra.call.{key} must be a pair of sizes, found {v}"),
            )),
        }
    }
}

/// Parity on the `pipeline_sdxl` fixture: its stored embeddings and latents, its UNet and
/// VAE (from `extra.weights_from`) and scheduler config, the call in `extra.call` (with its
/// micro-conditioning when given); compares `out.image` `[B, H, W, 3]`.
fn sdxl_parity(fx: &Fixture, device: &Device) -> Result<ParityReport> {
    let unet_cfg: UNet2DConditionConfig = fx.config_as("/unet")?;
    let vae_cfg: AutoencoderKLConfig = fx.config_as("/vae")?;
    let unet = UNet2DConditionModel::load(fx.weights_from("unet")?, &unet_cfg, device)?;
    let vae = AutoencoderKL::load(fx.weights_from("vae")?, &vae_cfg, device)?;
    let call = FixtureCall::read(fx, SchedulerKind::EulerDiscrete, device)?;
    let (h, w) = (call.num("height")? as usize, call.num("width")? as usize);
    let steps = call.num("num_inference_steps")? as usize;
    let guidance = call.num("guidance_scale")? as f32;
    let micro = MicroConditioning {
        original_size: call.pair("original_size")?,
        crops_coords_top_left: call.pair("crops_coords_top_left")?.unwrap_or((0, 0)),
        target_size: call.pair("target_size")?,
        negative_original_size: call.pair("negative_original_size")?,
        negative_crops_coords_top_left: call
            .pair("negative_crops_coords_top_left")?
            .unwrap_or((0, 0)),
        negative_target_size: call.pair("negative_target_size")?,
    };
    let (pos_ids, neg_ids) = micro.time_ids(h, w);
    let mut scheduler = call.scheduler;
    scheduler.set_timesteps(steps)?;
    let [pos, neg] = [(call.cond, pos_ids), (call.uncond, neg_ids)].map(
        |((prompt_embeds, pooled), ids)| {
            UnetConditioning::new(
                SdxlConditioning {
                    prompt_embeds,
                    pooled,
                },
                ids,
            )
        },
    );
    let noise = fx.tensor::<4>("in.latents", device)?;
    let x = denoise(
        &unet,
        &mut scheduler,
        noise,
        &pos,
        Some(&neg),
        Guidance::Batched(guidance),
        &mut |_, _, _| Control::Continue,
    )?;
    let img = crate::sdxl::decode(&vae, x)?.permute([0, 2, 3, 1]);
    let mut report = ParityReport::default();
    report.push(fx.check("image", img.into_data())?);
    Ok(report)
}

/// Parity on the `pipeline_flux` fixture; compares `out.image` `[B, H, W, 3]` (and the
/// packing of `in.latents_unpacked` when given).
fn flux_parity(fx: &Fixture, device: &Device) -> Result<ParityReport> {
    let tcfg: FluxTransformerConfig = fx.config_as("/transformer")?;
    let vae_cfg: AutoencoderKLConfig = fx.config_as("/vae")?;
    let transformer =
        FluxTransformer2DModel::load(&fx.weights_from("transformer")?, &tcfg, device)?;
    let vae = AutoencoderKL::load(fx.weights_from("vae")?, &vae_cfg, device)?;
    let call = FixtureCall::read(fx, SchedulerKind::FlowMatchEulerDiscrete, device)?;
    let (h, w) = (call.num("height")? as usize, call.num("width")? as usize);
    let steps = call.num("num_inference_steps")? as usize;
    let guidance = call.num("guidance_scale")? as f32;
    let true_cfg = call.num("true_cfg_scale")? as f32;
    let mut scheduler = call.scheduler;
    let [cond, uncond] = [call.cond, call.uncond].map(|(prompt_embeds, pooled)| FluxConditioning {
        prompt_embeds,
        pooled,
    });
    let f = vae.downscale_factor();
    let (lh, lw) = (h / f, w / f);
    let noise = fx.tensor::<3>("in.latents", device)?;
    let mut report = ParityReport::default();
    // The packed input must be the packing of the unpacked one.
    if fx.has("in.latents_unpacked") {
        let packed = pack_latents(fx.tensor::<4>("in.latents_unpacked", device)?)?;
        let (shape, want) = fx.f32("in.latents")?;
        let got = faceclip_core::to_vec_f32(packed.clone());
        report.push(faceclip_core::Comparison::new(
            "packing",
            &packed.dims(),
            &got,
            &shape,
            &want,
            0.0,
            0.0,
        ));
    }
    let [b, seq, _] = noise.dims();
    scheduler.set_image_seq_len(seq);
    scheduler.set_timesteps(steps)?;
    let model = FluxDenoiser::new(
        &transformer,
        (lh / 2, lw / 2),
        cond.prompt_embeds.dims()[1],
        guidance,
        b,
        device,
    )?;
    let x = denoise(
        &model,
        &mut scheduler,
        noise,
        &cond,
        Some(&uncond),
        Guidance::TwoPass(true_cfg),
        &mut |_, _, _| Control::Continue,
    )?;
    let img = crate::flux::decode(&vae, x, lh, lw)?.permute([0, 2, 3, 1]);
    report.push(fx.check("image", img.into_data())?);
    Ok(report)
}
