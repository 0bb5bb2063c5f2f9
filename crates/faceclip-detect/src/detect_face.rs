//! The host-side steps of facenet-pytorch `models/utils/detect_face.py`: the image pyramid,
//! `area` resampling, candidate cells, NMS (torchvision's and the numpy "Min" variant), box
//! calibration, `rerec` and the crop windows of `pad`. All box arithmetic is float32 in the
//! reference's operation order; the pyramid scales are float64 (Python floats).

use std::ops::Range;

use crate::image::ImageView;

/// A box row `[x1, y1, x2, y2, score]`.
pub type BoxRow = [f32; 5];

/// The pyramid scales of `detect_face`: `m = 12 / min_face_size`, then while
/// `min(H, W)·m·factor^k ≥ 12` the scale `m·factor^k`, both built by repeated multiplication.
/// `max_levels` bounds the loop (a factor ≥ 1 never ends it upstream).
pub fn pyramid_scales(
    height: usize,
    width: usize,
    min_face_size: f64,
    factor: f64,
    max_levels: usize,
) -> Vec<f64> {
    let m = 12.0 / min_face_size;
    let mut minl = height.min(width) as f64 * m;
    let mut scale = m;
    let mut scales = Vec::new();
    while minl >= 12.0 && scales.len() < max_levels {
        scales.push(scale);
        scale *= factor;
        minl *= factor;
    }
    scales
}

/// A pyramid level's size `(int(H·s + 1), int(W·s + 1))`.
pub fn level_size(height: usize, width: usize, scale: f64) -> (usize, usize) {
    let f = |n: usize| {
        let v = (n as f64 * scale + 1.0).floor();
        if v.is_finite() && v >= 0.0 {
            v as usize
        } else {
            0
        }
    };
    (f(height), f(width))
}

/// PyTorch's adaptive-pooling windows: output cell `i` of `out` averages input cells
/// `[floor(i·n/out), ceil((i+1)·n/out))`.
pub fn area_windows(n: usize, out: usize) -> Vec<(usize, usize)> {
    (0..out)
        .map(|i| {
            let start = (i * n) / out;
            let end = ((i + 1) * n).div_ceil(out);
            (start, end)
        })
        .collect()
}

/// A crop window of the image: rows `y0..y1`, columns `x0..x1` (0-based, end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
}

impl Window {
    /// The whole image.
    pub fn full(img: &ImageView<'_>) -> Self {
        Self {
            y0: 0,
            y1: img.height,
            x0: 0,
            x1: img.width,
        }
    }
}

/// `F.interpolate(crop, (out_h, out_w), mode='area')` followed by `(x − 127.5)·0.0078125`,
/// for output rows `rows` only, written planar (`[3, rows.len(), out_w]`) into `out`.
/// Each output value is `sum / kh / kw` in float32, summed row by row as PyTorch does.
pub fn area_resample_normalised(
    img: &ImageView<'_>,
    win: Window,
    out_h: usize,
    out_w: usize,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let in_h = win.y1 - win.y0;
    let in_w = win.x1 - win.x0;
    let nr = rows.len();
    debug_assert_eq!(out.len(), 3 * nr * out_w);
    let row_w = area_windows(in_h, out_h);
    let col_w = area_windows(in_w, out_w);
    let plane = nr * out_w;
    for (ri, oy) in rows.enumerate() {
        let (ih0, ih1) = row_w[oy];
        let kh = (ih1 - ih0) as f32;
        for (ox, &(iw0, iw1)) in col_w.iter().enumerate() {
            let kw = (iw1 - iw0) as f32;
            let mut s = [0f32; 3];
            for iy in ih0..ih1 {
                let base = ((win.y0 + iy) * img.width + win.x0) * 3;
                let row = &img.data[base + iw0 * 3..base + iw1 * 3];
                for px in row.chunks_exact(3) {
                    s[0] += px[0] as f32;
                    s[1] += px[1] as f32;
                    s[2] += px[2] as f32;
                }
            }
            for c in 0..3 {
                let v = s[c] / kh / kw;
                out[c * plane + ri * out_w + ox] = (v - 127.5) * 0.0078125;
            }
        }
    }
}

