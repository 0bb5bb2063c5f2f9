//! LoRA files merged into the base weights as they load.
//!
//! A [`LoraSet`] opens LoRA files (through [`Checkpoint::open`], so they get the same checks
//! as any checkpoint), recognises each file's layout, and maps every LoRA module onto the base
//! model's weight it changes, by diffusers key name (`...attn1.to_q.weight`). Attached to the
//! one loading path ([`VarBuilder::with_loras`](crate::VarBuilder::with_loras)), it adds
//! `scale · (alpha / rank) · up @ down` to each such weight right after the weight is read, in
//! `f32`, one weight at a time: the LoRA factors stay memory-mapped and only one layer's delta
//! row block is ever computed. After the walk, a LoRA module that matched no weight the model
//! asked for is an error ([`VarBuilder::finish`](crate::VarBuilder::finish)), so a LoRA for
//! another model is refused rather than ignored.
//!
//! Layouts, as diffusers' `load_lora_weights` reads them (diffusers 0.33):
//!
//! | layout | keys | target |
//! | --- | --- | --- |
//! | diffusers / PEFT | `unet.<module>.lora_A.weight`, `.lora_B.weight`, optional `unet.<module>.alpha` (`transformer.` for FLUX) | both |
//! | kohya, diffusers names | `lora_unet_<module with _ for .>.lora_down.weight`, `.lora_up.weight`, optional `.alpha` | SDXL UNet |
//! | kohya, original (SGM) names | `lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q...`, mapped to diffusers blocks with the UNet's `layers_per_block` | SDXL UNet |
//! | kohya / sd-scripts, BFL names | `lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight` (or ComfyUI's `diffusion_model.double_blocks.0...`) | FLUX transformer |
//! | XLabs | `double_blocks.0.processor.qkv_lora1.down.weight`, `.up.weight` (no alpha) | FLUX transformer |
//!
//! Fused BFL projections are split as diffusers splits them: `qkv` gives `to_q`/`to_k`/`to_v`
//! (or `add_{q,k,v}_proj`) each the matching third of `lora_up`'s rows with the whole
//! `lora_down`; a single block's `linear1` gives `to_q`/`to_k`/`to_v`/`proj_mlp`; the final
//! adaLN's rows are swapped into diffusers' `(scale, shift)` order. The alpha defaults to the
//! rank. Convolution LoRAs (`lora_down` `[r, in, kh, kw]`, `lora_up` `[out, r, 1, 1]`) apply to
//! convolution weights. Text-encoder parts of a file (`lora_te*`, `text_encoder.`) are not
//! applied (FaceCLIP replaces the text encoders); [`LoraSet::skipped`] lists them. DoRA and
//! LyCORIS variants other than plain LoRA/LoCon are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::error::{Error, Result};

/// One LoRA file and the strength it is merged with (`--lora FILE[:SCALE]`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub path: PathBuf,
    pub scale: f32,
}

impl LoraSpec {
    /// `path` merged at `scale`.
    pub fn new(path: impl Into<PathBuf>, scale: f32) -> Self {
        Self {
            path: path.into(),
            scale,
        }
    }

    /// Parses `FILE[:SCALE]`: the text after the last `:` is the scale when it reads as a
    /// number (so `C:\x.safetensors` stays a path); the scale defaults to 1.
    pub fn parse(arg: &str) -> Result<Self> {
        let (path, scale) = match arg.rsplit_once(':') {
            Some((p, s)) => match s.trim().parse::<f32>() {
                Ok(scale) => (p, scale),
                Err(_) if s.is_empty() => {
                    return Err(Error::invalid(format!(
                        "LoRA `{arg}`: nothing after `:` (expected FILE[:SCALE])"
                    )));
                }
                Err(_) => (arg, 1.0),
            },
            None => (arg, 1.0),
        };
        if path.is_empty() {
            return Err(Error::invalid(
                "LoRA: empty file name (expected FILE[:SCALE])",
            ));
        }
        if !scale.is_finite() {
            return Err(Error::invalid(format!(
                "LoRA `{arg}`: scale {scale} is not a finite number"
            )));
        }
        Ok(Self::new(path, scale))
    }
}

