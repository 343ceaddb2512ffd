//! Adam and AdamW with PyTorch's formulas and defaults (`torch.optim.Adam` / `AdamW`,
//! without amsgrad): per parameter, with `t` its own step count,
//! - Adam's weight decay is L2: `g += wd * p`; AdamW's is decoupled: `p *= 1 - lr * wd`;
//! - `m = lerp(m, g, 1 - b1)`, `v = b2 * v + (1 - b2) * g * g`;
//! - `p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
//!
//! The bias corrections are computed on the host in f64 (as PyTorch does with a Python
//! float step) and passed as kernel parameters; each parameter's update, with its two
//! moment buffers, is one fused kernel (three outputs), like [`Sgd`](super::Sgd).

use std::sync::OnceLock;

use crate::backend::fused::{Program, ProgramBuilder};
use crate::backend::UnaryOp;
use crate::error::{Error, Result};
use crate::nn::Parameter;
use crate::tensor::{no_grad, Tensor};

/// How weight decay enters the update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decay {
    None,
    /// Adam: added to the gradient.
    L2,
    /// AdamW: applied to the parameter directly.
    Decoupled,
}

/// Adam (`Adam::new`) or AdamW (`Adam::adamw`).
pub struct Adam {
    params: Vec<Parameter>,
    lr: f32,
    betas: (f32, f32),
    eps: f32,
    weight_decay: f32,
    decoupled: bool,
    /// Per parameter: the step count and the first and second moments.
    state: Vec<Option<(u64, Tensor, Tensor)>>,
}

impl Adam {
    /// Adam over `params` with learning rate `lr` and PyTorch's defaults: betas (0.9,
    /// 0.999), eps 1e-8, no weight decay.
    pub fn new(params: Vec<Parameter>, lr: f32) -> Adam {
        let n = params.len();
        Adam {
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            state: (0..n).map(|_| None).collect(),
        }
    }

    /// AdamW (decoupled weight decay) with PyTorch's defaults: betas (0.9, 0.999), eps
    /// 1e-8, weight decay 1e-2.
    pub fn adamw(params: Vec<Parameter>, lr: f32) -> Adam {
        Adam {
            weight_decay: 1e-2,
            decoupled: true,
            ..Adam::new(params, lr)
        }
    }

    /// The moment decay rates `(b1, b2)`.
    pub fn with_betas(mut self, b1: f32, b2: f32) -> Adam {
        self.betas = (b1, b2);
        self
    }

    /// The denominator's guard.
    pub fn with_eps(mut self, eps: f32) -> Adam {
        self.eps = eps;
        self
    }

    /// The weight decay (L2 for Adam, decoupled for AdamW).
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Adam {
        self.weight_decay = weight_decay;
        self
    }

    /// The learning rate.
    pub fn lr(&self) -> f32 {
        self.lr
    }

