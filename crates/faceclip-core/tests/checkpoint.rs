//! Checkpoint loading: `.pt` and `.safetensors` agree bit for bit; bad files give typed
//! errors that name the file, key and shapes; nothing panics.

mod common;

use std::fs;

use common::{fixture_dir, scratch};
use faceclip_core::device::default_device;
use faceclip_core::{Checkpoint, Error, Manifest, VarBuilder};

#[test]
fn pt_and_safetensors_hold_the_same_tensors_bit_for_bit() {
    let dir = fixture_dir("faceclip_encoder");
    let st = Checkpoint::open(dir.join("weights.safetensors")).unwrap();
    let pt = Checkpoint::open(dir.join("weights.pt")).unwrap();
    let st_names: Vec<String> = st.list().into_iter().map(|i| i.name).collect();
    let pt_names: Vec<String> = pt.list().into_iter().map(|i| i.name).collect();
    assert!(st_names.len() > 100, "only {} tensors", st_names.len());
    assert_eq!(st_names, pt_names);
    for name in &st_names {
        let (a_info, a) = st.read_raw(name).unwrap();
        let (b_info, b) = pt.read_raw(name).unwrap();
        assert_eq!(a_info.shape, b_info.shape, "{name}");
        assert_eq!(a_info.dtype, b_info.dtype, "{name}");
        assert!(a == b, "{name}: bytes differ");
    }
}

#[test]
fn t5_pt_matches_safetensors_as_f32() {
    let dir = fixture_dir("t5_encoder_hf");
    let st = Checkpoint::open(dir.join("weights.safetensors")).unwrap();
    let pt = Checkpoint::open(dir.join("weights.pt")).unwrap();
    for info in st.list() {
        assert_eq!(
            st.read_f32(&info.name).unwrap(),
            pt.read_f32(&info.name).unwrap()
        );
    }
}

fn expect_checkpoint_error(path: &std::path::Path) -> String {
    match Checkpoint::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&*path.file_name().unwrap().to_string_lossy()),
                "message does not name the file: {msg}"
            );
            msg
        }
    }
}

#[test]
fn empty_truncated_corrupt_and_misnamed_files_are_typed_errors() {
    let dir = scratch("bad");
    let good_st = fs::read(fixture_dir("t5_encoder_hf").join("weights.safetensors")).unwrap();
    let good_pt = fs::read(fixture_dir("t5_encoder_hf").join("weights.pt")).unwrap();

    let empty = dir.join("empty.safetensors");
    fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Checkpoint::open(&empty),
        Err(Error::Checkpoint { .. })
    ));
    assert!(expect_checkpoint_error(&empty).contains("empty"));

    let trunc = dir.join("trunc.safetensors");
    fs::write(&trunc, &good_st[..good_st.len() / 2]).unwrap();
    assert!(matches!(
        Checkpoint::open(&trunc),
        Err(Error::Checkpoint { .. })
    ));
    expect_checkpoint_error(&trunc);

    let garbage = dir.join("garbage.safetensors");
    fs::write(
        &garbage,
        b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a header at all",
    )
    .unwrap();
    expect_checkpoint_error(&garbage);

    let trunc_pt = dir.join("trunc.pt");
    fs::write(&trunc_pt, &good_pt[..good_pt.len() / 3]).unwrap();
    expect_checkpoint_error(&trunc_pt);

    let corrupt_pt = dir.join("corrupt.pt");
    let mut bytes = good_pt.clone();
    for b in bytes.iter_mut().skip(40).take(400) {
        *b ^= 0x5a;
    }
    fs::write(&corrupt_pt, &bytes).unwrap();
    // Either the archive is refused at open, or the damaged tensor at read: never a panic.
    if let Ok(ck) = Checkpoint::open(&corrupt_pt) {
        for info in ck.list() {
            let _ = ck.read_f32(&info.name);
        }
    }

    let misnamed = dir.join("weights.safetensors");
    fs::write(&misnamed, &good_pt).unwrap();
    expect_checkpoint_error(&misnamed);

    let unknown = dir.join("weights.onnx");
    fs::write(&unknown, &good_st).unwrap();
    assert!(matches!(
        Checkpoint::open(&unknown),
        Err(Error::UnsupportedFormat { .. })
    ));

    let missing = dir.join("nope.safetensors");
    assert!(matches!(Checkpoint::open(&missing), Err(Error::Io { .. })));
    assert!(
        Checkpoint::open(&missing)
            .unwrap_err()
            .to_string()
            .contains("nope.safetensors")
    );
}

