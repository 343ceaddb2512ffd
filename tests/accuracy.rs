//! log, exp, sigmoid and tanh are within 2 ULP of the correctly rounded result (f64 rounded to
//! f32) on every present backend (in CI: cpu, and wgpu on lavapipe; CUDA only where a GPU
//! runs the test): 2^20 inputs spread over all f32 bit patterns per op
//! (subnormals, infinities and NaNs included), plus 2^20 inputs in [0.5, 2] for log, where
//! ln x is near 0 and WGSL's built-in log was 10^5 ULP off. The exhaustive sweep over all
//! 2^32 inputs is `cargo run --release --example accuracy` (docs/accuracy.md).

mod common;

use common::columns;
use minitorch::accuracy::{stratified, stratified_between, sweep, Sweep, OPS};
use minitorch::UnaryOp;

#[test]
fn transcendental_ops_are_within_2_ulp_on_every_backend() {
    let all = stratified(1 << 20);
    let near_one = stratified_between(0.5, 2.0, 1 << 20);
    let mut failures = Vec::new();
    for col in columns() {
        for op in OPS {
            let mut s: Sweep = sweep(col.backend.as_ref(), op, &all).unwrap();
            let mut inputs = all.len();
            if op == UnaryOp::Log {
                s.merge(&sweep(col.backend.as_ref(), op, &near_one).unwrap());
                inputs += near_one.len();
            }
            // Every input compared: a backend returning fewer results must not pass.
            assert_eq!(
                s.count as usize,
                inputs,
                "{} {}: {} results compared for {inputs} inputs",
                col.device,
                op.name(),
                s.count
            );
            println!(
                "{} {}: max {} ULP over {} inputs (at {:e}, bits {:#010x})",
                col.device,
                op.name(),
                s.max_ulps,
                s.count,
                s.worst_input,
                s.worst_input.to_bits()
            );
            if s.max_ulps > 2 {
                failures.push(format!(
                    "{} {}: {} of {} inputs more than 2 ULP off; worst {} ULP at {:e} (bits {:#010x})",
                    col.device,
                    op.name(),
                    s.over_2,
                    s.count,
                    s.max_ulps,
                    s.worst_input,
                    s.worst_input.to_bits()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The special points of each function, bit for bit (NaN for NaN).
#[test]
fn special_values_of_log_exp_sigmoid() {
    let inf = f32::INFINITY;
    let cases: [(UnaryOp, f32, f32); 24] = [
        (UnaryOp::Log, 0.0, -inf),
        (UnaryOp::Log, -0.0, -inf),
        (UnaryOp::Log, 1.0, 0.0),
        (UnaryOp::Log, inf, inf),
        (UnaryOp::Log, -1.0, f32::NAN),
        (UnaryOp::Log, -inf, f32::NAN),
        (UnaryOp::Log, f32::NAN, f32::NAN),
        (UnaryOp::Exp, 0.0, 1.0),
        (UnaryOp::Exp, -0.0, 1.0),
        (UnaryOp::Exp, inf, inf),
        (UnaryOp::Exp, -inf, 0.0),
        (UnaryOp::Exp, 89.0, inf),
        (UnaryOp::Exp, -104.0, 0.0),
        (UnaryOp::Exp, f32::NAN, f32::NAN),
        (UnaryOp::Sigmoid, inf, 1.0),
        (UnaryOp::Sigmoid, -inf, 0.0),
        (UnaryOp::Sigmoid, f32::NAN, f32::NAN),
        (UnaryOp::Tanh, 0.0, 0.0),
        (UnaryOp::Tanh, -0.0, -0.0),
        (UnaryOp::Tanh, inf, 1.0),
        (UnaryOp::Tanh, -inf, -1.0),
        (UnaryOp::Tanh, 20.0, 1.0),
        (UnaryOp::Tanh, -1e-40, -1e-40),
        (UnaryOp::Tanh, f32::NAN, f32::NAN),
    ];
    for col in columns() {
        for (op, x, want) in cases {
            let s = col.backend.upload(&[x]).unwrap();
            let out = col
                .backend
                .map(op, &s, &minitorch::Layout::contiguous(&[1]))
                .unwrap();
            let got = col.backend.download(&out).unwrap()[0];
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{} {}({x:e}) = {got:e}, want {want:e}",
                col.device,
                op.name()
            );
        }
    }
}

/// A backend that returns fewer results than inputs is an error, not a shorter sweep.
#[test]
fn a_short_result_is_an_error() {
    let xs = [1.0f32, 2.0, 3.0];
    assert!(stratified(0).is_empty() && stratified_between(2.0, 1.0, 8).is_empty());
    let short = minitorch::accuracy::compare(UnaryOp::Exp, &xs, &[1.0]);
    assert_eq!(short.count, 1, "compare pairs up what it is given");
    for col in columns() {
        let s = sweep(col.backend.as_ref(), UnaryOp::Exp, &xs).unwrap();
        assert_eq!(s.count, 3, "{}", col.device);
    }
}