/// The model a [`LoraSet`] is merged into: it decides which layouts and names are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraTarget {
    /// SDXL's `UNet2DConditionModel`. `layers_per_block` maps original (SGM) block numbers
    /// onto diffusers' blocks; `None` (a config whose blocks differ in depth) refuses files
    /// with SGM names.
    SdxlUnet { layers_per_block: Option<usize> },
    /// FLUX's `FluxTransformer2DModel`.
    FluxTransformer,
}

impl LoraTarget {
    fn describe(self) -> &'static str {
        match self {
            Self::SdxlUnet { .. } => "SDXL UNet",
            Self::FluxTransformer => "FLUX transformer",
        }
    }
}

/// The key layout a LoRA file was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraLayout {
    /// `unet.` / `transformer.` + `<module>.lora_A.weight` / `.lora_B.weight` (+ `.alpha`).
    DiffusersPeft,
    /// kohya `lora_unet_<diffusers module>.lora_down.weight` / `.lora_up.weight` / `.alpha`.
    Kohya,
    /// kohya with SDXL's original block names (`input_blocks_4_1_...`).
    KohyaSgm,
    /// kohya / sd-scripts FLUX with BFL module names (`double_blocks_0_img_attn_qkv`).
    KohyaBfl,
    /// XLabs FLUX (`double_blocks.0.processor.qkv_lora1.down.weight`).
    XLabs,
}

/// Which rows of `lora_up` land on one target weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// All of them.
    All,
    /// Third `i` of a fused `qkv`.
    Third(usize),
    /// Part `i` of a single block's `linear1` (`q`, `k`, `v`: the target's width each; the MLP
    /// part: the rest).
    QkvMlp(usize),
    /// All of them, with the two halves swapped (BFL `(shift, scale)` -> `(scale, shift)`).
    SwapHalves,
}

/// One LoRA module's contribution to one base weight.
#[derive(Debug, Clone)]
struct Patch {
    file: usize,
    /// The module as the file names it (for messages).
    module: String,
    down: String,
    up: String,
    alpha: Option<f32>,
    rows: Rows,
    /// The diffusers weight key it targets, or the kohya underscore name it matches.
    target: String,
    matched: bool,
}

#[derive(Debug)]
struct LoraFile {
    spec: LoraSpec,
    layout: LoraLayout,
    checkpoint: Checkpoint,
}

/// A text-encoder module of a LoRA file, not applied to the denoiser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedModule {
    pub file: PathBuf,
    pub module: String,
}

/// LoRA files mapped onto a model's weights; see the module docs.
#[derive(Debug)]
pub struct LoraSet {
    target: LoraTarget,
    files: Vec<LoraFile>,
    patches: Vec<Patch>,
    /// Diffusers weight key -> patches.
    by_key: BTreeMap<String, Vec<usize>>,
    /// kohya UNet names (diffusers module, `.` -> `_`) -> patches.
    by_underscored: BTreeMap<String, Vec<usize>>,
    skipped: Vec<SkippedModule>,
}

impl LoraSet {
    /// Opens every file of `specs` and maps its modules for `target`. Fails on a file that is
    /// not a readable checkpoint, not a LoRA layout this loader reads, or names a module the
    /// target does not have.
    pub fn open(specs: &[LoraSpec], target: LoraTarget) -> Result<Self> {
        let mut set = Self {
            target,
            files: Vec::new(),
            patches: Vec::new(),
            by_key: BTreeMap::new(),
            by_underscored: BTreeMap::new(),
            skipped: Vec::new(),
        };
        for spec in specs {
            if !spec.scale.is_finite() {
                return Err(Error::invalid(format!(
                    "LoRA {}: scale {} is not a finite number",
                    spec.path.display(),
                    spec.scale
                )));
            }
            let checkpoint = Checkpoint::open(&spec.path)?;
            set.add(spec.clone(), checkpoint)?;
        }
        Ok(set)
    }

    /// True when no LoRA module is to be merged.
    pub fn is_empty(&self) -> bool {
        self.patches.is_empty()
    }

    /// The model this set was mapped for.
    pub fn target(&self) -> LoraTarget {
        self.target
    }

