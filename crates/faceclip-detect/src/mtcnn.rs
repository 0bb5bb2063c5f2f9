//! facenet-pytorch `MTCNN`: the three-stage cascade of `detect_face` and `MTCNN.detect`,
//! followed (optionally) by insightface's `norm_crop` alignment.

use faceclip_core::{
    Checkpoint, Device, Error, Result, Tensor, TensorData, Trace, VarBuilder, to_vec_f32,
};
use serde::{Deserialize, Serialize};

use crate::detect_face::{
    BoxRow, Window, area_resample_normalised, bbreg, calibrate_stage1, crop_window,
    generate_bounding_box, largest_first, level_size, nms_min, nms_union, pyramid_scales, rerec,
};
use crate::error::DetectError;
use crate::face_align::{Affine, norm_crop};
use crate::image::{ImageView, RgbU8Image};
use crate::onet::ONet;
use crate::pnet::PNet;
use crate::rnet::RNet;
use crate::weights::embedded_checkpoint;

/// R-Net / O-Net batch size (facenet-pytorch's `fixed_batch_process` chunks of 512).
const NET_BATCH: usize = 512;
/// P-Net runs on horizontal strips of a pyramid level of at most about this many pixels, so
/// that huge photos do not need gigabytes at once. The strips overlap by P-Net's receptive
/// field, so the maps are the same as in one pass.
const PNET_STRIP_PIXELS: usize = 1 << 20;
/// Upper bound on pyramid levels (a guard; 20 px faces in a 16384 px photo need ~17).
const MAX_LEVELS: usize = 64;

/// The `MTCNN(...)` constructor arguments that `detect` uses. Deserialises the upstream
/// kwargs unchanged (unknown ones such as `keep_all`, `post_process` or `device` are
/// ignored); the defaults are facenet-pytorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MtcnnConfig {
    /// Smallest face searched for, in pixels (upstream default 20).
    pub min_face_size: f64,
    /// Face-probability thresholds of P-Net (`≥`), R-Net and O-Net (`>`).
    pub thresholds: [f64; 3],
    /// Pyramid scale factor (0 < factor < 1).
    pub factor: f64,
    /// Largest box first (true) or the final NMS order, i.e. most probable first (false).
    pub select_largest: bool,
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        Self {
            min_face_size: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            factor: 0.709,
            select_largest: true,
        }
    }
}

impl MtcnnConfig {
    /// Errors on values the cascade cannot run with.
    pub fn validate(&self) -> Result<()> {
        if !(self.min_face_size.is_finite() && self.min_face_size > 0.0) {
            return Err(Error::invalid(format!(
                "MTCNN min_face_size {} must be > 0",
                self.min_face_size
            )));
        }
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(Error::invalid(format!(
                "MTCNN factor {} must lie in (0, 1)",
                self.factor
            )));
        }
        if self.thresholds.iter().any(|t| !t.is_finite()) {
            return Err(Error::invalid(format!(
                "MTCNN thresholds {:?} must be finite",
                self.thresholds
            )));
        }
        Ok(())
    }

    /// The smallest short side (pixels) that yields at least one pyramid level
    /// (`side·12/min_face_size ≥ 12`, evaluated as upstream does).
    pub fn min_image_side(&self) -> usize {
        let m = 12.0 / self.min_face_size;
        let guess = self.min_face_size.ceil().clamp(1.0, 1e15) as usize;
        (guess.saturating_sub(2).max(1)..guess.saturating_add(3))
            .find(|&s| s as f64 * m >= 12.0)
            .unwrap_or(guess)
    }
}

/// One detected face. Coordinates are pixels of the input image (floats; may lie outside).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// O-Net face probability.
    pub prob: f32,
    /// `(x, y)` of left eye, right eye, nose, left and right mouth corner (as seen in the image).
    pub landmarks: [[f32; 2]; 5],
}

/// A detected face cut out by [`Mtcnn::detect_and_align`].
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedFace {
    /// The detection that was aligned.
    pub detection: Detection,
    /// The `size × size` RGB8 crop.
    pub image: RgbU8Image,
    /// The photo → crop similarity that made it.
    pub matrix: Affine,
}

