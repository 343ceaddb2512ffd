//! Scalar autodiff (module 1, MiniTorch's `scalar.py`).
//!
//! A [`Scalar`] is a cheap handle (an `Arc`) to an `f64` value, the history that produced
//! it (the last function, its saved [`Context`] and its inputs) and the derivative
//! collected by [`Scalar::backward`]. Topological sort and backpropagation are the ones
//! tensors use ([`crate::autodiff`]).
//!
//! As in MiniTorch, every scalar made with [`Scalar::new`] is a leaf that collects a
//! derivative; [`Scalar::constant`] (and a plain `f64` operand) makes one that does not.
//! Results of functions record history only when an input needs a derivative.
//!
//! ```
//! use minitorch::Scalar;
//! # fn main() -> minitorch::Result<()> {
//! let x = Scalar::new(2.0);
//! let y = Scalar::new(3.0);
//! let z = &x * &y + x.exp() - 1.0;
//! z.backward()?;
//! assert_eq!(x.derivative(), Some(3.0 + 2.0f64.exp()));
//! assert_eq!(y.derivative(), Some(2.0));
//! # Ok(())
//! # }
//! ```

pub mod functions;

use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::autodiff::{self, Variable};
use crate::error::{Error, Result};

pub use functions::{Context, Derivatives, ScalarFunction};

/// The function that produced a scalar, what it saved, and its inputs.
struct History {
    name: &'static str,
    backward: fn(&Context, f64) -> Derivatives,
    ctx: Context,
    inputs: crate::autodiff::Inputs<Scalar>,
}

struct Inner {
    data: f64,
    history: Option<History>,
    requires_grad: AtomicBool,
    derivative: Mutex<Option<f64>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self.history.take() {
            crate::autodiff::unlink_iteratively(h.inputs, |s: Scalar| {
                Arc::try_unwrap(s.0).ok()?.history.take().map(|h| h.inputs)
            });
        }
    }
}

/// A real number (f64) that records the computation that made it, for autodiff.
/// Cloning is cheap and shares the node.
#[derive(Clone)]
pub struct Scalar(Arc<Inner>);

impl Scalar {
    fn make(data: f64, history: Option<History>, requires_grad: bool) -> Scalar {
        Scalar(Arc::new(Inner {
            data,
            history,
            requires_grad: AtomicBool::new(requires_grad),
            derivative: Mutex::new(None),
        }))
    }

    /// A leaf holding `value` that collects a derivative in `backward` (MiniTorch's
    /// `Scalar(v)`).
    pub fn new(value: f64) -> Scalar {
        Self::make(value, None, true)
    }

    /// A constant: no history and no derivative; gradients stop here.
    pub fn constant(value: f64) -> Scalar {
        Self::make(value, None, false)
    }

    /// The result of function `name` (see [`ScalarFunction::apply`]); history is kept when
    /// an input needs a derivative.
    pub(crate) fn from_function(
        value: f64,
        name: &'static str,
        backward: fn(&Context, f64) -> Derivatives,
        ctx: Context,
        inputs: &[&Scalar],
    ) -> Scalar {
        let history = inputs.iter().any(|s| s.needs_grad()).then(|| History {
            name,
            backward,
            ctx,
            inputs: inputs.iter().map(|&s| s.clone()).collect(),
        });
        Self::make(value, history, false)
    }

    /// The value.
    pub fn value(&self) -> f64 {
        self.0.data
    }

    /// The derivative collected by `backward` calls (`None` before any reached it).
    pub fn derivative(&self) -> Option<f64> {
        *self.0.derivative.lock().expect("derivative lock")
    }

    /// Forget the collected derivative.
    pub fn zero_grad(&self) {
        *self.0.derivative.lock().expect("derivative lock") = None;
    }

    /// Whether this scalar is a leaf that collects a derivative.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Make a scalar without history collect a derivative (or stop collecting one).
    pub fn set_requires_grad(&self, on: bool) {
        self.0.requires_grad.store(on, Ordering::Relaxed);
    }

    /// [`Scalar::set_requires_grad`] that returns the scalar, for chaining.
    pub fn requires_grad_(self, on: bool) -> Scalar {
        self.set_requires_grad(on);
        self
    }

