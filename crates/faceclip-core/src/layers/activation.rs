use burn::tensor::Tensor;
use burn::tensor::activation as act;

/// The activations with a fused CPU kernel.
#[derive(Clone, Copy)]
enum HostAct {
    Gelu,
    GeluTanh,
    Silu,
    QuickGelu,
}

/// `$body` with `$f` bound to the fused function of `$h`: one arm per function item, so each
/// body is monomorphised with the function inlined and vectorised (a `fn` pointer would make
/// every element an indirect call).
macro_rules! host_dispatch {
    ($h:expr, |$f:ident| $body:expr) => {
        match $h {
            HostAct::Gelu => {
                let $f = super::host::gelu_erf;
                $body
            }
            HostAct::GeluTanh => {
                let $f = super::host::gelu_tanh;
                $body
            }
            HostAct::Silu => {
                let $f = super::host::silu;
                $body
            }
            HostAct::QuickGelu => {
                let $f = super::host::quick_gelu;
                $body
            }
        }
    };
}

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
        if let Some(h) = self.host_act().filter(|_| super::host::applies(&x)) {
            return host_dispatch!(h, |f| super::host::map(x, f));
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

    /// `act(x)·other` (T5's gated feed-forward): one pass on the CPU.
    pub fn forward_mul<const D: usize>(self, x: Tensor<D>, other: Tensor<D>) -> Tensor<D> {
        if let Some(h) = self.host_act()
            && super::host::applies(&x)
            && super::host::applies(&other)
            && x.dims() == other.dims()
        {
            return host_dispatch!(h, |f| super::host::mul_act(x, other, f));
        }
        self.forward(x) * other
    }

    /// `y[..., :d]·act(y[..., d:])` over `y` `[..., 2d]`: diffusers' `GEGLU` after its
    /// projection (value half first, gate half second). One pass on the CPU.
    pub fn forward_gated_halves<const D: usize>(self, y: Tensor<D>) -> Tensor<D> {
        if let Some(h) = self.host_act().filter(|_| super::host::applies(&y)) {
            return host_dispatch!(h, |f| super::host::gated_halves(y, f));
        }
        let dims = y.dims();
        let d = dims[D - 1] / 2;
        let value = y.clone().narrow(D - 1, 0, d);
        value * self.forward(y.narrow(D - 1, d, d))
    }

    /// The fused CPU kernel for this activation, where there is one.
    fn host_act(self) -> Option<HostAct> {
        Some(match self {
            Self::Gelu => HostAct::Gelu,
            Self::GeluTanh => HostAct::GeluTanh,
            Self::Silu => HostAct::Silu,
            Self::QuickGelu => HostAct::QuickGelu,
            Self::Relu | Self::Relu6 => return None,
        })
    }
}
