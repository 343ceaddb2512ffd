//! The scalar functions with forward and backward (MiniTorch's `scalar_functions.py`).
//!
//! Each function is a unit struct implementing [`ScalarFunction`]: `forward` computes the
//! value from the inputs' values and saves what `backward` needs in a [`Context`];
//! `backward` turns the output's derivative into one derivative per input (the chain
//! rule). Sub and Div are not functions of their own: `a - b` is `Add(a, Neg(b))` and
//! `a / b` is `Mul(a, Inv(b))`, as in the course. The formulas are those of
//! [`crate::operators`], so the scalar engine and the tensor backends agree.

use crate::operators as ops;

use super::Scalar;

/// Values saved by `forward` for `backward` (MiniTorch's `ctx.save_for_backward`). Holds at
/// most two values inline, so recording a function allocates nothing for it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Context {
    saved: [f64; 2],
    len: u8,
}

impl Context {
    /// Save `values` (at most two) for the backward pass.
    ///
    /// # Panics
    /// When more than two values are saved; no function of this module does that.
    pub fn save_for_backward(&mut self, values: &[f64]) {
        assert!(
            values.len() <= 2,
            "a scalar Context holds at most two values"
        );
        self.saved[..values.len()].copy_from_slice(values);
        self.len = values.len() as u8;
    }

    /// The values saved by `forward`, in the order they were saved.
    pub fn saved_values(&self) -> &[f64] {
        &self.saved[..self.len as usize]
    }
}

/// The derivatives of a function's inputs, one per input, in input order.
pub type Derivatives = Vec<f64>;

/// A differentiable function of one or two scalars.
pub trait ScalarFunction {
    /// The MiniTorch name (`Add`, `Mul`, ...), shown in debug output.
    const NAME: &'static str;
    /// The value of the function at `inputs`; saves what `backward` needs in `ctx`.
    fn forward(ctx: &mut Context, inputs: &[f64]) -> f64;
    /// The derivative of each input, given the derivative `d_output` of the output.
    fn backward(ctx: &Context, d_output: f64) -> Derivatives;

    /// Run the function on scalars: the value, and the history when an input needs a
    /// derivative (results of constants are constants).
    fn apply(inputs: &[&Scalar]) -> Scalar {
        let mut values = [0.0; 2];
        for (v, s) in values.iter_mut().zip(inputs) {
            *v = s.value();
        }
        let mut ctx = Context::default();
        let out = Self::forward(&mut ctx, &values[..inputs.len()]);
        Scalar::from_function(out, Self::NAME, Self::backward, ctx, inputs)
    }
}

/// `a + b`
#[derive(Clone, Copy, Debug)]
pub struct Add;

impl ScalarFunction for Add {
    const NAME: &'static str = "Add";
    fn forward(_: &mut Context, x: &[f64]) -> f64 {
        ops::add(x[0], x[1])
    }
    fn backward(_: &Context, d: f64) -> Derivatives {
        vec![d, d]
    }
}

/// `a * b`
#[derive(Clone, Copy, Debug)]
pub struct Mul;

impl ScalarFunction for Mul {
    const NAME: &'static str = "Mul";
    fn forward(ctx: &mut Context, x: &[f64]) -> f64 {
        ctx.save_for_backward(&[x[0], x[1]]);
        ops::mul(x[0], x[1])
    }
    fn backward(ctx: &Context, d: f64) -> Derivatives {
        let s = ctx.saved_values();
        vec![d * s[1], d * s[0]]
    }
}

/// `1 / a`
#[derive(Clone, Copy, Debug)]
pub struct Inv;

impl ScalarFunction for Inv {
    const NAME: &'static str = "Inv";
    fn forward(ctx: &mut Context, x: &[f64]) -> f64 {
        ctx.save_for_backward(&[x[0]]);
        ops::inv(x[0])
    }
    fn backward(ctx: &Context, d: f64) -> Derivatives {
        vec![ops::inv_back(ctx.saved_values()[0], d)]
    }
}

/// `-a`
#[derive(Clone, Copy, Debug)]
pub struct Neg;

impl ScalarFunction for Neg {
    const NAME: &'static str = "Neg";
    fn forward(_: &mut Context, x: &[f64]) -> f64 {
        ops::neg(x[0])
    }
    fn backward(_: &Context, d: f64) -> Derivatives {
        vec![-d]
    }
}

/// `1 / (1 + e^-a)`
#[derive(Clone, Copy, Debug)]
pub struct Sigmoid;

impl ScalarFunction for Sigmoid {
    const NAME: &'static str = "Sigmoid";
    fn forward(ctx: &mut Context, x: &[f64]) -> f64 {
        let s = ops::sigmoid(x[0]);
        // The derivative s (1 - s) is cheaper from the output than from the input.
        ctx.save_for_backward(&[s]);
        s
    }
    fn backward(ctx: &Context, d: f64) -> Derivatives {
        let s = ctx.saved_values()[0];
        vec![d * s * (1.0 - s)]
    }
}

/// `max(a, 0)`
#[derive(Clone, Copy, Debug)]
pub struct ReLU;

impl ScalarFunction for ReLU {
    const NAME: &'static str = "ReLU";
    fn forward(ctx: &mut Context, x: &[f64]) -> f64 {
        ctx.save_for_backward(&[x[0]]);
        ops::relu(x[0])
    }
    fn backward(ctx: &Context, d: f64) -> Derivatives {
        vec![ops::relu_back(ctx.saved_values()[0], d)]
    }
}

/// `ln a`
#[derive(Clone, Copy, Debug)]
pub struct Log;

impl ScalarFunction for Log {
    const NAME: &'static str = "Log";
    fn forward(ctx: &mut Context, x: &[f64]) -> f64 {
        ctx.save_for_backward(&[x[0]]);
        ops::log(x[0])
    }
    fn backward(ctx: &Context, d: f64) -> Derivatives {
        vec![ops::log_back(ctx.saved_values()[0], d)]
    }
}

/// `e^a`
#[derive(Clone, Copy, Debug)]
pub struct Exp;

impl ScalarFunction for Exp {
    const NAME: &'static str = "Exp";
    fn forward(ctx: &mut Context, x: &[f64]) -> f64 {
        let e = ops::exp(x[0]);
        ctx.save_for_backward(&[e]);
        e
    }
    fn backward(ctx: &Context, d: f64) -> Derivatives {
        vec![d * ctx.saved_values()[0]]
    }
}

/// `1` if `a < b` else `0`; flat almost everywhere, so both derivatives are 0.
#[derive(Clone, Copy, Debug)]
pub struct LT;

impl ScalarFunction for LT {
    const NAME: &'static str = "LT";
    fn forward(_: &mut Context, x: &[f64]) -> f64 {
        ops::lt(x[0], x[1])
    }
    fn backward(_: &Context, _: f64) -> Derivatives {
        vec![0.0, 0.0]
    }
}

/// `1` if `a == b` else `0`; flat almost everywhere, so both derivatives are 0.
#[derive(Clone, Copy, Debug)]
pub struct EQ;

impl ScalarFunction for EQ {
    const NAME: &'static str = "EQ";
    fn forward(_: &mut Context, x: &[f64]) -> f64 {
        ops::eq(x[0], x[1])
    }
    fn backward(_: &Context, _: f64) -> Derivatives {
        vec![0.0, 0.0]
    }
}
