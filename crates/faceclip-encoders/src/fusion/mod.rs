//! The face-text fusion encoders (GroundingDINO's encoder, trimmed) and the FaceCLIP /
//! FaceT5 encoders built on them.
//!
//! One file per upstream class:
//! - [`bi_attention_block`] — `BiAttentionBlock` / `BiMultiHeadAttention` (`fuse_modules.py`);
//! - [`ms_deform_attn`] — `MultiScaleDeformableAttention` (`ms_deform_attn.py`);
//! - [`deformable_transformer_encoder_layer`] — `DeformableTransformerEncoderLayer`;
//! - [`transformer_encoder_layer`] — `transformer_vanilla.TransformerEncoderLayer` (the text
//!   enhancer) with `nn.MultiheadAttention`;
//! - [`transformer_vanilla`] — the same layer as FaceT5's image-side layer, quirks included;
//! - [`transformer_encoder`] — `TransformerEncoder`, the per-layer fusion / text / image loop;
//! - [`text_face_embedding_fuser`] — `TextFaceEmbeddingFuser` (both variants);
//! - [`text_image_branch`] — FaceCLIP's `TextImageBranch` (L-14 / bigG-14);
//! - [`face_clip`] — `FaceCLIP_L_G_Wrapper`, the FaceCLIP-SDXL encoder
//!   ([`FaceClipSdxlEncoder`] -> [`SdxlConditioning`]);
//! - [`face_t5`] — `FaceT5Encoder` and `FaceT5FluxWrapper`, the FaceT5-FLUX encoder
//!   ([`FaceT5FluxEncoder`] -> [`FluxConditioning`]).

pub mod bi_attention_block;
pub mod deformable_transformer_encoder_layer;
pub mod face_clip;
pub mod face_t5;
pub mod ms_deform_attn;
pub mod text_face_embedding_fuser;
pub mod text_image_branch;
pub mod transformer_encoder;
pub mod transformer_encoder_layer;
pub mod transformer_vanilla;

#[cfg(feature = "parity")]
mod parity;

pub use face_clip::{
    FaceClipSdxlConfig, FaceClipSdxlEncoder, SDXL_NEGATIVE_PROMPT, SdxlConditioning,
};
pub use face_t5::{
    FLUX_NEGATIVE_PROMPT, FaceT5Encoder, FaceT5EncoderConfig, FaceT5FluxConfig, FaceT5FluxEncoder,
    FluxConditioning,
};
pub use text_face_embedding_fuser::{FuserConfig, FuserVariant, TextFaceEmbeddingFuser};
pub use text_image_branch::{TextImageBranch, TextImageBranchConfig};

pub(crate) use faceclip_core::Trace;
use faceclip_core::VarBuilder;

#[cfg(feature = "parity")]
pub use parity::check_manifest;
#[cfg(feature = "parity")]
pub(crate) use parity::parity;

/// How a batched call treats the few places where upstream's samples interact.
///
/// Upstream's inference scripts call the encoders once per prompt (positive, negative), i.e.
/// with batches of one. A batched upstream call differs in two places:
/// - FaceT5's image-side self-attention runs across the batch axis (a sequence-first
///   `nn.MultiheadAttention` fed batch-first tokens), which changes the outputs by 10–40 %;
/// - the bi-attention subtracts one maximum over the whole batch before clamping at ±50000
///   (a difference only if logits spread over more than 50000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchMode {
    /// Every sample as its own batch-of-one call: what the inference scripts compute, and
    /// what [`crate::fusion`]'s encoders return by default.
    #[default]
    PerSample,
    /// Upstream's batched call, literally (samples interact as described above).
    Batched,
}

/// Declares every tensor the loader `build` expects under `vb` as present-but-unused: the
/// walk runs on a dry builder (nothing is read or allocated) and its keys are passed to
/// [`VarBuilder::expect_unused`].
pub(crate) fn declare_unused(vb: &VarBuilder, build: impl FnOnce(&VarBuilder)) {
    let dry = VarBuilder::dry(vb.device());
    build(&dry);
    for (name, shape) in dry.expected() {
        vb.expect_unused(&name, &shape);
    }
}