/// Every intermediate of one detection: the working state of [`Mtcnn::detect_stages`],
/// recorded into a [`Trace`] by [`Stages::record`].
#[derive(Debug, Clone, Default, PartialEq)]
struct Stages {
    pub scales: Vec<f64>,
    pub pyramid_hw: Vec<[usize; 2]>,
    pub candidates_per_scale: Vec<usize>,
    /// `[x1, y1, x2, y2, score, dx1, dy1, dx2, dy2]` per P-Net cell above threshold.
    pub s1_candidates: Vec<[f32; 9]>,
    pub s1_after_scale_nms: usize,
    /// Rows surviving both stage-1 NMS, in the cross-scale NMS order.
    pub s1_nms: Vec<[f32; 9]>,
    /// Calibrated and squared: the boxes R-Net crops.
    pub s1_boxes: Vec<BoxRow>,
    /// Per R-Net row (rows whose crop window is empty are skipped).
    pub s2_rnet_prob: Vec<f32>,
    pub s2_rnet_reg: Vec<[f32; 4]>,
    pub s2_pass: usize,
    /// The boxes O-Net crops.
    pub s2_boxes: Vec<BoxRow>,
    pub s3_onet_prob: Vec<f32>,
    pub s3_onet_reg: Vec<[f32; 4]>,
    pub s3_onet_landmarks: Vec<[f32; 10]>,
    /// After the O-Net threshold and bbreg, before the final NMS.
    pub s3_boxes: Vec<BoxRow>,
    pub s3_points: Vec<[[f32; 2]; 5]>,
    pub s3_keep: Vec<usize>,
    pub final_order: Vec<usize>,
}

impl Stages {
    /// Records every field into `trace` (see [`Mtcnn::detect_traced`] for the names).
    fn record(&self, trace: &mut Trace) {
        fn rows<const N: usize>(v: &[[f32; N]]) -> TensorData {
            TensorData::new(
                v.iter().flatten().copied().collect::<Vec<f32>>(),
                [v.len(), N],
            )
        }
        fn ints(v: impl IntoIterator<Item = usize>) -> TensorData {
            let v: Vec<i64> = v.into_iter().map(|x| x as i64).collect();
            let n = v.len();
            TensorData::new(v, [n])
        }
        let f32s = |v: &[f32]| TensorData::new(v.to_vec(), [v.len()]);
        trace.record("scales", || {
            TensorData::new(self.scales.clone(), [self.scales.len()])
        });
        trace.record("pyramid_hw", || {
            let hw: Vec<i64> = self
                .pyramid_hw
                .iter()
                .flatten()
                .map(|&x| x as i64)
                .collect();
            TensorData::new(hw, [self.pyramid_hw.len(), 2])
        });
        trace.record("candidates_per_scale", || {
            ints(self.candidates_per_scale.iter().copied())
        });
        trace.record("s1_candidates", || rows(&self.s1_candidates));
        trace.record("s1_after_scale_nms", || ints([self.s1_after_scale_nms]));
        trace.record("s1_nms", || rows(&self.s1_nms));
        trace.record("s1_boxes", || rows(&self.s1_boxes));
        trace.record("s2_rnet_prob", || f32s(&self.s2_rnet_prob));
        trace.record("s2_rnet_reg", || rows(&self.s2_rnet_reg));
        trace.record("s2_pass", || ints([self.s2_pass]));
        trace.record("s2_boxes", || rows(&self.s2_boxes));
        trace.record("s3_onet_prob", || f32s(&self.s3_onet_prob));
        trace.record("s3_onet_reg", || rows(&self.s3_onet_reg));
        trace.record("s3_onet_landmarks", || rows(&self.s3_onet_landmarks));
        trace.record("s3_boxes", || rows(&self.s3_boxes));
        trace.record("s3_points", || {
            let v: Vec<f32> = self.s3_points.iter().flatten().flatten().copied().collect();
            TensorData::new(v, [self.s3_points.len(), 5, 2])
        });
        trace.record("s3_keep", || ints(self.s3_keep.iter().copied()));
        trace.record("final_order", || ints(self.final_order.iter().copied()));
    }
}

