use burn::module::Param;
use burn::tensor::{Tensor, TensorData};

use crate::quant::QMatrix;
use crate::var_builder::VarBuilder;

/// `torch.nn.Linear`: `weight` `[out, in]`, optional `bias` `[out]`; maps `[..., in]` to
/// `[..., out]`. With the weight held in blocks ([`Linear::quant`], see [`crate::quant`]),
/// `weight` is a placeholder that is never allocated.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub quant: Option<QMatrix>,
}

impl Linear {
    /// Loads `weight` (and `bias` when `bias` is true) under `vb`.
    /// The weight is held in blocks when the weights store it so or the builder asks for it
    /// ([`VarBuilder::linear_blocks`]).
    pub fn load(vb: &VarBuilder, in_features: usize, out_features: usize, bias: bool) -> Self {
        let shape = [out_features, in_features];
        let quant = vb.linear_blocks("weight", shape);
        Self {
            weight: match quant {
                Some(_) => vb.placeholder(shape),
                None => vb.tensor("weight", shape),
            },
            bias: bias.then(|| vb.tensor("bias", [out_features])),
            quant,
        }
    }

    /// `y = x Wᵀ + b` over the last axis.
    ///
    /// The leading axes are folded into rows and the product runs as one 2-D matmul
    /// against the transposed weight *view*: burn's generic `linear` reshapes that view to
    /// `[1, .., in, out]`, which on the CPU backends materialises a transposed copy of
    /// the whole weight on every call (a third of CLIP-L's forward time, by profile).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let x = x.reshape([rows, d_in]);
        crate::flops::add_matmul(1, rows, d_in, self.out_features());
        let y = match &self.quant {
            Some(q) => quant_matmul(q, x),
            None => x.matmul(self.weight.val().transpose()),
        };
        let y = match &self.bias {
            Some(b) => y + b.val().unsqueeze::<2>(),
            None => y,
        };
        let mut out = dims;
        out[D - 1] = y.dims()[1];
        y.reshape(out)
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.shape().as_slice()[0]
    }
}

/// `x` `[rows, in]` times the blocks' transpose: the block kernel on the CPU in f32; elsewhere
/// (GPU backends, reduced precision) the layer's weight expanded for this product only.
fn quant_matmul(q: &QMatrix, x: Tensor<2>) -> Tensor<2> {
    let device = x.device();
    let [out, d_in] = q.dims();
    #[cfg(feature = "flex")]
    if super::host::applies(&x) {
        let rows = x.dims()[0];
        let xv = crate::to_vec_f32(x);
        return Tensor::from_data(TensorData::new(q.matmul_t(&xv, rows), [rows, out]), &device);
    }
    let w = Tensor::<2>::from_data(TensorData::new(q.dequantize(), [out, d_in]), &device);
    x.matmul(w.transpose())
}
