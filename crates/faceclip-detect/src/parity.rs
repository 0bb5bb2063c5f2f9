//! Parity hooks: run a fixture of a kind this crate ports, or check a full-size manifest.
//!
//! Kinds: `mtcnn` (the three nets on stored inputs), `mtcnn_detect` (the whole detector on
//! photos; see [`run_mtcnn_detect`] for the strict tier) and `face_align` (Umeyama matrices
//! and OpenCV-exact aligned crops).

use faceclip_core::{
    Comparison, CoverageReport, Device, Error, Fixture, Manifest, ParityOutcome, ParityReport,
    Result, Tensor, to_vec_f32,
};
use serde_json::Value;

use crate::face_align::estimate_norm;
use crate::image::RgbU8Image;
use crate::mtcnn::{Mtcnn, MtcnnConfig};
use crate::warp_affine::{invert_affine, warp_affine};

/// Runs `fixture` when its kind belongs to this crate; `None` otherwise.
pub fn run_fixture(fixture: &Fixture, device: &Device) -> ParityOutcome {
    match fixture.kind() {
        Ok("mtcnn") => Some(run_mtcnn(fixture, device)),
        Ok("mtcnn_detect") => Some(run_mtcnn_detect(fixture, device).map(|(r, _)| r)),
        Ok("face_align") => Some(run_face_align(fixture)),
        _ => None,
    }
}

/// Checks a full-size manifest this crate knows (by its name); `None` otherwise.
pub fn check_manifest(manifest: &Manifest, device: &Device) -> Option<Result<CoverageReport>> {
    let _ = (manifest, device);
    None
}

fn meta_err(fixture: &Fixture, what: impl std::fmt::Display) -> Error {
    Error::config(fixture.dir.join("meta.json"), what)
}

fn keys_of<'a>(fixture: &'a Fixture, field: &str) -> Vec<&'a str> {
    fixture
        .meta
        .get(field)
        .and_then(Value::as_object)
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// A map's shape and values, so intermediate maps of different ranks share one list.
type HostMap = (Vec<usize>, Vec<f32>);

fn host<const D: usize>(t: Tensor<D>) -> HostMap {
    (t.dims().to_vec(), to_vec_f32(t))
}

/// Compares each `(name, map)` with the fixture's `mid.{name}` at `(atol, rtol)` (only those
/// it holds when `only_present`).
fn compare_mids(
    fixture: &Fixture,
    report: &mut ParityReport,
    mids: Vec<(&str, HostMap)>,
    only_present: bool,
    (atol, rtol): (f64, f64),
) -> Result<()> {
    for (name, (got_shape, got)) in mids {
        let key = format!("mid.{name}");
        if only_present && !fixture.has(&key) {
            continue;
        }
        let (shape, want) = fixture.f32(&key)?;
        report.push(Comparison::new(
            &key, &got_shape, &got, &shape, &want, atol, rtol,
        ));
    }
    Ok(())
}

/// `mtcnn`: each `in.{p,r,o}net_input*` through its net, against the matching `out.*`
/// (and the `mid.*` maps of the first P-Net input and of R-Net / O-Net).
pub fn run_mtcnn(fixture: &Fixture, device: &Device) -> Result<ParityReport> {
    let mtcnn = Mtcnn::load(fixture.weights()?, device)?;
    let mut report = ParityReport::default();
    let mut inputs = keys_of(fixture, "inputs");
    inputs.sort();
    for name in inputs {
        let x: Tensor<4> = fixture.tensor(&format!("in.{name}"), device)?;
        if let Some(suffix) = name.strip_prefix("pnet_input") {
            let (reg, prob, mids) = mtcnn.pnet.forward_mids(x);
            report.push(fixture.check(&format!("pnet_reg{suffix}"), reg.into_data())?);
            report.push(fixture.check(&format!("pnet_prob{suffix}"), prob.into_data())?);
            if suffix.is_empty() {
                let maps = vec![
                    ("pnet_pool1", host(mids.pool1)),
                    ("pnet_prelu2", host(mids.prelu2)),
                    ("pnet_prelu3", host(mids.prelu3)),
                ];
                compare_mids(fixture, &mut report, maps, true, fixture.tolerance())?;
            }
        } else if name == "rnet_input" {
            let (reg, prob, mids) = mtcnn.rnet.forward_mids(x);
            report.push(fixture.check("rnet_reg", reg.into_data())?);
            report.push(fixture.check("rnet_prob", prob.into_data())?);
            let maps = vec![
                ("rnet_prelu3", host(mids.prelu3)),
                ("rnet_flat", host(mids.flat)),
                ("rnet_prelu4", host(mids.prelu4)),
            ];
            compare_mids(fixture, &mut report, maps, false, fixture.tolerance())?;
        } else if name == "onet_input" {
            let (out, mids) = mtcnn.onet.forward_mids(x);
            report.push(fixture.check("onet_reg", out.reg.into_data())?);
            report.push(fixture.check("onet_landmarks", out.landmarks.into_data())?);
            report.push(fixture.check("onet_prob", out.prob.into_data())?);
            let maps = vec![
                ("onet_prelu4", host(mids.prelu4)),
                ("onet_flat", host(mids.flat)),
                ("onet_prelu5", host(mids.prelu5)),
            ];
            compare_mids(fixture, &mut report, maps, false, fixture.tolerance())?;
        } else {
            return Err(meta_err(fixture, format!("unknown mtcnn input `{name}`")));
        }
    }
    Ok(report)
}

