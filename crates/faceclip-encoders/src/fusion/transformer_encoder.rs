//! GroundingDINO's `TransformerEncoder` (`transformer.py`; FaceT5's copy in
//! `core/face_t5/transformer/transformer.py`) as the fusion encoders use it: per layer a
//! bi-attention between face and text, the text enhancer, then the image-side layer.

use faceclip_core::layers::Activation;
use faceclip_core::{Error, Result, Tensor, VarBuilder};

use super::bi_attention_block::BiAttentionBlock;
use super::deformable_transformer_encoder_layer::DeformableTransformerEncoderLayer;
use super::ms_deform_attn::reference_points;
use super::transformer_encoder_layer::TransformerEncoderLayer;
use super::transformer_vanilla::VanillaImageLayer;
use super::{BatchMode, Trace, declare_unused};

/// The face grid upstream hard-codes (`spatial_shapes = [[12, 12]]`): the face ViT's 12×12
/// patches of a 112×112 image.
pub const FACE_GRID: (usize, usize) = (12, 12);

/// Which image-side layer the encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLayerKind {
    /// FaceCLIP: `DeformableTransformerEncoderLayer` (`n_points` sampling points per head).
    Deformable { n_points: usize },
    /// FaceT5: the vanilla `TransformerEncoderLayer` with its quirks
    /// ([`super::transformer_vanilla`]).
    Vanilla { use_transformer_ckpt: bool },
}

/// The sizes of one [`TransformerEncoder`].
#[derive(Debug, Clone, Copy)]
pub struct EncoderSizes {
    pub d_model: usize,
    pub nhead: usize,
    pub dim_feedforward: usize,
    pub num_layers: usize,
    pub activation: Activation,
    pub text_enhancer: bool,
    pub fusion: bool,
    pub image: ImageLayerKind,
}

#[derive(Debug, Clone)]
enum ImageLayer {
    Deformable(Box<DeformableTransformerEncoderLayer>),
    Vanilla(Box<VanillaImageLayer>),
}

/// `TransformerEncoder`: keys `layers.{i}`, `text_layers.{i}`, `fusion_layers.{i}`.
///
/// The output is the text stream after the last layer. The image stream only feeds the next
/// layer's bi-attention, so the last image-side layer (computed and discarded upstream) is
/// not computed here: its weights are expected and never loaded.
#[derive(Debug, Clone)]
pub struct TransformerEncoder {
    /// The image-side layers whose output is read (all but the last; none without fusion).
    layers: Vec<ImageLayer>,
    text_layers: Vec<TransformerEncoderLayer>,
    fusion_layers: Vec<BiAttentionBlock>,
    image: ImageLayerKind,
}