/// `generateBoundingBox`: every cell with `prob ≥ thresh`, row-major, as
/// `[x1, y1, x2, y2, score, dx1, dy1, dx2, dy2]` with `x1 = floor((2x + 1)/s)`,
/// `x2 = floor((2x + 12)/s)` computed in float32 (division by `float32(s)`).
/// `reg` is `[4, h, w]`, `prob` the face-probability map `[h, w]`.
pub fn generate_bounding_box(
    reg: &[f32],
    prob: &[f32],
    h: usize,
    w: usize,
    scale: f64,
    thresh: f64,
) -> Vec<[f32; 9]> {
    let s = scale as f32;
    let t = thresh as f32;
    let hw = h * w;
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let p = prob[i];
            if p >= t {
                let (bx, by) = (x as f32, y as f32);
                let q = |v: f32| (v / s).floor();
                out.push([
                    q(2.0 * bx + 1.0),
                    q(2.0 * by + 1.0),
                    q(2.0 * bx + 12.0 - 1.0 + 1.0),
                    q(2.0 * by + 12.0 - 1.0 + 1.0),
                    p,
                    reg[i],
                    reg[hw + i],
                    reg[2 * hw + i],
                    reg[3 * hw + i],
                ]);
            }
        }
    }
    out
}

/// Indices `0..scores.len()` sorted by score, descending, ties in index order (a stable sort,
/// as torchvision's CPU `nms` does).
pub fn argsort_desc_stable(scores: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}

