//! diffusers `autoencoder_kl.py`: `AutoencoderKL` (SDXL and FLUX VAEs), with diffusers'
//! tiled decode.

use std::path::Path;

use faceclip_core::layers::Conv2d;
use faceclip_core::{
    Checkpoint, Device, Error, Pretrained, Result, Tensor, TensorData, Trace, VarBuilder,
};

use crate::config::AutoencoderKLConfig;
use crate::folder;
use crate::vae::{Decoder, DiagonalGaussianDistribution, Encoder};

/// Tiling of [`AutoencoderKL::tiled_decode`], as diffusers' `tile_sample_min_size` and
/// `tile_overlap_factor`. Peak memory is that of decoding one tile: with the SDXL/FLUX VAE
/// (f = 8) a 512-pixel tile (64-latent tiles, stride 48, 128-pixel blend) decodes an
/// 864x1152 image in 3x3 tiles; diffusers' default 1024 gives 2x2 large tiles there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TiledDecode {
    /// Tile edge in image pixels (diffusers: `config.sample_size`, 1024 for SDXL/FLUX).
    pub tile_sample_size: usize,
    /// Fraction of a tile that overlaps its neighbour (diffusers: 0.25).
    pub overlap_factor: f64,
}

impl TiledDecode {
    /// diffusers' defaults for `config`: `sample_size` tiles, 25% overlap.
    pub fn from_config(config: &AutoencoderKLConfig) -> Self {
        Self {
            tile_sample_size: config.tile_sample_size(),
            overlap_factor: 0.25,
        }
    }
}

/// diffusers `AutoencoderKL`: `encoder` (+ `quant_conv`) -> diagonal Gaussian over latents;
/// (`post_quant_conv` +) `decoder` -> image. `encode`/`decode` do not apply the scaling or
/// shift factors; [`AutoencoderKL::scale_latents`] / [`AutoencoderKL::unscale_latents`] do,
/// as the pipelines do.
#[derive(Debug, Clone)]
pub struct AutoencoderKL {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub quant_conv: Option<Conv2d>,
    pub post_quant_conv: Option<Conv2d>,
    config: AutoencoderKLConfig,
}

/// Loading: diffusers key names, under a `module.`, `vae.` or `state_dict.` wrapper or not,
/// with old diffusers files' mid-block attention names; no LoRA files.
impl Pretrained for AutoencoderKL {
    type Config = AutoencoderKLConfig;
    const COMPONENT: &'static str = "vae";

    fn build(config: &AutoencoderKLConfig, vb: &VarBuilder) -> Result<Self> {
        Self::new(config, vb)
    }

    fn read_config(path: &Path) -> Result<AutoencoderKLConfig> {
        AutoencoderKLConfig::from_file(path)
    }

    fn adapt(checkpoint: Checkpoint, _config: &AutoencoderKLConfig) -> Result<Checkpoint> {
        let ck = folder::strip_wrapper_prefixes(&checkpoint, &["module.", "vae.", "state_dict."]);
        Ok(rename_deprecated_attention(&ck))
    }
}

impl AutoencoderKL {
    /// Builds the model described by `config`, taking its weights from `vb` (diffusers key
    /// names at the root); weight problems are recorded in `vb` (call `vb.finish()` after).
    pub fn new(config: &AutoencoderKLConfig, vb: &VarBuilder) -> Result<Self> {
        let act = config.act()?;
        let lc = config.latent_channels;
        let encoder = Encoder::load(
            &vb.pp("encoder"),
            config.in_channels,
            lc,
            &config.block_out_channels,
            config.layers_per_block,
            config.norm_num_groups,
            act,
            config.mid_block_add_attention,
        );
        let decoder = Decoder::load(
            &vb.pp("decoder"),
            lc,
            config.out_channels,
            &config.block_out_channels,
            config.layers_per_block,
            config.norm_num_groups,
            act,
            config.mid_block_add_attention,
        );
        Ok(Self {
            encoder,
            decoder,
            quant_conv: config
                .use_quant_conv
                .then(|| Conv2d::load(&vb.pp("quant_conv"), 2 * lc, 2 * lc, 1, 1, 0, true)),
            post_quant_conv: config
                .use_post_quant_conv
                .then(|| Conv2d::load(&vb.pp("post_quant_conv"), lc, lc, 1, 1, 0, true)),
            config: config.clone(),
        })
    }

