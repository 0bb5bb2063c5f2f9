//! The models from the Hugging Face hub: exactly the files a pipeline loads, fetched into the
//! hub cache (`HF_HOME`, default `~/.cache/huggingface`) with a progress bar, `HF_TOKEN` (or
//! the token file `huggingface-cli login` writes) sent for gated repos such as FLUX.1-dev.
//!
//! Which files: the FaceCLIP weights of [`FACECLIP_REPO`] are found by name wherever the repo
//! keeps them (`face_clip_encoder.pt`, `unet.pt` / `face_t5_encoder.pt`, `dit.pt`, a
//! `tokenizer.json`); from the base repos only configs, the VAE and the T5 tokenizer — the
//! base UNet, transformer and text encoders are never downloaded (FaceCLIP ships its own).
//! The download needs the `hub` cargo feature; the file plan below does not.

use std::path::{Path, PathBuf};

use faceclip_core::{Error, Result};

use crate::models::{FluxModels, SdxlModels};

/// FaceCLIP's weights.
pub const FACECLIP_REPO: &str = "ByteDance/FaceCLIP";
/// SDXL base: UNet config, VAE, scheduler.
pub const SDXL_REPO: &str = "stabilityai/stable-diffusion-xl-base-1.0";
/// FLUX.1-dev (gated: accept its licence on the hub and set `HF_TOKEN`): transformer config,
/// VAE, scheduler, T5 tokenizer.
pub const FLUX_REPO: &str = "black-forest-labs/FLUX.1-dev";

/// The base-repo files FaceCLIP-SDXL loads.
pub const SDXL_FILES: &[&str] = &[
    "unet/config.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
];

/// The base-repo files FaceT5-FLUX loads.
pub const FLUX_FILES: &[&str] = &[
    "transformer/config.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
    "tokenizer_2/tokenizer.json",
];

/// The path in `listing` (a repo's file list) of the file named `stem` + one of `exts`,
/// preferring earlier extensions and then the shallowest path. `None` when absent.
pub fn pick_file<'a>(listing: &'a [String], stem: &str, exts: &[&str]) -> Option<&'a str> {
    exts.iter().find_map(|ext| {
        let name = format!("{stem}{ext}");
        listing
            .iter()
            .filter(|p| p.rsplit('/').next() == Some(name.as_str()))
            .min_by_key(|p| (p.matches('/').count(), p.len()))
            .map(String::as_str)
    })
}

fn need<'a>(listing: &'a [String], repo: &str, stem: &str, exts: &[&str]) -> Result<&'a str> {
    pick_file(listing, stem, exts).ok_or_else(|| {
        Error::invalid(format!(
            "hub repo {repo} has no {stem}{} (its files: {})",
            exts[0],
            listing.join(", ")
        ))
    })
}

/// The FaceCLIP-repo files FaceCLIP-SDXL needs, chosen from the repo's listing: encoder, UNet.
pub fn sdxl_plan(listing: &[String]) -> Result<[String; 2]> {
    let exts = [".safetensors", ".pt"];
    Ok([
        need(listing, FACECLIP_REPO, "face_clip_encoder", &exts)?.to_string(),
        need(listing, FACECLIP_REPO, "unet", &exts)?.to_string(),
    ])
}

/// The FaceCLIP-repo files FaceT5-FLUX needs: encoder, transformer, and the T5 tokenizer when
/// the repo ships one (else FLUX.1-dev's `tokenizer_2`).
pub fn flux_plan(listing: &[String]) -> Result<(String, String, Option<String>)> {
    let exts = [".safetensors", ".pt"];
    Ok((
        need(listing, FACECLIP_REPO, "face_t5_encoder", &exts)?.to_string(),
        need(listing, FACECLIP_REPO, "dit", &exts)?.to_string(),
        pick_file(listing, "tokenizer", &[".json"]).map(str::to_string),
    ))
}

