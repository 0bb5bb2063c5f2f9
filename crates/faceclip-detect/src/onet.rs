//! facenet-pytorch `ONet`: the output net of MTCNN (48×48 crops, with landmarks).

use faceclip_core::burn::tensor::activation::softmax;
use faceclip_core::layers::{Conv2d, Linear};
use faceclip_core::{Tensor, VarBuilder};

use crate::prelu::{PRelu, max_pool2d_ceil};

/// O-Net: conv1(3→32, k3) PReLU maxpool(3, 2, ceil) conv2(32→64, k3) PReLU maxpool(3, 2, ceil)
/// conv3(64→64, k3) PReLU maxpool(2, 2, ceil) conv4(64→128, k2) PReLU, flattened in (x, y, c)
/// order, dense5(1152→256) PReLU, then dense6_1(256→2) + softmax = probability,
/// dense6_2(256→4) = box regression and dense6_3(256→10) = landmarks `[x1..x5, y1..y5]`.
#[derive(Debug, Clone)]
pub struct ONet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub conv4: Conv2d,
    pub prelu4: PRelu,
    pub dense5: Linear,
    pub prelu5: PRelu,
    pub dense6_1: Linear,
    pub dense6_2: Linear,
    pub dense6_3: Linear,
}

/// O-Net's outputs: `reg [N, 4]`, `landmarks [N, 10]`, `prob [N, 2]`.
#[derive(Debug, Clone)]
pub struct ONetOutput {
    pub reg: Tensor<2>,
    pub landmarks: Tensor<2>,
    pub prob: Tensor<2>,
}

/// O-Net's intermediate values (for parity checks).
#[derive(Debug, Clone)]
pub struct ONetMids {
    pub prelu4: Tensor<4>,
    pub flat: Tensor<2>,
    pub prelu5: Tensor<2>,
}

impl ONet {
    /// Loads the facenet-pytorch state dict keys under `vb`.
    pub fn load(vb: &VarBuilder) -> Self {
        Self {
            conv1: Conv2d::load(&vb.pp("conv1"), 3, 32, 3, 1, 0, true),
            prelu1: PRelu::load(&vb.pp("prelu1"), 32),
            conv2: Conv2d::load(&vb.pp("conv2"), 32, 64, 3, 1, 0, true),
            prelu2: PRelu::load(&vb.pp("prelu2"), 64),
            conv3: Conv2d::load(&vb.pp("conv3"), 64, 64, 3, 1, 0, true),
            prelu3: PRelu::load(&vb.pp("prelu3"), 64),
            conv4: Conv2d::load(&vb.pp("conv4"), 64, 128, 2, 1, 0, true),
            prelu4: PRelu::load(&vb.pp("prelu4"), 128),
            dense5: Linear::load(&vb.pp("dense5"), 1152, 256, true),
            prelu5: PRelu::load(&vb.pp("prelu5"), 256),
            dense6_1: Linear::load(&vb.pp("dense6_1"), 256, 2, true),
            dense6_2: Linear::load(&vb.pp("dense6_2"), 256, 4, true),
            dense6_3: Linear::load(&vb.pp("dense6_3"), 256, 10, true),
        }
    }

    /// `[N, 3, 48, 48]` normalised crops → reg, landmarks, prob.
    pub fn forward(&self, x: Tensor<4>) -> ONetOutput {
        self.forward_mids(x).0
    }

    /// [`ONet::forward`] that also returns the intermediate values.
    pub fn forward_mids(&self, x: Tensor<4>) -> (ONetOutput, ONetMids) {
        let x = max_pool2d_ceil(self.prelu1.forward(self.conv1.forward(x)), 3, 2);
        let x = max_pool2d_ceil(self.prelu2.forward(self.conv2.forward(x)), 3, 2);
        let x = max_pool2d_ceil(self.prelu3.forward(self.conv3.forward(x)), 2, 2);
        let prelu4 = self.prelu4.forward(self.conv4.forward(x));
        let [n, c, h, w] = prelu4.dims();
        let flat = prelu4.clone().permute([0, 3, 2, 1]).reshape([n, w * h * c]);
        let prelu5 = self.prelu5.forward(self.dense5.forward(flat.clone()));
        let out = ONetOutput {
            reg: self.dense6_2.forward(prelu5.clone()),
            landmarks: self.dense6_3.forward(prelu5.clone()),
            prob: softmax(self.dense6_1.forward(prelu5.clone()), 1),
        };
        (
            out,
            ONetMids {
                prelu4,
                flat,
                prelu5,
            },
        )
    }
}
