//! LoRA merging through the one loading path, against diffusers' `load_lora_weights` +
//! `fuse_lora` (fixtures: `tests/lora/*`, made by `tests/lora/make_lora_fixtures.py` on the
//! tiny base models of `tests/fixtures/unet_sdxl` and `tests/fixtures/flux_transformer`), and
//! the errors a wrong, foreign or hostile LoRA file gives.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::{fixture_dir, scratch};
use faceclip_core::lora::{LoraLayout, LoraSet, LoraSpec, LoraTarget};
use faceclip_core::{Checkpoint, Error, TensorInfo, VarBuilder, to_vec_f32};

/// Largest |ours - diffusers| allowed on a fused weight. Both sides compute
/// `W + (B @ A) · scale · alpha / rank` in float32; they differ only in the summation order of
/// the rank-r product and in where the scalar factor is rounded (kohya FLUX folds it into A and
/// B first), a few float32 ulps of values below 4 in magnitude (~1e-6). The smallest LoRA change
/// in the fixtures is far above this (checked below), so a wrong alpha, scale or row block fails.
const TOL: f32 = 2e-6;

fn lora_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/lora")
        .join(name)
}

fn device() -> faceclip_core::Device {
    faceclip_core::device::default_device().unwrap()
}

struct LoraFixture {
    lora: PathBuf,
    scale: f32,
    base: Checkpoint,
    fused: Checkpoint,
    target: LoraTarget,
}

fn sdxl_target() -> LoraTarget {
    let meta: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(fixture_dir("unet_sdxl").join("meta.json")).unwrap(),
    )
    .unwrap();
    LoraTarget::SdxlUnet {
        layers_per_block: meta["config"]["layers_per_block"]
            .as_u64()
            .map(|n| n as usize),
    }
}

fn open(name: &str) -> LoraFixture {
    let dir = lora_dir(name);
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let base = meta["base"].as_str().unwrap();
    let target = match base {
        "unet_sdxl" => sdxl_target(),
        _ => LoraTarget::FluxTransformer,
    };
    LoraFixture {
        lora: dir.join("lora.safetensors"),
        scale: meta["scale"].as_f64().unwrap() as f32,
        base: Checkpoint::open(fixture_dir(base).join("weights.safetensors")).unwrap(),
        fused: Checkpoint::open(dir.join("fused.safetensors")).unwrap(),
        target,
    }
}

/// Walks every tensor of `base` through `vb` (as a model would) and returns the loaded values.
fn walk(base: &Checkpoint, vb: &VarBuilder) -> BTreeMap<String, Vec<f32>> {
    base.list()
        .into_iter()
        .map(|TensorInfo { name, shape: s, .. }| {
            let v = match s.len() {
                1 => to_vec_f32(vb.tensor::<1>(&name, [s[0]]).val()),
                2 => to_vec_f32(vb.tensor::<2>(&name, [s[0], s[1]]).val()),
                4 => to_vec_f32(vb.tensor::<4>(&name, [s[0], s[1], s[2], s[3]]).val()),
                n => panic!("{name}: rank {n}"),
            };
            (name, v)
        })
        .collect()
}

/// Loads `base` with `loras` through the VarBuilder and finishes the walk.
fn load(
    base: &Checkpoint,
    specs: &[LoraSpec],
    target: LoraTarget,
) -> faceclip_core::Result<(LoraSetInfo, BTreeMap<String, Vec<f32>>)> {
    let set = LoraSet::open(specs, target)?;
    let info = LoraSetInfo {
        layouts: set.files().iter().map(|f| f.2).collect(),
        skipped: set.skipped().iter().map(|s| s.module.clone()).collect(),
    };
    let vb = VarBuilder::from_checkpoint(base.clone(), &device()).with_loras(set);
    let got = walk(base, &vb);
    vb.finish()?;
    Ok((info, got))
}

