//! Checkpoint layouts of the FLUX transformer, normalised to diffusers' key names before the
//! model walk:
//!
//! - diffusers `transformer/` folders and FaceCLIP's `model/dit.pt` already use diffusers'
//!   names; a leading `module.` / `transformer.` / `_orig_mod.` (wrappers, DDP, compile) is
//!   stripped.
//! - Black Forest Labs' single-file layout (`flux1-dev.safetensors`, optionally under
//!   `model.diffusion_model.` as ComfyUI saves it) is converted into an in-memory
//!   diffusers-named checkpoint: fused `qkv` and `linear1` (`[q, k, v, mlp]`) are split along
//!   their output axis, and the final adaLN's `(shift, scale)` halves are swapped into
//!   diffusers' `(scale, shift)` order. Keys it does not know are kept, so that the walk's
//!   coverage report lists them.

use faceclip_core::{Checkpoint, Error, Result, TensorInfo};

/// Prefixes stripped from the start of every key (repeatedly, in any order).
pub const STRIPPED_PREFIXES: [&str; 5] = [
    "module.",
    "_orig_mod.",
    "model.diffusion_model.",
    "diffusion_model.",
    "transformer.",
];

/// `key` without the wrapper prefixes of [`STRIPPED_PREFIXES`].
pub fn strip_key(key: &str) -> &str {
    let mut k = key;
    'outer: loop {
        for p in STRIPPED_PREFIXES {
            if let Some(rest) = k.strip_prefix(p) {
                k = rest;
                continue 'outer;
            }
        }
        return k;
    }
}

/// `checkpoint` with the wrapper prefixes stripped from every key (data shared, not copied).
pub fn strip_prefixes(checkpoint: &Checkpoint) -> Checkpoint {
    checkpoint.rename(|k| Some(strip_key(k).to_string()))
}

/// True when `checkpoint` (prefixes stripped or not) is in Black Forest Labs' layout.
pub fn is_bfl_layout(checkpoint: &Checkpoint) -> bool {
    checkpoint.list().iter().any(|info| {
        let k = strip_key(&info.name);
        k.starts_with("double_blocks.")
            || k.starts_with("single_blocks.")
            || k.starts_with("img_in.")
            || k.starts_with("final_layer.")
    })
}

/// Where one BFL tensor goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The same tensor under another name.
    Rename(String),
    /// Split into three equal row blocks (fused `qkv`).
    Thirds([String; 3]),
    /// Split into rows `[inner, inner, inner, rest]` (single blocks' `linear1`).
    QkvMlp([String; 4]),
    /// The two row halves swapped (`final_layer.adaLN_modulation.1`).
    SwapHalves(String),
}

/// Plain renames (the `weight`/`bias` suffix carries over) of the top-level modules.
const TOP_RENAMES: [(&str, &str); 9] = [
    ("img_in.", "x_embedder."),
    ("txt_in.", "context_embedder."),
    (
        "time_in.in_layer.",
        "time_text_embed.timestep_embedder.linear_1.",
    ),
    (
        "time_in.out_layer.",
        "time_text_embed.timestep_embedder.linear_2.",
    ),
    (
        "vector_in.in_layer.",
        "time_text_embed.text_embedder.linear_1.",
    ),
    (
        "vector_in.out_layer.",
        "time_text_embed.text_embedder.linear_2.",
    ),
    (
        "guidance_in.in_layer.",
        "time_text_embed.guidance_embedder.linear_1.",
    ),
    (
        "guidance_in.out_layer.",
        "time_text_embed.guidance_embedder.linear_2.",
    ),
    ("final_layer.linear.", "proj_out."),
];