    /// Each file with its scale and recognised layout.
    pub fn files(&self) -> Vec<(&Path, f32, LoraLayout)> {
        self.files
            .iter()
            .map(|f| (f.spec.path.as_path(), f.spec.scale, f.layout))
            .collect()
    }

    /// Text-encoder modules the files hold, which are not applied.
    pub fn skipped(&self) -> &[SkippedModule] {
        &self.skipped
    }

    fn add(&mut self, spec: LoraSpec, checkpoint: Checkpoint) -> Result<()> {
        let path = spec.path.clone();
        let infos = checkpoint.list();
        if infos.is_empty() {
            return Err(Error::checkpoint(&path, "LoRA file holds no tensors"));
        }
        if let Some(k) = infos
            .iter()
            .map(|i| &i.name)
            .find(|k| k.contains("dora_scale") || k.contains("lora_magnitude_vector"))
        {
            return Err(Error::checkpoint(
                &path,
                format!("`{k}`: DoRA LoRAs are not supported"),
            ));
        }
        let layout = detect(&infos, self.target)
            .ok_or_else(|| Error::checkpoint(&path, self.unknown_layout(&infos)))?;
        let file = self.files.len();
        let modules = match layout {
            LoraLayout::DiffusersPeft => peft_modules(&path, &checkpoint)?,
            LoraLayout::XLabs => xlabs_modules(&path, &infos)?,
            _ => kohya_modules(&path, &checkpoint)?,
        };
        for m in modules {
            if is_text_encoder(&m.module) {
                self.skipped.push(SkippedModule {
                    file: path.clone(),
                    module: m.module,
                });
                continue;
            }
            let targets = match layout {
                LoraLayout::DiffusersPeft => {
                    let name = peft_module_name(&m.module, self.target)
                        .ok_or_else(|| Error::checkpoint(&path, self.foreign(&m.module)))?;
                    vec![(Key::Exact(format!("{name}.weight")), Rows::All)]
                }
                LoraLayout::Kohya | LoraLayout::KohyaSgm => {
                    let name = m
                        .module
                        .strip_prefix("lora_unet_")
                        .ok_or_else(|| Error::checkpoint(&path, self.foreign(&m.module)))?;
                    let name = if layout == LoraLayout::KohyaSgm {
                        let lpb = match self.target {
                            LoraTarget::SdxlUnet {
                                layers_per_block: Some(n),
                            } => n,
                            _ => {
                                return Err(Error::checkpoint(
                                    &path,
                                    format!(
                                        "`{}` uses SDXL's original block names, which need a \
                                         UNet with the same layers_per_block in every block",
                                        m.module
                                    ),
                                ));
                            }
                        };
                        sgm_to_diffusers(name, lpb).map_err(|why| {
                            Error::checkpoint(&path, format!("`{}`: {why}", m.module))
                        })?
                    } else {
                        name.to_string()
                    };
                    vec![(Key::Underscored(name), Rows::All)]
                }
                LoraLayout::KohyaBfl => bfl_targets(&m.module)
                    .ok_or_else(|| Error::checkpoint(&path, self.foreign(&m.module)))?,
                LoraLayout::XLabs => xlabs_targets(&m.module)
                    .ok_or_else(|| Error::checkpoint(&path, self.foreign(&m.module)))?,
            };
            for (key, rows) in targets {
                let idx = self.patches.len();
                let (map, target) = match key {
                    Key::Exact(k) => (&mut self.by_key, k),
                    Key::Underscored(k) => (&mut self.by_underscored, k),
                };
                map.entry(target.clone()).or_default().push(idx);
                self.patches.push(Patch {
                    file,
                    module: m.module.clone(),
                    down: m.down.clone(),
                    up: m.up.clone(),
                    alpha: m.alpha,
                    rows,
                    target,
                    matched: false,
                });
            }
        }
        self.files.push(LoraFile {
            spec,
            layout,
            checkpoint,
        });
        Ok(())
    }

