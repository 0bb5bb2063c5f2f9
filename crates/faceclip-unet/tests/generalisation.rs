//! Nothing is tuned to the fixtures' batch size or spatial size: a batch-1 slice of the
//! inputs gives the matching output row, per-row timesteps work, odd sizes run.

mod common;

use faceclip_core::{Comparison, Tensor, TensorData};
use faceclip_unet::parity;

fn slice_row<const D: usize>(t: &Tensor<D>, r: usize) -> Tensor<D> {
    t.clone().narrow(0, r, 1)
}

fn t1(v: f32) -> Tensor<1> {
    Tensor::from_data(TensorData::new(vec![v], [1]), &common::device())
}

fn compare(f: &faceclip_core::Fixture, out: &str, row: usize, got: Tensor<4>) -> Comparison {
    let (atol, rtol) = f.tolerance();
    let (ws, want) = f.f32(&format!("out.{out}")).unwrap();
    let per: usize = ws[1..].iter().product();
    let mut s = ws.clone();
    s[0] = 1;
    let gs = got.dims().to_vec();
    let got = faceclip_core::to_vec_f32(got);
    Comparison::new(
        out,
        &gs,
        &got,
        &s,
        &want[row * per..(row + 1) * per],
        atol,
        rtol,
    )
}

#[test]
fn unet_batch1_rows_and_per_row_timesteps() {
    let f = common::fixture("unet_sdxl");
    let dev = common::device();
    let unet = parity::load_unet(&f, &dev).unwrap();
    let sample: Tensor<4> = f.tensor("in.sample", &dev).unwrap();
    let ehs: Tensor<3> = f.tensor("in.encoder_hidden_states", &dev).unwrap();
    let text: Tensor<2> = f.tensor("in.text_embeds", &dev).unwrap();
    let ids: Tensor<2> = f.tensor("in.time_ids", &dev).unwrap();
    let t = f.f32("in.timestep").unwrap().1[0];
    let t2 = f.f32("in.timestep_2").unwrap().1[0];
    for r in 0..2 {
        for (out, tv) in [("sample", t), ("sample_2", t2)] {
            let y = unet
                .forward(
                    slice_row(&sample, r),
                    t1(tv),
                    slice_row(&ehs, r),
                    Some(slice_row(&text, r)),
                    Some(slice_row(&ids, r)),
                )
                .unwrap();
            let c = compare(&f, out, r, y);
            eprintln!("row {r} {out}: max_abs={:.3e}", c.max_abs);
            assert!(c.pass(), "{c:?}");
        }
    }
    // One timestep per row: row 0 at t, row 1 at t2.
    let ts = Tensor::<1>::from_data(TensorData::new(vec![t, t2], [2]), &dev);
    let y = unet
        .forward(sample, ts, ehs, Some(text), Some(ids))
        .unwrap();
    let c0 = compare(&f, "sample", 0, y.clone().narrow(0, 0, 1));
    let c1 = compare(&f, "sample_2", 1, y.narrow(0, 1, 1));
    assert!(c0.pass() && c1.pass(), "{c0:?} {c1:?}");
}

#[test]
fn unet_odd_spatial_size_uses_explicit_upsample_sizes() {
    let f = common::fixture("unet_sdxl");
    let dev = common::device();
    let unet = parity::load_unet(&f, &dev).unwrap();
    let sample: Tensor<4> = f.tensor("in.sample", &dev).unwrap();
    let [b, c, _, _] = sample.dims();
    let odd = sample.slice([0..b, 0..c, 0..15, 0..13]);
    let y = unet
        .forward(
            odd,
            t1(500.0),
            f.tensor("in.encoder_hidden_states", &dev).unwrap(),
            Some(f.tensor("in.text_embeds", &dev).unwrap()),
            Some(f.tensor("in.time_ids", &dev).unwrap()),
        )
        .unwrap();
    assert_eq!(y.dims(), [2, 4, 15, 13]);
    assert!(faceclip_core::to_vec_f32(y).iter().all(|v| v.is_finite()));
}

#[test]
fn vae_batch1_rows() {
    let dev = common::device();
    for name in ["vae_sdxl", "vae_flux"] {
        let f = common::fixture(name);
        let vae = parity::load_vae(&f, &dev).unwrap();
        let z: Tensor<4> = f.tensor("in.latents", &dev).unwrap();
        let x: Tensor<4> = f.tensor("in.image", &dev).unwrap();
        for r in 0..2 {
            let img = vae.decode(slice_row(&z, r)).unwrap();
            let d = vae.encode(slice_row(&x, r)).unwrap();
            for c in [
                compare(&f, "image", r, img),
                compare(&f, "latent_mean", r, d.mean),
                compare(&f, "latent_logvar", r, d.logvar),
            ] {
                eprintln!("{name} row {r} {}: max_abs={:.3e}", c.name, c.max_abs);
                assert!(c.pass(), "{name}: {c:?}");
            }
        }
    }
}

#[test]
fn vae_scaling_helpers() {
    let dev = common::device();
    let f = common::fixture("vae_flux");
    let vae = parity::load_vae(&f, &dev).unwrap();
    assert_eq!(vae.scaling_factor(), 0.3611);
    assert_eq!(vae.shift_factor(), 0.1159);
    let z: Tensor<4> = f.tensor("in.latents", &dev).unwrap();
    let zv = faceclip_core::to_vec_f32(z.clone());
    // The FLUX pipeline: latents / scaling + shift, in f32.
    let un = faceclip_core::to_vec_f32(vae.unscale_latents(z.clone()));
    for (a, b) in zv.iter().zip(&un) {
        assert_eq!(*b, a / 0.3611f32 + 0.1159f32);
    }
    let back = faceclip_core::to_vec_f32(vae.scale_latents(vae.unscale_latents(z)));
    for (a, b) in zv.iter().zip(&back) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()));
    }
    let sdxl = parity::load_vae(&common::fixture("vae_sdxl"), &dev).unwrap();
    assert_eq!(sdxl.shift_factor(), 0.0);
    let z = Tensor::<4>::ones([1, 4, 2, 2], &dev);
    let un = faceclip_core::to_vec_f32(sdxl.unscale_latents(z));
    assert!(un.iter().all(|v| *v == 1.0f32 / 0.13025f32));
}
