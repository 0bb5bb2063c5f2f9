//! FaceCLIP's face ViT, upstream `core/face_clip/face_vit/vit.py` `VisionTransformer`
//! (`core/face_t5/face_vit/vit.py` is identical).
//!
//! A `patch_size`×`patch_size` stride-`patch_size` convolution on the `img_size`² image (9 on
//! 112: 12×12 = 144 tokens, the last 4 pixel rows and columns unused), a learned `pos_embed`,
//! pre-LN blocks (qkv without bias, ReLU6 MLP), a final LayerNorm -> the patch tokens; and a
//! feature head on the flattened tokens: `Linear(N·D -> D, no bias)` -> `BatchNorm1d` ->
//! `Linear(D -> num_classes, no bias)` -> `BatchNorm1d` -> the class token. There is no CLS
//! token. Images are ToTensor values in `[0, 1]` with no mean/std normalisation.

use faceclip_core::burn::module::Param;
use faceclip_core::image::{RgbImage, resize_bilinear};
use faceclip_core::layers::{
    Activation, AttentionMask, BatchNorm, Conv2d, LayerNorm, Linear, attention, merge_heads,
    split_heads,
};
use faceclip_core::{Device, Error, Result, Tensor, TensorData, VarBuilder};
#[cfg(feature = "parity")]
use faceclip_core::{Fixture, ParityOutcome, ParityReport};
use serde::Deserialize;

/// `VisionTransformer.__init__` arguments, read unchanged (training-only ones such as
/// `drop_path_rate`, `mask_ratio`, `using_checkpoint` are ignored). Missing fields take the
/// constructor's defaults; [`FaceVitConfig::released`] is the one FaceCLIP ships.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FaceVitConfig {
    pub img_size: usize,
    pub patch_size: usize,
    pub in_channels: usize,
    pub num_classes: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    pub qkv_bias: bool,
    pub qk_scale: Option<f64>,
    /// Only `ln` is supported (the released models use it).
    pub norm_layer: String,
}

impl Default for FaceVitConfig {
    fn default() -> Self {
        Self {
            img_size: 112,
            patch_size: 16,
            in_channels: 3,
            num_classes: 1000,
            embed_dim: 768,
            depth: 12,
            num_heads: 12,
            mlp_ratio: 4.0,
            qkv_bias: false,
            qk_scale: None,
            norm_layer: "ln".into(),
        }
    }
}

impl FaceVitConfig {
    /// `VisionTransformer.from_pretrained`'s config: 112 px, patch 9, 512 classes, width 768,
    /// 24 blocks, 8 heads.
    pub fn released() -> Self {
        Self {
            img_size: 112,
            patch_size: 9,
            num_classes: 512,
            embed_dim: 768,
            depth: 24,
            num_heads: 8,
            ..Self::default()
        }
    }

    /// Tokens per side (`img_size / patch_size`, 12).
    pub fn grid(&self) -> usize {
        self.img_size / self.patch_size.max(1)
    }

    /// Number of patch tokens (144).
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
}

#[derive(Debug, Clone)]
struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// What the face ViT returns.
#[derive(Debug, Clone)]
pub struct FaceVitOutput {
    /// Final-LayerNorm tokens `[B, N, D]` (row-major over the grid).
    pub patch_token: Tensor<3>,
    /// The feature head's output `[B, num_classes]`.
    pub class_token: Tensor<2>,
}

/// The face ViT; see the module docs.
#[derive(Debug, Clone)]
pub struct FaceVit {
    patch_embed: Conv2d,
    /// `pos_embed` `[1, N, D]`, a learned parameter (FaceCLIP projects it for the fuser).
    pub pos_embed: Param<Tensor<3>>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    feature0: Linear,
    feature1: BatchNorm,
    feature2: Linear,
    feature3: BatchNorm,
    heads: usize,
    scale: f64,
    cfg: FaceVitConfig,
}

