//! Full-size layouts (dry walks over the manifests, nothing allocated): CLIP-L
//! (`clip_text_l_hf`), T5-XXL (`t5_xxl_encoder_hf`), and the parts of the FaceCLIP / FaceT5
//! checkpoints that the stock encoders cover (FlashT5 stack, CLIP-L `encoder_1`, face ViTs,
//! open_clip text towers).

use std::path::PathBuf;

use faceclip_core::device::default_device;
use faceclip_core::{Checkpoint, CoverageReport, Manifest, VarBuilder};
use faceclip_encoders::clip_text_model::{ClipTextConfig, ClipTextTransformer, OpenClipTextConfig};
use faceclip_encoders::face_vit::{FaceVit, FaceVitConfig};
use faceclip_encoders::t5_encoder::{T5Config, T5Encoder};

fn manifest(name: &str) -> Manifest {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/manifests")
        .join(format!("{name}.json"));
    Manifest::open(path).expect("manifest")
}

fn assert_exact(what: &str, r: &CoverageReport, expected: usize) {
    println!(
        "{what}: expected={} missing={} unexpected={} mismatched={}",
        r.expected,
        r.missing.len(),
        r.unexpected.len(),
        r.mismatched.len()
    );
    assert!(r.is_exact(), "{what}: {r}");
    assert_eq!(r.expected, expected, "{what}: tensor count");
}

/// The manifest's keys under `prefix`, with the prefix removed.
fn subset(m: &Manifest, prefix: &str) -> (Checkpoint, usize) {
    let ck = m.checkpoint().strip_prefix(prefix);
    let n = ck.len();
    assert!(n > 0, "no keys under {prefix}");
    (ck, n)
}

#[test]
fn clip_text_l_hf_via_hook() {
    let dev = default_device().unwrap();
    let m = manifest("clip_text_l_hf");
    let r = faceclip_encoders::parity::check_manifest(&m, &dev)
        .unwrap()
        .unwrap();
    assert_exact("clip_text_l_hf", &r, m.tensors.len());
    assert_eq!(m.tensors.len(), 196);
}

#[test]
fn t5_xxl_encoder_hf_via_hook() {
    let dev = default_device().unwrap();
    let m = manifest("t5_xxl_encoder_hf");
    let r = faceclip_encoders::parity::check_manifest(&m, &dev)
        .unwrap()
        .unwrap();
    assert_exact("t5_xxl_encoder_hf", &r, m.tensors.len());
    assert_eq!(m.tensors.len(), 219);
}

/// `encoder_2.t5_encoder.*` of `face_t5_encoder.pt` is the FlashT5 layout of T5-XXL.
#[test]
fn facet5_flash_t5_subset() {
    let dev = default_device().unwrap();
    let m = manifest("facet5_encoder_full");
    // The yaml as upstream reads it (it has no `vocab_size`: T5Config's default 32128).
    // `flash_t5_effective` is a summary without `use_glu_mlp`, so it is not a config.
    let cfg: T5Config = serde_json::from_value(m.config["flash_t5_yaml"].clone()).unwrap();
    let eff = &m.config["flash_t5_effective"];
    assert_eq!(cfg.vocab_size as u64, eff["vocab_size"].as_u64().unwrap());
    assert_eq!(
        cfg.layer_norm_epsilon,
        eff["layer_norm_epsilon"].as_f64().unwrap()
    );
    let (ck, n) = subset(&m, "encoder_2.t5_encoder.");
    let vb = VarBuilder::from_checkpoint(ck, &dev);
    T5Encoder::load_flash_t5(&vb, &cfg).unwrap();
    assert_exact("facet5 encoder_2.t5_encoder", &vb.report(), n);
}

/// `encoder_1.*` of `face_t5_encoder.pt` is transformers CLIP-L (`text_model.*`).
#[test]
fn facet5_clip_l_subset() {
    let dev = default_device().unwrap();
    let m = manifest("facet5_encoder_full");
    let cfg: ClipTextConfig =
        serde_json::from_value(m.config["encoder_1_clip_text_config"].clone()).unwrap();
    let (ck, n) = subset(&m, "encoder_1.");
    let vb = VarBuilder::from_checkpoint(ck, &dev);
    ClipTextTransformer::load_hf(&vb, &cfg).unwrap();
    assert_exact("facet5 encoder_1", &vb.report(), n);
}

/// Face ViTs of both checkpoints (`face_encoder.*`, 768 wide, 24 blocks, 512 classes).
#[test]
fn face_vit_subsets() {
    let dev = default_device().unwrap();
    for (name, prefix, cfg) in [
        (
            "faceclip_encoder_full",
            "face_clip_l.face_encoder.",
            "/face_clip_l/face_vit",
        ),
        (
            "faceclip_encoder_full",
            "face_clip_g.face_encoder.",
            "/face_clip_g/face_vit",
        ),
        (
            "facet5_encoder_full",
            "encoder_2.face_encoder.",
            "/face_vit",
        ),
    ] {
        let m = manifest(name);
        let cfg: FaceVitConfig =
            serde_json::from_value(m.config.pointer(cfg).unwrap().clone()).unwrap();
        let (ck, n) = subset(&m, prefix);
        let vb = VarBuilder::from_checkpoint(ck, &dev);
        FaceVit::load(&vb, &cfg).unwrap();
        assert_exact(&format!("{name} {prefix}"), &vb.report(), n);
        // The released constructor config is the same.
        let vb = VarBuilder::from_checkpoint(subset(&m, prefix).0, &dev);
        FaceVit::load(&vb, &FaceVitConfig::released()).unwrap();
        assert!(vb.report().is_exact());
    }
}

/// The open_clip text towers of FaceCLIP-L/G: the text-tower keys of each branch.
#[test]
fn faceclip_text_tower_subsets() {
    let dev = default_device().unwrap();
    let m = manifest("faceclip_encoder_full");
    for branch in ["face_clip_l", "face_clip_g"] {
        let c = &m.config[branch];
        let mut cfg: OpenClipTextConfig = serde_json::from_value(c["text_cfg"].clone()).unwrap();
        cfg.quick_gelu = c["quick_gelu"].as_bool().unwrap();
        cfg.embed_dim = c["params"]["text_embed_dim"].as_u64().map(|d| d as usize);
        let prefix = format!("{branch}.");
        let tower = [
            "token_embedding.",
            "positional_embedding",
            "transformer.",
            "ln_final.",
            "text_projection",
        ];
        let ck = m.checkpoint().rename(|k| {
            let k = k.strip_prefix(&prefix)?;
            tower
                .iter()
                .any(|t| k.starts_with(t))
                .then(|| k.to_string())
        });
        let n = ck.len();
        let vb = VarBuilder::from_checkpoint(ck, &dev);
        ClipTextTransformer::load_open_clip(&vb, &cfg).unwrap();
        assert_exact(&format!("{branch} text tower"), &vb.report(), n);
    }
}

/// A config the model cannot be built from is an error, not a panic.
#[test]
fn manifest_config_error() {
    let dev = default_device().unwrap();
    let mut m = manifest("clip_text_l_hf");
    m.config = serde_json::json!({"hidden_size": "wide"});
    assert!(
        faceclip_encoders::parity::check_manifest(&m, &dev)
            .unwrap()
            .is_err()
    );
}