#[derive(Debug)]
struct LoraSetInfo {
    layouts: Vec<LoraLayout>,
    skipped: Vec<String>,
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every weight the reference changed matches it within [`TOL`]; every other weight is the base
/// weight bit for bit. Returns the largest error.
fn compare(
    name: &str,
    base: &Checkpoint,
    expected: &BTreeMap<String, Vec<f32>>,
    got: &BTreeMap<String, Vec<f32>>,
) -> f32 {
    let mut worst = 0f32;
    for (k, v) in got {
        let (_, b) = base.read_f32(k).unwrap();
        match expected.get(k) {
            Some(want) => {
                let change = max_abs(want, &b);
                assert!(
                    change > 1e3 * TOL,
                    "{name}: `{k}` barely changes ({change:e})"
                );
                let err = max_abs(v, want);
                assert!(err <= TOL, "{name}: `{k}` max_abs {err:e} > {TOL:e}");
                worst = worst.max(err);
            }
            None => assert!(
                v == &b,
                "{name}: `{k}` changed, diffusers left it as it was"
            ),
        }
    }
    assert!(expected.keys().all(|k| got.contains_key(k)));
    worst
}

fn fused_values(fused: &Checkpoint) -> BTreeMap<String, Vec<f32>> {
    fused
        .list()
        .into_iter()
        .map(|i| (i.name.clone(), fused.read_f32(&i.name).unwrap().1))
        .collect()
}

fn check_layout(name: &str, layout: LoraLayout) {
    let fx = open(name);
    let (info, got) = load(&fx.base, &[LoraSpec::new(&fx.lora, fx.scale)], fx.target).unwrap();
    assert_eq!(info.layouts, [layout]);
    let worst = compare(name, &fx.base, &fused_values(&fx.fused), &got);
    eprintln!(
        "{name}: max_abs={worst:.3e} over {} fused tensors (tol {TOL:e})",
        fx.fused.len()
    );
}

#[test]
fn sdxl_diffusers_peft_matches_diffusers() {
    check_layout("sdxl_peft", LoraLayout::DiffusersPeft);
}

#[test]
fn sdxl_kohya_matches_diffusers() {
    check_layout("sdxl_kohya", LoraLayout::Kohya);
}

#[test]
fn sdxl_kohya_sgm_names_match_diffusers() {
    check_layout("sdxl_kohya_sgm", LoraLayout::KohyaSgm);
}

#[test]
fn flux_diffusers_peft_matches_diffusers() {
    check_layout("flux_peft", LoraLayout::DiffusersPeft);
}

#[test]
fn flux_kohya_bfl_names_match_diffusers() {
    check_layout("flux_kohya", LoraLayout::KohyaBfl);
}

#[test]
fn flux_xlabs_matches_diffusers() {
    check_layout("flux_xlabs", LoraLayout::XLabs);
}

/// Several files on one model: each adds its own delta (diffusers fuses adapters one after
/// another), so the result is the base plus the sum of the reference's changes.
#[test]
fn stacked_loras_add_their_deltas() {
    for names in [
        &["sdxl_peft", "sdxl_kohya", "sdxl_kohya_sgm"][..],
        &["flux_peft", "flux_kohya", "flux_xlabs"][..],
    ] {
        let fxs: Vec<LoraFixture> = names.iter().map(|n| open(n)).collect();
        let base = &fxs[0].base;
        let mut expected: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for fx in &fxs {
            for (k, fused) in fused_values(&fx.fused) {
                let (_, b) = base.read_f32(&k).unwrap();
                let acc = expected.entry(k).or_insert_with(|| b.clone());
                for ((a, f), b) in acc.iter_mut().zip(&fused).zip(&b) {
                    *a += f - b;
                }
            }
        }
        let specs: Vec<LoraSpec> = fxs
            .iter()
            .map(|f| LoraSpec::new(&f.lora, f.scale))
            .collect();
        let (_, got) = load(base, &specs, fxs[0].target).unwrap();
        let worst = compare(&names.join("+"), base, &expected, &got);
        eprintln!("{}: max_abs={worst:.3e}", names.join("+"));
    }
}

/// Loading a LoRA file as `f32` tensors, for tests that write variants of it.
fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let ck = Checkpoint::open(path).unwrap();
    ck.list()
        .into_iter()
        .map(|i| {
            let (s, v) = ck.read_f32(&i.name).unwrap();
            (i.name, s, v)
        })
        .collect()
}

