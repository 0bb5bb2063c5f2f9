//! insightface `utils/face_align.py`: `estimate_norm` (skimage's Umeyama similarity from the
//! five landmarks to the ArcFace template) and `norm_crop` (that similarity applied with
//! `cv2.warpAffine`, see [`crate::warp_affine`]).

use faceclip_core::{Error, Result};

use crate::image::ImageView;
use crate::warp_affine::warp_affine;

/// insightface's `arcface_dst`: the five landmarks of a 112×112 ArcFace crop (left eye, right
/// eye, nose, left and right mouth corner, as seen in the image), float32.
pub const ARCFACE_DST: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A 2×3 affine matrix `[[a, b, tx], [c, d, ty]]` mapping photo `(x, y)` to crop coordinates.
pub type Affine = [[f64; 3]; 2];

/// `estimate_norm`'s template for `image_size`: `arcface_dst · size/112` when `size` is a
/// multiple of 112, else `arcface_dst · size/128` shifted by `8·size/128` in x when it is a
/// multiple of 128 (float32, as numpy computes it). Other sizes are rejected, as upstream.
pub fn arcface_template(image_size: usize) -> Result<[[f32; 2]; 5]> {
    let (ratio, diff_x) = if image_size > 0 && image_size.is_multiple_of(112) {
        (image_size as f64 / 112.0, 0.0)
    } else if image_size > 0 && image_size.is_multiple_of(128) {
        let r = image_size as f64 / 128.0;
        (r, 8.0 * r)
    } else {
        return Err(Error::invalid(format!(
            "aligned face size {image_size} must be a positive multiple of 112 (ArcFace template) or 128"
        )));
    };
    let (r, dx) = (ratio as f32, diff_x as f32);
    Ok(ARCFACE_DST.map(|[x, y]| [x * r + dx, y * r]))
}

/// How [`umeyama_with`] forms the float32 cross-covariance `dstᵀ·src` (numpy hands it to
/// BLAS `sgemm`; optimised kernels accumulate with fused multiply-adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulate {
    /// `acc = fma(a, b, acc)` over the points in order (OpenBLAS's x86-64 kernels).
    Fma,
    /// `acc = acc + a·b`, each step rounded.
    Plain,
}

/// skimage 0.26 `_umeyama(src, dst, estimate_scale=True)` for 2-D float32 points, following
/// numpy's dtypes step by step: means, demeaned points, `A = dstᵀ·src / n` and the variances
/// in float32; the SVD in float64 with `U`, `S`, `V` rounded to float32 (numpy computes
/// `linalg` in double and casts back); `R = U·diag(d)·V`, the scale and the translation in
/// float64. `d = (1, −1)` when `det(A) < 0` (never a reflection); for rank 1 the rotation of
/// `U·V` / `U·diag(1, −1)·V` is taken. `None` for degenerate points (rank 0 or all equal),
/// where skimage returns NaN.
pub fn umeyama(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Affine> {
    umeyama_with(src, dst, Accumulate::Fma)
}

/// [`umeyama`] with an explicit accumulation mode for `A`.
pub fn umeyama_with(src: &[[f32; 2]], dst: &[[f32; 2]], acc: Accumulate) -> Option<Affine> {
    let n = src.len();
    if n == 0 || n != dst.len() || src.iter().chain(dst).flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let nf = n as f32;
    let mean = |p: &[[f32; 2]]| {
        let mut m = [0f32; 2];
        for q in p {
            m[0] += q[0];
            m[1] += q[1];
        }
        [m[0] / nf, m[1] / nf]
    };
    let ms = mean(src);
    let md = mean(dst);
    let sd: Vec<[f32; 2]> = src.iter().map(|q| [q[0] - ms[0], q[1] - ms[1]]).collect();
    let dd: Vec<[f32; 2]> = dst.iter().map(|q| [q[0] - md[0], q[1] - md[1]]).collect();
    // A[i][j] = sum_k dd[k][i] * sd[k][j] / n   (float32)
    let mut a = [[0f32; 2]; 2];
    for (i, row) in a.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let mut s = 0f32;
            for k in 0..n {
                s = match acc {
                    Accumulate::Fma => dd[k][i].mul_add(sd[k][j], s),
                    Accumulate::Plain => s + dd[k][i] * sd[k][j],
                };
            }
            *v = s / nf;
        }
    }
    // Population variance per axis, float32 as numpy's `var`, then summed.
    let mv = mean(&sd);
    let mut var = [0f32; 2];
    for q in &sd {
        for c in 0..2 {
            let x = q[c] - mv[c];
            var[c] += x * x;
        }
    }
    let var_sum = (0f32 + var[0] / nf) + var[1] / nf;

    let a64 = [
        [a[0][0] as f64, a[0][1] as f64],
        [a[1][0] as f64, a[1][1] as f64],
    ];
    let det_a = a64[0][0] * a64[1][1] - a64[0][1] * a64[1][0];
    let (u, s, v) = svd2(a64);
    let r32 = |m: [[f64; 2]; 2]| m.map(|r| r.map(|x| x as f32 as f64));
    let (u, v) = (r32(u), r32(v));
    let s = [s[0] as f32 as f64, s[1] as f32 as f64];
    let mut d = [1.0f64, 1.0];
    if det_a < 0.0 {
        d[1] = -1.0;
    }
    let tol = s[0].max(s[1]) * 2.0 * f64::EPSILON;
    let rank = s.iter().filter(|&&x| x > tol).count();
    let mul = |p: [[f64; 2]; 2], q: [[f64; 2]; 2]| {
        let mut o = [[0f64; 2]; 2];
        for i in 0..2 {
            for j in 0..2 {
                o[i][j] = p[i][0] * q[0][j] + p[i][1] * q[1][j];
            }
        }
        o
    };
    let diag = |x: f64, y: f64| [[x, 0.0], [0.0, y]];
    let det2 = |m: [[f64; 2]; 2]| m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let r = match rank {
        0 => return None,
        1 => {
            if det2(u) * det2(v) > 0.0 {
                mul(u, v)
            } else {
                mul(mul(u, diag(d[0], -1.0)), v)
            }
        }
        _ => mul(mul(u, diag(d[0], d[1])), v),
    };
    if var_sum.is_nan() || var_sum <= 0.0 {
        return None;
    }
    let scale = 1.0 / var_sum as f64 * (s[0] * d[0] + s[1] * d[1]);
    let (m0, m1) = (ms[0] as f64, ms[1] as f64);
    let tx = md[0] as f64 - scale * (r[0][0] * m0 + r[0][1] * m1);
    let ty = md[1] as f64 - scale * (r[1][0] * m0 + r[1][1] * m1);
    let out = [
        [r[0][0] * scale, r[0][1] * scale, tx],
        [r[1][0] * scale, r[1][1] * scale, ty],
    ];
    out.iter().flatten().all(|x| x.is_finite()).then_some(out)
}

