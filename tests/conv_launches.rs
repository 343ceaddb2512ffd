//! Kernel launches of one convolution layer's forward with bias and relu on the GPU
//! backends (the course's sizes: batch 16, 28x28, 3x3, padding 1): at most 3 (pad, window
//! copy, matmul with the bias-and-relu epilogue). Alone in its test binary, so no other
//! test's kernels are counted. Absent backends print SKIPPED.
//!
//! Past `FUSED_MATMUL_MAX_WORK` multiply-adds the GPU's fused matmul runs the tiled
//! primitive and then the epilogue, one launch more.

mod common;

use common::launches;
use minitorch::{Activation, Device, Tensor};

#[test]
fn a_conv_layer_with_bias_and_relu_is_at_most_3_launches() {
    for d in [Device::Wgpu, Device::Cuda, Device::CudaEmu] {
        if let Err(e) = launches(d) {
            common::skip_or_fail(d, "launches of a conv layer", &e);
            continue;
        }
        for (cin, cout) in [(1, 4), (4, 8)] {
            let x = Tensor::full(&[16, cin, 28, 28], 0.5, d).unwrap();
            let w = Tensor::full(&[cout, cin, 3, 3], 0.1, d).unwrap();
            let b = Tensor::full(&[cout], -0.2, d).unwrap();
            let start = launches(d).unwrap();
            let y = x
                .conv2d_act(&w, Some(&b), [1, 1], [(1, 1), (1, 1)], Activation::Relu)
                .unwrap();
            let n = launches(d).unwrap() - start;
            // Counted at all (pad, copy, matmul: 3), and no more than 3.
            assert!((2..=3).contains(&n), "{d}: {cin}->{cout} took {n} launches");
            // Interior: 9 * cin * 0.05 - 0.2 through relu.
            let v = y.get(&[0, 0, 5, 5]).unwrap();
            assert!(
                (v - (0.45 * cin as f32 - 0.2).max(0.0)).abs() < 1e-5,
                "{d}: {v}"
            );
        }
    }
}