    /// Builds `config` from `checkpoint` (diffusers key names; a leading `module.` or `vae.`
    /// is stripped, and the mid-block attention names of old diffusers files
    /// `query`/`key`/`value`/`proj_attn` are read as `to_q`/`to_k`/`to_v`/`to_out.0`, as
    /// diffusers renames them) and checks the weights cover the model exactly
    /// ([`Pretrained::load`]).
    pub fn load(
        checkpoint: Checkpoint,
        config: &AutoencoderKLConfig,
        device: &Device,
    ) -> Result<Self> {
        <Self as Pretrained>::load(checkpoint, config, device)
    }

    /// Loads a diffusers folder: `dir/config.json` or `dir/vae/config.json`, with
    /// `diffusion_pytorch_model[.fp16].safetensors` (or its sharded index, or `.bin`)
    /// ([`Pretrained::from_folder`]).
    pub fn from_folder(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        <Self as Pretrained>::from_folder(dir, device)
    }

    /// The config this model was built from.
    pub fn config(&self) -> &AutoencoderKLConfig {
        &self.config
    }

    /// `config.scaling_factor`.
    pub fn scaling_factor(&self) -> f64 {
        self.config.scaling_factor
    }

    /// `config.shift_factor` (0 when absent).
    pub fn shift_factor(&self) -> f64 {
        self.config.shift_factor.unwrap_or(0.0)
    }

    /// Image pixels per latent pixel along each axis.
    pub fn downscale_factor(&self) -> usize {
        self.config.downscale_factor()
    }

    /// Encoded latents -> denoiser latents: `(z - shift) · scaling` (SDXL `z · 0.13025`, FLUX
    /// `(z - 0.1159) · 0.3611`); with `latents_mean`/`latents_std`:
    /// `(z - mean) · scaling / std`.
    pub fn scale_latents(&self, z: Tensor<4>) -> Tensor<4> {
        let s = self.config.scaling_factor;
        match self.mean_std(&z) {
            Some((mean, std)) => (z - mean) * s / std,
            None => match self.config.shift_factor {
                Some(shift) => (z - shift) * s,
                None => z * s,
            },
        }
    }

    /// Denoiser latents -> decoder input, as the pipelines do before `decode`: `z / scaling
    /// + shift` (SDXL `z / 0.13025`, FLUX `z / 0.3611 + 0.1159`); with
    /// `latents_mean`/`latents_std`: `z · std / scaling + mean`.
    pub fn unscale_latents(&self, z: Tensor<4>) -> Tensor<4> {
        let s = self.config.scaling_factor;
        match self.mean_std(&z) {
            Some((mean, std)) => z * std / s + mean,
            None => match self.config.shift_factor {
                Some(shift) => z / s + shift,
                None => z / s,
            },
        }
    }

    fn mean_std(&self, z: &Tensor<4>) -> Option<(Tensor<4>, Tensor<4>)> {
        let (m, s) = (
            self.config.latents_mean.as_ref()?,
            self.config.latents_std.as_ref()?,
        );
        let dev = z.device();
        let t = |v: &Vec<f64>| {
            let v: Vec<f32> = v.iter().map(|x| *x as f32).collect();
            let n = v.len();
            Tensor::<1>::from_data(TensorData::new(v, [n]), &dev).reshape([1, n, 1, 1])
        };
        Some((t(m), t(s)))
    }

    fn check_input(&self, x: &Tensor<4>, channels: usize, what: &str) -> Result<()> {
        let [b, c, h, w] = x.dims();
        if c != channels {
            return Err(Error::shape(
                format!("VAE {what} [B, C, H, W]"),
                &[b, channels, h, w],
                &[b, c, h, w],
            ));
        }
        if b == 0 || h == 0 || w == 0 {
            return Err(Error::invalid(format!(
                "VAE {what} has an empty dimension: {:?}",
                [b, c, h, w]
            )));
        }
        Ok(())
    }

    /// Encodes images `[B, in_channels, H, W]` (in [-1, 1]) to the latent distribution
    /// (`mean`, `logvar` `[B, latent_channels, H/f, W/f]`), unscaled.
    pub fn encode(&self, x: Tensor<4>) -> Result<DiagonalGaussianDistribution> {
        self.encode_traced(x, None)
    }

