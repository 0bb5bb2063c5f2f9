//! Finding a diffusers component (`unet/`, `vae/`) in a model folder and its weights file.

use std::path::{Path, PathBuf};

use faceclip_core::{Checkpoint, Error, Result};

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

/// The weights file of a component folder (see [`WEIGHT_FILES`]).
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

/// Strips wrapper prefixes a training script may leave on every key (`module.` from
/// DataParallel, `unet.`, `state_dict.`), repeatedly, key by key.
pub fn strip_wrapper_prefixes(ck: &Checkpoint, prefixes: &[&str]) -> Checkpoint {
    if !ck
        .list()
        .iter()
        .any(|t| prefixes.iter().any(|p| t.name.starts_with(p)))
    {
        return ck.clone();
    }
    ck.rename(|k| {
        let mut k = k;
        while let Some(rest) = prefixes.iter().find_map(|p| k.strip_prefix(p)) {
            k = rest;
        }
        Some(k.to_string())
    })
}
