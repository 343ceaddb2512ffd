//! CPU conv2d forward + backward at the course's MNIST shapes (batch 16, conv 1->4 then
//! 4->8, 3x3, padding 1, bias and relu, 28x28) and a larger layer (batch 64, 32->64, 3x3,
//! 28x28), and the pieces of one layer (pad, window copy, matmul) alone.
//! `scripts/conv_vs_torch.py` compares the same computations with eager PyTorch,
//! interleaved (`examples/conv_time.rs`).
//!
//! `cargo bench --bench conv`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use minitorch::{Activation, Device, Tensor};

fn t(shape: &[usize], seed: u64, grad: bool) -> Tensor {
    let x = Tensor::rand(shape, seed, Device::Cpu).unwrap();
    x.add_scalar(-0.5).unwrap().detach().requires_grad_(grad)
}

fn step(x: &Tensor, params: &[(Tensor, Tensor)]) {
    let mut h = x.clone();
    for (w, b) in params {
        h = h
            .conv2d_act(w, Some(b), [1, 1], [(1, 1), (1, 1)], Activation::Relu)
            .unwrap();
    }
    h.sum_all().unwrap().backward().unwrap();
    for (w, b) in params {
        w.zero_grad();
        b.zero_grad();
    }
    x.zero_grad();
}

fn conv(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_conv2d");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let x = t(&[16, 1, 28, 28], 1, false);
    let course = vec![
        (t(&[4, 1, 3, 3], 2, true), t(&[4], 3, true)),
        (t(&[8, 4, 3, 3], 4, true), t(&[8], 5, true)),
    ];
    g.bench_function("course_b16_1to4to8_fwd_bwd", |b| {
        b.iter(|| step(&x, &course))
    });
    let x = t(&[64, 32, 28, 28], 6, true);
    let large = vec![(t(&[64, 32, 3, 3], 7, true), t(&[64], 8, true))];
    g.bench_function("large_b64_32to64_fwd_bwd", |b| b.iter(|| step(&x, &large)));
    let xf = x.detach();
    let (w, bias) = (large[0].0.detach(), large[0].1.detach());
    g.bench_function("large_b64_32to64_forward", |b| {
        b.iter(|| {
            xf.conv2d_act(&w, Some(&bias), [1, 1], [(1, 1), (1, 1)], Activation::Relu)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, conv);
criterion_main!(benches);
