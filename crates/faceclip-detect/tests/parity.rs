//! The detect crate's fixtures through its parity hook.

use std::path::PathBuf;

use faceclip_core::{Fixture, ParityReport, Trace, device::default_device};
use faceclip_detect::parity;

fn fixture(name: &str) -> Fixture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    Fixture::open(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn show(name: &str, r: &ParityReport) {
    for c in &r.comparisons {
        eprintln!(
            "{name}: {:<28} max_abs {:.3e} (atol {:.1e}, rtol {:.1e}) {}",
            c.name,
            c.max_abs,
            c.atol,
            c.rtol,
            if c.pass() { "ok" } else { "FAIL" }
        );
    }
}

fn run(name: &str) -> ParityReport {
    let dev = default_device().unwrap();
    let f = fixture(name);
    let r = parity::run_fixture(&f, &dev)
        .expect("kind belongs to faceclip-detect")
        .unwrap();
    show(name, &r);
    r
}

#[test]
fn mtcnn_nets_match() {
    let r = run("mtcnn");
    assert!(r.pass(), "{:#?}", r.failures());
    assert!(r.max_abs() <= 1e-4);
}

#[test]
fn mtcnn_detect_matches_including_strict_tier() {
    let dev = default_device().unwrap();
    let f = fixture("mtcnn_detect");
    let (r, strict) = parity::run_mtcnn_detect(&f, &dev).unwrap();
    show("mtcnn_detect", &r);
    eprintln!("mtcnn_detect strict tier: {strict:?}");
    assert!(r.pass(), "{:#?}", r.failures());
    assert!(strict.holds, "{strict:?}");
}

#[test]
fn face_align_matches() {
    let r = run("face_align");
    assert!(r.pass(), "{:#?}", r.failures());
}

#[test]
fn other_kinds_are_not_ours() {
    let dev = default_device().unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let Ok(f) = Fixture::open(e.path()) else {
            continue;
        };
        let kind = f.kind().unwrap().to_string();
        if !["mtcnn", "mtcnn_detect", "face_align"].contains(&kind.as_str()) {
            assert!(parity::run_fixture(&f, &dev).is_none(), "{kind}");
        }
    }
}

#[test]
fn stage_counts_match_the_reference() {
    let dev = default_device().unwrap();
    let f = fixture("mtcnn_detect");
    let m = faceclip_detect::Mtcnn::load(f.weights_from("pnet_rnet_onet").unwrap(), &dev)
        .unwrap()
        .with_config(f.config_as("/MTCNN").unwrap())
        .unwrap();
    let stages = f.extra()["stages"].as_array().unwrap();
    for (i, st) in stages.iter().enumerate() {
        let (_, px) = f.io().read_i64(&format!("in.image_{i}")).unwrap();
        let photo = f.meta["inputs"][format!("image_{i}")]["shape"]
            .as_array()
            .unwrap()
            .clone();
        let (h, w) = (
            photo[0].as_u64().unwrap() as usize,
            photo[1].as_u64().unwrap() as usize,
        );
        let px: Vec<u8> = px.into_iter().map(|v| v as u8).collect();
        let mut tr = Trace::recording();
        let dets = m.detect_traced((w, h, &px[..]), &mut tr).unwrap();
        let get = |k: &str| tr.get(k).unwrap_or_else(|| panic!("`{k}` is not traced"));
        let ints = |k: &str| -> Vec<usize> {
            let v = get(k).try_to_vec::<i64>().unwrap();
            v.into_iter().map(|x| x as usize).collect()
        };
        let rows = |k: &str| get(k).shape()[0];
        let tr_scales = get("scales").try_to_vec::<f64>().unwrap();
        let tr_hw: Vec<[usize; 2]> = ints("pyramid_hw").chunks(2).map(|p| [p[0], p[1]]).collect();
        let s1_candidates = get("s1_candidates").try_to_vec::<f32>().unwrap();
        let u = |k: &str| st[k].as_u64().map(|v| v as usize);
        let scales: Vec<f64> = st["scales"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        // (serde_json's float parsing is not always correctly rounded: compare to 1e-15)
        assert_eq!(tr_scales.len(), scales.len(), "photo {i}");
        for (a, b) in tr_scales.iter().zip(&scales) {
            assert!(
                (a - b).abs() <= 1e-15 * b.abs(),
                "photo {i}: scale {a} vs {b}"
            );
        }
        let hw: Vec<[usize; 2]> = st["pyramid_hw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                [
                    p[0].as_u64().unwrap() as usize,
                    p[1].as_u64().unwrap() as usize,
                ]
            })
            .collect();
        assert_eq!(tr_hw, hw, "photo {i}");
        let per: Vec<usize> = st["stage1_candidates_per_scale"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(ints("candidates_per_scale"), per, "photo {i}");
        assert_eq!(
            Some(ints("s1_after_scale_nms")[0]),
            u("stage1_after_scale_nms"),
            "photo {i}"
        );
        assert_eq!(
            Some(rows("s1_nms")),
            u("stage1_after_cross_scale_nms"),
            "photo {i}"
        );
        assert_eq!(
            Some(rows("s2_rnet_prob")),
            u("stage2_rnet_inputs"),
            "photo {i}"
        );
        assert_eq!(
            Some(ints("s2_pass")[0]),
            u("stage2_pass_threshold"),
            "photo {i}"
        );
        assert_eq!(Some(rows("s2_boxes")), u("stage2_after_nms"), "photo {i}");
        if let Some(n) = u("stage3_onet_inputs") {
            assert_eq!(rows("s3_onet_prob"), n, "photo {i}");
            assert_eq!(
                Some(rows("s3_boxes")),
                u("stage3_pass_threshold"),
                "photo {i}"
            );
            assert_eq!(
                Some(rows("s3_keep")),
                u("stage3_after_min_nms"),
                "photo {i}"
            );
        }
        assert_eq!(Some(dets.len()), u("detections"), "photo {i}");
        // the stage-1 candidates (cell boxes from float32 division) are exact
        let (shape, want) = f.f32(&format!("mid.s1_candidates_{i}")).unwrap();
        assert_eq!(shape[0], rows("s1_candidates"));
        for (got, want) in s1_candidates.chunks_exact(9).zip(want.chunks_exact(9)) {
            assert_eq!(got[..4], want[..4], "photo {i}");
        }
    }
}

#[test]
fn nets_are_per_row() {
    // a slice of the batch gives the same rows: nothing depends on the batch size
    let dev = default_device().unwrap();
    let f = fixture("mtcnn");
    let m = faceclip_detect::Mtcnn::load(f.weights().unwrap(), &dev).unwrap();
    let x: faceclip_core::Tensor<4> = f.tensor("in.rnet_input", &dev).unwrap();
    let (reg, _) = m.rnet.forward(x.narrow(0, 5, 7));
    let (_, want) = f.f32("out.rnet_reg").unwrap();
    let got = faceclip_core::to_vec_f32(reg);
    for (g, w) in got.iter().zip(&want[5 * 4..12 * 4]) {
        assert!((g - w).abs() <= 1e-4 + 1e-4 * w.abs());
    }
    let x: faceclip_core::Tensor<4> = f.tensor("in.onet_input", &dev).unwrap();
    let out = m.onet.forward(x.narrow(0, 3, 2));
    let (_, want) = f.f32("out.onet_landmarks").unwrap();
    for (g, w) in faceclip_core::to_vec_f32(out.landmarks)
        .iter()
        .zip(&want[3 * 10..5 * 10])
    {
        assert!((g - w).abs() <= 1e-4 + 1e-4 * w.abs());
    }
}
