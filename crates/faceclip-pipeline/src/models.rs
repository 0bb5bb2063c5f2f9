//! Model discovery: one documented folder layout holding FaceCLIP's release and the two
//! diffusers folders it builds on.
//!
//! ```text
//! MODELS/
//!   FaceCLIP/model/face_clip_encoder.pt     FaceCLIP-L-14 + bigG-14 (or .safetensors)
//!   FaceCLIP/model/unet.pt                  fine-tuned SDXL UNet, diffusers keys
//!   FaceCLIP/model/face_t5_encoder.pt       FaceT5 + CLIP-L text encoder
//!   FaceCLIP/model/dit.pt                   fine-tuned FLUX.1-dev transformer
//!   FaceCLIP/model/tokenizer/tokenizer.json T5 tokenizer (else FLUX.1-dev/tokenizer_2/)
//!   FaceCLIP/model/*_config.json            optional: encoder configs other than upstream's
//!   stable-diffusion-xl-base-1.0/           unet/config.json, vae/, scheduler/
//!   FLUX.1-dev/                             transformer/config.json, vae/, scheduler/, tokenizer_2/
//! ```
//!
//! A `.safetensors` file beside (or instead of) each `.pt` is preferred: it is memory-mapped.
//! A `.gguf` file (`faceclip convert --quant q8 dit.pt dit.gguf`) is preferred over both: its
//! linear weights load in blocks as stored.

use std::path::{Path, PathBuf};

use faceclip_core::{Error, Result};

fn not_found(path: &Path, what: &str) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("{what} not found")),
    )
}

/// The first of `candidates` (relative to `root`) that exists.
fn find(root: &Path, candidates: &[&str], what: &str) -> Result<PathBuf> {
    for c in candidates {
        let p = root.join(c);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(not_found(&root.join(candidates[0]), what))
}

/// The FaceCLIP release folder inside `root` (`root/FaceCLIP/model`, `root/model` or `root`).
fn faceclip_dir(root: &Path) -> Result<PathBuf> {
    for c in ["FaceCLIP/model", "model", "."] {
        let p = root.join(c);
        if p.join("face_clip_encoder.pt").exists()
            || p.join("face_clip_encoder.safetensors").exists()
            || p.join("face_t5_encoder.pt").exists()
            || p.join("face_t5_encoder.safetensors").exists()
        {
            return Ok(p);
        }
    }
    Err(not_found(
        &root.join("FaceCLIP/model"),
        "FaceCLIP model folder (face_clip_encoder.pt / face_t5_encoder.pt)",
    ))
}

/// The three repositories a model folder holds: a subfolder each locally
/// ([`LocalModels`]), a repository each on the hub (`hub::HubModels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repo {
    /// FaceCLIP's release (`ByteDance/FaceCLIP`): encoders, UNet, FLUX transformer.
    FaceClip,
    /// `stabilityai/stable-diffusion-xl-base-1.0`: UNet config, VAE, scheduler.
    SdxlBase,
    /// `black-forest-labs/FLUX.1-dev`: transformer config, VAE, scheduler, T5 tokenizer.
    FluxDev,
}

/// Where model files come from. [`SdxlModels::resolve`] and [`FluxModels::resolve`] say once
/// which files a pipeline needs; a source says where they are (a local folder, the hub cache).
pub trait ModelSource {
    /// The local path of `file` (a path inside `repo`; FaceCLIP's files are found by name
    /// wherever the hub repo keeps them), fetched first if need be; `None` when absent.
    fn get(&self, repo: Repo, file: &str) -> Result<Option<PathBuf>>;

    /// The error for a required `file` of `repo` that is absent (`what` names it).
    fn missing(&self, repo: Repo, file: &str, what: &str) -> Error;

    /// The first of `files` the source has; else [`ModelSource::missing`] for the first.
    fn first_of(&self, repo: Repo, files: &[&str], what: &str) -> Result<PathBuf> {
        for f in files {
            if let Some(p) = self.get(repo, f)? {
                return Ok(p);
            }
        }
        Err(self.missing(repo, files[0], what))
    }
}

/// A local model folder in the layout of the module docs.
#[derive(Debug, Clone)]
pub struct LocalModels {
    root: PathBuf,
}

impl LocalModels {
    /// The model folder `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, repo: Repo) -> Result<PathBuf> {
        match repo {
            Repo::FaceClip => faceclip_dir(&self.root),
            Repo::SdxlBase => find(
                &self.root,
                &["stable-diffusion-xl-base-1.0", "sdxl"],
                "SDXL diffusers folder",
            ),
            Repo::FluxDev => find(&self.root, &["FLUX.1-dev", "flux"], "FLUX.1-dev diffusers folder"),
        }
    }
}

impl ModelSource for LocalModels {
    fn get(&self, repo: Repo, file: &str) -> Result<Option<PathBuf>> {
        Ok(optional(self.dir(repo)?.join(file)))
    }

    fn missing(&self, repo: Repo, file: &str, what: &str) -> Error {
        match self.dir(repo) {
            Ok(dir) => not_found(&dir.join(file), what),
            Err(e) => e,
        }
    }
}

