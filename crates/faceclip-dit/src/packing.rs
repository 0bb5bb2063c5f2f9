//! FluxPipeline's latent packing and position ids (diffusers `pipeline_flux.py`:
//! `_pack_latents`, `_unpack_latents`, `_prepare_latent_image_ids`, and the zero `text_ids`).
//!
//! A packed token is one 2×2 patch of the latent: `(B, C, H, W) -> (B, H/2·W/2, C·4)`, tokens
//! row-major over the `(H/2, W/2)` grid, channel `c·4 + dy·2 + dx` inside a token.

use faceclip_core::{Device, Error, Result, Tensor, TensorData};

/// The latent height and width FluxPipeline uses for an image of `height × width` pixels:
/// `2 · (size / (vae_scale_factor · 2))` each (FLUX: `vae_scale_factor` 8).
pub fn latent_size(height: usize, width: usize, vae_scale_factor: usize) -> (usize, usize) {
    let f = (vae_scale_factor * 2).max(1);
    (2 * (height / f), 2 * (width / f))
}

/// `_pack_latents`: `(B, C, H, W) -> (B, H/2·W/2, C·4)`. `H` and `W` must be even.
pub fn pack_latents(latents: Tensor<4>) -> Result<Tensor<3>> {
    let [b, c, h, w] = latents.dims();
    if !h.is_multiple_of(2) || !w.is_multiple_of(2) || h == 0 || w == 0 {
        return Err(Error::invalid(format!(
            "pack_latents: latent height and width must be even and positive, got {h}x{w}"
        )));
    }
    Ok(latents
        .reshape([b, c, h / 2, 2, w / 2, 2])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([b, (h / 2) * (w / 2), c * 4]))
}

/// `_unpack_latents` with the latent size given directly: `(B, H/2·W/2, C·4) -> (B, C, H, W)`
/// for latent `height × width` (see [`latent_size`] for the pixel -> latent rule).
pub fn unpack_latents(packed: Tensor<3>, height: usize, width: usize) -> Result<Tensor<4>> {
    let [b, l, d] = packed.dims();
    if !height.is_multiple_of(2) || !width.is_multiple_of(2) || height == 0 || width == 0 {
        return Err(Error::invalid(format!(
            "unpack_latents: latent height and width must be even and positive, got {height}x{width}"
        )));
    }
    let (gh, gw) = (height / 2, width / 2);
    if l != gh * gw || !d.is_multiple_of(4) {
        return Err(Error::shape(
            format!("unpack_latents input for a {height}x{width} latent"),
            &[b, gh * gw, 4 * (d / 4).max(1)],
            &[b, l, d],
        ));
    }
    let c = d / 4;
    Ok(packed
        .reshape([b, gh, gw, c, 2, 2])
        .permute([0, 3, 1, 4, 2, 5])
        .reshape([b, c, height, width]))
}

/// `_prepare_latent_image_ids(grid_h, grid_w)` on the host: `[grid_h·grid_w, 3]` row-major,
/// rows `[0, row, col]` over the packed grid, row-major.
pub fn image_ids_host(grid_h: usize, grid_w: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(grid_h * grid_w * 3);
    for r in 0..grid_h {
        for c in 0..grid_w {
            v.extend_from_slice(&[0.0, r as f32, c as f32]);
        }
    }
    v
}

/// Image position ids `[grid_h·grid_w, 3]` for a packed `grid_h × grid_w` grid (the latent's
/// `H/2 × W/2`).
pub fn image_ids(grid_h: usize, grid_w: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(image_ids_host(grid_h, grid_w), [grid_h * grid_w, 3]),
        device,
    )
}

/// Text position ids: zeros `[len, 3]`.
pub fn text_ids(len: usize, device: &Device) -> Tensor<2> {
    Tensor::zeros([len, 3], device)
}