fn write(dir: &Path, name: &str, t: Vec<(String, Vec<usize>, Vec<f32>)>) -> PathBuf {
    let path = dir.join(name);
    Checkpoint::from_f32(&path, t)
        .unwrap()
        .save_safetensors(&path)
        .unwrap();
    path
}

fn checkpoint_error(err: Error, path: &Path, needles: &[&str]) -> String {
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Checkpoint { .. }),
        "not a checkpoint error: {msg}"
    );
    assert!(
        msg.contains(&*path.to_string_lossy()),
        "does not name the file: {msg}"
    );
    for n in needles {
        assert!(msg.contains(n), "`{n}` not in: {msg}");
    }
    msg
}

#[test]
fn a_lora_module_that_matches_no_weight_is_an_error_naming_it() {
    let dir = scratch("lora_unmatched");
    let fx = open("flux_peft");
    let mut t = tensors(&fx.lora);
    let m = "transformer.transformer_blocks.5.attn.to_q";
    t.push((format!("{m}.lora_A.weight"), vec![4, 32], vec![0.1; 128]));
    t.push((format!("{m}.lora_B.weight"), vec![32, 4], vec![0.1; 128]));
    let path = write(&dir, "extra.safetensors", t);
    let err = load(&fx.base, &[LoraSpec::new(&path, 1.0)], fx.target).expect_err("loaded");
    checkpoint_error(
        err,
        &path,
        &[
            m,
            "transformer_blocks.5.attn.to_q.weight",
            "FLUX transformer",
        ],
    );

    // The same for a kohya UNet module the UNet lacks.
    let fx = open("sdxl_kohya");
    let mut t = tensors(&fx.lora);
    let m = "lora_unet_down_blocks_0_attentions_0_proj_in";
    t.push((format!("{m}.lora_down.weight"), vec![4, 32], vec![0.1; 128]));
    t.push((format!("{m}.lora_up.weight"), vec![32, 4], vec![0.1; 128]));
    let path = write(&dir, "extra_kohya.safetensors", t);
    let err = load(&fx.base, &[LoraSpec::new(&path, 1.0)], fx.target).expect_err("loaded");
    checkpoint_error(err, &path, &[m, "SDXL UNet"]);
}

#[test]
fn a_lora_for_the_other_model_is_refused() {
    // SDXL files given to FLUX: refused when opened, naming the file and a foreign module.
    for (name, module) in [
        ("sdxl_peft", "unet.down_blocks"),
        ("sdxl_kohya", "lora_unet_down_blocks"),
        ("sdxl_kohya_sgm", "lora_unet_input_blocks"),
    ] {
        let path = lora_dir(name).join("lora.safetensors");
        let err = LoraSet::open(&[LoraSpec::new(&path, 1.0)], LoraTarget::FluxTransformer)
            .expect_err("opened");
        checkpoint_error(
            err,
            &path,
            &[module, "not a module of the FLUX transformer"],
        );
    }
    // FLUX files given to the SDXL UNet: refused when opened (PEFT, XLabs) or after the walk
    // (kohya names cannot be told apart from UNet modules before the walk).
    let sdxl = open("sdxl_peft");
    for (name, needle) in [
        ("flux_peft", "`transformer."),
        ("flux_xlabs", "not a LoRA layout"),
    ] {
        let path = lora_dir(name).join("lora.safetensors");
        let err = LoraSet::open(&[LoraSpec::new(&path, 1.0)], sdxl.target).expect_err("opened");
        checkpoint_error(err, &path, &[needle, "SDXL UNet"]);
    }
    let path = lora_dir("flux_kohya").join("lora.safetensors");
    let err = load(&sdxl.base, &[LoraSpec::new(&path, 1.0)], sdxl.target).expect_err("loaded");
    checkpoint_error(
        err,
        &path,
        &["lora_unet_double_blocks_0_img_attn_qkv", "SDXL UNet"],
    );
}