impl FaceVit {
    /// Loads from `vb` at the ViT root (`patch_embed.proj.*`, `pos_embed`, `blocks.N.*`,
    /// `norm.*`, `feature.{0,1,2,3}.*`). `mask_token` (training only) is expected and unused.
    pub fn load(vb: &VarBuilder, cfg: &FaceVitConfig) -> Result<Self> {
        let bad = |m: String| Error::invalid(format!("face ViT config: {m}"));
        if cfg.norm_layer != "ln" {
            return Err(bad(format!(
                "norm_layer `{}` is not supported (only `ln`)",
                cfg.norm_layer
            )));
        }
        if cfg.patch_size == 0 || cfg.grid() == 0 {
            return Err(bad(format!(
                "patch_size {} does not fit img_size {}",
                cfg.patch_size, cfg.img_size
            )));
        }
        if cfg.num_heads == 0 || !cfg.embed_dim.is_multiple_of(cfg.num_heads) {
            return Err(bad(format!(
                "embed_dim {} is not a multiple of num_heads {}",
                cfg.embed_dim, cfg.num_heads
            )));
        }
        let (d, n) = (cfg.embed_dim, cfg.num_patches());
        let hidden = (d as f64 * cfg.mlp_ratio) as usize;
        let blocks = (0..cfg.depth)
            .map(|i| {
                let b = vb.pp("blocks").pp(i);
                Block {
                    norm1: LayerNorm::load(&b.pp("norm1"), d, 1e-5),
                    qkv: Linear::load(&b.pp("attn.qkv"), d, 3 * d, cfg.qkv_bias),
                    proj: Linear::load(&b.pp("attn.proj"), d, d, true),
                    norm2: LayerNorm::load(&b.pp("norm2"), d, 1e-5),
                    fc1: Linear::load(&b.pp("mlp.fc1"), d, hidden, true),
                    fc2: Linear::load(&b.pp("mlp.fc2"), hidden, d, true),
                }
            })
            .collect();
        vb.expect_unused("mask_token", &[1, 1, d]);
        let f = vb.pp("feature");
        Ok(Self {
            patch_embed: Conv2d::load(
                &vb.pp("patch_embed.proj"),
                cfg.in_channels,
                d,
                cfg.patch_size,
                cfg.patch_size,
                0,
                true,
            ),
            pos_embed: vb.tensor("pos_embed", [1, n, d]),
            blocks,
            norm: LayerNorm::load(&vb.pp("norm"), d, 1e-5),
            feature0: Linear::load(&f.pp(0), n * d, d, false),
            feature1: BatchNorm::load(&f.pp(1), d, 2e-5),
            feature2: Linear::load(&f.pp(2), d, cfg.num_classes, false),
            feature3: BatchNorm::load(&f.pp(3), cfg.num_classes, 2e-5),
            heads: cfg.num_heads,
            scale: cfg
                .qk_scale
                .unwrap_or(1.0 / ((d / cfg.num_heads) as f64).sqrt()),
            cfg: cfg.clone(),
        })
    }

    /// The config it was built from.
    pub fn config(&self) -> &FaceVitConfig {
        &self.cfg
    }

    /// `image` `[B, in_channels, img_size, img_size]` -> patch tokens and class token.
    pub fn forward(&self, image: Tensor<4>) -> Result<FaceVitOutput> {
        let [b, c, h, w] = image.dims();
        let s = self.cfg.img_size;
        if c != self.cfg.in_channels || h != s || w != s || b == 0 {
            return Err(Error::shape(
                "face ViT image",
                &[b.max(1), self.cfg.in_channels, s, s],
                &[b, c, h, w],
            ));
        }
        let patch_token = self.forward_features(image);
        let [_, n, d] = patch_token.dims();
        let x = self
            .feature0
            .forward(patch_token.clone().reshape([b, n * d]));
        let x = self.feature1.forward(x);
        let x = self.feature2.forward(x);
        let class_token = self.feature3.forward(x);
        Ok(FaceVitOutput {
            patch_token,
            class_token,
        })
    }

    /// Resizes `image` `[B, C, H, W]` (any size) to `img_size`² with PyTorch's
    /// `F.interpolate(bilinear, align_corners=False)`, no antialias (on host values, exactly
    /// [`resize_bilinear`]), then runs [`Self::forward`]. Images already at `img_size`² are
    /// used as they are.
    pub fn forward_resized(&self, image: Tensor<4>) -> Result<FaceVitOutput> {
        self.forward(self.resize(image)?)
    }

