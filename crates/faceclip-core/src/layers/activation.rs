use burn::tensor::Tensor;
use burn::tensor::activation as act;

/// The activations the upstream models use, by their upstream names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x·Φ(x)` (erf).
    Gelu,
    /// Tanh-approximate GELU (`gelu_new`, `gelu_pytorch_tanh`, `approximate="tanh"`).
    GeluTanh,
    /// `x·σ(1.702x)`.
    QuickGelu,
    Silu,
    Relu,
    Relu6,
}

impl Activation {
    /// Parses an upstream activation name (`gelu`, `gelu_new`, `quick_gelu`, `silu`, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu-approximate" | "gelu_tanh" | "gelu_fast" => {
                Self::GeluTanh
            }
            "quick_gelu" => Self::QuickGelu,
            "silu" | "swish" => Self::Silu,
            "relu" => Self::Relu,
            "relu6" => Self::Relu6,
            _ => return None,
        })
    }

    /// Applies the activation elementwise.
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        // On the CPU the composite ones run as one fused pass instead of several burn ops.
        if matches!(self, Self::GeluTanh | Self::Silu | Self::QuickGelu) && super::host::applies(&x)
        {
            return match self {
                Self::GeluTanh => super::host::map(x, super::host::gelu_tanh),
                Self::Silu => super::host::map(x, super::host::silu),
                _ => super::host::map(x, super::host::quick_gelu),
            };
        }
        match self {
            Self::Gelu => act::gelu(x),
            Self::GeluTanh => act::gelu_approximate(x),
            Self::QuickGelu => x.clone() * act::sigmoid(x * 1.702),
            Self::Silu => act::silu(x),
            Self::Relu => act::relu(x),
            Self::Relu6 => act::relu6(x),
        }
    }
}
