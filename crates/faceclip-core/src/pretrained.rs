//! The one model-loading path: [`Pretrained`], which every model that loads from a
//! checkpoint implements (the SDXL UNet and VAE, the FLUX transformer, the two FaceCLIP
//! encoders), and [`read_config`], the one reader of `config.json` files.
//!
//! A model says only what differs between models: its config type and how to read it, its
//! walk over the upstream key names ([`Pretrained::build`]), how the key names of the files
//! it accepts are rewritten into the walk's names ([`Pretrained::adapt`]), whether LoRA files
//! apply to it ([`Pretrained::lora_target`]) and where a model folder keeps its files. The
//! steps in between — open the LoRA files, rewrite the keys, walk, check that the weights
//! cover the model exactly — are written once, in the provided methods:
//!
//! | method | from |
//! | --- | --- |
//! | [`load`](Pretrained::load) / [`load_with`](Pretrained::load_with) (+ LoRA files) | an opened [`Checkpoint`] and a config |
//! | [`from_file`](Pretrained::from_file) | a weights file and a config |
//! | [`from_folder`](Pretrained::from_folder) / [`open_folder`](Pretrained::open_folder) | a model folder (config and weights) |
//! | [`check_listing`](Pretrained::check_listing) | a manifest listing: a coverage report, nothing allocated |

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::de::DeserializeOwned;

use crate::checkpoint::Checkpoint;
use crate::error::{CoverageReport, Error, Result};
use crate::lora::{LoraSet, LoraSpec, LoraTarget};
use crate::quant::QuantType;
use crate::var_builder::VarBuilder;

/// What is done to a model's weights as they load: LoRA files merged in, linear weights
/// quantized ([`crate::quant`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WeightOptions {
    /// LoRA files merged into the weights.
    pub loras: Vec<LoraSpec>,
    /// Block format for the linear weights [`Pretrained::quantizes`] accepts (`None`: as
    /// stored).
    pub quant: Option<QuantType>,
}

impl WeightOptions {
    /// No LoRA, no quantization.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the LoRA files.
    pub fn loras(mut self, loras: &[LoraSpec]) -> Self {
        self.loras = loras.to_vec();
        self
    }

    /// Sets the block format of the linear weights.
    pub fn quant(mut self, quant: Option<QuantType>) -> Self {
        self.quant = quant;
        self
    }
}

/// Reads a JSON config file (`config.json`, a `meta.json`, an encoder's `*_config.json`) into
/// `T`: an unreadable file is an [`Error::Io`], malformed JSON or a field of the wrong type
/// an [`Error::Config`]; both name the file.
pub fn read_config<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::config(path, e))
}

/// The weight files diffusers writes for a component, in the order they are preferred.
pub const WEIGHT_FILES: [&str; 6] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
];

/// `dir` itself when it holds `config.json`, else `dir/<component>` (a pipeline folder).
pub fn component_dir(dir: &Path, component: &str) -> Result<PathBuf> {
    if dir.join("config.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    let sub = dir.join(component);
    if sub.join("config.json").is_file() {
        return Ok(sub);
    }
    Err(Error::io(
        dir,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("neither `config.json` nor `{component}/config.json` is in this folder"),
        ),
    ))
}

/// The weights file of a diffusers component folder (see [`WEIGHT_FILES`]).
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    WEIGHT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no weights file; looked for {}", WEIGHT_FILES.join(", ")),
                ),
            )
        })
}

/// A model loaded from a checkpoint; see the module docs. Implementors write the required
/// methods and the hooks that differ from the defaults; the loading methods are provided and
/// are not meant to be overridden.
pub trait Pretrained: Sized {
    /// The model's configuration.
    type Config;

    /// The diffusers component folder name (`"unet"`, `"vae"`, `"transformer"`), or the file
    /// stem of a single-file model (`"face_clip_encoder"`); used by the folder hooks.
    const COMPONENT: &'static str;

    /// The model walk: builds the model described by `config`, taking its weights from `vb`
    /// (the model's own key names at the root). Config errors are returned; weight problems
    /// are recorded in `vb` (the provided methods call [`VarBuilder::finish`] or
    /// [`VarBuilder::report`] after).
    fn build(config: &Self::Config, vb: &VarBuilder) -> Result<Self>;

    /// Reads the model's config file, through [`read_config`].
    fn read_config(path: &Path) -> Result<Self::Config>;

    /// Checks `config` before anything is opened (default: nothing; the walk checks it).
    fn check_config(_config: &Self::Config) -> Result<()> {
        Ok(())
    }

    /// Rewrites the key names of a checkpoint as loaded into the walk's names (wrapper
    /// prefixes, deprecated names, another layout). Default: unchanged.
    fn adapt(checkpoint: Checkpoint, _config: &Self::Config) -> Result<Checkpoint> {
        Ok(checkpoint)
    }

    /// The model LoRA files are mapped onto; `None` (the default): the model takes no LoRA
    /// files, and [`Pretrained::load_with`] refuses them.
    fn lora_target(_config: &Self::Config) -> Option<LoraTarget> {
        None
    }

