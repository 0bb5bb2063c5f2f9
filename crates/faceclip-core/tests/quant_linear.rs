//! A linear layer holding its weight in blocks: the CPU block kernel (flex, f32), the path
//! every other backend and dtype takes (the layer expanded for the product; here on ndarray),
//! and the same layer built from the expanded weight all agree.

use faceclip_core::device::parse_device;
use faceclip_core::layers::Linear;
use faceclip_core::{Checkpoint, Device, QuantType, Tensor, TensorData, VarBuilder, to_vec_f32};

mod common;
use common::values;

fn layer(ck: &Checkpoint, quant: Option<QuantType>, device: &Device) -> Linear {
    let mut vb = VarBuilder::from_checkpoint(ck.clone(), device);
    if let Some(q) = quant {
        vb = vb.with_quant(q, |_| true);
    }
    let l = Linear::load(&vb.pp("proj"), 96, 80, true);
    vb.finish().unwrap();
    l
}

#[test]
fn block_kernel_and_expanded_fallback_agree_on_every_cpu_backend() {
    let (d_in, d_out) = (96, 80);
    let ck = Checkpoint::from_f32(
        "linear",
        vec![
            ("proj.weight".to_string(), vec![d_out, d_in], values(d_in * d_out, 1)),
            ("proj.bias".to_string(), vec![d_out], values(d_out, 2)),
        ],
    )
    .unwrap();
    let x = values(3 * 5 * d_in, 3);
    for kind in [QuantType::Q8_0, QuantType::Q4_0] {
        let mut outs = Vec::new();
        for backend in ["flex", "ndarray"] {
            let dev = parse_device(backend).unwrap();
            let l = layer(&ck, Some(kind), &dev);
            assert!(l.quant.is_some(), "{backend}: the weight is held in blocks");
            let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), [3, 5, d_in]), &dev);
            let y = l.forward(xt);
            assert_eq!(y.dims(), [3, 5, d_out]);
            outs.push(to_vec_f32(y));
        }
        // The expanded weight as an ordinary f32 layer.
        let dev = parse_device("flex").unwrap();
        let q = layer(&ck, Some(kind), &dev).quant.unwrap();
        let expanded = Checkpoint::from_f32(
            "expanded",
            vec![
                ("proj.weight".to_string(), vec![d_out, d_in], q.dequantize()),
                ("proj.bias".to_string(), vec![d_out], values(d_out, 2)),
            ],
        )
        .unwrap();
        let l = layer(&expanded, None, &dev);
        assert!(l.quant.is_none());
        let want = to_vec_f32(
            l.forward(Tensor::<3>::from_data(TensorData::new(x.clone(), [3, 5, d_in]), &dev)),
        );
        for (name, got) in ["flex", "ndarray"].iter().zip(&outs) {
            let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(d < 1e-5, "{kind:?} {name}: {d}");
        }
        // And the quantization did change the layer.
        let full = layer(&ck, None, &dev);
        let exact = to_vec_f32(
            full.forward(Tensor::<3>::from_data(TensorData::new(x.clone(), [3, 5, d_in]), &dev)),
        );
        assert!(exact.iter().zip(&want).any(|(a, b)| a != b));
    }
}
