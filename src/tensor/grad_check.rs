//! Gradient checking: compare backpropagated gradients with central differences at
//! sampled indices (MiniTorch's `grad_check`).
//!
//! Tensors are f32, so the step is 1e-3 rather than the course's 1e-6 (which would drown
//! in f32 rounding); the tolerances are the course's rtol 1e-2, atol 1e-2.

use rand::{Rng, SeedableRng};

use super::{no_grad, Tensor};
use crate::error::{Error, Result};
use crate::layout::to_index;

/// Central-difference step used by [`grad_check`].
pub const EPS: f32 = 1e-3;
/// Relative tolerance.
pub const RTOL: f32 = 1e-2;
/// Absolute tolerance.
pub const ATOL: f32 = 1e-2;

/// Check `f`'s gradients at `samples` random indices of every input (seeded). `f` is
/// summed to a scalar before `backward`. Inputs are copied to fresh leaves first, so the
/// callers' tensors are untouched. Returns an error naming the input, index and both
/// values on the first mismatch.
pub fn grad_check(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    samples: usize,
    seed: u64,
) -> Result<()> {
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|t| Ok(t.contiguous()?.detach().requires_grad_(true)))
        .collect::<Result<_>>()?;
    let out = f(&leaves)?.sum_all()?;
    out.backward()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (i, x) in leaves.iter().enumerate() {
        if x.size() == 0 {
            continue;
        }
        let grad = x
            .grad()
            .map(|g| g.to_vec())
            .transpose()?
            .unwrap_or_else(|| vec![0.0; x.size()]);
        let base = x.to_vec()?;
        for _ in 0..samples {
            let ord = rng.random_range(0..x.size());
            let numeric = central_difference(&f, &leaves, i, &base, ord)?;
            let analytic = grad[ord];
            if (numeric - analytic).abs() > ATOL + RTOL * numeric.abs() {
                let mut index = vec![0; x.dims()];
                to_index(ord, x.shape(), &mut index);
                return Err(Error::Autodiff {
                    op: "grad_check",
                    msg: format!(
                        "input {i} (shape {:?}) at index {index:?}: backward gives {analytic}, central difference {numeric}",
                        x.shape()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// `(f(x + eps e_ord) - f(x - eps e_ord)) / (2 eps)` for input `i`, summed to a scalar.
pub fn central_difference(
    f: &impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    i: usize,
    base: &[f32],
    ord: usize,
) -> Result<f32> {
    no_grad(|| {
        let eval = |delta: f32| -> Result<f32> {
            let mut v = base.to_vec();
            v[ord] += delta;
            let moved = Tensor::from_vec(v, inputs[i].shape(), inputs[i].device())?;
            let mut args = inputs.to_vec();
            args[i] = moved;
            f(&args)?.sum_all()?.item()
        };
        Ok((eval(EPS)? - eval(-EPS)?) / (2.0 * EPS))
    })
}