    /// Whether a `quant` option applies to the linear weight `key` (the walk's name). Default:
    /// every linear weight.
    fn quantizes(_config: &Self::Config) -> fn(&str) -> bool {
        |_| true
    }

    /// The folder holding the model's files, given a model folder. Default: `dir` when it
    /// holds `config.json`, else `dir/COMPONENT` ([`component_dir`]).
    fn component_folder(dir: &Path) -> Result<PathBuf> {
        component_dir(dir, Self::COMPONENT)
    }

    /// The config of the component folder `dir`. Default: `dir/config.json`.
    fn folder_config(dir: &Path) -> Result<Self::Config> {
        Self::read_config(&dir.join("config.json"))
    }

    /// The weights file of the component folder `dir`. Default: diffusers' names
    /// ([`weights_file`]).
    fn folder_weights(dir: &Path) -> Result<PathBuf> {
        weights_file(dir)
    }

    /// Builds `config` from `checkpoint` (key names as [`Pretrained::adapt`] accepts them) and
    /// checks that the weights cover the model exactly ([`Error::Coverage`] lists every
    /// missing, unexpected or mis-shaped key).
    fn load(checkpoint: Checkpoint, config: &Self::Config, device: &Device) -> Result<Self> {
        Self::load_with(checkpoint, config, &[], device)
    }

    /// [`Pretrained::load`] with the LoRA files of `loras` merged into the weights as they
    /// load (see [`crate::lora`]); a LoRA module that matches no weight is an error, and so is
    /// any LoRA file for a model without a [`Pretrained::lora_target`].
    ///
    /// The steps, in order: [`Pretrained::check_config`], the LoRA files opened and mapped,
    /// [`Pretrained::adapt`], [`Pretrained::build`], [`VarBuilder::finish`].
    fn load_with(
        checkpoint: Checkpoint,
        config: &Self::Config,
        loras: &[LoraSpec],
        device: &Device,
    ) -> Result<Self> {
        Self::load_options(checkpoint, config, &WeightOptions::new().loras(loras), device)
    }

    /// [`Pretrained::load_with`] with every [`WeightOptions`]: LoRA files, and the linear
    /// weights [`Pretrained::quantizes`] accepts stored in blocks as they load (the peak is the
    /// quantized model plus one full-precision tensor).
    fn load_options(
        checkpoint: Checkpoint,
        config: &Self::Config,
        options: &WeightOptions,
        device: &Device,
    ) -> Result<Self> {
        let loras = options.loras.as_slice();
        Self::check_config(config)?;
        let loras = if loras.is_empty() {
            None
        } else {
            let Some(target) = Self::lora_target(config) else {
                return Err(Error::invalid(format!(
                    "LoRA {}: {} takes no LoRA files (they apply to the SDXL UNet and the FLUX transformer)",
                    loras[0].path.display(),
                    model_name::<Self>(),
                )));
            };
            Some(LoraSet::open(loras, target)?)
        };
        let checkpoint = Self::adapt(checkpoint, config)?;
        let mut vb = VarBuilder::from_checkpoint(checkpoint, device);
        if let Some(loras) = loras {
            vb = vb.with_loras(loras);
        }
        if let Some(kind) = options.quant {
            vb = vb.with_quant(kind, Self::quantizes(config));
        }
        let model = Self::build(config, &vb)?;
        vb.finish()?;
        Ok(model)
    }

    /// [`Pretrained::load`] from one weights file (any format [`Checkpoint::open`] reads).
    fn from_file(path: impl AsRef<Path>, config: &Self::Config, device: &Device) -> Result<Self> {
        Self::load(Checkpoint::open(path)?, config, device)
    }

    /// The config and the opened weights of a model folder, found by
    /// [`Pretrained::component_folder`], [`Pretrained::folder_config`] and
    /// [`Pretrained::folder_weights`], in that order. With LoRA files:
    /// `let (config, weights) = M::open_folder(dir)?; M::load_with(weights, &config, loras, device)`.
    fn open_folder(dir: impl AsRef<Path>) -> Result<(Self::Config, Checkpoint)> {
        let dir = Self::component_folder(dir.as_ref())?;
        let config = Self::folder_config(&dir)?;
        let weights = Checkpoint::open(Self::folder_weights(&dir)?)?;
        Ok((config, weights))
    }

    /// Loads a model folder ([`Pretrained::open_folder`], then [`Pretrained::load`]).
    fn from_folder(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let (config, weights) = Self::open_folder(dir)?;
        Self::load(weights, &config, device)
    }

    /// Walks the model over `listing` (a manifest's names and shapes, or any checkpoint; the
    /// model's own key names, not rewritten by [`Pretrained::adapt`]) and returns how it
    /// covers the model, exact or not. A listing allocates nothing: every parameter stays lazy.
    fn check_listing(
        listing: Checkpoint,
        config: &Self::Config,
        device: &Device,
    ) -> Result<CoverageReport> {
        Self::check_config(config)?;
        let vb = VarBuilder::from_checkpoint(listing, device);
        Self::build(config, &vb)?;
        Ok(vb.report())
    }
}

/// The type's name without its module path (`UNet2DConditionModel`), for messages.
fn model_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}
