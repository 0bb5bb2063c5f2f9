//! facenet-pytorch `PNet`: the fully convolutional proposal net of MTCNN.

use faceclip_core::burn::tensor::activation::softmax;
use faceclip_core::layers::Conv2d;
use faceclip_core::{Tensor, VarBuilder};

use crate::prelu::{PRelu, max_pool2d_ceil};

/// P-Net: conv1(3→10, k3) PReLU maxpool(2, 2, ceil) conv2(10→16, k3) PReLU conv3(16→32, k3)
/// PReLU, then conv4_1(32→2, k1) + softmax = face probability and conv4_2(32→4, k1) = box
/// regression. An `[N, 3, H, W]` input gives maps of `ceil((H−2)/2) − 4` × `ceil((W−2)/2) − 4`.
#[derive(Debug, Clone)]
pub struct PNet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub conv4_1: Conv2d,
    pub conv4_2: Conv2d,
}

/// P-Net's intermediate maps (for parity checks).
#[derive(Debug, Clone)]
pub struct PNetMids {
    pub pool1: Tensor<4>,
    pub prelu2: Tensor<4>,
    pub prelu3: Tensor<4>,
}

impl PNet {
    /// Loads the facenet-pytorch state dict keys (`conv1.weight`, `prelu1.weight`, ...) under `vb`.
    pub fn load(vb: &VarBuilder) -> Self {
        Self {
            conv1: Conv2d::load(&vb.pp("conv1"), 3, 10, 3, 1, 0, true),
            prelu1: PRelu::load(&vb.pp("prelu1"), 10),
            conv2: Conv2d::load(&vb.pp("conv2"), 10, 16, 3, 1, 0, true),
            prelu2: PRelu::load(&vb.pp("prelu2"), 16),
            conv3: Conv2d::load(&vb.pp("conv3"), 16, 32, 3, 1, 0, true),
            prelu3: PRelu::load(&vb.pp("prelu3"), 32),
            conv4_1: Conv2d::load(&vb.pp("conv4_1"), 32, 2, 1, 1, 0, true),
            conv4_2: Conv2d::load(&vb.pp("conv4_2"), 32, 4, 1, 1, 0, true),
        }
    }

    /// `[N, 3, H, W]` normalised pixels → `(reg [N, 4, h, w], prob [N, 2, h, w])`; H, W ≥ 12.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let (reg, prob, _) = self.forward_mids(x);
        (reg, prob)
    }

    /// [`PNet::forward`] that also returns the intermediate maps.
    pub fn forward_mids(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>, PNetMids) {
        let x = self.prelu1.forward(self.conv1.forward(x));
        let pool1 = max_pool2d_ceil(x, 2, 2);
        let prelu2 = self.prelu2.forward(self.conv2.forward(pool1.clone()));
        let prelu3 = self.prelu3.forward(self.conv3.forward(prelu2.clone()));
        let prob = softmax(self.conv4_1.forward(prelu3.clone()), 1);
        let reg = self.conv4_2.forward(prelu3.clone());
        (
            reg,
            prob,
            PNetMids {
                pool1,
                prelu2,
                prelu3,
            },
        )
    }
}
