use burn::module::Param;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::var_builder::VarBuilder;

/// `torch.nn.Embedding`: `weight` `[vocab, dim]`; ids `[B, L]` -> `[B, L, dim]`.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub weight: Param<Tensor<2>>,
}

impl Embedding {
    pub fn load(vb: &VarBuilder, vocab: usize, dim: usize) -> Self {
        Self {
            weight: vb.tensor("weight", [vocab, dim]),
        }
    }

    /// Looks up `ids` `[B, L]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, l] = ids.dims();
        let dim = self.weight.shape().as_slice()[1];
        self.weight
            .val()
            .select(0, ids.reshape([b * l]))
            .reshape([b, l, dim])
    }
}

/// diffusers' `get_timestep_embedding`: sinusoids of `timesteps` `[N]` -> `[N, dim]`.
/// Frequencies `exp(-ln(max_period)·i / (dim/2 - downscale_freq_shift))` are computed in
/// f32 as PyTorch does; `flip_sin_to_cos` puts cos first.
pub fn timestep_embedding(
    timesteps: Tensor<1>,
    dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f32,
    scale: f32,
    max_period: f32,
) -> Tensor<2> {
    let device: Device = timesteps.device();
    let half = dim / 2;
    let log_max = -(max_period.ln());
    let freqs: Vec<f32> = (0..half)
        .map(|i| ((i as f32) * log_max / (half as f32 - downscale_freq_shift)).exp())
        .collect();
    let freqs = Tensor::<1>::from_data(TensorData::new(freqs, [half]), &device);
    let n = timesteps.dims()[0];
    let args = timesteps.reshape([n, 1]) * freqs.reshape([1, half]);
    let args = if scale != 1.0 { args * scale } else { args };
    let (sin, cos) = (args.clone().sin(), args.cos());
    let emb = if flip_sin_to_cos {
        Tensor::cat(vec![cos, sin], 1)
    } else {
        Tensor::cat(vec![sin, cos], 1)
    };
    if dim % 2 == 1 {
        Tensor::cat(vec![emb, Tensor::zeros([n, 1], &device)], 1)
    } else {
        emb
    }
}