    /// True when a derivative flows through this scalar (a leaf that wants one, or the
    /// result of a recorded function).
    pub fn needs_grad(&self) -> bool {
        self.requires_grad() || self.0.history.is_some()
    }

    /// True when the scalar was not produced by a recorded function.
    pub fn is_leaf(&self) -> bool {
        self.0.history.is_none()
    }

    /// True when no derivative flows through this scalar.
    pub fn is_constant(&self) -> bool {
        !self.needs_grad()
    }

    /// The inputs of the function that produced this scalar (empty for a leaf).
    pub fn parents(&self) -> Vec<Scalar> {
        self.0
            .history
            .as_ref()
            .map(|h| h.inputs.to_vec())
            .unwrap_or_default()
    }

    /// The name of the function that produced this scalar (`None` for a leaf).
    pub fn function_name(&self) -> Option<&'static str> {
        self.0.history.as_ref().map(|h| h.name)
    }

    /// The same value with no history: gradients stop here.
    pub fn detach(&self) -> Scalar {
        Scalar::constant(self.value())
    }

    /// Backpropagate from this scalar (d self = 1), adding derivatives to the leaves.
    pub fn backward(&self) -> Result<()> {
        self.backward_with(1.0)
    }

    /// Backpropagate from this scalar with `d_output` as its derivative.
    pub fn backward_with(&self, d_output: f64) -> Result<()> {
        if self.is_constant() {
            return Err(Error::Autodiff {
                op: "backward",
                msg: format!(
                    "scalar {} does not depend on any scalar that requires a derivative",
                    self.value()
                ),
            });
        }
        autodiff::backpropagate(self, d_output)
    }

    // ----- the functions ---------------------------------------------------------------

    /// `self + b`
    pub fn add(&self, b: impl Into<Scalar>) -> Scalar {
        functions::Add::apply(&[self, &b.into()])
    }
    /// `self - b`, as `self + (-b)`.
    pub fn sub(&self, b: impl Into<Scalar>) -> Scalar {
        let nb = b.into().neg();
        functions::Add::apply(&[self, &nb])
    }
    /// `self * b`
    pub fn mul(&self, b: impl Into<Scalar>) -> Scalar {
        functions::Mul::apply(&[self, &b.into()])
    }
    /// `self / b`, as `self * (1 / b)`.
    pub fn div(&self, b: impl Into<Scalar>) -> Scalar {
        let ib = b.into().inv();
        functions::Mul::apply(&[self, &ib])
    }
    /// `-self`
    pub fn neg(&self) -> Scalar {
        functions::Neg::apply(&[self])
    }
    /// `1 / self`
    pub fn inv(&self) -> Scalar {
        functions::Inv::apply(&[self])
    }
    /// `1 / (1 + e^-self)`
    pub fn sigmoid(&self) -> Scalar {
        functions::Sigmoid::apply(&[self])
    }
    /// `max(self, 0)`
    pub fn relu(&self) -> Scalar {
        functions::ReLU::apply(&[self])
    }
    /// `ln self`
    pub fn log(&self) -> Scalar {
        functions::Log::apply(&[self])
    }
    /// `e^self`
    pub fn exp(&self) -> Scalar {
        functions::Exp::apply(&[self])
    }
    /// `1` if `self < b` else `0` (derivative 0).
    pub fn lt(&self, b: impl Into<Scalar>) -> Scalar {
        functions::LT::apply(&[self, &b.into()])
    }
    /// `1` if `self > b` else `0`, as `b < self` (derivative 0).
    pub fn gt(&self, b: impl Into<Scalar>) -> Scalar {
        functions::LT::apply(&[&b.into(), self])
    }
    /// `1` if `self == b` else `0` (derivative 0).
    pub fn eq(&self, b: impl Into<Scalar>) -> Scalar {
        functions::EQ::apply(&[self, &b.into()])
    }
}

impl Variable for Scalar {
    type Grad = f64;

    fn unique_id(&self) -> usize {
        // The node's address: unique among the live nodes of a graph, and free to get.
        Arc::as_ptr(&self.0) as usize
    }

    fn is_leaf(&self) -> bool {
        self.0.history.is_none() && self.requires_grad()
    }

    fn is_constant(&self) -> bool {
        Scalar::is_constant(self)
    }

