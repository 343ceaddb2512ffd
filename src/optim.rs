//! Optimisers (MiniTorch's `optim.py`): stochastic gradient descent with optional
//! momentum and weight decay.

use crate::error::{Error, Result};
use crate::nn::Parameter;
use crate::tensor::{no_grad, Tensor};

/// Stochastic gradient descent: `p <- p - lr * (g + weight_decay * p)`, with heavy-ball
/// momentum `v <- momentum * v + g` when momentum is non-zero.
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

    /// Forget every parameter's gradient.
    pub fn zero_grad(&self) {
        self.params.iter().for_each(Parameter::zero_grad);
    }

    /// Update every parameter that has a gradient.
    pub fn step(&mut self) -> Result<()> {
        self.validate()?;
        no_grad(|| {
            for (p, v) in self.params.iter().zip(self.velocity.iter_mut()) {
                let value = p.value();
                let Some(mut g) = value.grad() else {
                    continue;
                };
                if self.weight_decay != 0.0 {
                    g = g.add(&value.mul_scalar(self.weight_decay)?)?;
                }
                if self.momentum != 0.0 {
                    g = match v.take() {
                        Some(prev) => prev.mul_scalar(self.momentum)?.add(&g)?,
                        None => g,
                    };
                    *v = Some(g.clone());
                }
                // p + (-lr) g: two kernels (scale, add) rather than sub's three.
                p.update(value.add(&g.mul_scalar(-self.lr)?)?);
            }
            Ok(())
        })
    }
}