    /// Sets the learning rate for the following steps (a schedule); `step` checks it.
    pub fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    /// An error naming the first hyperparameter out of PyTorch's accepted range.
    pub fn validate(&self) -> Result<()> {
        let op = if self.decoupled { "adamw" } else { "adam" };
        let bad = |name: &str, v: f32, range: &str| {
            Err(Error::invalid(
                op,
                format!("{name} is {v}; it must be {range}"),
            ))
        };
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("lr", self.lr, "a finite number >= 0");
        }
        for (name, b) in [("beta1", self.betas.0), ("beta2", self.betas.1)] {
            if !(0.0..1.0).contains(&b) {
                return bad(name, b, "in [0, 1)");
            }
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return bad("eps", self.eps, "a finite number >= 0");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", self.weight_decay, "a finite number >= 0");
        }
        Ok(())
    }

    /// Forget every parameter's gradient.
    pub fn zero_grad(&self) {
        self.params.iter().for_each(Parameter::zero_grad);
    }

    /// Update every parameter that has a gradient: one fused kernel each.
    pub fn step(&mut self) -> Result<()> {
        self.validate()?;
        let decay = match (self.weight_decay != 0.0, self.decoupled) {
            (false, _) => Decay::None,
            (true, false) => Decay::L2,
            (true, true) => Decay::Decoupled,
        };
        let program = step_program(decay);
        let (b1, b2) = (self.betas.0 as f64, self.betas.1 as f64);
        no_grad(|| {
            for (p, st) in self.params.iter().zip(self.state.iter_mut()) {
                let value = p.value();
                let Some(g) = value.grad() else {
                    continue;
                };
                let (t, m, v) = match st.take() {
                    Some(s) => s,
                    None => (
                        0,
                        value.full_like(value.shape(), 0.0)?,
                        value.full_like(value.shape(), 0.0)?,
                    ),
                };
                let t = t + 1;
                let lr = self.lr as f64;
                let bc1 = 1.0 - b1.powf(t as f64);
                let bc2 = 1.0 - b2.powf(t as f64);
                let params = [
                    (-lr / bc1) as f32,
                    (1.0 / bc2.sqrt()) as f32,
                    self.eps,
                    (1.0 - b1) as f32,
                    self.betas.1,
                    (1.0 - b2) as f32,
                    self.weight_decay,
                    (1.0 - lr * self.weight_decay as f64) as f32,
                ];
                // A program without decay reads only the first parameters.
                let used = &params[..program.params()];
                let mut outs = Tensor::fused(program, &[&value, &g, &m, &v], used)?;
                let (nv, nm) = (outs.pop(), outs.pop());
                let np = outs.pop();
                match (np, nm, nv) {
                    (Some(np), Some(nm), Some(nv)) => {
                        p.update(np);
                        *st = Some((t, nm, nv));
                    }
                    _ => return Err(Error::invalid("adam", "the step kernel lost an output")),
                }
            }
            Ok(())
        })
    }
}

/// The update as a program over `p, g, m, v` with parameters `[-lr/bc1, 1/sqrt(bc2), eps,
/// 1-b1, b2, 1-b2, wd, 1-lr*wd]`; outputs the new `p`, `m`, `v`. Built once per decay kind.
fn step_program(decay: Decay) -> &'static Program {
    static P: [OnceLock<Program>; 3] = [const { OnceLock::new() }; 3];
    P[decay as usize].get_or_init(|| build(decay))
}

fn build(decay: Decay) -> Program {
    let mut b = ProgramBuilder::new();
    let (mut p, mut g, m, v) = (b.input(0), b.input(1), b.input(2), b.input(3));
    match decay {
        Decay::None => {}
        Decay::L2 => {
            let wd = b.param(6);
            let pd = b.mul(p, wd);
            g = b.add(g, pd);
        }
        Decay::Decoupled => {
            let f = b.param(7);
            p = b.mul(p, f);
        }
    }
    // m + (1 - b1) * (g - m)
    let w1 = b.param(3);
    let neg_m = b.unary(UnaryOp::Neg, m);
    let diff = b.add(g, neg_m);
    let step_m = b.mul(w1, diff);
    let m2 = b.add(m, step_m);
    // v * b2 + (1 - b2) * g * g
    let (b2, w2) = (b.param(4), b.param(5));
    let vb = b.mul(v, b2);
    let wg = b.mul(w2, g);
    let wgg = b.mul(wg, g);
    let v2 = b.add(vb, wgg);
    // p + (-lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
    let (inv_bc2, eps, neg_step) = (b.param(1), b.param(2), b.param(0));
    let root = b.unary(UnaryOp::Sqrt, v2);
    let scaled = b.mul(root, inv_bc2);
    let denom = b.add(scaled, eps);
    let inv = b.unary(UnaryOp::Inv, denom);
    let ratio = b.mul(m2, inv);
    let delta = b.mul(neg_step, ratio);
    let p2 = b.add(p, delta);
    b.build(&[p2, m2, v2])
}