    fn unknown_layout(&self, infos: &[TensorInfo]) -> String {
        let first = infos.first().map(|i| i.name.as_str()).unwrap_or("");
        let expected = match self.target {
            LoraTarget::SdxlUnet { .. } => {
                "`unet.<module>.lora_A.weight` (diffusers/PEFT) or `lora_unet_<module>.lora_down.weight` (kohya)"
            }
            LoraTarget::FluxTransformer => {
                "`transformer.<module>.lora_A.weight` (diffusers/PEFT), `lora_unet_double_blocks_0_...lora_down.weight` (kohya) or `double_blocks.0.processor.qkv_lora1.down.weight` (XLabs)"
            }
        };
        format!(
            "not a LoRA layout this loader reads for the {} (first key `{first}`; expected {expected})",
            self.target.describe()
        )
    }

    fn foreign(&self, module: &str) -> String {
        format!(
            "LoRA module `{module}` is not a module of the {} (is this LoRA for another model?)",
            self.target.describe()
        )
    }

    /// The patches for base weight `key`, marked as matched.
    fn take(&mut self, key: &str) -> Vec<usize> {
        let mut ids: Vec<usize> = self.by_key.get(key).cloned().unwrap_or_default();
        if !self.by_underscored.is_empty()
            && let Some(module) = key.strip_suffix(".weight")
            && let Some(more) = self.by_underscored.get(&module.replace('.', "_"))
        {
            ids.extend(more.iter().copied());
        }
        for &i in &ids {
            self.patches[i].matched = true;
        }
        ids
    }

    /// Checks every LoRA module targeting `key` against its `shape` and, when `values` are
    /// given (the weight as read, row-major), adds their deltas to them.
    pub(crate) fn merge(
        &mut self,
        key: &str,
        shape: &[usize],
        mut values: Option<&mut [f32]>,
    ) -> std::result::Result<(), LoraProblem> {
        for id in self.take(key) {
            let patch = &self.patches[id];
            let file = &self.files[patch.file];
            let fit = Fit::check(patch, file, key, shape)?;
            if let Some(values) = values.as_deref_mut() {
                apply(patch, file, &fit, values)?;
            }
        }
        Ok(())
    }

    /// The LoRA modules that matched no weight the model asked for, as one error naming the
    /// first such file and its modules (and how many there are in all).
    pub(crate) fn unmatched_error(&self) -> Option<Error> {
        let unmatched: Vec<&Patch> = self.patches.iter().filter(|p| !p.matched).collect();
        let first = *unmatched.first()?;
        let names: Vec<String> = unmatched
            .iter()
            .filter(|p| p.file == first.file)
            .map(|p| format!("`{}` (-> `{}`)", p.module, p.target))
            .collect();
        const SHOW: usize = 10;
        let shown = names.len().min(SHOW);
        let mut reason = format!(
            "{} LoRA target(s) match no weight of the {}: {}",
            unmatched.len(),
            self.target.describe(),
            names[..shown].join(", ")
        );
        if unmatched.len() > shown {
            reason.push_str(&format!(" and {} more", unmatched.len() - shown));
        }
        reason.push_str(" (is this LoRA for another model?)");
        Some(Error::checkpoint(&self.files[first.file].spec.path, reason))
    }
}

/// A LoRA problem found while merging: the LoRA file and what is wrong.
#[derive(Debug, Clone)]
pub(crate) struct LoraProblem {
    pub path: PathBuf,
    pub reason: String,
}

impl LoraProblem {
    pub(crate) fn error(&self, more: usize) -> Error {
        let mut reason = self.reason.clone();
        if more > 0 {
            reason.push_str(&format!(" (and {more} more LoRA problem(s))"));
        }
        Error::checkpoint(&self.path, reason)
    }
}

enum Key {
    Exact(String),
    Underscored(String),
}

/// A LoRA module as a file stores it.
struct Module {
    module: String,
    down: String,
    up: String,
    alpha: Option<f32>,
}

fn is_text_encoder(module: &str) -> bool {
    [
        "lora_te_",
        "lora_te1_",
        "lora_te2_",
        "text_encoder.",
        "text_encoder_2.",
        "text_encoders.",
    ]
    .iter()
    .any(|p| module.starts_with(p))
}