/// The MTCNN face detector (facenet-pytorch 2.6.0 `MTCNN.detect`, float32), with its three
/// nets on a burn device and the box logic on the host.
#[derive(Debug, Clone)]
pub struct Mtcnn {
    pub pnet: PNet,
    pub rnet: RNet,
    pub onet: ONet,
    config: MtcnnConfig,
    device: Device,
    pnet_strip_pixels: usize,
}

impl Mtcnn {
    /// The detector with the weights embedded in this crate and the default config.
    pub fn new(device: &Device) -> Result<Self> {
        Self::load(embedded_checkpoint()?, device)
    }

    /// Loads the three nets from a checkpoint with keys `pnet.*`, `rnet.*`, `onet.*` (the
    /// facenet-pytorch state dicts, prefixed). Every key must match exactly.
    pub fn load(checkpoint: Checkpoint, device: &Device) -> Result<Self> {
        let vb = VarBuilder::from_checkpoint(checkpoint, device);
        let pnet = PNet::load(&vb.pp("pnet"));
        let rnet = RNet::load(&vb.pp("rnet"));
        let onet = ONet::load(&vb.pp("onet"));
        vb.finish()?;
        Ok(Self {
            pnet,
            rnet,
            onet,
            config: MtcnnConfig::default(),
            device: device.clone(),
            pnet_strip_pixels: PNET_STRIP_PIXELS,
        })
    }

    /// Replaces the config (validated).
    pub fn with_config(mut self, config: MtcnnConfig) -> Result<Self> {
        config.validate()?;
        self.config = config;
        Ok(self)
    }

    /// Sets the size (pixels of a pyramid level) of the strips P-Net runs on; smaller strips
    /// need less memory. The results do not depend on it.
    pub fn with_pnet_strip_pixels(mut self, pixels: usize) -> Self {
        self.pnet_strip_pixels = pixels.max(1);
        self
    }

    /// The config in use.
    pub fn config(&self) -> &MtcnnConfig {
        &self.config
    }

