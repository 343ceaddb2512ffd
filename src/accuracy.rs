//! Accuracy of the transcendental ops (log, exp, sigmoid, tanh) against a correctly rounded
//! reference: the value computed in f64 and rounded to f32, compared in units in the last
//! place on the f32 ordered-integer line. Shared by the accuracy test (2^20 stratified
//! inputs per op per backend) and the `accuracy` example (all 2^32 inputs).

use crate::backend::{Backend, UnaryOp};
use crate::error::Result;
use crate::layout::Layout;

/// The ops swept: the ones whose GPU kernels are our own polynomials.
pub const OPS: [UnaryOp; 4] = [UnaryOp::Log, UnaryOp::Exp, UnaryOp::Sigmoid, UnaryOp::Tanh];

/// The correctly rounded reference of `op` at `x`: f64 then one rounding to f32.
pub fn reference(op: UnaryOp, x: f32) -> f32 {
    let x = x as f64;
    let y = match op {
        UnaryOp::Log => x.ln(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Tanh => x.tanh(),
        other => other.apply(x as f32) as f64,
    };
    y as f32
}

/// ULP distance between `got` and `want` on the ordered-integer line: 0 for equal values
/// (and for two NaNs), `u64::MAX` when only one is NaN.
pub fn ulp_distance(got: f32, want: f32) -> u64 {
    if got.is_nan() || want.is_nan() {
        return if got.is_nan() && want.is_nan() {
            0
        } else {
            u64::MAX
        };
    }
    if got == want {
        return 0;
    }
    let ordered = |x: f32| {
        let i = x.to_bits() as i32 as i64;
        if i < 0 {
            i32::MIN as i64 - i
        } else {
            i
        }
    };
    (ordered(got) - ordered(want)).unsigned_abs()
}

/// `n` inputs spread over every f32 bit pattern (both signs, every exponent, subnormals,
/// infinities and NaNs), each stratum of 2^32 / n patterns sampled once (none for n = 0).
pub fn stratified(n: u32) -> Vec<f32> {
    let step = (1u64 << 32) / (n as u64).max(1);
    (0..n as u64)
        .map(|i| {
            let jitter = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % step.max(1);
            f32::from_bits((i * step + jitter) as u32)
        })
        .collect()
}

/// `n` inputs spread over [lo, hi) (both positive, n a power of two at most the number of
/// floats there): every (hi - lo) / n-th float, so log near 1 is swept densely. Empty when
/// the range is (n = 0, or hi not above lo).
pub fn stratified_between(lo: f32, hi: f32, n: u32) -> Vec<f32> {
    let (a, b) = (lo.to_bits() as u64, hi.to_bits() as u64);
    if b <= a {
        return Vec::new();
    }
    let step = ((b - a) / (n as u64).max(1)).max(1);
    (0..n as u64)
        .map(|i| f32::from_bits((a + i * step) as u32))
        .filter(|x| *x < hi)
        .collect()
}

/// The worst result of a sweep.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sweep {
    /// Inputs checked.
    pub count: u64,
    /// Largest ULP distance seen.
    pub max_ulps: u64,
    /// An input where it was seen.
    pub worst_input: f32,
    /// Inputs more than 2 ULP off.
    pub over_2: u64,
}

impl Sweep {
    /// Fold another sweep's results in.
    pub fn merge(&mut self, o: &Sweep) {
        self.count += o.count;
        self.over_2 += o.over_2;
        if o.max_ulps > self.max_ulps {
            self.max_ulps = o.max_ulps;
            self.worst_input = o.worst_input;
        }
    }
}

/// Run `op` on `backend` over `xs` (one upload, one map, one download) and compare each
/// result with [`reference()`].
pub fn sweep(backend: &dyn Backend, op: UnaryOp, xs: &[f32]) -> Result<Sweep> {
    let s = backend.upload(xs)?;
    let out = backend.map(op, &s, &Layout::contiguous(&[xs.len()]))?;
    let got = backend.download(&out)?;
    if got.len() != xs.len() {
        return Err(crate::Error::backend(
            "accuracy",
            "sweep",
            format!(
                "{} returned {} results for {} inputs",
                op.name(),
                got.len(),
                xs.len()
            ),
        ));
    }
    Ok(compare(op, xs, &got))
}

/// Compare results `got` at inputs `xs` with [`reference()`] (pairs them up: the caller
/// checks the lengths, as [`sweep`] does).
pub fn compare(op: UnaryOp, xs: &[f32], got: &[f32]) -> Sweep {
    let mut s = Sweep::default();
    for (&x, &g) in xs.iter().zip(got) {
        let d = ulp_distance(g, reference(op, x));
        s.count += 1;
        if d > 2 {
            s.over_2 += 1;
        }
        if d > s.max_ulps {
            s.max_ulps = d;
            s.worst_input = x;
        }
    }
    s
}
