//! GroundingDINO's `MultiScaleDeformableAttention` (`ms_deform_attn.py`), single level, as
//! the fusion encoder uses it over the 12×12 face grid, computed like the pure-PyTorch path
//! `multi_scale_deformable_attn_pytorch` (the CUDA kernel computes the same).

use faceclip_core::burn::tensor::activation::softmax;
use faceclip_core::burn::tensor::ops::GridSampleOptions;
use faceclip_core::layers::Linear;
use faceclip_core::{Device, Tensor, TensorData, VarBuilder};

/// `MultiScaleDeformableAttention(embed_dim, num_heads, num_levels=1, num_points,
/// batch_first=True)`: keys `sampling_offsets` (`[heads·levels·points·2, D]`),
/// `attention_weights` (`[heads·levels·points, D]`), `value_proj`, `output_proj` (`[D, D]`).
#[derive(Debug, Clone)]
pub struct MultiScaleDeformableAttention {
    sampling_offsets: Linear,
    attention_weights: Linear,
    value_proj: Linear,
    output_proj: Linear,
    num_heads: usize,
    num_points: usize,
}

impl MultiScaleDeformableAttention {
    /// Loads under `vb` (upstream `encoder.layers.{i}.self_attn`). One feature level.
    pub fn load(vb: &VarBuilder, embed_dim: usize, num_heads: usize, num_points: usize) -> Self {
        let levels = 1;
        Self {
            sampling_offsets: Linear::load(
                &vb.pp("sampling_offsets"),
                embed_dim,
                num_heads * levels * num_points * 2,
                true,
            ),
            attention_weights: Linear::load(
                &vb.pp("attention_weights"),
                embed_dim,
                num_heads * levels * num_points,
                true,
            ),
            value_proj: Linear::load(&vb.pp("value_proj"), embed_dim, embed_dim, true),
            output_proj: Linear::load(&vb.pp("output_proj"), embed_dim, embed_dim, true),
            num_heads,
            num_points,
        }
    }

    /// `query` `[B, Q, D]` (face + position), `value` `[B, H·W, D]` (face, no position),
    /// `reference_points` `[1 or B, Q, 2]` (normalised `(x, y)`), `spatial` = `(H, W)` of the
    /// value grid -> `[B, Q, D]` (after `output_proj`).
    ///
    /// Sampling locations are `ref + offset / (W, H)`; each head samples its value map
    /// bilinearly at `2·loc − 1` with zero padding and `align_corners=False` (points outside
    /// the grid read zeros), weighted by the softmax over its points. The all-false
    /// `key_padding_mask` upstream passes fills nothing and is not taken.
    pub fn forward(
        &self,
        query: Tensor<3>,
        value: Tensor<3>,
        reference_points: Tensor<3>,
        spatial: (usize, usize),
    ) -> Tensor<3> {
        let (h, w) = spatial;
        let [b, q, d] = query.dims();
        let heads = self.num_heads;
        let points = self.num_points;
        let head_dim = d / heads;

        // [B, HW, D] -> [B·heads, head_dim, H, W]
        let value = self.value_proj.forward(value);
        let value = value
            .reshape([b, h * w, heads, head_dim])
            .permute([0, 2, 3, 1])
            .reshape([b * heads, head_dim, h, w]);

        // [B, Q, heads, points, 2] and [B, Q, heads, points]
        let offsets = self
            .sampling_offsets
            .forward(query.clone())
            .reshape([b, q, heads, points, 2]);
        let weights = softmax(
            self.attention_weights
                .forward(query)
                .reshape([b, q, heads, points]),
            3,
        );

        // offset_normalizer = (W, H), as upstream's stack([shape[1], shape[0]]).
        let normalizer = Tensor::<1>::from_data(
            TensorData::new(vec![w as f32, h as f32], [2]),
            &offsets.device(),
        )
        .reshape([1, 1, 1, 1, 2]);
        let rp = reference_points.dims();
        let reference = reference_points.reshape([rp[0], q, 1, 1, 2]);
        let locations = reference + offsets / normalizer;
        let grid = locations * 2.0 - 1.0;
        // [B, Q, heads, P, 2] -> [B·heads, Q, P, 2]
        let grid = grid
            .permute([0, 2, 1, 3, 4])
            .reshape([b * heads, q, points, 2]);

        // [B·heads, head_dim, Q, P]
        let sampled = value.grid_sample_2d(grid, GridSampleOptions::default());
        // [B, Q, heads, P] -> [B·heads, 1, Q, P]
        let weights = weights
            .permute([0, 2, 1, 3])
            .reshape([b * heads, 1, q, points]);
        let out = (sampled * weights)
            .sum_dim(3)
            .reshape([b, heads * head_dim, q]);
        self.output_proj.forward(out.swap_dims(1, 2))
    }
}

/// `TransformerEncoder.get_reference_points` for one level with `valid_ratios` 1: the pixel
/// centres `((x + 0.5)/W, (y + 0.5)/H)`, row-major, `[1, H·W, 2]` (upstream's
/// `[B, H·W, 1, 2]` without the level axis; identical for every sample).
pub fn reference_points(h: usize, w: usize, device: &Device) -> Tensor<3> {
    let mut v = Vec::with_capacity(h * w * 2);
    for y in 0..h {
        for x in 0..w {
            // linspace(0.5, H-0.5, H) is exact here; then / (valid_ratio·H), · valid_ratio.
            v.push((x as f32 + 0.5) / w as f32);
            v.push((y as f32 + 0.5) / h as f32);
        }
    }
    Tensor::from_data(TensorData::new(v, [1, h * w, 2]), device)
}
