//! diffusers-style tiled decode against the one-pass decode.
//!
//! Tiling cannot be exact: every tile has its own GroupNorm statistics and its own mid-block
//! attention. What the seam blending guarantees is that each output pixel is a convex
//! combination of the decodes of the tiles covering it. Hence two bounds, asserted per pixel:
//! the tiled value lies between the smallest and largest covering-tile value, and
//! `|tiled - untiled|` is at most the largest `|tile - untiled|` among the covering tiles
//! (the error intrinsic to decoding a crop), up to f32 rounding.

mod common;

use faceclip_core::burn::tensor::module::interpolate;
use faceclip_core::burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use faceclip_core::{Tensor, to_vec_f32};
use faceclip_unet::{TiledDecode, parity};

const EPS: f32 = 1e-5;

#[test]
fn tiled_matches_untiled_within_the_per_tile_error() {
    let dev = common::device();
    for name in ["vae_sdxl", "vae_flux"] {
        let f = common::fixture(name);
        let vae = parity::load_vae(&f, &dev).unwrap();
        let z: Tensor<4> = f.tensor("in.latents", &dev).unwrap();
        // A 32x40 latent (64x80 image): 3x4 tiles of 16x16 latents, stride 12, blend 8 px.
        let z = interpolate(
            z,
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_output_size([32, 40]),
        );
        let [b, c, h, w] = z.dims();
        let full = vae.decode(z.clone()).unwrap();
        let tiling = TiledDecode {
            tile_sample_size: 32,
            overlap_factor: 0.25,
        };
        let tiled = vae.tiled_decode(z.clone(), &tiling).unwrap();
        assert_eq!(tiled.dims(), full.dims());
        let [_, oc, oh, ow] = full.dims();
        let full_v = to_vec_f32(full.clone());
        let tiled_v = to_vec_f32(tiled);

        // Decode every tile on its own, as tiled_decode does, and collect per-pixel bounds.
        let (tl, stride, fct) = (16, 12, 2);
        let n = full_v.len();
        let (mut lo, mut hi, mut intrinsic) = (
            vec![f32::INFINITY; n],
            vec![f32::NEG_INFINITY; n],
            vec![0f32; n],
        );
        for i in (0..h).step_by(stride) {
            for j in (0..w).step_by(stride) {
                let tile = z
                    .clone()
                    .slice([0..b, 0..c, i..(i + tl).min(h), j..(j + tl).min(w)]);
                let d = vae.decode(tile).unwrap();
                let [_, _, th, tw] = d.dims();
                let dv = to_vec_f32(d);
                for bb in 0..b {
                    for ch in 0..oc {
                        for y in 0..th {
                            for x in 0..tw {
                                let v = dv[((bb * oc + ch) * th + y) * tw + x];
                                let k = ((bb * oc + ch) * oh + i * fct + y) * ow + j * fct + x;
                                lo[k] = lo[k].min(v);
                                hi[k] = hi[k].max(v);
                                intrinsic[k] = intrinsic[k].max((v - full_v[k]).abs());
                            }
                        }
                    }
                }
            }
        }
        let mut worst_excess = 0f32;
        for k in 0..n {
            let t = tiled_v[k];
            assert!(
                t >= lo[k] - EPS && t <= hi[k] + EPS,
                "{name}: pixel {k}: {t} outside [{}, {}]",
                lo[k],
                hi[k]
            );
            let err = (t - full_v[k]).abs();
            assert!(
                err <= intrinsic[k] + EPS,
                "{name}: pixel {k}: error {err} > per-tile error {}",
                intrinsic[k]
            );
            worst_excess = worst_excess.max(err - intrinsic[k]);
        }
        let max = tiled_v
            .iter()
            .zip(&full_v)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let mean = tiled_v
            .iter()
            .zip(&full_v)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / n as f32;
        let intrinsic_mean = intrinsic.iter().sum::<f32>() / n as f32;
        let m = full_v.iter().sum::<f32>() / n as f32;
        let std = (full_v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / n as f32).sqrt();
        eprintln!(
            "{name}: tiled vs untiled max_abs={max:.4} mean_abs={mean:.4}; per-tile error mean={intrinsic_mean:.4}; output std={std:.4}; worst excess over the per-tile bound {worst_excess:.2e}"
        );

        // One tile covering everything is the one-pass decode, bit for bit.
        let one = TiledDecode {
            tile_sample_size: 128,
            overlap_factor: 0.25,
        };
        assert_eq!(
            to_vec_f32(vae.tiled_decode(z.clone(), &one).unwrap()),
            full_v
        );
        // decode_with_tiling only tiles latents larger than one tile.
        assert_eq!(to_vec_f32(vae.decode_with_tiling(z, &one).unwrap()), full_v);
    }
}

/// A plain `[B, C, H, W]` array for the literal transcription below.
#[derive(Clone)]
struct Arr {
    s: [usize; 4],
    v: Vec<f32>,
}