/// The layout of a file for `target`, as diffusers 0.33 decides it.
fn detect(infos: &[TensorInfo], target: LoraTarget) -> Option<LoraLayout> {
    let any = |f: &dyn Fn(&str) -> bool| infos.iter().any(|i| f(&i.name));
    if any(&|k| k.ends_with(".lora_down.weight")) {
        return Some(match target {
            LoraTarget::FluxTransformer => LoraLayout::KohyaBfl,
            LoraTarget::SdxlUnet { .. } => {
                let sgm = any(&|k| {
                    let k = k.strip_prefix("lora_unet_").unwrap_or("");
                    ["input_blocks_", "middle_block_", "output_blocks_"]
                        .iter()
                        .any(|p| k.starts_with(p))
                });
                if sgm {
                    LoraLayout::KohyaSgm
                } else {
                    LoraLayout::Kohya
                }
            }
        });
    }
    if any(&|k| k.ends_with(".lora_A.weight")) {
        return Some(LoraLayout::DiffusersPeft);
    }
    if target == LoraTarget::FluxTransformer && any(&|k| k.contains(".processor.")) {
        return Some(LoraLayout::XLabs);
    }
    None
}

/// Reads a scalar alpha tensor.
fn read_alpha(path: &Path, ck: &Checkpoint, key: &str) -> Result<f32> {
    let (shape, v) = ck.read_f32(key)?;
    match v.as_slice() {
        [a] if a.is_finite() => Ok(*a),
        _ => Err(Error::checkpoint(
            path,
            format!("`{key}` should be one finite number, found shape {shape:?}"),
        )),
    }
}

/// Groups keys `<module><suffix>` into modules, the suffix being `down`, `up` or `alpha`;
/// any other key is an error naming it.
fn group(
    path: &Path,
    keys: impl Iterator<Item = String>,
    down: &str,
    up: &str,
    alpha: Option<&str>,
    what: &str,
) -> Result<BTreeMap<String, [Option<String>; 3]>> {
    let mut modules: BTreeMap<String, [Option<String>; 3]> = BTreeMap::new();
    for k in keys {
        let suffixes = [Some(down), Some(up), alpha];
        let hit = suffixes.iter().enumerate().find_map(|(i, s)| {
            s.and_then(|s| k.strip_suffix(s))
                .map(|m| (i, m.to_string()))
        });
        let Some((i, module)) = hit else {
            return Err(Error::checkpoint(
                path,
                format!("`{k}` is not a {what} LoRA key (unsupported LoRA variant?)"),
            ));
        };
        modules.entry(module).or_default()[i] = Some(k);
    }
    Ok(modules)
}

fn into_modules(
    path: &Path,
    ck: &Checkpoint,
    grouped: BTreeMap<String, [Option<String>; 3]>,
) -> Result<Vec<Module>> {
    grouped
        .into_iter()
        .map(|(module, [down, up, alpha])| {
            let (Some(down), Some(up)) = (down, up) else {
                return Err(Error::checkpoint(
                    path,
                    format!("LoRA module `{module}` lacks its down or up matrix"),
                ));
            };
            let alpha = alpha.map(|a| read_alpha(path, ck, &a)).transpose()?;
            Ok(Module {
                module,
                down,
                up,
                alpha,
            })
        })
        .collect()
}

fn kohya_modules(path: &Path, ck: &Checkpoint) -> Result<Vec<Module>> {
    let grouped = group(
        path,
        ck.list().into_iter().map(|i| i.name),
        ".lora_down.weight",
        ".lora_up.weight",
        Some(".alpha"),
        "kohya",
    )?;
    let mut modules = into_modules(path, ck, grouped)?;
    // ComfyUI spells kohya names with dots under `diffusion_model.`.
    for m in &mut modules {
        if let Some(rest) = m.module.strip_prefix("diffusion_model.") {
            m.module = format!("lora_unet_{}", rest.replace('.', "_"));
        } else if let Some(rest) = m.module.strip_prefix("lora_unet_") {
            m.module = format!("lora_unet_{}", rest.replace('.', "_"));
        }
    }
    Ok(modules)
}

fn peft_modules(path: &Path, ck: &Checkpoint) -> Result<Vec<Module>> {
    let grouped = group(
        path,
        ck.list().into_iter().map(|i| i.name),
        ".lora_A.weight",
        ".lora_B.weight",
        Some(".alpha"),
        "diffusers/PEFT",
    )?;
    into_modules(path, ck, grouped)
}