    /// [`Self::encode`] recording `encoder_mid_block`, `encoder_out`, `quant_conv_out`.
    pub fn encode_traced(
        &self,
        x: Tensor<4>,
        mut trace: Option<&mut Trace>,
    ) -> Result<DiagonalGaussianDistribution> {
        self.check_input(&x, self.config.in_channels, "image")?;
        let h = self.encoder.forward(x, trace.as_deref_mut());
        let moments = match &self.quant_conv {
            Some(q) => {
                let m = q.forward(h);
                if let Some(t) = trace {
                    t.record_tensor("quant_conv_out", &m);
                }
                m
            }
            None => h,
        };
        Ok(DiagonalGaussianDistribution::from_moments(moments))
    }

    /// Decodes unscaled latents `[B, latent_channels, h, w]` to images
    /// `[B, out_channels, h·f, w·f]` (about [-1, 1]) in one pass.
    pub fn decode(&self, z: Tensor<4>) -> Result<Tensor<4>> {
        self.decode_traced(z, None)
    }

    /// [`Self::decode`] recording `post_quant_conv_out`, `decoder_conv_in`,
    /// `decoder_mid_block`, `decoder_up_block_{i}`.
    pub fn decode_traced(&self, z: Tensor<4>, mut trace: Option<&mut Trace>) -> Result<Tensor<4>> {
        self.check_input(&z, self.config.latent_channels, "latents")?;
        let z = match &self.post_quant_conv {
            Some(p) => {
                let z = p.forward(z);
                if let Some(t) = trace.as_deref_mut() {
                    t.record_tensor("post_quant_conv_out", &z);
                }
                z
            }
            None => z,
        };
        Ok(self.decoder.forward(z, trace))
    }

    /// diffusers' `_decode` with tiling enabled: [`Self::tiled_decode`] when the latents
    /// are larger than one tile, [`Self::decode`] otherwise.
    pub fn decode_with_tiling(&self, z: Tensor<4>, tiling: &TiledDecode) -> Result<Tensor<4>> {
        let [_, _, h, w] = z.dims();
        let g = self.tile_geometry(tiling)?;
        if h > g.latent_tile || w > g.latent_tile {
            self.tiled_decode(z, tiling)
        } else {
            self.decode(z)
        }
    }

    /// diffusers' tile numbers, checked to be consistent: a tile's decoded rows past the
    /// blend band must land exactly on the next tile's start (`tile - blend = stride·f`),
    /// which holds for diffusers' defaults (1024 px, 0.25: 128-latent tiles, stride 96,
    /// blend 256 px) and whenever `tile_sample_size·(1 - overlap)` is a multiple of `f`.
    fn tile_geometry(&self, tiling: &TiledDecode) -> Result<TileGeometry> {
        let f = self.downscale_factor();
        let sample = tiling.tile_sample_size;
        let o = tiling.overlap_factor;
        let latent_tile = (sample as f64 / f as f64) as usize;
        let stride = (latent_tile as f64 * (1.0 - o)) as usize;
        let blend = (sample as f64 * o) as usize;
        if !(0.0..1.0).contains(&o)
            || latent_tile == 0
            || stride == 0
            || !sample.is_multiple_of(f)
            || sample - blend != stride * f
        {
            return Err(Error::invalid(format!(
                "VAE tiling: a tile of {sample} pixels with overlap {o} does not tile consistently (need a multiple of {f} pixels, overlap in [0, 1), and tile·(1 - overlap) a multiple of {f}; diffusers' default is 1024 and 0.25)"
            )));
        }
        Ok(TileGeometry {
            latent_tile,
            stride,
            blend,
            row_limit: sample - blend,
        })
    }

