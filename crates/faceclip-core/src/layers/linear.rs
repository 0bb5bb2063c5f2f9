use burn::module::Param;
use burn::tensor::{Tensor, TensorData};

use crate::packed::{Lhs, PackedMatrix};
use crate::quant::QMatrix;
use crate::var_builder::VarBuilder;

/// `torch.nn.Linear`: `weight` `[out, in]`, optional `bias` `[out]`; maps `[..., in]` to
/// `[..., out]`. With the weight held in blocks ([`Linear::quant`], see [`crate::quant`]) or
/// packed for the CPU's GEMM kernel ([`Linear::packed`], see [`crate::packed`]), `weight` is a
/// placeholder that is never allocated.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub quant: Option<QMatrix>,
    pub packed: Option<PackedMatrix>,
}

impl Linear {
    /// Loads `weight` (and `bias` when `bias` is true) under `vb`.
    pub fn load(vb: &VarBuilder, in_features: usize, out_features: usize, bias: bool) -> Self {
        Self::load_named(vb, "weight", bias.then_some("bias"), in_features, out_features)
    }

    /// Loads a linear layer whose parameters have other names (`in_proj_weight`).
    /// The weight is held in blocks when the weights store it so or the builder asks for it
    /// ([`VarBuilder::linear_blocks`]), else packed when the device is the CPU and it has a
    /// kernel for the float type ([`VarBuilder::linear_packed`]).
    pub fn load_named(
        vb: &VarBuilder,
        weight: &str,
        bias: Option<&str>,
        in_features: usize,
        out_features: usize,
    ) -> Self {
        let shape = [out_features, in_features];
        let quant = vb.linear_blocks(weight, shape);
        let packed = match quant {
            Some(_) => None,
            None => vb.linear_packed(weight, shape),
        };
        Self {
            weight: match (&quant, &packed) {
                (None, None) => vb.tensor(weight, shape),
                _ => vb.placeholder(shape),
            },
            bias: bias.map(|b| vb.tensor(b, [out_features])),
            quant,
            packed,
        }
    }

    /// A layer from tensors at hand (`weight` `[out, in]`, `bias` `[out]`), taking burn's matmul.
    pub fn from_tensors(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
            quant: None,
            packed: None,
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
        if let Some(p) = &self.packed {
            let y = packed_matmul(p, self.bias.as_ref().map(|b| b.val()), x);
            let mut out = dims;
            out[D - 1] = y.dims()[1];
            return y.reshape(out);
        }
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

/// `x` `[rows, in]` times the packed weight's transpose plus `bias`, in `x`'s float type: the
/// CPU kernel for f32 and bf16 activations; anything else (another device or float type than
/// the one the layer was loaded for) multiplies by the unpacked weight.
fn packed_matmul(p: &PackedMatrix, bias: Option<Tensor<1>>, x: Tensor<2>) -> Tensor<2> {
    use burn::tensor::DType;
    let device = x.device();
    let [rows, _] = x.dims();
    let [out, d_in] = p.dims();
    let on_cpu = {
        #[cfg(feature = "flex")]
        {
            device == burn::tensor::Device::flex()
        }
        #[cfg(not(feature = "flex"))]
        {
            false
        }
    };
    let dtype = x.dtype();
    if !on_cpu || !matches!(dtype, DType::F32 | DType::BF16) {
        let w = Tensor::<2>::from_data(TensorData::new(p.unpack(), [out, d_in]), &device);
        let y = x.matmul(w.transpose());
        return match bias {
            Some(b) => y + b.unsqueeze::<2>(),
            None => y,
        };
    }
    let bias = bias.map(crate::to_vec_f32);
    let data = x.into_data();
    let y = match dtype {
        DType::BF16 => {
            let xs = data
                .as_slice::<half::bf16>()
                .expect("the dtype was checked to be bf16");
            let y = p.matmul_t(Lhs::Bf16(xs), rows, bias.as_deref());
            TensorData::new(
                y.into_iter().map(half::bf16::from_f32).collect::<Vec<_>>(),
                [rows, out],
            )
        }
        _ => {
            let xs = data.as_slice::<f32>().expect("the dtype was checked to be f32");
            TensorData::new(p.matmul_t(Lhs::F32(xs), rows, bias.as_deref()), [rows, out])
        }
    };
    Tensor::from_data(y, &device)
}