    /// The device the nets run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `MTCNN.detect(img, landmarks=True)`: every face, largest box first (or most probable
    /// first when `select_largest` is off). An image whose short side is below
    /// `min_face_size` gives no faces; a zero-size image or a pixel buffer of the wrong length
    /// is an error.
    pub fn detect<'a>(&self, image: impl Into<ImageView<'a>>) -> Result<Vec<Detection>> {
        self.detect_traced(image, &mut Trace::disabled())
    }

    /// [`Mtcnn::detect`] that also records every intermediate stage into `trace`, named as
    /// the `mtcnn_detect` fixture's `mid.*` without the photo suffix (`s1_candidates`
    /// `[n, 9]`, `s1_nms`, `s1_boxes`, `s2_rnet_prob`, `s2_rnet_reg`, `s2_boxes`,
    /// `s3_onet_prob`, `s3_onet_reg`, `s3_onet_landmarks`, `s3_boxes`, `s3_points`,
    /// `s3_keep`, `final_order`), plus the pyramid (`scales` f64, `pyramid_hw`,
    /// `candidates_per_scale`) and the counts `s1_after_scale_nms`, `s2_pass` (`[1]`, i64).
    pub fn detect_traced<'a>(
        &self,
        image: impl Into<ImageView<'a>>,
        trace: &mut Trace,
    ) -> Result<Vec<Detection>> {
        let (dets, stages) = self.detect_stages(image)?;
        stages.record(trace);
        Ok(dets)
    }

    fn detect_stages<'a>(
        &self,
        image: impl Into<ImageView<'a>>,
    ) -> Result<(Vec<Detection>, Stages)> {
        let img = image.into();
        img.check()?;
        if img.width == 0 || img.height == 0 {
            return Err(Error::invalid(format!(
                "cannot detect faces in a {}x{} image (zero size)",
                img.width, img.height
            )));
        }
        let cfg = &self.config;
        cfg.validate()?;
        let (h, w) = (img.height, img.width);
        let mut tr = Stages {
            scales: pyramid_scales(h, w, cfg.min_face_size, cfg.factor, MAX_LEVELS),
            ..Stages::default()
        };

        // Stage 1: P-Net over the pyramid.
        let mut classes = Vec::new();
        for (k, &s) in tr.scales.clone().iter().enumerate() {
            let (hs, ws) = level_size(h, w, s);
            tr.pyramid_hw.push([hs, ws]);
            let (oh, ow, reg, prob) = self.run_pnet_level(&img, hs, ws)?;
            let c = generate_bounding_box(&reg, &prob, oh, ow, s, cfg.thresholds[0]);
            tr.candidates_per_scale.push(c.len());
            classes.extend(std::iter::repeat_n(k, c.len()));
            tr.s1_candidates.extend(c);
        }
        let b4: Vec<[f32; 4]> = tr
            .s1_candidates
            .iter()
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect();
        let sc: Vec<f32> = tr.s1_candidates.iter().map(|c| c[4]).collect();
        let pick = batched_nms(&b4, &sc, &classes, 0.5);
        tr.s1_after_scale_nms = pick.len();
        let sub_b: Vec<[f32; 4]> = pick.iter().map(|&i| b4[i]).collect();
        let sub_s: Vec<f32> = pick.iter().map(|&i| sc[i]).collect();
        let pick2 = nms_union(&sub_b, &sub_s, None, 0.7);
        tr.s1_nms = pick2.iter().map(|&j| tr.s1_candidates[pick[j]]).collect();
        tr.s1_boxes = tr
            .s1_nms
            .iter()
            .map(|c| {
                let mut b = calibrate_stage1(c);
                rerec(&mut b);
                b
            })
            .collect();
        if tr.s1_boxes.is_empty() {
            return Ok((Vec::new(), tr));
        }

        // Stage 2: R-Net on 24×24 crops.
        let (rows, crops) = crop_batch(&img, &tr.s1_boxes, 24);
        let (reg, prob) = self.run_rnet(crops, rows.len())?;
        let mut boxes2: Vec<BoxRow> = Vec::new();
        let mut mv: Vec<[f32; 4]> = Vec::new();
        let t1 = cfg.thresholds[1] as f32;
        for (r, &bi) in rows.iter().enumerate() {
            let p = prob[r];
            let g = [reg[4 * r], reg[4 * r + 1], reg[4 * r + 2], reg[4 * r + 3]];
            tr.s2_rnet_prob.push(p);
            tr.s2_rnet_reg.push(g);
            if p > t1 {
                let b = tr.s1_boxes[bi];
                boxes2.push([b[0], b[1], b[2], b[3], p]);
                mv.push(g);
            }
        }
        tr.s2_pass = boxes2.len();
        let b4: Vec<[f32; 4]> = boxes2.iter().map(|b| [b[0], b[1], b[2], b[3]]).collect();
        let sc: Vec<f32> = boxes2.iter().map(|b| b[4]).collect();
        let pick = nms_union(&b4, &sc, None, 0.7);
        tr.s2_boxes = pick
            .iter()
            .map(|&i| {
                let mut b = boxes2[i];
                bbreg(&mut b, &mv[i]);
                rerec(&mut b);
                b
            })
            .collect();
        if tr.s2_boxes.is_empty() {
            return Ok((Vec::new(), tr));
        }

        // Stage 3: O-Net on 48×48 crops; landmarks on the box before bbreg.
        let (rows, crops) = crop_batch(&img, &tr.s2_boxes, 48);
        let (reg, lmk, prob) = self.run_onet(crops, rows.len())?;
        let t2 = cfg.thresholds[2] as f32;
        for (r, &bi) in rows.iter().enumerate() {
            let p = prob[r];
            let g = [reg[4 * r], reg[4 * r + 1], reg[4 * r + 2], reg[4 * r + 3]];
            let mut l = [0f32; 10];
            l.copy_from_slice(&lmk[10 * r..10 * r + 10]);
            tr.s3_onet_prob.push(p);
            tr.s3_onet_reg.push(g);
            tr.s3_onet_landmarks.push(l);
            if p > t2 {
                let s = tr.s2_boxes[bi];
                let mut b = [s[0], s[1], s[2], s[3], p];
                let w_i = b[2] - b[0] + 1.0;
                let h_i = b[3] - b[1] + 1.0;
                let mut pts = [[0f32; 2]; 5];
                for (k, pt) in pts.iter_mut().enumerate() {
                    *pt = [w_i * l[k] + b[0] - 1.0, h_i * l[5 + k] + b[1] - 1.0];
                }
                bbreg(&mut b, &g);
                tr.s3_boxes.push(b);
                tr.s3_points.push(pts);
            }
        }
        let b4: Vec<[f32; 4]> = tr
            .s3_boxes
            .iter()
            .map(|b| [b[0], b[1], b[2], b[3]])
            .collect();
        let sc: Vec<f32> = tr.s3_boxes.iter().map(|b| b[4]).collect();
        tr.s3_keep = nms_min(&b4, &sc, 0.7);
        let kept: Vec<BoxRow> = tr.s3_keep.iter().map(|&i| tr.s3_boxes[i]).collect();
        tr.final_order = if cfg.select_largest {
            largest_first(&kept)
        } else {
            (0..kept.len()).collect()
        };
        let dets = tr
            .final_order
            .iter()
            .map(|&o| {
                let i = tr.s3_keep[o];
                let b = tr.s3_boxes[i];
                Detection {
                    bbox: [b[0], b[1], b[2], b[3]],
                    prob: b[4],
                    landmarks: tr.s3_points[i],
                }
            })
            .collect();
        Ok((dets, tr))
    }

    /// Detects the faces and aligns face `face_index` (0 = the first of [`Mtcnn::detect`]'s
    /// order, i.e. the largest) to a `size × size` ArcFace crop (insightface `norm_crop`).
    pub fn detect_and_align<'a>(
        &self,
        image: impl Into<ImageView<'a>>,
        face_index: usize,
        size: usize,
    ) -> std::result::Result<AlignedFace, DetectError> {
        let img = image.into();
        img.check()?;
        let min_side = self.config.min_image_side();
        if img.width.min(img.height) < min_side {
            return Err(DetectError::ImageTooSmall {
                width: img.width,
                height: img.height,
                min_side,
            });
        }
        crate::face_align::arcface_template(size)?;
        let dets = self.detect(img)?;
        if dets.is_empty() {
            return Err(DetectError::NoFace {
                width: img.width,
                height: img.height,
                min_face_size: self.config.min_face_size,
            });
        }
        let det = *dets
            .get(face_index)
            .ok_or(DetectError::FaceIndexOutOfRange {
                index: face_index,
                count: dets.len(),
            })?;
        let (pixels, matrix) = norm_crop(img, &det.landmarks, size)?;
        Ok(AlignedFace {
            detection: det,
            image: RgbU8Image {
                width: size,
                height: size,
                data: pixels,
            },
            matrix,
        })
    }

    /// P-Net on one pyramid level `hs × ws`: `(h, w, reg [4, h, w], face prob [h, w])`.
    fn run_pnet_level(
        &self,
        img: &ImageView<'_>,
        hs: usize,
        ws: usize,
    ) -> Result<(usize, usize, Vec<f32>, Vec<f32>)> {
        if hs < 12 || ws < 12 {
            return Ok((0, 0, Vec::new(), Vec::new()));
        }
        let oh = (hs - 2).div_ceil(2) - 4;
        let ow = (ws - 2).div_ceil(2) - 4;
        let mut reg = vec![0f32; 4 * oh * ow];
        let mut prob = vec![0f32; oh * ow];
        let rows_per = (self.pnet_strip_pixels / (2 * ws)).max(1);
        let full = Window::full(img);
        let mut r0 = 0;
        while r0 < oh {
            let r1 = (r0 + rows_per).min(oh);
            let in0 = 2 * r0;
            let in1 = if r1 == oh { hs } else { (2 * r1 + 10).min(hs) };
            let nr = in1 - in0;
            let mut buf = vec![0f32; 3 * nr * ws];
            area_resample_normalised(img, full, hs, ws, in0..in1, &mut buf);
            let x = Tensor::<4>::from_data(TensorData::new(buf, [1, 3, nr, ws]), &self.device);
            let (r, p) = self.pnet.forward(x);
            let [_, _, ph, pw] = p.dims();
            if ph != r1 - r0 || pw != ow {
                return Err(Error::shape(
                    "P-Net strip output",
                    &[r1 - r0, ow],
                    &[ph, pw],
                ));
            }
            let r = to_vec_f32(r);
            let p = to_vec_f32(p);
            let n = ph * pw;
            for row in 0..ph {
                let dst = (r0 + row) * ow;
                prob[dst..dst + ow].copy_from_slice(&p[n + row * ow..n + row * ow + ow]);
                for c in 0..4 {
                    reg[c * oh * ow + dst..c * oh * ow + dst + ow]
                        .copy_from_slice(&r[c * n + row * ow..c * n + row * ow + ow]);
                }
            }
            r0 = r1;
        }
        Ok((oh, ow, reg, prob))
    }

    /// R-Net on `n` crops `[n, 3, 24, 24]`: `(reg [n·4], face prob [n])`.
    fn run_rnet(&self, crops: Vec<f32>, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let per = 3 * 24 * 24;
        let (mut reg, mut prob) = (Vec::with_capacity(4 * n), Vec::with_capacity(n));
        for start in (0..n).step_by(NET_BATCH) {
            let m = (n - start).min(NET_BATCH);
            let x = Tensor::<4>::from_data(
                TensorData::new(
                    crops[start * per..(start + m) * per].to_vec(),
                    [m, 3, 24, 24],
                ),
                &self.device,
            );
            let (r, p) = self.rnet.forward(x);
            reg.extend(to_vec_f32(r));
            prob.extend(to_vec_f32(p).chunks_exact(2).map(|c| c[1]));
        }
        Ok((reg, prob))
    }

    /// O-Net on `n` crops `[n, 3, 48, 48]`: `(reg [n·4], landmarks [n·10], face prob [n])`.
    fn run_onet(&self, crops: Vec<f32>, n: usize) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let per = 3 * 48 * 48;
        let (mut reg, mut lmk, mut prob) = (Vec::new(), Vec::new(), Vec::new());
        for start in (0..n).step_by(NET_BATCH) {
            let m = (n - start).min(NET_BATCH);
            let x = Tensor::<4>::from_data(
                TensorData::new(
                    crops[start * per..(start + m) * per].to_vec(),
                    [m, 3, 48, 48],
                ),
                &self.device,
            );
            let o = self.onet.forward(x);
            reg.extend(to_vec_f32(o.reg));
            lmk.extend(to_vec_f32(o.landmarks));
            prob.extend(to_vec_f32(o.prob).chunks_exact(2).map(|c| c[1]));
        }
        Ok((reg, lmk, prob))
    }
}