    /// diffusers' `tiled_decode`: decodes overlapping latent tiles of
    /// `tile_sample_size / f` (stride `(1 - overlap)` of that) one at a time, blends each
    /// tile linearly into its upper and left neighbours over `tile_sample_size · overlap`
    /// pixels and keeps the top-left `tile_sample_size - blend` pixels of each. Memory is
    /// bounded by one tile's decode plus two rows of decoded tiles. The result differs from
    /// [`Self::decode`] near seams (every tile has its own norm statistics and attention):
    /// each pixel is a convex combination of the decodes of the tiles covering it.
    pub fn tiled_decode(&self, z: Tensor<4>, tiling: &TiledDecode) -> Result<Tensor<4>> {
        self.check_input(&z, self.config.latent_channels, "latents")?;
        let TileGeometry {
            latent_tile: tl,
            stride: overlap,
            blend: blend_extent,
            row_limit,
        } = self.tile_geometry(tiling)?;
        let [b, c, h, w] = z.dims();

        let mut prev_row: Vec<Tensor<4>> = Vec::new();
        let mut rows_out: Vec<Tensor<4>> = Vec::new();
        for i in (0..h).step_by(overlap) {
            let mut row: Vec<Tensor<4>> = Vec::new();
            let mut row_out: Vec<Tensor<4>> = Vec::new();
            for (j_idx, j) in (0..w).step_by(overlap).enumerate() {
                let tile = z
                    .clone()
                    .slice([0..b, 0..c, i..(i + tl).min(h), j..(j + tl).min(w)]);
                let mut tile = self.decode(tile)?;
                if let Some(above) = prev_row.get(j_idx) {
                    tile = blend(above, tile, blend_extent, 2);
                }
                if let Some(left) = row.last() {
                    tile = blend(left, tile, blend_extent, 3);
                }
                let [tb, tc, th, tw] = tile.dims();
                row_out.push(tile.clone().slice([
                    0..tb,
                    0..tc,
                    0..th.min(row_limit),
                    0..tw.min(row_limit),
                ]));
                row.push(tile);
            }
            rows_out.push(Tensor::cat(row_out, 3));
            prev_row = row;
        }
        let out = Tensor::cat(rows_out, 2);
        let f = self.downscale_factor();
        debug_assert_eq!(
            &out.dims()[2..],
            &[h * f, w * f],
            "consistent tiling covers the image exactly"
        );
        Ok(out)
    }
}

/// Tile numbers of one tiled decode (see `AutoencoderKL::tile_geometry`).
struct TileGeometry {
    latent_tile: usize,
    stride: usize,
    blend: usize,
    row_limit: usize,
}

/// diffusers' `blend_v` (`dim` 2) / `blend_h` (`dim` 3): the first `e` rows (columns) of `b`
/// become `a[-e + y]·(1 - y/e) + b[y]·(y/e)`, `e = min(extent, a.size, b.size)`.
fn blend(a: &Tensor<4>, b: Tensor<4>, extent: usize, dim: usize) -> Tensor<4> {
    let (na, nb) = (a.dims()[dim], b.dims()[dim]);
    let e = extent.min(na).min(nb);
    if e == 0 {
        return b;
    }
    let dev = b.device();
    let mut shape = [1usize; 4];
    shape[dim] = e;
    // The weights are computed in f64 and rounded once, as Python does before the multiply.
    let ramp = |f: &dyn Fn(f64) -> f64| {
        let v: Vec<f32> = (0..e).map(|y| f(y as f64 / e as f64) as f32).collect();
        Tensor::<1>::from_data(TensorData::new(v, [e]), &dev).reshape(shape)
    };
    let wa = ramp(&|t| 1.0 - t);
    let wb = ramp(&|t| t);
    let a_edge = a.clone().narrow(dim, na - e, e);
    let b_edge = b.clone().narrow(dim, 0, e);
    let blended = a_edge * wa + b_edge * wb;
    if e == nb {
        blended
    } else {
        Tensor::cat(vec![blended, b.narrow(dim, e, nb - e)], dim)
    }
}

/// Reads old diffusers names of the VAE mid-block attention (`query`, `key`, `value`,
/// `proj_attn`) as the current ones.
fn rename_deprecated_attention(ck: &Checkpoint) -> Checkpoint {
    const OLD: [(&str, &str); 4] = [
        ("query.", "to_q."),
        ("key.", "to_k."),
        ("value.", "to_v."),
        ("proj_attn.", "to_out.0."),
    ];
    let needs = ck.list().iter().any(|t| {
        t.name.contains("mid_block.attentions.")
            && OLD.iter().any(|(o, _)| t.name.contains(&format!(".{o}")))
    });
    if !needs {
        return ck.clone();
    }
    ck.rename(|k| {
        if let Some(pos) = k.find("mid_block.attentions.") {
            let head_end = pos + "mid_block.attentions.".len();
            if let Some(dot) = k[head_end..].find('.') {
                let (head, rest) = k.split_at(head_end + dot + 1);
                for (old, new) in OLD {
                    if let Some(tail) = rest.strip_prefix(old) {
                        return Some(format!("{head}{new}{tail}"));
                    }
                }
            }
        }
        Some(k.to_string())
    })
}