#[test]
fn hostile_or_corrupt_lora_files_are_checkpoint_errors() {
    let dir = scratch("lora_hostile");
    let target = LoraTarget::FluxTransformer;
    // A header that claims more than the file holds.
    let p = dir.join("long_header.safetensors");
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"w\":{}}");
    fs::write(&p, bytes).unwrap();
    let err = LoraSet::open(&[LoraSpec::new(&p, 1.0)], target)
        .err()
        .unwrap();
    checkpoint_error(err, &p, &["header length"]);
    // Data offsets beyond the file.
    let p = dir.join("offsets.safetensors");
    let header = r#"{"transformer.x_embedder.lora_A.weight":{"dtype":"F32","shape":[1048576],"data_offsets":[0,4194304]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 16]);
    fs::write(&p, bytes).unwrap();
    let err = LoraSet::open(&[LoraSpec::new(&p, 1.0)], target)
        .err()
        .unwrap();
    checkpoint_error(err, &p, &[]);
    // Truncated: the real fixture cut short.
    let src = fs::read(lora_dir("flux_xlabs").join("lora.safetensors")).unwrap();
    let p = dir.join("truncated.safetensors");
    fs::write(&p, &src[..src.len() / 2]).unwrap();
    let err = LoraSet::open(&[LoraSpec::new(&p, 1.0)], target)
        .err()
        .unwrap();
    checkpoint_error(err, &p, &[]);
    // An empty file, a missing file.
    let p = dir.join("empty.safetensors");
    fs::write(&p, b"").unwrap();
    let err = LoraSet::open(&[LoraSpec::new(&p, 1.0)], target)
        .err()
        .unwrap();
    checkpoint_error(err, &p, &["empty"]);
    let p = dir.join("missing.safetensors");
    let err = LoraSet::open(&[LoraSpec::new(&p, 1.0)], target)
        .err()
        .unwrap();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    // A model checkpoint given as a LoRA.
    let p = fixture_dir("flux_transformer").join("weights.safetensors");
    let err = LoraSet::open(&[LoraSpec::new(&p, 1.0)], target)
        .err()
        .unwrap();
    checkpoint_error(err, &p, &["not a LoRA layout"]);
}

#[test]
fn unsupported_lora_variants_and_bad_tensors_are_refused() {
    let dir = scratch("lora_variants");
    let fx = open("sdxl_kohya");
    let module = "lora_unet_down_blocks_1_attentions_0_proj_in";
    let with = |name: &str, extra: Vec<(String, Vec<usize>, Vec<f32>)>| {
        let mut t = tensors(&fx.lora);
        t.extend(extra);
        write(&dir, name, t)
    };
    let cases = [
        (
            "dora.safetensors",
            vec![(format!("{module}.dora_scale"), vec![1, 64], vec![1.0; 64])],
            "DoRA",
        ),
        (
            "loha.safetensors",
            vec![(format!("{module}.hada_w1_a"), vec![64, 4], vec![1.0; 256])],
            "hada_w1_a",
        ),
        (
            "alpha.safetensors",
            vec![(format!("{module}.alpha"), vec![2], vec![1.0, 2.0])],
            "proj_in.alpha` should be one finite number",
        ),
    ];
    for (file, extra, needle) in cases {
        let p = with(file, extra);
        let err = LoraSet::open(&[LoraSpec::new(&p, 1.0)], fx.target).expect_err(file);
        checkpoint_error(err, &p, &[needle]);
    }
    // Factors that do not fit the weight: named with the module and the weight key.
    let mut t = tensors(&fx.lora);
    for (name, shape, v) in &mut t {
        if name == &format!("{module}.lora_down.weight") {
            *shape = vec![4, 32];
            v.truncate(128);
        }
    }
    let p = write(&dir, "shape.safetensors", t);
    let err = load(&fx.base, &[LoraSpec::new(&p, 1.0)], fx.target).expect_err("loaded");
    checkpoint_error(
        err,
        &p,
        &[
            module,
            "down_blocks.1.attentions.0.proj_in.weight",
            "do not fit",
        ],
    );
}