    /// The resize [`Self::forward_resized`] applies.
    pub fn resize(&self, image: Tensor<4>) -> Result<Tensor<4>> {
        let [b, c, h, w] = image.dims();
        let s = self.cfg.img_size;
        if b == 0 || c != self.cfg.in_channels || h == 0 || w == 0 {
            return Err(Error::shape(
                "face ViT image",
                &[b.max(1), self.cfg.in_channels, h.max(1), w.max(1)],
                &[b, c, h, w],
            ));
        }
        if h == s && w == s {
            return Ok(image);
        }
        let device = image.device();
        let v = image
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::invalid(format!("face ViT image: {e:?}")))?;
        let out = resize_bilinear(&v, b * c, h, w, s, s);
        Ok(Tensor::from_data(
            TensorData::new(out, [b, c, s, s]),
            &device,
        ))
    }

    /// Stacks RGB images (any sizes) into `[B, 3, img_size, img_size]`, each resized with
    /// [`resize_bilinear`] (ToTensor values, no normalisation).
    pub fn images_to_tensor(&self, images: &[RgbImage], device: &Device) -> Result<Tensor<4>> {
        let s = self.cfg.img_size;
        if images.is_empty() {
            return Err(Error::invalid("face ViT: no images"));
        }
        if self.cfg.in_channels != 3 {
            return Err(Error::invalid(format!(
                "face ViT: RGB input needs in_channels 3, not {}",
                self.cfg.in_channels
            )));
        }
        let mut data = Vec::with_capacity(images.len() * 3 * s * s);
        for img in images {
            if img.width == s && img.height == s {
                data.extend_from_slice(&img.data);
            } else {
                data.extend(img.resize(s, s).data);
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(data, [images.len(), 3, s, s]),
            device,
        ))
    }

    /// Patch embedding + positions + blocks + final LayerNorm: `[B, N, D]`.
    fn forward_features(&self, image: Tensor<4>) -> Tensor<3> {
        let x = self.patch_embed.forward(image);
        let [b, d, gh, gw] = x.dims();
        let mut x = x.reshape([b, d, gh * gw]).swap_dims(1, 2) + self.pos_embed.val();
        for blk in &self.blocks {
            let h = blk.qkv.forward(blk.norm1.forward(x.clone()));
            let q = h.clone().narrow(2, 0, d);
            let k = h.clone().narrow(2, d, d);
            let v = h.narrow(2, 2 * d, d);
            let o = attention(
                split_heads(q, self.heads),
                split_heads(k, self.heads),
                split_heads(v, self.heads),
                None,
                AttentionMask::None,
                Some(self.scale),
            );
            x = x + blk.proj.forward(merge_heads(o));
            let h = blk
                .fc2
                .forward(Activation::Relu6.forward(blk.fc1.forward(blk.norm2.forward(x.clone()))));
            x = x + h;
        }
        self.norm.forward(x)
    }
}

/// Runs the `face_vit` fixture: the 112² image and the resized `image_src` path.
#[cfg(feature = "parity")]
pub(crate) fn parity(fixture: &Fixture, device: &Device) -> ParityOutcome {
    if fixture.kind().ok()? != "face_vit" {
        return None;
    }
    Some((|| {
        let cfg: FaceVitConfig = fixture.config_as("")?;
        let vb = VarBuilder::from_checkpoint(fixture.weights()?, device);
        let model = FaceVit::load(&vb, &cfg)?;
        vb.finish()?;
        let mut r = ParityReport::default();
        let out = model.forward(fixture.tensor::<4>("in.image", device)?)?;
        r.push(fixture.check("patch_token", out.patch_token.into_data())?);
        r.push(fixture.check("class_token", out.class_token.into_data())?);
        let out = model.forward_resized(fixture.tensor::<4>("in.image_src", device)?)?;
        r.push(fixture.check("patch_token_resized", out.patch_token.into_data())?);
        r.push(fixture.check("class_token_resized", out.class_token.into_data())?);
        Ok(r)
    })())
}
