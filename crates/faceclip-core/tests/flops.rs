//! The multiply-add count the benches divide by time: a linear layer, a strided padded
//! convolution and attention count what the reference algorithm computes. One test: the count
//! is process-wide.

use faceclip_core::layers::{AttentionMask, Conv2d, Linear, attention};
use faceclip_core::{Tensor, VarBuilder, device::default_device, flops};

#[test]
fn layers_count_the_reference_multiply_adds() {
    let dev = default_device().unwrap();
    let vb = VarBuilder::dry(&dev);
    let lin = Linear::load(&vb.pp("l"), 64, 48, true);
    flops::start();
    let _ = lin.forward(Tensor::<3>::zeros([2, 5, 64], &dev)).into_data();
    assert_eq!(flops::stop(), 2 * 5 * 64 * 48);

    // 3x3, stride 2, padding 1: 9x9 -> 5x5.
    let conv = Conv2d::load(&vb.pp("c"), 4, 6, 3, 2, 1, true);
    flops::start();
    let y = conv.forward(Tensor::<4>::zeros([1, 4, 9, 9], &dev));
    assert_eq!(y.dims(), [1, 6, 5, 5]);
    assert_eq!(flops::stop(), 6 * 5 * 5 * 4 * 9);

    let q = Tensor::<4>::zeros([2, 3, 7, 8], &dev);
    let k = Tensor::<4>::zeros([2, 3, 11, 8], &dev);
    let v = Tensor::<4>::zeros([2, 3, 11, 4], &dev);
    flops::start();
    let _ = attention(q, k, v, None, AttentionMask::None, None).into_data();
    assert_eq!(flops::stop(), 2 * 3 * (7 * 8 * 11 + 7 * 11 * 4));

    // Not counting: nothing recorded.
    let _ = lin.forward(Tensor::<3>::zeros([2, 5, 64], &dev)).into_data();
    flops::start();
    assert_eq!(flops::stop(), 0);
}
