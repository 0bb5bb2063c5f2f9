//! `cv2.warpAffine(img, M, (w, h), flags=INTER_LINEAR, borderMode=BORDER_CONSTANT,
//! borderValue=0)` on RGB8 images, bit for bit: OpenCV inverts `M` in float64, maps each
//! output pixel to the source in 1/1024-pixel fixed point, keeps 1/32-pixel fractions and
//! blends the four taps with integer weights summing to 32768. Taps outside the image read 0.

use faceclip_core::{Error, Result};

use crate::face_align::Affine;
use crate::image::ImageView;

const INTER_BITS: u32 = 5;
const INTER_TAB_SIZE: i64 = 1 << INTER_BITS;
const AB_BITS: u32 = 10;
const AB_SCALE: f64 = (1 << AB_BITS) as f64;
const ROUND_DELTA: i64 = (AB_SCALE as i64) / INTER_TAB_SIZE / 2;
const COEF_BITS: u32 = 15;
const COEF_SCALE: i32 = 1 << COEF_BITS;

/// The inverse map cv2 samples with (`warpAffine` without `WARP_INVERSE_MAP`):
/// `D = 1/(a·e − b·d)` (0 when singular), `A = [e·D, −b·D; −d·D, a·D]`, `b' = −A·t`.
pub fn invert_affine(m: &Affine) -> Affine {
    let [[m0, m1, m2], [m3, m4, m5]] = *m;
    let d = m0 * m4 - m1 * m3;
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let a11 = m4 * d;
    let a22 = m0 * d;
    let n0 = a11;
    let n1 = m1 * -d;
    let n3 = m3 * -d;
    let n4 = a22;
    let b1 = -n0 * m2 - n1 * m5;
    let b2 = -n3 * m2 - n4 * m5;
    [[n0, n1, b1], [n3, n4, b2]]
}

/// `saturate_cast<int>(double)`: round half to even, saturated (NaN → 0).
#[inline]
fn round_i64(v: f64) -> i64 {
    if v.is_nan() {
        0
    } else {
        v.round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i64
    }
}

#[inline]
fn sat_i16(v: i64) -> i64 {
    v.clamp(i16::MIN as i64, i16::MAX as i64)
}

/// The bilinear weight table OpenCV builds for `INTER_LINEAR` in fixed point: for fractions
/// `(fx, fy)` in 1/32 px, weights `(1−u)(1−v), u(1−v), (1−u)v, uv` × 32768, rounded; a sum
/// off 32768 is corrected on the largest (too big) or smallest (too small) weight.
fn weight_table() -> Vec<[i32; 4]> {
    let mut tab = Vec::with_capacity((INTER_TAB_SIZE * INTER_TAB_SIZE) as usize);
    for fy in 0..INTER_TAB_SIZE {
        let v = fy as f32 / INTER_TAB_SIZE as f32;
        let vy = [1.0 - v, v];
        for fx in 0..INTER_TAB_SIZE {
            let u = fx as f32 / INTER_TAB_SIZE as f32;
            let vx = [1.0 - u, u];
            let mut w = [0i32; 4];
            let mut sum = 0;
            for k1 in 0..2 {
                for k2 in 0..2 {
                    let f = vy[k1] * vx[k2];
                    let i = ((f * COEF_SCALE as f32) as f64).round_ties_even() as i32;
                    w[k1 * 2 + k2] = i;
                    sum += i;
                }
            }
            if sum != COEF_SCALE {
                let diff = sum - COEF_SCALE;
                let (mut mk, mut big) = (0, 0);
                for k in 1..4 {
                    if w[k] < w[mk] {
                        mk = k;
                    } else if w[k] > w[big] {
                        big = k;
                    }
                }
                if diff < 0 {
                    w[big] -= diff;
                } else {
                    w[mk] -= diff;
                }
            }
            tab.push(w);
        }
    }
    tab
}

