//! The models from the Hugging Face hub: exactly the files a pipeline loads, fetched into the
//! hub cache (`HF_HOME`, default `~/.cache/huggingface`), `HF_TOKEN` (or the token file
//! `huggingface-cli login` writes) sent for gated repos such as FLUX.1-dev.
//!
//! Which files is said once, for local folders and the hub alike, by
//! [`SdxlModels::resolve`] / [`FluxModels::resolve`]; [`HubModels`] is the hub's
//! [`ModelSource`]: FaceCLIP's files are found by name wherever [`FACECLIP_REPO`] keeps them
//! (`face_clip_encoder.pt`, `unet.pt`, `face_t5_encoder.pt`, `dit.pt`, a `tokenizer.json`),
//! the base repos' by path — only configs, the VAE and the T5 tokenizer; the base UNet,
//! transformer and text encoders are never downloaded (FaceCLIP ships its own).
//! The download needs the `hub` cargo feature; the file choice does not.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use faceclip_core::{Error, Result};

use crate::models::{FluxModels, ModelSource, Repo, SdxlModels};

/// FaceCLIP's weights.
pub const FACECLIP_REPO: &str = "ByteDance/FaceCLIP";
/// SDXL base: UNet config, VAE, scheduler.
pub const SDXL_REPO: &str = "stabilityai/stable-diffusion-xl-base-1.0";
/// FLUX.1-dev (gated: accept its licence on the hub and set `HF_TOKEN`): transformer config,
/// VAE, scheduler, T5 tokenizer.
pub const FLUX_REPO: &str = "black-forest-labs/FLUX.1-dev";

/// The hub repository of `repo`.
pub fn repo_id(repo: Repo) -> &'static str {
    match repo {
        Repo::FaceClip => FACECLIP_REPO,
        Repo::SdxlBase => SDXL_REPO,
        Repo::FluxDev => FLUX_REPO,
    }
}

/// The path in `listing` (a repo's file list) named `name` (its last component), the
/// shallowest first. `None` when absent.
pub fn pick_file<'a>(listing: &'a [String], name: &str) -> Option<&'a str> {
    listing
        .iter()
        .filter(|p| p.rsplit('/').next() == Some(name))
        .min_by_key(|p| (p.matches('/').count(), p.len()))
        .map(String::as_str)
}

type ListFn = Box<dyn Fn(&str) -> Result<Vec<String>>>;
type FetchFn = Box<dyn Fn(&str, &str) -> Result<PathBuf>>;

/// The hub as a [`ModelSource`]: each repository's file listing (asked for once, when a file
/// of it is first needed) and a fetch of one file into the cache.
pub struct HubModels {
    list: ListFn,
    fetch: FetchFn,
    listings: RefCell<HashMap<&'static str, Vec<String>>>,
}

impl HubModels {
    /// A source listing repositories with `list(repo_id)` and fetching with
    /// `fetch(repo_id, path)` (the real hub: [`HubModels::connect`]).
    pub fn new(
        list: impl Fn(&str) -> Result<Vec<String>> + 'static,
        fetch: impl Fn(&str, &str) -> Result<PathBuf> + 'static,
    ) -> Self {
        Self {
            list: Box::new(list),
            fetch: Box::new(fetch),
            listings: RefCell::new(HashMap::new()),
        }
    }

    /// The path of `file` in `repo`'s listing: FaceCLIP's by name anywhere, the others exact.
    fn locate(&self, repo: Repo, file: &str) -> Result<Option<String>> {
        let id = repo_id(repo);
        if !self.listings.borrow().contains_key(id) {
            let l = (self.list)(id)?;
            self.listings.borrow_mut().insert(id, l);
        }
        let listings = self.listings.borrow();
        let listing = &listings[id];
        Ok(match repo {
            Repo::FaceClip => {
                let name = file.rsplit('/').next().unwrap_or(file);
                pick_file(listing, name).map(str::to_string)
            }
            _ => listing.iter().find(|p| p.as_str() == file).cloned(),
        })
    }
}

impl ModelSource for HubModels {
    fn get(&self, repo: Repo, file: &str) -> Result<Option<PathBuf>> {
        match self.locate(repo, file)? {
            Some(path) => (self.fetch)(repo_id(repo), &path).map(Some),
            None => Ok(None),
        }
    }

    fn missing(&self, repo: Repo, file: &str, what: &str) -> Error {
        let id = repo_id(repo);
        let files = self
            .listings
            .borrow()
            .get(id)
            .map(|l| l.join(", "))
            .unwrap_or_default();
        Error::invalid(format!("hub repo {id} has no {file} ({what}; its files: {files})"))
    }
}

#[cfg(feature = "hub")]
mod download {
    use super::*;
    use hf_hub::api::sync::{Api, ApiBuilder};

    fn hub_error(repo: &str, what: &str, e: impl std::fmt::Display) -> Error {
        let hint = if repo == FLUX_REPO {
            " (FLUX.1-dev is gated: accept its licence on huggingface.co and set HF_TOKEN)"
        } else {
            ""
        };
        Error::invalid(format!("hub {repo}: {what}: {e}{hint}"))
    }

    fn api(progress: bool) -> Result<Api> {
        let mut b = ApiBuilder::from_env().with_progress(progress);
        if let Ok(t) = std::env::var("HF_TOKEN")
            && !t.trim().is_empty()
        {
            b = b.with_token(Some(t.trim().to_string()));
        }
        b.build()
            .map_err(|e| hub_error("huggingface.co", "cannot start a client", e))
    }

