//! Finding a diffusers component (`unet/`, `vae/`) in a model folder and its weights file
//! (the defaults of [`faceclip_core::Pretrained`]'s folder hooks, re-exported from
//! [`faceclip_core::pretrained`]), and the wrapper prefixes of training scripts.

use faceclip_core::Checkpoint;

pub use faceclip_core::pretrained::{WEIGHT_FILES, component_dir, weights_file};

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