fn xlabs_modules(path: &Path, infos: &[TensorInfo]) -> Result<Vec<Module>> {
    let grouped = group(
        path,
        infos.iter().map(|i| i.name.clone()),
        ".down.weight",
        ".up.weight",
        None,
        "XLabs",
    )?;
    grouped
        .into_iter()
        .map(|(module, [down, up, _])| match (down, up) {
            (Some(down), Some(up)) => Ok(Module {
                module: module
                    .strip_prefix("diffusion_model.")
                    .unwrap_or(&module)
                    .to_string(),
                down,
                up,
                alpha: None,
            }),
            _ => Err(Error::checkpoint(
                path,
                format!("LoRA module `{module}` lacks its down or up matrix"),
            )),
        })
        .collect()
}

/// The model's module name of a diffusers/PEFT module key (`unet.` / `transformer.` removed).
fn peft_module_name(module: &str, target: LoraTarget) -> Option<&str> {
    let prefix = match target {
        LoraTarget::SdxlUnet { .. } => "unet.",
        LoraTarget::FluxTransformer => "transformer.",
    };
    module.strip_prefix(prefix).filter(|m| !m.is_empty())
}

/// Splits `"<head><index>_<rest>"` into `(index, rest)`.
fn numbered<'a>(name: &'a str, head: &str) -> Option<(usize, &'a str)> {
    let tail = name.strip_prefix(head)?;
    let (idx, rest) = tail.split_once('_').unwrap_or((tail, ""));
    Some((idx.parse().ok()?, rest))
}

/// An original (SGM) UNet module name, `_`-separated, as diffusers' underscore module name,
/// following diffusers' `_maybe_map_sgm_blocks_to_diffusers` and `_convert_unet_lora_key`.
fn sgm_to_diffusers(name: &str, layers_per_block: usize) -> std::result::Result<String, String> {
    let per = layers_per_block + 1;
    let inner = |j: usize| match j {
        0 => Ok("resnets"),
        1 => Ok("attentions"),
        2 => Ok("upsamplers"),
        _ => Err(format!(
            "inner block index {j} is not 0 (resnet), 1 (attention) or 2 (upsampler)"
        )),
    };
    let (block, rest) = if let Some((i, rest)) = numbered(name, "input_blocks_") {
        if i == 0 {
            return Err(
                "input_blocks_0 (conv_in) has no diffusers block; diffusers refuses it too".into(),
            );
        }
        let (b, layer) = ((i - 1) / per, (i - 1) % per);
        let (j, rest) = numbered(rest, "").ok_or("no inner block index")?;
        if rest == "op" {
            (format!("down_blocks_{b}_downsamplers_0"), "conv")
        } else {
            (format!("down_blocks_{b}_{}_{layer}", inner(j)?), rest)
        }
    } else if let Some((i, rest)) = numbered(name, "middle_block_") {
        let part = match i {
            0 => "resnets_0",
            1 => "attentions_0",
            2 => "resnets_1",
            _ => return Err(format!("middle_block_{i} does not exist (0, 1, 2)")),
        };
        (format!("mid_block_{part}"), rest)
    } else if let Some((i, rest)) = numbered(name, "output_blocks_") {
        let (b, layer) = (i / per, i % per);
        let (j, rest) = numbered(rest, "").ok_or("no inner block index")?;
        let layer = if j == 2 { 0 } else { layer };
        (format!("up_blocks_{b}_{}_{layer}", inner(j)?), rest)
    } else {
        return Err(
            "in a file with original (SGM) names, only input_blocks, middle_block and \
                    output_blocks modules are mapped (diffusers refuses the others too)"
                .into(),
        );
    };
    let rest = match rest {
        "in_layers_2" => "conv1",
        "out_layers_3" => "conv2",
        "emb_layers_1" => "time_emb_proj",
        "skip_connection" => "conv_shortcut",
        other => other,
    };
    if rest.is_empty() {
        return Err("no module after the block".into());
    }
    Ok(format!("{block}_{rest}"))
}

