//! The dropout layer: PyTorch's inverted dropout in training mode, the identity in
//! evaluation mode. Each call draws a fresh mask: draw `counter` of the layer's `seed`
//! from the library's counter-based generator, so a run is reproducible and the masks are
//! the same on every backend.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Mode, Module, Parameter};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Dropout with probability `p` (PyTorch's `nn.Dropout`).
pub struct Dropout {
    p: f32,
    seed: u64,
    counter: AtomicU64,
    mode: Mode,
}

impl Dropout {
    /// A layer dropping with probability `p` in `[0, 1]`, masks from generator `seed`.
    pub fn new(p: f32, seed: u64) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "Dropout",
                format!("probability p = {p} is outside [0, 1]"),
            ));
        }
        Ok(Dropout {
            p,
            seed,
            counter: AtomicU64::new(0),
            mode: Mode::default(),
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Dropout of `x` in training mode (a new mask per call), `x` itself in evaluation.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.is_training() {
            return Ok(x.clone());
        }
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        x.dropout(self.p, true, self.seed, counter)
    }
}

impl Module for Dropout {
    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        Vec::new()
    }
    fn mode(&self) -> &Mode {
        &self.mode
    }
}