impl TransformerEncoder {
    /// Loads under `vb` (upstream `fuser.encoder`).
    pub fn load(vb: &VarBuilder, s: &EncoderSizes) -> Self {
        let load_image = |vb: &VarBuilder| match s.image {
            ImageLayerKind::Deformable { n_points } => {
                ImageLayer::Deformable(Box::new(DeformableTransformerEncoderLayer::load(
                    vb,
                    s.d_model,
                    s.dim_feedforward,
                    s.activation,
                    s.nhead,
                    n_points,
                )))
            }
            ImageLayerKind::Vanilla {
                use_transformer_ckpt,
            } => ImageLayer::Vanilla(Box::new(VanillaImageLayer::load(
                vb,
                s.d_model,
                s.nhead,
                s.dim_feedforward,
                s.activation,
                use_transformer_ckpt,
            ))),
        };
        let mut layers = Vec::new();
        for i in 0..s.num_layers {
            let lvb = vb.pp("layers").pp(i);
            // Image layer i feeds only fusion layer i+1.
            if s.fusion && i + 1 < s.num_layers {
                layers.push(load_image(&lvb));
            } else {
                declare_unused(&lvb, |dry| {
                    load_image(dry);
                });
            }
        }
        let text_layers = if s.text_enhancer {
            (0..s.num_layers)
                .map(|i| {
                    // Upstream builds the text enhancer with the default activation (relu).
                    TransformerEncoderLayer::load(
                        &vb.pp("text_layers").pp(i),
                        s.d_model,
                        s.nhead / 2,
                        s.dim_feedforward / 2,
                        Activation::Relu,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let fusion_layers = if s.fusion {
            (0..s.num_layers)
                .map(|i| {
                    BiAttentionBlock::load(
                        &vb.pp("fusion_layers").pp(i),
                        s.d_model,
                        s.d_model,
                        s.dim_feedforward / 2,
                        s.nhead / 2,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        Self {
            layers,
            text_layers,
            fusion_layers,
            image: s.image,
        }
    }

    /// `face` `[B, 144, D]`, `face_pos` `[B or 1, 144, D]` (`None` allowed when the image
    /// layers never read it), `text` `[B, L, D]`, `text_pos` `[B or 1, L, D]` -> the text
    /// stream `[B, L, D]` after the last layer.
    pub(crate) fn forward(
        &self,
        face: Tensor<3>,
        face_pos: Option<Tensor<3>>,
        text: Tensor<3>,
        text_pos: Tensor<3>,
        mode: BatchMode,
        trace: &mut Trace,
    ) -> Result<Tensor<3>> {
        let device = face.device();
        let (gh, gw) = FACE_GRID;
        let refs = match self.image {
            ImageLayerKind::Deformable { .. } => {
                let r = reference_points(gh, gw, &device);
                trace.record_tensor("reference_points", &r.clone().reshape([1, gh * gw, 1, 2]));
                Some(r)
            }
            ImageLayerKind::Vanilla { .. } => None,
        };
        let n = self.fusion_layers.len().max(self.text_layers.len());
        let (mut v, mut l) = (face, text);
        for i in 0..n {
            if let Some(f) = self.fusion_layers.get(i) {
                (v, l) = f.forward(v, l, mode);
                trace.record_tensor(format!("layer{i}.fusion_v"), &v);
                trace.record_tensor(format!("layer{i}.fusion_l"), &l);
            }
            if let Some(t) = self.text_layers.get(i) {
                l = t.forward(l, Some(text_pos.clone()));
                trace.record_tensor(format!("layer{i}.text"), &l);
            }
            if let Some(layer) = self.layers.get(i) {
                v = match layer {
                    ImageLayer::Deformable(d) => {
                        let pos = face_pos.clone().ok_or_else(|| {
                            Error::invalid(
                                "the deformable fusion encoder needs the face position embedding",
                            )
                        })?;
                        let refs = refs
                            .clone()
                            .expect("deformable layers come with reference points");
                        if trace.is_enabled() && i == 0 {
                            let a =
                                d.attention_only(v.clone(), pos.clone(), refs.clone(), FACE_GRID);
                            trace.record_tensor("layer0.deform_attn", &a);
                        }
                        let out = d.forward(v, pos, refs, FACE_GRID);
                        trace.record_tensor(format!("layer{i}.deform"), &out);
                        out
                    }
                    ImageLayer::Vanilla(van) => {
                        if van.uses_pos() && face_pos.is_none() {
                            return Err(Error::invalid(
                                "this fusion encoder (use_transformer_ckpt=false) needs the face position embedding",
                            ));
                        }
                        let out = van.forward(v, face_pos.clone(), mode);
                        trace.record_tensor(format!("layer{i}.image"), &out);
                        out
                    }
                };
            }
        }
        Ok(l)
    }

    /// True when the image-side layers read the face position embedding.
    pub fn uses_face_pos(&self) -> bool {
        match self.image {
            ImageLayerKind::Deformable { .. } => !self.layers.is_empty(),
            ImageLayerKind::Vanilla {
                use_transformer_ckpt,
            } => !use_transformer_ckpt && !self.layers.is_empty(),
        }
    }
}