impl Arr {
    fn of(t: Tensor<4>) -> Self {
        Arr {
            s: t.dims(),
            v: to_vec_f32(t),
        }
    }
    fn at(&self, b: usize, c: usize, y: usize, x: usize) -> usize {
        ((b * self.s[1] + c) * self.s[2] + y) * self.s[3] + x
    }
}

/// diffusers' `blend_v` / `blend_h`, in place on `b`, line by line as the Python loops.
fn blend_py(a: &Arr, b: &mut Arr, extent: usize, vertical: bool) {
    let d = if vertical { 2 } else { 3 };
    let e = extent.min(a.s[d]).min(b.s[d]);
    for y in 0..e {
        let w1 = (1.0 - y as f64 / e as f64) as f32;
        let w2 = (y as f64 / e as f64) as f32;
        for bb in 0..b.s[0] {
            for c in 0..b.s[1] {
                let other = if vertical { b.s[3] } else { b.s[2] };
                for k in 0..other {
                    let (ia, ib) = if vertical {
                        (a.at(bb, c, a.s[2] - e + y, k), b.at(bb, c, y, k))
                    } else {
                        (a.at(bb, c, k, a.s[3] - e + y), b.at(bb, c, k, y))
                    };
                    b.v[ib] = a.v[ia] * w1 + b.v[ib] * w2;
                }
            }
        }
    }
}

/// `tiled_decode` equals a literal transcription of diffusers' `tiled_decode` (in-place
/// blending of the whole grid of tiles, crops, concatenation).
#[test]
fn tiled_decode_is_diffusers_algorithm() {
    let dev = common::device();
    let f = common::fixture("vae_flux");
    let vae = parity::load_vae(&f, &dev).unwrap();
    let z: Tensor<4> = f.tensor("in.latents", &dev).unwrap();
    let z = z.narrow(0, 0, 1).slice([0..1, 0..16, 0..16, 0..13]);
    let tiling = TiledDecode {
        tile_sample_size: 16,
        overlap_factor: 0.25,
    };
    // diffusers' numbers: latent tile 8, stride int(8·0.75) = 6, blend int(16·0.25) = 4, keep 12.
    // On 16x13 latents: 3x3 tiles, the last column 1 latent wide, the last row 4 high.
    let (tl, stride, blend_extent, row_limit) = (8, 6, 4, 12);
    let [b, c, h, w] = z.dims();
    let mut rows: Vec<Vec<Arr>> = Vec::new();
    for i in (0..h).step_by(stride) {
        let mut row = Vec::new();
        for j in (0..w).step_by(stride) {
            let tile = z
                .clone()
                .slice([0..b, 0..c, i..(i + tl).min(h), j..(j + tl).min(w)]);
            row.push(Arr::of(vae.decode(tile).unwrap()));
        }
        rows.push(row);
    }
    for i in 0..rows.len() {
        for j in 0..rows[i].len() {
            let mut tile = rows[i][j].clone();
            if i > 0 {
                blend_py(&rows[i - 1][j], &mut tile, blend_extent, true);
            }
            if j > 0 {
                blend_py(&rows[i][j - 1], &mut tile, blend_extent, false);
            }
            rows[i][j] = tile;
        }
    }
    let (oh, ow) = (2 * h, 2 * w);
    let mut want = vec![f32::NAN; b * 3 * oh * ow];
    let mut y0 = 0;
    for row in &rows {
        let mut x0 = 0;
        let mut rh = 0;
        for t in row {
            let (th, tw) = (t.s[2].min(row_limit), t.s[3].min(row_limit));
            for cc in 0..3 {
                for y in 0..th {
                    for x in 0..tw {
                        want[(cc * oh + y0 + y) * ow + x0 + x] = t.v[t.at(0, cc, y, x)];
                    }
                }
            }
            x0 += tw;
            rh = th;
        }
        assert_eq!(x0, ow);
        y0 += rh;
    }
    assert_eq!(y0, oh);
    let got = to_vec_f32(vae.tiled_decode(z, &tiling).unwrap());
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("tiled_decode vs literal diffusers transcription: max_abs={max:.2e}");
    assert!(max <= 1e-6, "{max}");
}

/// Odd latent sizes with leftover tiles still give exactly `f·h x f·w` pixels.
#[test]
fn tiled_decode_odd_sizes() {
    let dev = common::device();
    let vae = parity::load_vae(&common::fixture("vae_sdxl"), &dev).unwrap();
    let tiling = TiledDecode {
        tile_sample_size: 16,
        overlap_factor: 0.25,
    };
    for (h, w) in [(27, 37), (9, 8), (1, 20)] {
        let z = Tensor::<4>::ones([1, 4, h, w], &dev) * 0.3;
        let out = vae.decode_with_tiling(z, &tiling).unwrap();
        assert_eq!(out.dims(), [1, 3, 2 * h, 2 * w]);
    }
}