/// Assembles the SDXL layout from downloaded paths: FaceCLIP `[encoder, unet]`, then the
/// [`SDXL_FILES`] in order.
#[cfg_attr(not(feature = "hub"), allow(dead_code))]
fn sdxl_layout(fc: &[PathBuf; 2], base: &[PathBuf]) -> SdxlModels {
    SdxlModels {
        encoder: fc[0].clone(),
        encoder_config: None,
        unet: fc[1].clone(),
        unet_config: base[0].clone(),
        vae_dir: dir_of(&base[1]),
        scheduler_config: base[3].clone(),
    }
}

/// Assembles the FLUX layout: FaceCLIP encoder and transformer, the T5 tokenizer, then the
/// first four [`FLUX_FILES`] in order.
#[cfg_attr(not(feature = "hub"), allow(dead_code))]
fn flux_layout(encoder: PathBuf, dit: PathBuf, tokenizer: PathBuf, base: &[PathBuf]) -> FluxModels {
    FluxModels {
        encoder,
        encoder_config: None,
        t5_tokenizer: tokenizer,
        dit,
        dit_config: base[0].clone(),
        vae_dir: dir_of(&base[1]),
        scheduler_config: base[3].clone(),
    }
}

#[cfg_attr(not(feature = "hub"), allow(dead_code))]
fn dir_of(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(feature = "hub")]
mod download {
    use super::*;
    use hf_hub::api::sync::{Api, ApiBuilder, ApiRepo};

    fn hub_error(repo: &str, what: &str, e: impl std::fmt::Display) -> Error {
        let hint = if repo == FLUX_REPO {
            " (FLUX.1-dev is gated: accept its licence on huggingface.co and set HF_TOKEN)"
        } else {
            ""
        };
        Error::invalid(format!("hub {repo}: {what}: {e}{hint}"))
    }

    fn api() -> Result<Api> {
        let mut b = ApiBuilder::from_env().with_progress(true);
        if let Ok(t) = std::env::var("HF_TOKEN") {
            if !t.trim().is_empty() {
                b = b.with_token(Some(t.trim().to_string()));
            }
        }
        b.build()
            .map_err(|e| hub_error("huggingface.co", "cannot start a client", e))
    }

    fn get(repo: &ApiRepo, id: &str, file: &str) -> Result<PathBuf> {
        repo.get(file).map_err(|e| hub_error(id, file, e))
    }

    fn listing(api: &Api, id: &str) -> Result<(ApiRepo, Vec<String>)> {
        let repo = api.model(id.to_string());
        let info = repo.info().map_err(|e| hub_error(id, "listing files", e))?;
        Ok((
            repo,
            info.siblings.into_iter().map(|s| s.rfilename).collect(),
        ))
    }

    fn base(api: &Api, id: &str, files: &[&str]) -> Result<Vec<PathBuf>> {
        let repo = api.model(id.to_string());
        files.iter().map(|f| get(&repo, id, f)).collect()
    }

    /// Downloads (or finds in the cache) what FaceCLIP-SDXL loads.
    pub fn sdxl_models() -> Result<SdxlModels> {
        let api = api()?;
        let (repo, list) = listing(&api, FACECLIP_REPO)?;
        let plan = sdxl_plan(&list)?;
        let fc = [
            get(&repo, FACECLIP_REPO, &plan[0])?,
            get(&repo, FACECLIP_REPO, &plan[1])?,
        ];
        Ok(sdxl_layout(&fc, &base(&api, SDXL_REPO, SDXL_FILES)?))
    }

    /// Downloads (or finds in the cache) what FaceT5-FLUX loads.
    pub fn flux_models() -> Result<FluxModels> {
        let api = api()?;
        let (repo, list) = listing(&api, FACECLIP_REPO)?;
        let (enc, dit, tok) = flux_plan(&list)?;
        let (enc, dit) = (
            get(&repo, FACECLIP_REPO, &enc)?,
            get(&repo, FACECLIP_REPO, &dit)?,
        );
        let tok = tok.map(|t| get(&repo, FACECLIP_REPO, &t)).transpose()?;
        // FLUX.1-dev's tokenizer_2 only when FaceCLIP's repo has no tokenizer of its own.
        let files = if tok.is_some() {
            &FLUX_FILES[..4]
        } else {
            FLUX_FILES
        };
        let paths = base(&api, FLUX_REPO, files)?;
        let tok = tok.unwrap_or_else(|| paths[4].clone());
        Ok(flux_layout(enc, dit, tok, &paths))
    }
}