    fn parents(&self) -> crate::autodiff::Inputs<Scalar> {
        self.0
            .history
            .as_ref()
            .map(|h| h.inputs.clone())
            .unwrap_or_default()
    }

    fn chain_rule(&self, d_output: &f64) -> Result<crate::autodiff::Inputs<(Scalar, f64)>> {
        let Some(h) = self.0.history.as_ref() else {
            return Ok(crate::autodiff::Inputs::new());
        };
        let ds = (h.backward)(&h.ctx, *d_output);
        Ok(h.inputs.iter().cloned().zip(ds).collect())
    }

    fn accumulate_derivative(&self, d: f64) -> Result<()> {
        let mut slot = self.0.derivative.lock().expect("derivative lock");
        *slot = Some(slot.unwrap_or(0.0) + d);
        Ok(())
    }

    fn add_grads(a: &f64, b: &f64) -> Result<f64> {
        Ok(a + b)
    }
}

/// A plain number as an operand: a constant.
impl From<f64> for Scalar {
    fn from(v: f64) -> Scalar {
        Scalar::constant(v)
    }
}

/// A borrowed scalar as an operand (shares the node).
impl From<&Scalar> for Scalar {
    fn from(s: &Scalar) -> Scalar {
        s.clone()
    }
}

macro_rules! binary_op {
    ($trait:ident, $method:ident) => {
        impl $trait<&Scalar> for &Scalar {
            type Output = Scalar;
            fn $method(self, rhs: &Scalar) -> Scalar {
                Scalar::$method(self, rhs)
            }
        }
        impl $trait<Scalar> for Scalar {
            type Output = Scalar;
            fn $method(self, rhs: Scalar) -> Scalar {
                Scalar::$method(&self, rhs)
            }
        }
        impl $trait<&Scalar> for Scalar {
            type Output = Scalar;
            fn $method(self, rhs: &Scalar) -> Scalar {
                Scalar::$method(&self, rhs)
            }
        }
        impl $trait<Scalar> for &Scalar {
            type Output = Scalar;
            fn $method(self, rhs: Scalar) -> Scalar {
                Scalar::$method(self, rhs)
            }
        }
        impl $trait<f64> for &Scalar {
            type Output = Scalar;
            fn $method(self, rhs: f64) -> Scalar {
                Scalar::$method(self, rhs)
            }
        }
        impl $trait<f64> for Scalar {
            type Output = Scalar;
            fn $method(self, rhs: f64) -> Scalar {
                Scalar::$method(&self, rhs)
            }
        }
        impl $trait<&Scalar> for f64 {
            type Output = Scalar;
            fn $method(self, rhs: &Scalar) -> Scalar {
                Scalar::$method(&Scalar::constant(self), rhs)
            }
        }
        impl $trait<Scalar> for f64 {
            type Output = Scalar;
            fn $method(self, rhs: Scalar) -> Scalar {
                Scalar::$method(&Scalar::constant(self), rhs)
            }
        }
    };
}

binary_op!(Add, add);
binary_op!(Sub, sub);
binary_op!(Mul, mul);
binary_op!(Div, div);

impl Neg for &Scalar {
    type Output = Scalar;
    fn neg(self) -> Scalar {
        Scalar::neg(self)
    }
}

impl Neg for Scalar {
    type Output = Scalar;
    fn neg(self) -> Scalar {
        Scalar::neg(&self)
    }
}

/// Sum of scalars, folded from the first one (an empty sum is the constant 0).
impl std::iter::Sum for Scalar {
    fn sum<I: Iterator<Item = Scalar>>(mut iter: I) -> Scalar {
        match iter.next() {
            Some(first) => iter.fold(first, |acc, x| &acc + &x),
            None => Scalar::constant(0.0),
        }
    }
}

/// Sum of borrowed scalars, folded from the first one (an empty sum is the constant 0).
impl<'a> std::iter::Sum<&'a Scalar> for Scalar {
    fn sum<I: Iterator<Item = &'a Scalar>>(iter: I) -> Scalar {
        iter.cloned().sum()
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scalar({}", self.value())?;
        if let Some(name) = self.function_name() {
            write!(f, ", fn={name}")?;
        }
        if let Some(d) = self.derivative() {
            write!(f, ", derivative={d}")?;
        }
        write!(f, ")")
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scalar({})", self.value())
    }
}