/// `cv2.warpAffine(src, m, (out_w, out_h))` with bilinear sampling and a black constant
/// border; `m` maps source to output (it is inverted as cv2 does). Returns RGB8
/// `out_h × out_w × 3`.
pub fn warp_affine(src: &ImageView<'_>, m: &Affine, out_w: usize, out_h: usize) -> Result<Vec<u8>> {
    src.check()?;
    if out_w == 0 || out_h == 0 || out_w > 1 << 15 || out_h > 1 << 15 {
        return Err(Error::invalid(format!(
            "warp output size {out_w}x{out_h} must be between 1 and 32768 a side"
        )));
    }
    if m.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("affine matrix {m:?} is not finite")));
    }
    let inv = invert_affine(m);
    let tab = weight_table();
    let (sw, sh) = (src.width as i64, src.height as i64);
    let mut out = vec![0u8; out_w * out_h * 3];
    let adelta: Vec<i64> = (0..out_w)
        .map(|x| round_i64(inv[0][0] * x as f64 * AB_SCALE))
        .collect();
    let bdelta: Vec<i64> = (0..out_w)
        .map(|x| round_i64(inv[1][0] * x as f64 * AB_SCALE))
        .collect();
    for y in 0..out_h {
        let yf = y as f64;
        let x0 = round_i64((inv[0][1] * yf + inv[0][2]) * AB_SCALE) + ROUND_DELTA;
        let y0 = round_i64((inv[1][1] * yf + inv[1][2]) * AB_SCALE) + ROUND_DELTA;
        for x in 0..out_w {
            let xx = (x0 + adelta[x]) >> (AB_BITS - INTER_BITS);
            let yy = (y0 + bdelta[x]) >> (AB_BITS - INTER_BITS);
            let sx = sat_i16(xx >> INTER_BITS);
            let sy = sat_i16(yy >> INTER_BITS);
            let frac = ((yy & (INTER_TAB_SIZE - 1)) * INTER_TAB_SIZE + (xx & (INTER_TAB_SIZE - 1)))
                as usize;
            let w = tab[frac];
            let o = (y * out_w + x) * 3;
            if sx >= sw || sx + 1 < 0 || sy >= sh || sy + 1 < 0 {
                continue; // all four taps outside: the border value 0
            }
            let tap = |tx: i64, ty: i64, c: usize| -> i32 {
                if tx >= 0 && tx < sw && ty >= 0 && ty < sh {
                    src.data[((ty * sw + tx) * 3) as usize + c] as i32
                } else {
                    0
                }
            };
            for c in 0..3 {
                let v = tap(sx, sy, c) * w[0]
                    + tap(sx + 1, sy, c) * w[1]
                    + tap(sx, sy + 1, c) * w[2]
                    + tap(sx + 1, sy + 1, c) * w[3];
                out[o + c] = ((v + (1 << (COEF_BITS - 1))) >> COEF_BITS).clamp(0, 255) as u8;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one() {
        for w in weight_table() {
            assert_eq!(w.iter().sum::<i32>(), COEF_SCALE);
        }
    }

    #[test]
    fn identity_warp_copies() {
        let data: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let img = ImageView::new(5, 4, &data).unwrap();
        let out = warp_affine(&img, &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], 5, 4).unwrap();
        assert_eq!(out, data);
        // shifted right by one: column 0 is black
        let out = warp_affine(&img, &[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], 5, 4).unwrap();
        assert_eq!(&out[0..3], &[0, 0, 0]);
        assert_eq!(&out[3..6], &data[0..3]);
    }

    #[test]
    fn singular_matrix_does_not_panic() {
        let data = vec![9u8; 2 * 2 * 3];
        let img = ImageView::new(2, 2, &data).unwrap();
        assert!(warp_affine(&img, &[[0.0; 3]; 2], 3, 3).is_ok());
        assert!(warp_affine(&img, &[[f64::NAN, 0.0, 0.0], [0.0; 3]], 3, 3).is_err());
        assert!(warp_affine(&img, &[[1e300, 0.0, 0.0], [0.0, 1e-300, 0.0]], 3, 3).is_ok());
    }
}