/// Downloads (or finds in the hub cache) every file FaceCLIP-SDXL loads.
pub fn sdxl_models() -> Result<SdxlModels> {
    #[cfg(feature = "hub")]
    {
        download::sdxl_models()
    }
    #[cfg(not(feature = "hub"))]
    Err(no_hub())
}

/// Downloads (or finds in the hub cache) every file FaceT5-FLUX loads.
pub fn flux_models() -> Result<FluxModels> {
    #[cfg(feature = "hub")]
    {
        download::flux_models()
    }
    #[cfg(not(feature = "hub"))]
    Err(no_hub())
}

#[cfg(not(feature = "hub"))]
fn no_hub() -> Error {
    Error::invalid(
        "--hub: this build has no hub support; rebuild with `--features hub` or pass --models DIR",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plans_pick_weights_by_name_wherever_they_are() {
        let l = list(&[
            "README.md",
            "model/face_clip_encoder.pt",
            "model/unet.pt",
            "extra/old/unet.pt",
            "model/face_t5_encoder.pt",
            "model/dit.pt",
            "model/dit.safetensors",
        ]);
        assert_eq!(
            sdxl_plan(&l).unwrap(),
            [
                "model/face_clip_encoder.pt".to_string(),
                "model/unet.pt".into()
            ]
        );
        let (enc, dit, tok) = flux_plan(&l).unwrap();
        assert_eq!(enc, "model/face_t5_encoder.pt");
        assert_eq!(dit, "model/dit.safetensors", "safetensors preferred");
        assert_eq!(tok, None);
        let l2 = list(&[
            "face_t5_encoder.pt",
            "dit.pt",
            "tokenizer/tokenizer.json",
            "x/face_t5_encoder.pt",
        ]);
        let (enc, _, tok) = flux_plan(&l2).unwrap();
        assert_eq!(enc, "face_t5_encoder.pt");
        assert_eq!(tok.as_deref(), Some("tokenizer/tokenizer.json"));
    }

    #[test]
    fn a_missing_file_names_the_repo_and_file() {
        let e = sdxl_plan(&list(&["model/unet.pt", "unet_face_clip_encoder.pt"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ByteDance/FaceCLIP") && e.contains("face_clip_encoder.safetensors"),
            "{e}"
        );
    }

    #[test]
    fn layouts_use_the_downloaded_paths() {
        let base: Vec<PathBuf> = FLUX_FILES
            .iter()
            .map(|f| PathBuf::from("/c/snap").join(f))
            .collect();
        let m = flux_layout("/f/e.pt".into(), "/f/d.pt".into(), base[4].clone(), &base);
        assert_eq!(m.vae_dir, PathBuf::from("/c/snap/vae"));
        assert_eq!(
            m.dit_config,
            PathBuf::from("/c/snap/transformer/config.json")
        );
        assert_eq!(
            m.scheduler_config,
            PathBuf::from("/c/snap/scheduler/scheduler_config.json")
        );
        let s = sdxl_layout(
            &[PathBuf::from("/f/e.pt"), PathBuf::from("/f/u.pt")],
            &base[..4],
        );
        assert_eq!(
            s.unet_config,
            PathBuf::from("/c/snap/transformer/config.json")
        );
        assert_eq!(s.vae_dir, PathBuf::from("/c/snap/vae"));
    }

    #[cfg(not(feature = "hub"))]
    #[test]
    fn without_the_feature_the_error_says_how_to_get_it() {
        let e = sdxl_models().unwrap_err().to_string();
        assert!(e.contains("--features hub"), "{e}");
    }
}