/// `batched_nms(boxes, scores, classes, iou)`: torchvision NMS within each class, the kept
/// indices ordered by descending score (ties in index order).
fn batched_nms(boxes: &[[f32; 4]], scores: &[f32], classes: &[usize], iou: f64) -> Vec<usize> {
    let n_cls = classes.iter().copied().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_cls];
    for (i, &c) in classes.iter().enumerate() {
        members[c].push(i);
    }
    let mut keep = Vec::new();
    for m in members.iter().filter(|m| !m.is_empty()) {
        let b: Vec<[f32; 4]> = m.iter().map(|&i| boxes[i]).collect();
        let s: Vec<f32> = m.iter().map(|&i| scores[i]).collect();
        keep.extend(nms_union(&b, &s, None, iou).into_iter().map(|j| m[j]));
    }
    keep.sort_unstable();
    let ks: Vec<f32> = keep.iter().map(|&i| scores[i]).collect();
    crate::detect_face::argsort_desc_stable(&ks)
        .into_iter()
        .map(|j| keep[j])
        .collect()
}

/// The `size × size` normalised crops (`[n, 3, size, size]`) of the boxes whose crop window is
/// not empty, with those boxes' indices.
fn crop_batch(img: &ImageView<'_>, boxes: &[BoxRow], size: usize) -> (Vec<usize>, Vec<f32>) {
    let per = 3 * size * size;
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        if let Some(win) = crop_window(b, img.width, img.height) {
            let start = out.len();
            out.resize(start + per, 0.0);
            area_resample_normalised(img, win, size, size, 0..size, &mut out[start..]);
            rows.push(i);
        }
    }
    (rows, out)
}