/// Renames inside `double_blocks.N.` -> `transformer_blocks.N.`.
const DOUBLE_RENAMES: [(&str, &str); 12] = [
    ("img_mod.lin.", "norm1.linear."),
    ("txt_mod.lin.", "norm1_context.linear."),
    ("img_attn.norm.query_norm.scale", "attn.norm_q.weight"),
    ("img_attn.norm.key_norm.scale", "attn.norm_k.weight"),
    ("txt_attn.norm.query_norm.scale", "attn.norm_added_q.weight"),
    ("txt_attn.norm.key_norm.scale", "attn.norm_added_k.weight"),
    ("img_attn.proj.", "attn.to_out.0."),
    ("txt_attn.proj.", "attn.to_add_out."),
    ("img_mlp.0.", "ff.net.0.proj."),
    ("img_mlp.2.", "ff.net.2."),
    ("txt_mlp.0.", "ff_context.net.0.proj."),
    ("txt_mlp.2.", "ff_context.net.2."),
];

/// Renames inside `single_blocks.N.` -> `single_transformer_blocks.N.`.
const SINGLE_RENAMES: [(&str, &str); 4] = [
    ("linear2.", "proj_out."),
    ("norm.query_norm.scale", "attn.norm_q.weight"),
    ("norm.key_norm.scale", "attn.norm_k.weight"),
    ("modulation.lin.", "norm.linear."),
];

fn rename(rest: &str, table: &[(&str, &str)], prefix: &str) -> Option<String> {
    table.iter().find_map(|(from, to)| {
        if from.ends_with('.') {
            rest.strip_prefix(from).map(|s| format!("{prefix}{to}{s}"))
        } else {
            (rest == *from).then(|| format!("{prefix}{to}"))
        }
    })
}

/// Splits `"<head>.<index>.<rest>"` into `(index, rest)`.
fn block(key: &str, head: &str) -> Option<(usize, String)> {
    let tail = key.strip_prefix(head)?;
    let (idx, rest) = tail.split_once('.')?;
    Some((idx.parse().ok()?, rest.to_string()))
}

/// The diffusers destination of BFL key `key` (prefixes already stripped); `None` when the
/// key is not a BFL transformer key.
fn target(key: &str) -> Option<Target> {
    if let Some(p) = key.strip_prefix("final_layer.adaLN_modulation.1.") {
        return Some(Target::SwapHalves(format!("norm_out.linear.{p}")));
    }
    if let Some(name) = rename(key, &TOP_RENAMES, "") {
        return Some(Target::Rename(name));
    }
    if let Some((i, rest)) = block(key, "double_blocks.") {
        let pre = format!("transformer_blocks.{i}.");
        for (fused, names) in [
            ("img_attn.qkv.", ["to_q", "to_k", "to_v"]),
            ("txt_attn.qkv.", ["add_q_proj", "add_k_proj", "add_v_proj"]),
        ] {
            if let Some(p) = rest.strip_prefix(fused) {
                return Some(Target::Thirds(names.map(|n| format!("{pre}attn.{n}.{p}"))));
            }
        }
        return rename(&rest, &DOUBLE_RENAMES, &pre).map(Target::Rename);
    }
    if let Some((i, rest)) = block(key, "single_blocks.") {
        let pre = format!("single_transformer_blocks.{i}.");
        if let Some(p) = rest.strip_prefix("linear1.") {
            return Some(Target::QkvMlp([
                format!("{pre}attn.to_q.{p}"),
                format!("{pre}attn.to_k.{p}"),
                format!("{pre}attn.to_v.{p}"),
                format!("{pre}proj_mlp.{p}"),
            ]));
        }
        return rename(&rest, &SINGLE_RENAMES, &pre).map(Target::Rename);
    }
    None
}

/// One output of a conversion: `(diffusers name, rows of axis 0, halves swapped)`.
type Block = (String, usize, bool);

