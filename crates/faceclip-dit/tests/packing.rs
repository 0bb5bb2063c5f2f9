//! Latent packing and position ids against FluxPipeline (`pipeline_flux` fixture).

mod common;

use common::{device, fixture};
use faceclip_core::{Error, Tensor, TensorData, to_vec_f32};
use faceclip_dit::packing::{image_ids_host, latent_size};
use faceclip_dit::{image_ids, pack_latents, text_ids, unpack_latents};

#[test]
fn pack_matches_pipeline_and_unpack_inverts_it() {
    let fx = fixture("pipeline_flux");
    let dev = device();
    let unpacked: Tensor<4> = fx.tensor("in.latents_unpacked", &dev).unwrap();
    let [_, _, h, w] = unpacked.dims();
    let packed = pack_latents(unpacked.clone()).unwrap();
    let (shape, want) = fx.f32("in.latents").unwrap();
    assert_eq!(packed.dims().to_vec(), shape);
    assert_eq!(
        to_vec_f32(packed.clone()),
        want,
        "packing is a pure permutation: bit-exact"
    );
    let back = unpack_latents(packed, h, w).unwrap();
    assert_eq!(to_vec_f32(back), to_vec_f32(unpacked));
}

#[test]
fn pack_channel_order_and_roundtrip_non_square() {
    let dev = device();
    let (b, c, h, w) = (2, 3, 4, 6);
    let n = b * c * h * w;
    let x = Tensor::<4>::from_data(
        TensorData::new((0..n).map(|i| i as f32).collect::<Vec<_>>(), [b, c, h, w]),
        &dev,
    );
    let packed = pack_latents(x.clone()).unwrap();
    assert_eq!(packed.dims(), [b, (h / 2) * (w / 2), c * 4]);
    let p = to_vec_f32(packed.clone());
    let src = to_vec_f32(x.clone());
    let (gh, gw) = (h / 2, w / 2);
    for bi in 0..b {
        for r in 0..gh {
            for col in 0..gw {
                for ch in 0..c {
                    for dy in 0..2 {
                        for dx in 0..2 {
                            let tok = r * gw + col;
                            let got = p[(bi * gh * gw + tok) * c * 4 + ch * 4 + dy * 2 + dx];
                            let want = src[((bi * c + ch) * h + 2 * r + dy) * w + 2 * col + dx];
                            assert_eq!(got, want);
                        }
                    }
                }
            }
        }
    }
    assert_eq!(to_vec_f32(unpack_latents(packed, h, w).unwrap()), src);
}

#[test]
fn ids_match_pipeline() {
    let dev = device();
    let fx = fixture("pipeline_flux");
    let (shape, want) = fx.f32("mid.img_ids").unwrap();
    // The pipeline fixture: 32x32 pixels -> 16x16 latent -> 8x8 packed grid.
    let (lh, lw) = latent_size(32, 32, 8);
    assert_eq!((lh, lw), (4, 4));
    let (lh, lw) = latent_size(32, 32, 2); // this tiny VAE's vae_scale_factor
    assert_eq!((lh, lw), (16, 16));
    let ids = image_ids(lh / 2, lw / 2, &dev);
    assert_eq!(ids.dims().to_vec(), shape);
    assert_eq!(to_vec_f32(ids), want);
    let (tshape, twant) = fx.f32("mid.txt_ids").unwrap();
    let t = text_ids(tshape[0], &dev);
    assert_eq!(t.dims().to_vec(), tshape);
    assert_eq!(to_vec_f32(t), twant);

    let fx = fixture("flux_transformer");
    let (shape, want) = fx.f32("in.img_ids").unwrap();
    assert_eq!(shape, vec![64, 3]);
    assert_eq!(image_ids_host(8, 8), want);
}

#[test]
fn non_square_ids_are_row_major() {
    let v = image_ids_host(2, 3);
    assert_eq!(
        v,
        vec![
            0., 0., 0., 0., 0., 1., 0., 0., 2., 0., 1., 0., 0., 1., 1., 0., 1., 2.
        ]
    );
    assert_eq!(latent_size(1152, 864, 8), (144, 108));
}

#[test]
fn odd_sizes_are_errors() {
    let dev = device();
    let x = Tensor::<4>::zeros([1, 4, 3, 4], &dev);
    assert!(matches!(pack_latents(x), Err(Error::InvalidInput(_))));
    let p = Tensor::<3>::zeros([1, 4, 16], &dev);
    assert!(matches!(
        unpack_latents(p.clone(), 4, 6),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        unpack_latents(p, 3, 4),
        Err(Error::InvalidInput(_))
    ));
}