    impl HubModels {
        /// The Hugging Face hub through hf-hub; `progress` shows its download bars on stderr
        /// (the library prints nothing otherwise).
        pub fn connect(progress: bool) -> Result<Self> {
            let api = api(progress)?;
            let api2 = api.clone();
            Ok(Self::new(
                move |id| {
                    let info = api
                        .model(id.to_string())
                        .info()
                        .map_err(|e| hub_error(id, "listing files", e))?;
                    Ok(info.siblings.into_iter().map(|s| s.rfilename).collect())
                },
                move |id, file| {
                    api2.model(id.to_string())
                        .get(file)
                        .map_err(|e| hub_error(id, file, e))
                },
            ))
        }
    }
}

/// Downloads (or finds in the hub cache) every file FaceCLIP-SDXL loads; `progress` shows
/// hf-hub's download bars on stderr.
pub fn sdxl_models(progress: bool) -> Result<SdxlModels> {
    #[cfg(feature = "hub")]
    {
        SdxlModels::resolve(&HubModels::connect(progress)?)
    }
    #[cfg(not(feature = "hub"))]
    {
        let _ = progress;
        Err(no_hub())
    }
}

/// Downloads (or finds in the hub cache) every file FaceT5-FLUX loads; `progress` as for
/// [`sdxl_models`].
pub fn flux_models(progress: bool) -> Result<FluxModels> {
    #[cfg(feature = "hub")]
    {
        FluxModels::resolve(&HubModels::connect(progress)?)
    }
    #[cfg(not(feature = "hub"))]
    {
        let _ = progress;
        Err(no_hub())
    }
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
    use std::path::Path;
    use std::rc::Rc;

    /// A fake hub: listings per repo; fetches recorded and answered with `/cache/<id>/<path>`.
    fn fake(faceclip: &[&str], with_flux_tokenizer: bool) -> (HubModels, Rc<RefCell<Vec<String>>>) {
        let fetched = Rc::new(RefCell::new(vec![]));
        let log = fetched.clone();
        let faceclip: Vec<String> = faceclip.iter().map(|s| s.to_string()).collect();
        let hub = HubModels::new(
            move |id| {
                let base = |extra: &[&str]| -> Vec<String> {
                    [
                        "unet/config.json",
                        "unet/diffusion_pytorch_model.safetensors",
                        "transformer/config.json",
                        "vae/config.json",
                        "vae/diffusion_pytorch_model.safetensors",
                        "scheduler/scheduler_config.json",
                    ]
                    .iter()
                    .chain(extra)
                    .map(|s| s.to_string())
                    .collect()
                };
                Ok(match id {
                    FACECLIP_REPO => faceclip.clone(),
                    FLUX_REPO if with_flux_tokenizer => base(&["tokenizer_2/tokenizer.json"]),
                    _ => base(&[]),
                })
            },
            move |id, file| {
                log.borrow_mut().push(format!("{id}/{file}"));
                Ok(Path::new("/cache").join(id).join(file))
            },
        );
        (hub, fetched)
    }

    #[test]
    fn faceclip_files_are_found_by_name_and_only_needed_files_are_fetched() {
        let (hub, fetched) = fake(
            &[
                "README.md",
                "model/face_clip_encoder.pt",
                "model/unet.pt",
                "extra/old/unet.pt",
                "model/face_t5_encoder.pt",
                "model/dit.pt",
                "model/dit.safetensors",
            ],
            true,
        );
        let s = SdxlModels::resolve(&hub).unwrap();
        assert_eq!(s.encoder, Path::new("/cache/ByteDance/FaceCLIP/model/face_clip_encoder.pt"));
        assert_eq!(s.unet, Path::new("/cache/ByteDance/FaceCLIP/model/unet.pt"));
        assert_eq!(s.encoder_config, None);
        assert_eq!(
            s.vae_dir,
            Path::new("/cache/stabilityai/stable-diffusion-xl-base-1.0/vae")
        );
        let f = FluxModels::resolve(&hub).unwrap();
        assert_eq!(f.dit, Path::new("/cache/ByteDance/FaceCLIP/model/dit.safetensors"), "safetensors preferred");
        assert_eq!(
            f.t5_tokenizer,
            Path::new("/cache/black-forest-labs/FLUX.1-dev/tokenizer_2/tokenizer.json")
        );
        let fetched = fetched.borrow();
        assert!(
            !fetched.iter().any(|f| f.contains("diffusion_pytorch_model") && !f.contains("/vae/")),
            "a base model was downloaded: {fetched:?}"
        );
    }

    #[test]
    fn a_tokenizer_in_faceclips_repo_is_preferred_and_a_missing_file_names_repo_and_file() {
        let (hub, _) = fake(
            &["face_t5_encoder.pt", "dit.pt", "tokenizer/tokenizer.json"],
            false,
        );
        let f = FluxModels::resolve(&hub).unwrap();
        assert_eq!(
            f.t5_tokenizer,
            Path::new("/cache/ByteDance/FaceCLIP/tokenizer/tokenizer.json")
        );
        let (hub, _) = fake(&["face_clip_encoder.pt"], false);
        let e = SdxlModels::resolve(&hub).unwrap_err().to_string();
        assert!(e.contains(FACECLIP_REPO) && e.contains("unet.safetensors"), "{e}");
    }

    #[cfg(not(feature = "hub"))]
    #[test]
    fn without_the_feature_the_error_says_how_to_get_it() {
        let e = sdxl_models(false).unwrap_err().to_string();
        assert!(e.contains("--features hub"), "{e}");
    }
}