/// `torchvision.ops.nms`: visits the boxes by descending score (stable), keeps a box unless
/// its IoU with a kept box is `> iou` (areas `(x2−x1)·(y2−y1)`, no +1, float32). Returns the
/// kept indices in visit order. `class[i]` (when given) limits suppression to equal classes,
/// which is what `batched_nms` amounts to.
pub fn nms_union(
    boxes: &[[f32; 4]],
    scores: &[f32],
    class: Option<&[usize]>,
    iou: f64,
) -> Vec<usize> {
    let order = argsort_desc_stable(scores);
    let area: Vec<f32> = boxes
        .iter()
        .map(|b| (b[2] - b[0]) * (b[3] - b[1]))
        .collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (oi, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = boxes[i];
        for &j in &order[oi + 1..] {
            if suppressed[j] || class.is_some_and(|c| c[i] != c[j]) {
                continue;
            }
            let bj = boxes[j];
            let xx1 = bi[0].max(bj[0]);
            let yy1 = bi[1].max(bj[1]);
            let xx2 = bi[2].min(bj[2]);
            let yy2 = bi[3].min(bj[3]);
            let w = (xx2 - xx1).max(0.0);
            let h = (yy2 - yy1).max(0.0);
            let inter = w * h;
            let ovr = inter / (area[i] + area[j] - inter);
            if ovr as f64 > iou {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// facenet-pytorch's `nms_numpy(..., 'Min')` in float32: `I = argsort(score)` ascending
/// (stable, so for equal scores the later index is taken first), take the last, drop every
/// other box whose `inter / min(area_i, area_j)` (areas and inter widths with +1, widths
/// clipped at 0) is `> float32(thr)`. Returns the picks in order.
pub fn nms_min(boxes: &[[f32; 4]], scores: &[f32], thr: f64) -> Vec<usize> {
    let area: Vec<f32> = boxes
        .iter()
        .map(|b| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0))
        .collect();
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let t = thr as f32;
    let mut pick = Vec::new();
    while let Some(i) = idx.pop() {
        pick.push(i);
        let bi = boxes[i];
        idx.retain(|&j| {
            let bj = boxes[j];
            let xx1 = bi[0].max(bj[0]);
            let yy1 = bi[1].max(bj[1]);
            let xx2 = bi[2].min(bj[2]);
            let yy2 = bi[3].min(bj[3]);
            let w = (xx2 - xx1 + 1.0).max(0.0);
            let h = (yy2 - yy1 + 1.0).max(0.0);
            let inter = w * h;
            let o = inter / area[i].min(area[j]);
            o <= t
        });
    }
    pick
}

/// Stage-1 calibration (`w = x2 − x1`, no +1): `x1 + dx1·w`, `y1 + dy1·h`, `x2 + dx2·w`,
/// `y2 + dy2·h`; the score is kept.
pub fn calibrate_stage1(c: &[f32; 9]) -> BoxRow {
    let regw = c[2] - c[0];
    let regh = c[3] - c[1];
    [
        c[0] + c[5] * regw,
        c[1] + c[6] * regh,
        c[2] + c[7] * regw,
        c[3] + c[8] * regh,
        c[4],
    ]
}

/// `bbreg`: `w = x2 − x1 + 1`, `h = y2 − y1 + 1`, `x1 + r0·w`, `y1 + r1·h`, `x2 + r2·w`,
/// `y2 + r3·h`.
pub fn bbreg(b: &mut BoxRow, reg: &[f32; 4]) {
    let w = b[2] - b[0] + 1.0;
    let h = b[3] - b[1] + 1.0;
    let b1 = b[0] + reg[0] * w;
    let b2 = b[1] + reg[1] * h;
    let b3 = b[2] + reg[2] * w;
    let b4 = b[3] + reg[3] * h;
    b[0] = b1;
    b[1] = b2;
    b[2] = b3;
    b[3] = b4;
}

/// `rerec`: squares the box around its centre with side `max(x2 − x1, y2 − y1)` (no +1).
pub fn rerec(b: &mut BoxRow) {
    let h = b[3] - b[1];
    let w = b[2] - b[0];
    let l = w.max(h);
    b[0] = b[0] + w * 0.5 - l * 0.5;
    b[1] = b[1] + h * 0.5 - l * 0.5;
    b[2] = b[0] + l;
    b[3] = b[1] + l;
}

/// `pad`: the crop window of a box: `trunc` each coordinate, clamp `x, y ≥ 1`, `ex ≤ W`,
/// `ey ≤ H`, crop `img[y−1:ey, x−1:ex]`. `None` when the window is empty (the reference
/// crashes there) or the box is not finite.
pub fn crop_window(b: &BoxRow, width: usize, height: usize) -> Option<Window> {
    if !b[..4].iter().all(|v| v.is_finite()) {
        return None;
    }
    let x = (b[0].trunc() as i64).max(1);
    let y = (b[1].trunc() as i64).max(1);
    let ex = (b[2].trunc() as i64).min(width as i64);
    let ey = (b[3].trunc() as i64).min(height as i64);
    if ey > y - 1 && ex > x - 1 {
        Some(Window {
            y0: (y - 1) as usize,
            y1: ey as usize,
            x0: (x - 1) as usize,
            x1: ex as usize,
        })
    } else {
        None
    }
}

/// `np.argsort((x2 − x1)·(y2 − y1))[::-1]` (float32 areas, no +1; numpy's sort is stable for
/// the small counts that occur, so equal areas come out later index first).
pub fn largest_first(boxes: &[BoxRow]) -> Vec<usize> {
    let area: Vec<f32> = boxes
        .iter()
        .map(|b| (b[2] - b[0]) * (b[3] - b[1]))
        .collect();
    let mut idx: Vec<usize> = (0..boxes.len()).collect();
    idx.sort_by(|&a, &b| area[a].total_cmp(&area[b]));
    idx.reverse();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_match_pytorch_adaptive_pool() {
        // 5 -> 3: [0,2), [1,4), [3,5)
        assert_eq!(area_windows(5, 3), vec![(0, 2), (1, 4), (3, 5)]);
        // upsampling repeats: 2 -> 4
        assert_eq!(area_windows(2, 4), vec![(0, 1), (0, 1), (1, 2), (1, 2)]);
        assert_eq!(area_windows(4, 2), vec![(0, 2), (2, 4)]);
    }

    #[test]
    fn level_size_is_floor_plus_one() {
        assert_eq!(level_size(480, 640, 0.6), (289, 385));
        assert_eq!(pyramid_scales(19, 100, 20.0, 0.709, 100), Vec::<f64>::new());
        assert_eq!(pyramid_scales(20, 100, 20.0, 0.709, 100).len(), 1);
    }

    #[test]
    fn nms_min_later_index_wins_ties() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]];
        assert_eq!(nms_min(&boxes, &[1.0, 1.0], 0.7), vec![1]);
        assert_eq!(nms_union(&boxes, &[1.0, 1.0], None, 0.7), vec![0]);
    }

    #[test]
    fn crop_window_truncates_and_clamps() {
        let w = crop_window(&[-0.7, 3.9, 50.2, 20.0, 1.0], 40, 30).unwrap();
        assert_eq!(
            w,
            Window {
                y0: 2,
                y1: 20,
                x0: 0,
                x1: 40
            }
        );
        assert!(crop_window(&[45.0, 3.0, 60.0, 20.0, 1.0], 40, 30).is_none());
        assert!(crop_window(&[f32::NAN, 3.0, 60.0, 20.0, 1.0], 40, 30).is_none());
    }
}