/// Diffusers targets of a kohya / sd-scripts FLUX module (BFL names), as diffusers'
/// `_convert_kohya_flux_lora_to_diffusers` maps them.
fn bfl_targets(module: &str) -> Option<Vec<(Key, Rows)>> {
    let name = module.strip_prefix("lora_unet_")?;
    let one = |k: String, rows: Rows| Some(vec![(Key::Exact(format!("{k}.weight")), rows)]);
    let split = |pre: &str, names: &[&str], rows: fn(usize) -> Rows| {
        Some(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (Key::Exact(format!("{pre}{n}.weight")), rows(i)))
                .collect(),
        )
    };
    if let Some((i, rest)) = numbered(name, "double_blocks_") {
        let pre = format!("transformer_blocks.{i}.");
        let to = match rest {
            "img_attn_qkv" => {
                return split(&pre, &["attn.to_q", "attn.to_k", "attn.to_v"], Rows::Third);
            }
            "txt_attn_qkv" => {
                return split(
                    &pre,
                    &["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
                    Rows::Third,
                );
            }
            "img_attn_proj" => "attn.to_out.0",
            "txt_attn_proj" => "attn.to_add_out",
            "img_mlp_0" => "ff.net.0.proj",
            "img_mlp_2" => "ff.net.2",
            "txt_mlp_0" => "ff_context.net.0.proj",
            "txt_mlp_2" => "ff_context.net.2",
            "img_mod_lin" => "norm1.linear",
            "txt_mod_lin" => "norm1_context.linear",
            _ => return None,
        };
        return one(format!("{pre}{to}"), Rows::All);
    }
    if let Some((i, rest)) = numbered(name, "single_blocks_") {
        let pre = format!("single_transformer_blocks.{i}.");
        let to = match rest {
            "linear1" => {
                return split(
                    &pre,
                    &["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"],
                    Rows::QkvMlp,
                );
            }
            "linear2" => "proj_out",
            "modulation_lin" => "norm.linear",
            _ => return None,
        };
        return one(format!("{pre}{to}"), Rows::All);
    }
    let (to, rows) = match name {
        "img_in" => ("x_embedder", Rows::All),
        "txt_in" => ("context_embedder", Rows::All),
        "time_in_in_layer" => ("time_text_embed.timestep_embedder.linear_1", Rows::All),
        "time_in_out_layer" => ("time_text_embed.timestep_embedder.linear_2", Rows::All),
        "vector_in_in_layer" => ("time_text_embed.text_embedder.linear_1", Rows::All),
        "vector_in_out_layer" => ("time_text_embed.text_embedder.linear_2", Rows::All),
        "guidance_in_in_layer" => ("time_text_embed.guidance_embedder.linear_1", Rows::All),
        "guidance_in_out_layer" => ("time_text_embed.guidance_embedder.linear_2", Rows::All),
        "final_layer_linear" => ("proj_out", Rows::All),
        "final_layer_adaLN_modulation_1" => ("norm_out.linear", Rows::SwapHalves),
        _ => return None,
    };
    one(to.to_string(), rows)
}

/// Diffusers targets of an XLabs module, as diffusers' `_convert_xlabs_flux_lora_to_diffusers`
/// maps them.
fn xlabs_targets(module: &str) -> Option<Vec<(Key, Rows)>> {
    let thirds = |pre: String, names: [&str; 3]| {
        Some(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (Key::Exact(format!("{pre}attn.{n}.weight")), Rows::Third(i)))
                .collect(),
        )
    };
    let one = |k: String| Some(vec![(Key::Exact(format!("{k}.weight")), Rows::All)]);
    let block = |head: &str| -> Option<(usize, &str)> {
        let tail = module.strip_prefix(head)?;
        let (i, rest) = tail.split_once('.')?;
        Some((i.parse().ok()?, rest.strip_prefix("processor.")?))
    };
    if let Some((i, rest)) = block("double_blocks.") {
        let pre = format!("transformer_blocks.{i}.");
        return match rest {
            "qkv_lora1" => thirds(pre, ["to_q", "to_k", "to_v"]),
            "qkv_lora2" => thirds(pre, ["add_q_proj", "add_k_proj", "add_v_proj"]),
            "proj_lora1" => one(format!("{pre}attn.to_out.0")),
            "proj_lora2" => one(format!("{pre}attn.to_add_out")),
            _ => None,
        };
    }
    if let Some((i, rest)) = block("single_blocks.") {
        let pre = format!("single_transformer_blocks.{i}.");
        return match rest {
            "qkv_lora" => thirds(pre, ["to_q", "to_k", "to_v"]),
            "proj_lora" => one(format!("{pre}proj_out")),
            _ => None,
        };
    }
    None
}

