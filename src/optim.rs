//! Optimisers (MiniTorch's `optim.py`): stochastic gradient descent with optional
//! momentum and weight decay, and Adam / AdamW (`adam.rs`).

use std::sync::OnceLock;

use smallvec::{smallvec, SmallVec};

use crate::backend::fused::{Program, ProgramBuilder};
use crate::error::{Error, Result};
use crate::nn::Parameter;
use crate::tensor::{no_grad, Tensor};

mod adam;
pub use adam::Adam;

/// Stochastic gradient descent: `p <- p - lr * (g + weight_decay * p)`, with heavy-ball
/// momentum `v <- momentum * v + g` when momentum is non-zero.
///
/// One step on `f(w) = sum(w^2)`, whose gradient is `2w`:
///
/// ```
/// use minitorch::{nn::Parameter, optim::Sgd, Device, Tensor};
/// # fn main() -> minitorch::Result<()> {
/// let w = Parameter::new(Tensor::from_vec(vec![1.0, -2.0], &[2], Device::Cpu)?);
/// let mut sgd = Sgd::new(vec![w.clone()], 0.25);
/// let v = w.value();
/// v.mul(&v)?.sum_all()?.backward()?;
/// sgd.step()?;
/// assert_eq!(w.value().to_vec()?, vec![0.5, -1.0]); // w - 0.25 * 2w
/// sgd.zero_grad();
/// # Ok(())
/// # }
/// ```
pub struct Sgd {
    params: Vec<Parameter>,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    velocity: Vec<Option<Tensor>>,
}

impl Sgd {
    /// Plain SGD over `params` with learning rate `lr`, or an error when `lr` is not
    /// finite (the checked form of [`Sgd::new`]).
    pub fn try_new(params: Vec<Parameter>, lr: f32) -> Result<Sgd> {
        let sgd = Sgd::new(params, lr);
        sgd.validate()?;
        Ok(sgd)
    }

    /// Plain SGD over `params` with learning rate `lr`. A non-finite `lr` (or momentum,
    /// or weight decay) makes [`Sgd::step`] return an error before it changes anything;
    /// [`Sgd::try_new`] reports it here.
    pub fn new(params: Vec<Parameter>, lr: f32) -> Sgd {
        let n = params.len();
        Sgd {
            params,
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
            velocity: vec![None; n],
        }
    }

    /// Use heavy-ball momentum (0 disables it).
    pub fn with_momentum(mut self, momentum: f32) -> Sgd {
        self.momentum = momentum;
        self
    }

    /// Add `weight_decay * p` to every gradient (L2 regularisation).
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Sgd {
        self.weight_decay = weight_decay;
        self
    }

    /// An error naming the first hyperparameter that is NaN or infinite: such a value
    /// would turn every parameter into NaN in one step.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
        ] {
            if !v.is_finite() {
                return Err(Error::invalid(
                    "sgd",
                    format!("{name} is {v}; it must be a finite number"),
                ));
            }
        }
        Ok(())
    }

    /// The learning rate.
    pub fn lr(&self) -> f32 {
        self.lr
    }

    /// Sets the learning rate for the following steps (a schedule); `step` checks it.
    pub fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    /// Forget every parameter's gradient.
    pub fn zero_grad(&self) {
        self.params.iter().for_each(Parameter::zero_grad);
    }

    /// Update every parameter that has a gradient: one fused kernel per parameter (the new
    /// value, and the new velocity with momentum), with the learning rate, weight decay and
    /// momentum as kernel parameters.
    pub fn step(&mut self) -> Result<()> {
        self.validate()?;
        let params = [-self.lr, self.weight_decay, self.momentum];
        no_grad(|| {
            for (p, v) in self.params.iter().zip(self.velocity.iter_mut()) {
                let value = p.value();
                let Some(g) = value.grad() else {
                    continue;
                };
                let prev = if self.momentum != 0.0 { v.take() } else { None };
                let program = step_program(
                    self.weight_decay != 0.0,
                    self.momentum != 0.0,
                    prev.is_some(),
                );
                let mut inputs: SmallVec<[&Tensor; 3]> = smallvec![&value, &g];
                inputs.extend(prev.as_ref());
                let mut outs = Tensor::fused(program, &inputs, &params[..program.params()])?;
                if self.momentum != 0.0 {
                    *v = outs.pop();
                }
                p.update(outs.swap_remove(0));
            }
            Ok(())
        })
    }
}

/// The update of one parameter as a program over `p`, `g` (and the velocity `v` when there
/// is one) with parameters `[-lr, weight_decay, momentum]`: the primitives' formulas, in
/// their order: `g += p * wd`; `v = v * momentum + g` (or `g` on the first step);
/// `p + v * (-lr)`. Outputs the new value, then the new velocity with momentum.
/// Built once per process for each of the eight variants (not once per parameter per step).
fn step_program(decay: bool, momentum: bool, has_velocity: bool) -> &'static Program {
    static PROGRAMS: [OnceLock<Program>; 8] = [const { OnceLock::new() }; 8];
    let i = decay as usize | (momentum as usize) << 1 | (has_velocity as usize) << 2;
    PROGRAMS[i].get_or_init(|| build_step_program(decay, momentum, has_velocity))
}

fn build_step_program(decay: bool, momentum: bool, has_velocity: bool) -> Program {
    let mut b = ProgramBuilder::new();
    let (p, mut g) = (b.input(0), b.input(1));
    if decay {
        let wd = b.param(1);
        let pd = b.mul(p, wd);
        g = b.add(g, pd);
    }
    if has_velocity {
        let (v, m) = (b.input(2), b.param(2));
        let vm = b.mul(v, m);
        g = b.add(vm, g);
    }
    let neg_lr = b.param(0);
    let step = b.mul(g, neg_lr);
    let new_p = b.add(p, step);
    if momentum {
        b.build(&[new_p, g])
    } else {
        b.build(&[new_p])
    }
}

/// What a training loop needs of an optimiser: forget the gradients, then update the
/// parameters from new ones. [`Sgd`] and [`Adam`] implement it, so one loop (the image
/// trainer, the data-parallel step) serves both.
pub trait Optimizer {
    /// Forget every parameter's gradient.
    fn zero_grad(&self);
    /// One update of every parameter from its gradient.
    fn step(&mut self) -> Result<()>;
    /// The learning rate.
    fn lr(&self) -> f32;
    /// Sets the learning rate for the following steps (a schedule); the next `step`
    /// checks it.
    fn set_lr(&mut self, lr: f32);
}

impl Optimizer for Sgd {
    fn zero_grad(&self) {
        Sgd::zero_grad(self)
    }
    fn step(&mut self) -> Result<()> {
        Sgd::step(self)
    }
    fn lr(&self) -> f32 {
        Sgd::lr(self)
    }
    fn set_lr(&mut self, lr: f32) {
        Sgd::set_lr(self, lr)
    }
}

impl Optimizer for Adam {
    fn zero_grad(&self) {
        Adam::zero_grad(self)
    }
    fn step(&mut self) -> Result<()> {
        Adam::step(self)
    }
    fn lr(&self) -> f32 {
        Adam::lr(self)
    }
    fn set_lr(&mut self, lr: f32) {
        Adam::set_lr(self, lr)
    }
}
