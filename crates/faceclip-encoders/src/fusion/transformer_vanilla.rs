//! FaceT5's image-side fusion layer: `transformer_vanilla.TransformerEncoderLayer` (nhead
//! heads, FFN `dim_feedforward`) as FaceT5's `TransformerEncoder` drives it, quirks included.
//!
//! - `nn.MultiheadAttention` is sequence-first but receives the batch-first `(B, 144, D)` face
//!   tokens, so it attends **across the batch axis**: for each patch index the B samples
//!   attend to each other. With B=1 (how `infer_face_t5_flux.py` calls it) every token
//!   attends only to itself. [`BatchMode`] picks which of the two a batched call reproduces.
//! - With the default `use_transformer_ckpt=True` the call is `checkpoint(layer, output, pos)`,
//!   which binds `pos` to the ignored `src_mask` argument: the face position never reaches
//!   the layer. With `use_transformer_ckpt=False` it is added to the queries and keys.

use faceclip_core::layers::Activation;
use faceclip_core::{Tensor, VarBuilder};

use super::BatchMode;
use super::transformer_encoder_layer::TransformerEncoderLayer;

/// The FaceT5 image-side layer (upstream keys `encoder.layers.{i}.*`, those of
/// [`TransformerEncoderLayer`]).
#[derive(Debug, Clone)]
pub struct VanillaImageLayer {
    layer: TransformerEncoderLayer,
    /// `!use_transformer_ckpt`: whether the face position reaches the queries and keys.
    use_pos: bool,
}

impl VanillaImageLayer {
    pub fn load(
        vb: &VarBuilder,
        d_model: usize,
        nhead: usize,
        dim_feedforward: usize,
        activation: Activation,
        use_transformer_ckpt: bool,
    ) -> Self {
        Self {
            layer: TransformerEncoderLayer::load(vb, d_model, nhead, dim_feedforward, activation),
            use_pos: !use_transformer_ckpt,
        }
    }

    /// True when [`Self::forward`] reads `pos`.
    pub fn uses_pos(&self) -> bool {
        self.use_pos
    }

    /// `src` `[B, N, D]` face tokens, `pos` `[B or 1, N, D]` (read only when
    /// [`Self::uses_pos`]) -> `[B, N, D]`.
    ///
    /// [`BatchMode::PerSample`]: each sample as its own B=1 call (each token attends to
    /// itself only). [`BatchMode::Batched`]: upstream's batched call literally (attention over
    /// the B samples at each patch index).
    pub fn forward(&self, src: Tensor<3>, pos: Option<Tensor<3>>, mode: BatchMode) -> Tensor<3> {
        let [b, n, d] = src.dims();
        let pos = if self.use_pos {
            pos.map(|p| p.expand([b, n, d]))
        } else {
            None
        };
        match mode {
            BatchMode::Batched => self
                .layer
                .forward(src.swap_dims(0, 1), pos.map(|p| p.swap_dims(0, 1)))
                .swap_dims(0, 1),
            BatchMode::PerSample => self
                .layer
                .forward(
                    src.reshape([b * n, 1, d]),
                    pos.map(|p| p.reshape([b * n, 1, d])),
                )
                .reshape([b, n, d]),
        }
    }
}