/// The SVD of a 2×2 matrix, `A = U·diag(S)·V` (`V` already transposed, as numpy returns it),
/// `S` descending and non-negative. Closed form: with `E = (a+d)/2`, `F = (a−d)/2`,
/// `G = (c+b)/2`, `H = (c−b)/2`, `A = Rot(φ)·diag(Q+R, Q−R)·Rot(θ)` where `Q = |(E, H)|`,
/// `R = |(F, G)|`, `φ = (atan2(H, E) + atan2(G, F))/2`, `θ = (atan2(H, E) − atan2(G, F))/2`.
fn svd2(m: [[f64; 2]; 2]) -> ([[f64; 2]; 2], [f64; 2], [[f64; 2]; 2]) {
    let [[a, b], [c, d]] = m;
    let e = 0.5 * (a + d);
    let f = 0.5 * (a - d);
    let g = 0.5 * (c + b);
    let h = 0.5 * (c - b);
    let q = e.hypot(h);
    let r = f.hypot(g);
    let a1 = g.atan2(f);
    let a2 = h.atan2(e);
    let theta = 0.5 * (a2 - a1);
    let phi = 0.5 * (a2 + a1);
    let s1 = q + r;
    let s2 = q - r;
    let (cp, sp) = (phi.cos(), phi.sin());
    let (ct, st) = (theta.cos(), theta.sin());
    let u = [[cp, -sp], [sp, cp]];
    let sg = if s2 < 0.0 { -1.0 } else { 1.0 };
    let v = [[ct, -st], [sg * st, sg * ct]];
    (u, [s1, s2.abs()], v)
}

/// insightface `estimate_norm(lmk, image_size)`: the similarity from the five landmarks
/// (`[x, y]`, ArcFace order) to [`arcface_template`]`(image_size)`.
pub fn estimate_norm(landmarks: &[[f32; 2]; 5], image_size: usize) -> Result<Affine> {
    if landmarks.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::invalid("face landmarks are not finite"));
    }
    let dst = arcface_template(image_size)?;
    umeyama(landmarks, &dst).ok_or_else(|| {
        Error::invalid(format!(
            "face landmarks {landmarks:?} are degenerate (all points equal): no similarity to the template"
        ))
    })
}

/// insightface `norm_crop(img, landmark, image_size)`: the `size × size` RGB8 crop of the
/// face (black outside the photo) and the matrix used (photo → crop).
pub fn norm_crop<'a>(
    image: impl Into<ImageView<'a>>,
    landmarks: &[[f32; 2]; 5],
    size: usize,
) -> Result<(Vec<u8>, Affine)> {
    let image = image.into();
    image.check()?;
    let m = estimate_norm(landmarks, size)?;
    let out = warp_affine(&image, &m, size, size)?;
    Ok((out, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_maps_to_identity() {
        let t = arcface_template(448).unwrap();
        let m = umeyama(&t, &t).unwrap();
        let id = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        for i in 0..2 {
            for j in 0..3 {
                // float32 steps, as skimage: the identity up to ~1e-5 (the reference: 1.3e-5)
                assert!((m[i][j] - id[i][j]).abs() < 1e-4, "{m:?}");
            }
        }
    }

    #[test]
    fn recovers_a_similarity() {
        let (s, th, tx, ty) = (0.37f64, 0.8f64, 12.5, -40.0);
        let dst = arcface_template(112).unwrap();
        // src = inverse similarity of dst, so src -> dst is (s, th, tx, ty)
        let src: Vec<[f32; 2]> = dst
            .iter()
            .map(|d| {
                let (x, y) = (d[0] as f64 - tx, d[1] as f64 - ty);
                let (c, sn) = (th.cos(), th.sin());
                [
                    ((c * x + sn * y) / s) as f32,
                    ((-sn * x + c * y) / s) as f32,
                ]
            })
            .collect();
        let m = umeyama(&src, &dst).unwrap();
        assert!((m[0][0] - s * th.cos()).abs() < 1e-5);
        assert!((m[1][0] - s * th.sin()).abs() < 1e-5);
        assert!((m[0][2] - tx).abs() < 1e-3 && (m[1][2] - ty).abs() < 1e-3);
    }

    #[test]
    fn degenerate_points_are_an_error() {
        assert!(estimate_norm(&[[3.0, 3.0]; 5], 112).is_err());
        assert!(estimate_norm(&[[f32::NAN, 3.0]; 5], 112).is_err());
        assert!(arcface_template(100).is_err());
        assert!(arcface_template(0).is_err());
        assert!(arcface_template(256).is_ok());
    }
}
