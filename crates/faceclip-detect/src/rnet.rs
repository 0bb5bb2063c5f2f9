//! facenet-pytorch `RNet`: the refinement net of MTCNN (24×24 crops).

use faceclip_core::burn::tensor::activation::softmax;
use faceclip_core::layers::{Conv2d, Linear};
use faceclip_core::{Tensor, VarBuilder};

use crate::prelu::{PRelu, max_pool2d_ceil};

/// R-Net: conv1(3→28, k3) PReLU maxpool(3, 2, ceil) conv2(28→48, k3) PReLU maxpool(3, 2, ceil)
/// conv3(48→64, k2) PReLU, flattened in (x, y, c) order (`permute(0, 3, 2, 1)`), dense4(576→128)
/// PReLU, then dense5_1(128→2) + softmax = probability and dense5_2(128→4) = box regression.
#[derive(Debug, Clone)]
pub struct RNet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub dense4: Linear,
    pub prelu4: PRelu,
    pub dense5_1: Linear,
    pub dense5_2: Linear,
}

/// R-Net's intermediate values (for parity checks).
#[derive(Debug, Clone)]
pub struct RNetMids {
    pub prelu3: Tensor<4>,
    pub flat: Tensor<2>,
    pub prelu4: Tensor<2>,
}

impl RNet {
    /// Loads the facenet-pytorch state dict keys under `vb`.
    pub fn load(vb: &VarBuilder) -> Self {
        Self {
            conv1: Conv2d::load(&vb.pp("conv1"), 3, 28, 3, 1, 0, true),
            prelu1: PRelu::load(&vb.pp("prelu1"), 28),
            conv2: Conv2d::load(&vb.pp("conv2"), 28, 48, 3, 1, 0, true),
            prelu2: PRelu::load(&vb.pp("prelu2"), 48),
            conv3: Conv2d::load(&vb.pp("conv3"), 48, 64, 2, 1, 0, true),
            prelu3: PRelu::load(&vb.pp("prelu3"), 64),
            dense4: Linear::load(&vb.pp("dense4"), 576, 128, true),
            prelu4: PRelu::load(&vb.pp("prelu4"), 128),
            dense5_1: Linear::load(&vb.pp("dense5_1"), 128, 2, true),
            dense5_2: Linear::load(&vb.pp("dense5_2"), 128, 4, true),
        }
    }

    /// `[N, 3, 24, 24]` normalised crops → `(reg [N, 4], prob [N, 2])`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let (reg, prob, _) = self.forward_mids(x);
        (reg, prob)
    }

    /// [`RNet::forward`] that also returns the intermediate values.
    pub fn forward_mids(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>, RNetMids) {
        let x = max_pool2d_ceil(self.prelu1.forward(self.conv1.forward(x)), 3, 2);
        let x = max_pool2d_ceil(self.prelu2.forward(self.conv2.forward(x)), 3, 2);
        let prelu3 = self.prelu3.forward(self.conv3.forward(x));
        let [n, c, h, w] = prelu3.dims();
        let flat = prelu3.clone().permute([0, 3, 2, 1]).reshape([n, w * h * c]);
        let prelu4 = self.prelu4.forward(self.dense4.forward(flat.clone()));
        let prob = softmax(self.dense5_1.forward(prelu4.clone()), 1);
        let reg = self.dense5_2.forward(prelu4.clone());
        (
            reg,
            prob,
            RNetMids {
                prelu3,
                flat,
                prelu4,
            },
        )
    }
}
