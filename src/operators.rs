//! Module 0: the scalar functions every engine is built from (MiniTorch's `operators.py`),
//! and the list helpers written with iterators.
//!
//! The functions are generic over [`Float`] (`f32` and `f64`), so the scalar engine (f64),
//! the CPU backend (f32) and the tests all use the same formulas.

use std::ops::{Add, Div, Mul, Neg, Sub};

/// The floating-point types the operators accept: `f32` and `f64`.
pub trait Float:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// The tolerance of [`is_close`]: 1e-2.
    const CLOSE: Self;
    /// e^self.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Square root (correctly rounded, IEEE 754).
    fn sqrt(self) -> Self;
    /// True for NaN.
    fn is_nan(self) -> bool;
}

macro_rules! impl_float {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const CLOSE: Self = 1e-2;
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
impl_float!(f32);
impl_float!(f64);

/// x * y
#[inline]
pub fn mul<F: Float>(x: F, y: F) -> F {
    x * y
}
/// x
#[inline]
pub fn id<F: Float>(x: F) -> F {
    x
}
/// x + y
#[inline]
pub fn add<F: Float>(x: F, y: F) -> F {
    x + y
}
/// -x
#[inline]
pub fn neg<F: Float>(x: F) -> F {
    -x
}
/// 1.0 if x < y else 0.0
#[inline]
pub fn lt<F: Float>(x: F, y: F) -> F {
    if x < y {
        F::ONE
    } else {
        F::ZERO
    }
}
/// 1.0 if x == y else 0.0
#[inline]
pub fn eq<F: Float>(x: F, y: F) -> F {
    if x == y {
        F::ONE
    } else {
        F::ZERO
    }
}
/// The larger of x and y; NaN when either is NaN (PyTorch's rule, on every backend).
#[inline]
pub fn max<F: Float>(x: F, y: F) -> F {
    if x > y || x.is_nan() {
        x
    } else {
        y
    }
}
/// 1.0 if |x - y| < 1e-2 else 0.0 (MiniTorch's tolerance).
#[inline]
pub fn is_close<F: Float>(x: F, y: F) -> F {
    if (x - y).abs() < F::CLOSE {
        F::ONE
    } else {
        F::ZERO
    }
}
/// 1 / (1 + e^-x), computed as e^x / (1 + e^x) for negative x so neither side overflows.
#[inline]
pub fn sigmoid<F: Float>(x: F) -> F {
    if x >= F::ZERO {
        F::ONE / (F::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::ONE + e)
    }
}
/// max(x, 0)
#[inline]
pub fn relu<F: Float>(x: F) -> F {
    if x > F::ZERO {
        x
    } else {
        F::ZERO
    }
}
/// Natural logarithm.
#[inline]
pub fn log<F: Float>(x: F) -> F {
    x.ln()
}
/// e^x
#[inline]
pub fn exp<F: Float>(x: F) -> F {
    x.exp()
}
/// tanh x = (e^x - e^-x) / (e^x + e^-x)
#[inline]
pub fn tanh<F: Float>(x: F) -> F {
    x.tanh()
}
/// sqrt(x) (NaN below 0; -0 for -0)
#[inline]
pub fn sqrt<F: Float>(x: F) -> F {
    x.sqrt()
}
/// 1 / x
#[inline]
pub fn inv<F: Float>(x: F) -> F {
    F::ONE / x
}
/// d * log'(x) = d / x
#[inline]
pub fn log_back<F: Float>(x: F, d: F) -> F {
    d / x
}
/// d * inv'(x) = -d / x^2, as -(d / x) / x: x * x would underflow for |x| < 1e-19.
#[inline]
pub fn inv_back<F: Float>(x: F, d: F) -> F {
    -(d / x) / x
}
/// d * relu'(x): d where x > 0, else 0.
#[inline]
pub fn relu_back<F: Float>(x: F, d: F) -> F {
    if x > F::ZERO {
        d
    } else {
        F::ZERO
    }
}
/// d * sigmoid'(x) = d * s(x) * (1 - s(x)), as d * s(x) * s(-x): 1 - s(x) cancels when
/// s(x) is near 1 (it is 0 from x = 17 on), s(-x) does not.
#[inline]
pub fn sigmoid_back<F: Float>(x: F, d: F) -> F {
    d * sigmoid(x) * sigmoid(-x)
}

/// Apply `f` to every element (MiniTorch's higher-order `map`).
pub fn map<F: Float>(f: impl Fn(F) -> F, xs: &[F]) -> Vec<F> {
    xs.iter().map(|&x| f(x)).collect()
}

/// Combine two lists element by element (MiniTorch's `zipWith`); the result is as long
/// as the shorter list.
pub fn zip_with<F: Float>(f: impl Fn(F, F) -> F, xs: &[F], ys: &[F]) -> Vec<F> {
    xs.iter().zip(ys).map(|(&x, &y)| f(x, y)).collect()
}

/// Fold a list from `start` with `f` (MiniTorch's `reduce`).
pub fn reduce<F: Float>(f: impl Fn(F, F) -> F, start: F, xs: &[F]) -> F {
    xs.iter().fold(start, |acc, &x| f(acc, x))
}

/// Negate every element.
pub fn neg_list<F: Float>(xs: &[F]) -> Vec<F> {
    map(neg, xs)
}

/// Add two lists element by element.
pub fn add_lists<F: Float>(xs: &[F], ys: &[F]) -> Vec<F> {
    zip_with(add, xs, ys)
}

/// Sum of a list (0 for an empty one).
pub fn sum<F: Float>(xs: &[F]) -> F {
    reduce(add, F::ZERO, xs)
}

/// Product of a list (1 for an empty one).
pub fn prod<F: Float>(xs: &[F]) -> F {
    reduce(mul, F::ONE, xs)
}