#[test]
fn missing_unexpected_and_wrong_shape_are_all_reported_at_once() {
    let ck = Checkpoint::from_f32(
        "mem.safetensors",
        vec![
            ("a.weight".to_string(), vec![2, 3], vec![0.0; 6]),
            ("a.bias".to_string(), vec![4], vec![0.0; 4]),
            ("stray".to_string(), vec![1], vec![0.0]),
        ],
    )
    .unwrap();
    let device = default_device().unwrap();
    let vb = VarBuilder::from_checkpoint(ck, &device);
    let a = vb.pp("a");
    let _w = a.tensor("weight", [2, 3]);
    let _b = a.tensor("bias", [2]);
    let _c = vb.pp("b").tensor("weight", [5]);
    let err = vb.finish().unwrap_err();
    let Error::Coverage(report) = &err else {
        panic!("{err}")
    };
    assert_eq!(report.missing, vec!["b.weight"]);
    assert_eq!(report.unexpected, vec!["stray"]);
    assert_eq!(
        report.mismatched,
        vec![("a.bias".to_string(), vec![2], vec![4])]
    );
    let msg = err.to_string();
    for needle in [
        "mem.safetensors",
        "b.weight",
        "stray",
        "a.bias",
        "[2]",
        "[4]",
    ] {
        assert!(msg.contains(needle), "`{needle}` not in: {msg}");
    }
}

#[test]
fn loaded_values_reach_the_tensor() {
    let ck = Checkpoint::from_f32(
        "mem",
        vec![("w".to_string(), vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])],
    )
    .unwrap();
    let device = default_device().unwrap();
    let vb = VarBuilder::from_checkpoint(ck, &device);
    let w = vb.tensor("w", [2, 2]);
    vb.finish().unwrap();
    assert_eq!(faceclip_core::to_vec_f32(w.val()), vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn a_manifest_walk_allocates_nothing_and_checks_shapes() {
    let m = Manifest::open(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/manifests/sdxl_vae.json"),
    )
    .unwrap();
    assert_eq!(m.tensors.len(), 248);
    let device = default_device().unwrap();
    let vb = VarBuilder::from_checkpoint(m.checkpoint(), &device);
    let p = vb
        .pp("encoder")
        .pp("conv_in")
        .tensor("weight", [128, 3, 3, 3]);
    assert!(!p.is_initialized());
    let report = vb.report();
    assert!(report.missing.is_empty() && report.mismatched.is_empty());
    assert_eq!(report.unexpected.len(), 247);
}

#[test]
fn listing_reports_every_tensor_with_shape_and_dtype() {
    let ck = Checkpoint::open(fixture_dir("t5_encoder_hf").join("weights.pt")).unwrap();
    let list = ck.list();
    assert!(
        list.iter()
            .any(|i| i.name == "shared.weight" && i.shape == vec![512, 32])
    );
    assert!(
        list.iter()
            .all(|i| i.dtype == faceclip_core::StoredDType::F32)
    );
}

#[test]
fn sharded_index_loads_across_files() {
    let dir = scratch("sharded");
    let a = Checkpoint::from_f32("a", vec![("x".to_string(), vec![2], vec![1.0, 2.0])]).unwrap();
    let b = Checkpoint::from_f32("b", vec![("y".to_string(), vec![1], vec![3.0])]).unwrap();
    a.save_safetensors(&dir.join("model-00001-of-00002.safetensors"))
        .unwrap();
    b.save_safetensors(&dir.join("model-00002-of-00002.safetensors"))
        .unwrap();
    fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let ck = Checkpoint::open(dir.join("model.safetensors.index.json")).unwrap();
    assert_eq!(ck.read_f32("x").unwrap().1, vec![1.0, 2.0]);
    assert_eq!(ck.read_f32("y").unwrap().1, vec![3.0]);
    fs::write(
        dir.join("bad.safetensors.index.json"),
        r#"{"weight_map": {"x": "../escape.safetensors"}}"#,
    )
    .unwrap();
    assert!(Checkpoint::open(dir.join("bad.safetensors.index.json")).is_err());
}