/// How the `mtcnn_detect` outputs compare with `tolerance.strict` (boxes 0.01 px,
/// landmarks 0.02 px, probs 5e-6).
#[derive(Debug, Clone, PartialEq)]
pub struct StrictTier {
    /// Every photo's detection count matched and every error is within the strict bounds.
    pub holds: bool,
    pub counts_equal: bool,
    pub max_box_px: f64,
    pub max_landmark_px: f64,
    pub max_prob: f64,
    pub bounds: [f64; 3],
}

fn tol(fixture: &Fixture, pointer: &str) -> Result<f64> {
    fixture
        .meta
        .pointer(&format!("/tolerance/{pointer}"))
        .and_then(Value::as_f64)
        .ok_or_else(|| {
            meta_err(
                fixture,
                format!("no tolerance.{}", pointer.replace('/', ".")),
            )
        })
}

/// Reads a uint8 io tensor `(H, W, 3)` as an image.
fn io_image(fixture: &Fixture, name: &str) -> Result<RgbU8Image> {
    let (shape, v) = fixture.io().read_i64(name)?;
    if shape.len() != 3 || shape[2] != 3 {
        return Err(Error::shape(
            format!("fixture image `{name}`"),
            &[0, 0, 3],
            &shape,
        ));
    }
    RgbU8Image::new(
        shape[1],
        shape[0],
        v.into_iter().map(|x| x.clamp(0, 255) as u8).collect(),
    )
}

/// `mtcnn_detect`: every `in.image_<i>` through [`Mtcnn::detect`] with `config.MTCNN`;
/// detection counts must match, then boxes / landmarks / probs within `tolerance`.
/// Also returns how the strict tier fares.
pub fn run_mtcnn_detect(fixture: &Fixture, device: &Device) -> Result<(ParityReport, StrictTier)> {
    let config: MtcnnConfig = fixture.config_as("/MTCNN")?;
    let mtcnn =
        Mtcnn::load(fixture.weights_from("pnet_rnet_onet")?, device)?.with_config(config)?;
    let (ba, la, pa) = (
        tol(fixture, "boxes_atol_px")?,
        tol(fixture, "landmarks_atol_px")?,
        tol(fixture, "probs_atol")?,
    );
    let rtol = tol(fixture, "rtol").unwrap_or(0.0);
    let strict = [
        tol(fixture, "strict/boxes_atol_px")?,
        tol(fixture, "strict/landmarks_atol_px")?,
        tol(fixture, "strict/probs_atol")?,
    ];
    let mut report = ParityReport::default();
    let mut st = StrictTier {
        holds: true,
        counts_equal: true,
        max_box_px: 0.0,
        max_landmark_px: 0.0,
        max_prob: 0.0,
        bounds: strict,
    };
    let mut images: Vec<&str> = keys_of(fixture, "inputs")
        .into_iter()
        .filter(|k| k.starts_with("image_"))
        .collect();
    images.sort();
    for name in images {
        let i = &name["image_".len()..];
        let img = io_image(fixture, &format!("in.{name}"))?;
        let dets = mtcnn.detect(&img)?;
        let n = dets.len();
        let boxes: Vec<f32> = dets.iter().flat_map(|d| d.bbox).collect();
        let probs: Vec<f32> = dets.iter().map(|d| d.prob).collect();
        let lmks: Vec<f32> = dets
            .iter()
            .flat_map(|d| d.landmarks.into_iter().flatten())
            .collect();
        let cb = cmp_out(fixture, &format!("boxes_{i}"), &[n, 4], &boxes, ba, rtol)?;
        let cl = cmp_out(
            fixture,
            &format!("landmarks_{i}"),
            &[n, 5, 2],
            &lmks,
            la,
            rtol,
        )?;
        let cp = cmp_out(fixture, &format!("probs_{i}"), &[n], &probs, pa, rtol)?;
        if cb.shape_mismatch.is_some() {
            st.counts_equal = false;
        } else {
            st.max_box_px = st.max_box_px.max(cb.max_abs);
            st.max_landmark_px = st.max_landmark_px.max(cl.max_abs);
            st.max_prob = st.max_prob.max(cp.max_abs);
        }
        report.push(cb);
        report.push(cl);
        report.push(cp);
    }
    st.holds = st.counts_equal
        && st.max_box_px <= strict[0]
        && st.max_landmark_px <= strict[1]
        && st.max_prob <= strict[2];
    Ok((report, st))
}