/// How a patch's factors fit a base weight of `shape`.
#[derive(Clone, Copy)]
struct Fit {
    rank: usize,
    /// Row of `lora_up` for each output row `o` is `first + o` (or swapped halves).
    first: usize,
    out: usize,
    cols: usize,
}

impl Fit {
    fn check(
        patch: &Patch,
        file: &LoraFile,
        key: &str,
        shape: &[usize],
    ) -> std::result::Result<Self, LoraProblem> {
        let path = &file.spec.path;
        let problem = |why: String| LoraProblem {
            path: path.clone(),
            reason: format!(
                "LoRA module `{}` for `{key}` {shape:?}: {why}",
                patch.module
            ),
        };
        let info = |k: &str| {
            file.checkpoint
                .info(k)
                .map(|i| i.shape.clone())
                .ok_or_else(|| problem(format!("`{k}` is missing")))
        };
        let (down, up) = (info(&patch.down)?, info(&patch.up)?);
        let bad = || {
            problem(format!(
                "factors do not fit (lora_down {down:?}, lora_up {up:?})"
            ))
        };
        if !(shape.len() == 2 || shape.len() == 4)
            || down.len() != shape.len()
            || up.len() != shape.len()
        {
            return Err(bad());
        }
        let rank = down[0];
        if rank == 0 || up[1] != rank || down[1..] != shape[1..] || up[2..].iter().any(|&d| d != 1)
        {
            return Err(bad());
        }
        let (total, out) = (up[0], shape[0]);
        let first = match patch.rows {
            Rows::All => (total == out).then_some(0),
            Rows::SwapHalves => (total == out && out % 2 == 0).then_some(0),
            Rows::Third(i) => (total == 3 * out).then_some(i * out),
            Rows::QkvMlp(i) if i < 3 => (total > 3 * out).then_some(i * out),
            Rows::QkvMlp(_) => (total > out && (total - out) % 3 == 0).then_some(total - out),
        };
        let first = first.ok_or_else(bad)?;
        Ok(Self {
            rank,
            first,
            out,
            cols: shape[1..].iter().product(),
        })
    }
}

/// Adds `scale · alpha / rank · up[rows] @ down` to `values` (`[out, cols]`, row-major).
fn apply(
    patch: &Patch,
    file: &LoraFile,
    fit: &Fit,
    values: &mut [f32],
) -> std::result::Result<(), LoraProblem> {
    let problem = |e: Error| LoraProblem {
        path: file.spec.path.clone(),
        reason: format!(
            "LoRA module `{}`: {}",
            patch.module,
            match e {
                Error::Checkpoint { reason, .. } => reason,
                other => other.to_string(),
            }
        ),
    };
    let ck = &file.checkpoint;
    let (_, down) = ck.read_f32(&patch.down).map_err(problem)?;
    ck.release(&patch.down);
    let (_, up) = ck.read_f32(&patch.up).map_err(problem)?;
    ck.release(&patch.up);
    let Fit {
        rank,
        first,
        out,
        cols,
    } = *fit;
    if out == 0 || cols == 0 {
        return Ok(());
    }
    let alpha = patch.alpha.map_or(rank as f64, f64::from);
    let factor = (f64::from(file.spec.scale) * alpha / rank as f64) as f32;
    let swap = patch.rows == Rows::SwapHalves;
    values.par_chunks_mut(cols).enumerate().for_each_init(
        || vec![0f32; cols],
        |delta, (o, row)| {
            let src = if swap { (o + out / 2) % out } else { first + o };
            let up_row = &up[src * rank..(src + 1) * rank];
            delta.fill(0.0);
            for (r, &u) in up_row.iter().enumerate() {
                let d = &down[r * cols..(r + 1) * cols];
                for (acc, &x) in delta.iter_mut().zip(d) {
                    *acc += u * x;
                }
            }
            for (w, &d) in row.iter_mut().zip(delta.iter()) {
                *w += d * factor;
            }
        },
    );
    Ok(())
}