/// A FaceCLIP weights file: `.gguf` (written by `faceclip convert --quant`), then
/// `.safetensors` (memory-mapped), then `.pt`.
fn weights(src: &dyn ModelSource, stem: &str) -> Result<PathBuf> {
    if let Some(p) = src.get(Repo::FaceClip, &format!("{stem}.gguf"))? {
        return Ok(p);
    }
    src.first_of(
        Repo::FaceClip,
        &[&format!("{stem}.safetensors"), &format!("{stem}.pt")],
        &format!("{stem}.pt"),
    )
}

/// The VAE folder of `repo`, with its config and weights present (fetched).
fn vae_dir(src: &dyn ModelSource, repo: Repo, what: &str) -> Result<PathBuf> {
    let config = src.first_of(repo, &["vae/config.json"], &format!("{what} vae/config.json"))?;
    src.first_of(
        repo,
        &[
            "vae/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.safetensors.index.json",
            "vae/diffusion_pytorch_model.fp16.safetensors",
            "vae/diffusion_pytorch_model.bin",
        ],
        &format!("{what} VAE weights"),
    )?;
    Ok(config.parent().map(Path::to_path_buf).unwrap_or_default())
}

fn optional(path: PathBuf) -> Option<PathBuf> {
    path.exists().then_some(path)
}

/// Everything FaceCLIP-SDXL loads.
#[derive(Debug, Clone)]
pub struct SdxlModels {
    pub encoder: PathBuf,
    /// `face_clip_encoder_config.json` when the encoder is not the upstream size.
    pub encoder_config: Option<PathBuf>,
    pub unet: PathBuf,
    pub unet_config: PathBuf,
    pub vae_dir: PathBuf,
    pub scheduler_config: PathBuf,
}

impl SdxlModels {
    /// Finds every file under the model folder `root`; the error names the first one missing.
    pub fn discover(root: &Path) -> Result<Self> {
        Self::resolve(&LocalModels::new(root))
    }

    /// Every file FaceCLIP-SDXL loads, from `src`.
    pub fn resolve(src: &dyn ModelSource) -> Result<Self> {
        Ok(Self {
            encoder: weights(src, "face_clip_encoder")?,
            encoder_config: src.get(Repo::FaceClip, "face_clip_encoder_config.json")?,
            unet: weights(src, "unet")?,
            unet_config: src.first_of(Repo::SdxlBase, &["unet/config.json"], "SDXL unet/config.json")?,
            vae_dir: vae_dir(src, Repo::SdxlBase, "SDXL")?,
            scheduler_config: src.first_of(
                Repo::SdxlBase,
                &["scheduler/scheduler_config.json"],
                "SDXL scheduler_config.json",
            )?,
        })
    }
}

/// Everything FaceT5-FLUX loads.
#[derive(Debug, Clone)]
pub struct FluxModels {
    pub encoder: PathBuf,
    /// `face_t5_encoder_config.json` when the encoder is not the upstream size.
    pub encoder_config: Option<PathBuf>,
    /// The T5 `tokenizer.json`.
    pub t5_tokenizer: PathBuf,
    pub dit: PathBuf,
    pub dit_config: PathBuf,
    pub vae_dir: PathBuf,
    pub scheduler_config: PathBuf,
}

impl FluxModels {
    /// Finds every file under the model folder `root`; the error names the first one missing.
    pub fn discover(root: &Path) -> Result<Self> {
        Self::resolve(&LocalModels::new(root))
    }

    /// Every file FaceT5-FLUX loads, from `src`: the T5 tokenizer from FaceCLIP's release
    /// when it ships one, else FLUX.1-dev's `tokenizer_2`.
    pub fn resolve(src: &dyn ModelSource) -> Result<Self> {
        let encoder = weights(src, "face_t5_encoder")?;
        let t5_tokenizer = match src.get(Repo::FaceClip, "tokenizer/tokenizer.json")? {
            Some(p) => p,
            None => src.first_of(Repo::FluxDev, &["tokenizer_2/tokenizer.json"], "T5 tokenizer.json")?,
        };
        Ok(Self {
            encoder,
            encoder_config: src.get(Repo::FaceClip, "face_t5_encoder_config.json")?,
            t5_tokenizer,
            dit: weights(src, "dit")?,
            dit_config: src.first_of(
                Repo::FluxDev,
                &["transformer/config.json"],
                "FLUX transformer/config.json",
            )?,
            vae_dir: vae_dir(src, Repo::FluxDev, "FLUX")?,
            scheduler_config: src.first_of(
                Repo::FluxDev,
                &["scheduler/scheduler_config.json"],
                "FLUX scheduler_config.json",
            )?,
        })
    }
}

/// The tiny random-weight model folder the repository ships (`demo/models`), for
/// `faceclip sdxl --demo` / `faceclip flux --demo`: `FACECLIP_DEMO_DIR` when set, else the
/// first `demo/models` found in the working folder or one above it, or beside the running
/// program or one folder above it (`target/release/faceclip` of a checkout).
pub fn demo_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("FACECLIP_DEMO_DIR") {
        return Ok(PathBuf::from(d));
    }
    let mut starts = vec![];
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        starts.push(dir);
    }
    for start in &starts {
        for dir in start.ancestors() {
            let cand = dir.join("demo/models");
            if cand.join("FaceCLIP").is_dir() {
                return Ok(cand);
            }
        }
    }
    Err(not_found(
        Path::new("demo/models"),
        "demo model folder (run from a faceclip-rs checkout, or set FACECLIP_DEMO_DIR)",
    ))
}