#[test]
fn text_encoder_parts_are_listed_and_not_applied() {
    let dir = scratch("lora_te");
    let fx = open("sdxl_kohya");
    let te = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj";
    let mut t = tensors(&fx.lora);
    t.push((format!("{te}.lora_down.weight"), vec![4, 8], vec![0.5; 32]));
    t.push((format!("{te}.lora_up.weight"), vec![8, 4], vec![0.5; 32]));
    t.push((format!("{te}.alpha"), vec![], vec![4.0]));
    let p = write(&dir, "with_te.safetensors", t);
    let (info, got) = load(&fx.base, &[LoraSpec::new(&p, fx.scale)], fx.target).unwrap();
    assert_eq!(info.skipped, [te]);
    compare("sdxl_kohya+te", &fx.base, &fused_values(&fx.fused), &got);
}

/// A listing (a manifest, no data) with LoRAs: the walk checks that every LoRA module fits a
/// weight, without reading anything.
#[test]
fn loras_are_checked_against_a_listing() {
    let fx = open("sdxl_kohya_sgm");
    let listing = Checkpoint::from_listing("listing", fx.base.list());
    let set = LoraSet::open(&[LoraSpec::new(&fx.lora, 1.0)], fx.target).unwrap();
    let vb = VarBuilder::from_checkpoint(listing.clone(), &device()).with_loras(set);
    walk(&listing, &vb);
    vb.finish().unwrap();
    // The same listing without one weight the LoRA targets: the LoRA module is unmatched.
    let infos: Vec<TensorInfo> = fx
        .base
        .list()
        .into_iter()
        .filter(|i| i.name != "up_blocks.0.upsamplers.0.conv.weight")
        .collect();
    let listing = Checkpoint::from_listing("listing", infos);
    let set = LoraSet::open(&[LoraSpec::new(&fx.lora, 1.0)], fx.target).unwrap();
    let vb = VarBuilder::from_checkpoint(listing.clone(), &device()).with_loras(set);
    walk(&listing, &vb);
    let err = vb.finish().unwrap_err();
    checkpoint_error(err, &fx.lora, &["lora_unet_output_blocks_2_2_conv"]);
}

#[test]
fn lora_spec_parses_file_and_scale() {
    let p = |s: &str| LoraSpec::parse(s).unwrap();
    assert_eq!(p("a.safetensors"), LoraSpec::new("a.safetensors", 1.0));
    assert_eq!(p("a.safetensors:0.5"), LoraSpec::new("a.safetensors", 0.5));
    assert_eq!(
        p("dir/a.safetensors:-1.25"),
        LoraSpec::new("dir/a.safetensors", -1.25)
    );
    assert_eq!(
        p("C:\\l\\a.safetensors"),
        LoraSpec::new("C:\\l\\a.safetensors", 1.0)
    );
    assert_eq!(
        p("C:\\l\\a.safetensors:2"),
        LoraSpec::new("C:\\l\\a.safetensors", 2.0)
    );
    for bad in [
        "",
        ":0.5",
        "a.safetensors:",
        "a.safetensors:nan",
        "a.safetensors:inf",
    ] {
        let err = LoraSpec::parse(bad).expect_err(bad);
        assert!(matches!(err, Error::InvalidInput(_)), "{bad}: {err}");
    }
}