fn cmp_out(
    fixture: &Fixture,
    name: &str,
    shape: &[usize],
    got: &[f32],
    atol: f64,
    rtol: f64,
) -> Result<Comparison> {
    let (want_shape, want) = fixture.f32(&format!("out.{name}"))?;
    Ok(Comparison::new(
        name,
        shape,
        got,
        &want_shape,
        &want,
        atol,
        rtol,
    ))
}

/// `face_align`: `estimate_norm` on every `in.landmarks_*` against `out.matrix_*`
/// (`tolerance.matrix_atol/rtol`), and for the photo faces `cv2.warpAffine` against
/// `out.aligned_*`: one comparison of the largest |diff| (bound `aligned_max_abs`) and one
/// of the mean |diff| (`<name>.mean_abs`, bound `aligned_mean_abs`).
pub fn run_face_align(fixture: &Fixture) -> Result<ParityReport> {
    let size = fixture
        .config()
        .get("image_size")
        .and_then(Value::as_u64)
        .ok_or_else(|| meta_err(fixture, "no config.image_size"))? as usize;
    let (ma, mr) = (tol(fixture, "matrix_atol")?, tol(fixture, "matrix_rtol")?);
    let (amax, amean) = (
        tol(fixture, "aligned_max_abs")?,
        tol(fixture, "aligned_mean_abs")?,
    );
    let mut report = ParityReport::default();
    let mut inputs = keys_of(fixture, "inputs");
    inputs.sort();
    let photo_of = |k: &str| -> Option<String> {
        fixture
            .extra()
            .get("faces")?
            .as_array()?
            .iter()
            .find(|f| {
                f.get("face")
                    .and_then(Value::as_u64)
                    .map(|v| v.to_string())
                    .as_deref()
                    == Some(k)
            })?
            .get("photo_file")?
            .as_str()
            .map(str::to_string)
    };
    for name in inputs {
        let Some(k) = name.strip_prefix("landmarks_") else {
            continue;
        };
        let (shape, v) = fixture.f32(&format!("in.{name}"))?;
        if shape != [5, 2] {
            return Err(Error::shape(
                format!("fixture input `{name}`"),
                &[5, 2],
                &shape,
            ));
        }
        let mut lmk = [[0f32; 2]; 5];
        for (p, c) in lmk.iter_mut().zip(v.chunks_exact(2)) {
            *p = [c[0], c[1]];
        }
        let m = estimate_norm(&lmk, size)?;
        let flat: Vec<f32> = m.iter().flatten().map(|&x| x as f32).collect();
        let (want_shape, want) = fixture.f32(&format!("out.matrix_{k}"))?;
        report.push(Comparison::new(
            &format!("matrix_{k}"),
            &[2, 3],
            &flat,
            &want_shape,
            &want,
            ma,
            mr,
        ));
        if k.starts_with("syn_") {
            continue;
        }
        if fixture.has(&format!("mid.inverse_f64_{k}")) {
            let inv: Vec<f32> = invert_affine(&m)
                .iter()
                .flatten()
                .map(|&x| x as f32)
                .collect();
            let name = format!("inverse_f64_{k}");
            let maps = vec![(name.as_str(), (vec![2, 3], inv))];
            compare_mids(fixture, &mut report, maps, false, (ma, mr))?;
        }
        let rel = photo_of(k)
            .ok_or_else(|| meta_err(fixture, format!("no extra.faces entry for face {k}")))?;
        let photo = RgbU8Image::open(fixture.dir.join(rel))?;
        let out = warp_affine(&photo.view(), &m, size, size)?;
        let got: Vec<f32> = out.iter().map(|&b| b as f32).collect();
        let (want_shape, want) = fixture.io().read_i64(&format!("out.aligned_{k}"))?;
        let want: Vec<f32> = want.into_iter().map(|b| b as f32).collect();
        let c = Comparison::new(
            &format!("aligned_{k}"),
            &[size, size, 3],
            &got,
            &want_shape,
            &want,
            amax,
            0.0,
        );
        let mean = if c.shape_mismatch.is_none() && !got.is_empty() {
            got.iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() as f64)
                .sum::<f64>()
                / got.len() as f64
        } else {
            f64::INFINITY
        };
        report.push(c);
        report.push(Comparison::new(
            &format!("aligned_{k}.mean_abs"),
            &[1],
            &[mean as f32],
            &[1],
            &[0.0],
            amean,
            0.0,
        ));
    }
    Ok(report)
}