/// The consecutive row blocks of axis 0 that `target` cuts a tensor with `rows0` rows into.
fn row_blocks(target: &Target, key: &str, rows0: usize, inner_dim: usize) -> Result<Vec<Block>> {
    let bad = |want: &str| {
        Err(Error::invalid(format!(
            "BFL tensor `{key}` has {rows0} rows on axis 0; expected {want} (inner_dim {inner_dim})"
        )))
    };
    Ok(match target {
        Target::Rename(n) => vec![(n.clone(), rows0, false)],
        Target::SwapHalves(n) => {
            if !rows0.is_multiple_of(2) {
                return bad("an even number");
            }
            vec![(n.clone(), rows0, true)]
        }
        Target::Thirds(names) => {
            if rows0 != 3 * inner_dim {
                return bad("3 x inner_dim");
            }
            names
                .iter()
                .map(|n| (n.clone(), inner_dim, false))
                .collect()
        }
        Target::QkvMlp(names) => {
            if rows0 <= 3 * inner_dim {
                return bad("3 x inner_dim + the MLP width");
            }
            let mut v: Vec<_> = names[..3]
                .iter()
                .map(|n| (n.clone(), inner_dim, false))
                .collect();
            v.push((names[3].clone(), rows0 - 3 * inner_dim, false));
            v
        }
    })
}

/// Converts a BFL-layout checkpoint into diffusers' names for a model of width `inner_dim`
/// (`num_attention_heads · attention_head_dim`). Tensors are read as `f32` one at a time into
/// an in-memory checkpoint (a listing stays a listing, so manifests can be converted too).
/// Unknown keys keep their (prefix-stripped) names.
pub fn bfl_to_diffusers(checkpoint: &Checkpoint, inner_dim: usize) -> Result<Checkpoint> {
    let label = checkpoint.path().to_path_buf();
    let listing = checkpoint.is_listing();
    let mut infos: Vec<TensorInfo> = Vec::new();
    // Plan every output first, so shape errors surface before any data is read.
    let mut plan: Vec<(TensorInfo, Vec<Block>)> = Vec::new();
    for info in checkpoint.list() {
        let key = strip_key(&info.name).to_string();
        let blocks = match target(&key) {
            Some(t) => {
                let rows0 = info.shape.first().copied().unwrap_or(0);
                if info.shape.is_empty() {
                    return Err(Error::invalid(format!("BFL tensor `{key}` is a scalar")));
                }
                row_blocks(&t, &key, rows0, inner_dim)?
            }
            None => vec![(key, info.shape.first().copied().unwrap_or(0), false)],
        };
        for (name, rows, _) in &blocks {
            let mut shape = info.shape.clone();
            if let Some(r) = shape.first_mut() {
                *r = *rows;
            }
            infos.push(TensorInfo {
                name: name.clone(),
                shape,
                dtype: info.dtype,
            });
        }
        plan.push((info, blocks));
    }
    if listing {
        return Ok(Checkpoint::from_listing(label, infos));
    }
    let mut failure: Option<Error> = None;
    let items = plan.into_iter().map_while(|(info, blocks)| {
        if failure.is_some() {
            return None;
        }
        let (shape, values) = match checkpoint.read_f32(&info.name) {
            Ok(v) => v,
            Err(e) => {
                failure = Some(e);
                return None;
            }
        };
        if let [(name, _, false)] = blocks.as_slice() {
            // A plain rename (also scalars and unknown keys): the values move as they are.
            return Some(vec![(name.clone(), shape, values)]);
        }
        let row_len: usize = shape.iter().skip(1).product();
        let mut out = Vec::with_capacity(blocks.len());
        let mut start = 0usize;
        for (name, rows, swap) in blocks {
            let mut s = shape.clone();
            if let Some(r) = s.first_mut() {
                *r = rows;
            }
            let part = &values[start * row_len..(start + rows) * row_len];
            let data = if swap {
                let half = part.len() / 2;
                [&part[half..], &part[..half]].concat()
            } else {
                part.to_vec()
            };
            start += rows;
            out.push((name, s, data));
        }
        Some(out)
    });
    // Lazily: only the converted copy and one source tensor are in memory at a time.
    let converted = Checkpoint::from_f32(label, items.flatten())?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(converted)
}

/// Any supported layout -> diffusers' names: prefixes stripped, BFL converted.
pub fn to_diffusers_layout(checkpoint: &Checkpoint, inner_dim: usize) -> Result<Checkpoint> {
    if is_bfl_layout(checkpoint) {
        bfl_to_diffusers(checkpoint, inner_dim)
    } else {
        Ok(strip_prefixes(checkpoint))
    }
}
