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

fn weights(dir: &Path, stem: &str) -> Result<PathBuf> {
    find(
        dir,
        &[&format!("{stem}.safetensors"), &format!("{stem}.pt")],
        &format!("{stem}.pt"),
    )
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
    /// Finds every file under `root`; the error names the first one missing.
    pub fn discover(root: &Path) -> Result<Self> {
        let fc = faceclip_dir(root)?;
        let sdxl = find(
            root,
            &["stable-diffusion-xl-base-1.0", "sdxl"],
            "SDXL diffusers folder",
        )?;
        Ok(Self {
            encoder: weights(&fc, "face_clip_encoder")?,
            encoder_config: optional(fc.join("face_clip_encoder_config.json")),
            unet: weights(&fc, "unet")?,
            unet_config: find(&sdxl, &["unet/config.json"], "SDXL unet/config.json")?,
            vae_dir: find(&sdxl, &["vae"], "SDXL vae/ folder")?,
            scheduler_config: find(
                &sdxl,
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
    /// Finds every file under `root`; the error names the first one missing.
    pub fn discover(root: &Path) -> Result<Self> {
        let fc = faceclip_dir(root)?;
        let flux = find(root, &["FLUX.1-dev", "flux"], "FLUX.1-dev diffusers folder")?;
        let t5_tokenizer = match optional(fc.join("tokenizer/tokenizer.json")) {
            Some(p) => p,
            None => find(&flux, &["tokenizer_2/tokenizer.json"], "T5 tokenizer.json")?,
        };
        Ok(Self {
            encoder: weights(&fc, "face_t5_encoder")?,
            encoder_config: optional(fc.join("face_t5_encoder_config.json")),
            t5_tokenizer,
            dit: weights(&fc, "dit")?,
            dit_config: find(
                &flux,
                &["transformer/config.json"],
                "FLUX transformer/config.json",
            )?,
            vae_dir: find(&flux, &["vae"], "FLUX vae/ folder")?,
            scheduler_config: find(
                &flux,
                &["scheduler/scheduler_config.json"],
                "FLUX scheduler_config.json",
            )?,
        })
    }
}

/// The tiny random-weight model folder the repository ships (`demo/models`), for
/// `faceclip sdxl --demo` / `faceclip flux --demo`. Found next to the workspace sources, or
/// under `FACECLIP_DEMO_DIR`.
pub fn demo_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("FACECLIP_DEMO_DIR") {
        return Ok(PathBuf::from(d));
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../demo/models");
    if here.is_dir() {
        return Ok(here);
    }
    let cwd = PathBuf::from("demo/models");
    if cwd.is_dir() {
        return Ok(cwd);
    }
    Err(not_found(
        &here,
        "demo model folder (set FACECLIP_DEMO_DIR)",
    ))
}
