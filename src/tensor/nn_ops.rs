//! The course's Module 4 network functions (tasks 4.3 and 4.4) with PyTorch's semantics,
//! composed from the primitives so every backend runs them and autodiff needs no new
//! backward beyond one: `tile`, `avgpool2d`, `maxpool2d`, `argmax`, `softmax`,
//! `log_softmax`, `nll_loss`, `cross_entropy`, `binary_cross_entropy` and `dropout`.
//!
//! Ties: [`Tensor::max`] keeps the course's rule (every tied maximum gets the whole
//! gradient), while [`Tensor::maxpool2d`] follows PyTorch: each window's gradient goes to
//! its first maximum (the index [`Tensor::argmax`] returns), so flat regions do not
//! multiply gradients.

use smallvec::smallvec;

use crate::backend::pool2d::Windows;
use crate::backend::random;
use crate::backend::{ReduceOp, Storage};
use crate::error::{Error, Result};
use crate::layout::Layout;

use super::{Function, Grads, Tensor};

/// How a loss combines its per-sample values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Reduction {
    /// The mean over samples (PyTorch's default).
    #[default]
    Mean,
    /// The sum over samples.
    Sum,
}

/// Errors unless `dim` is a dimension of `t`.
fn check_dim(op: &'static str, t: &Tensor, dim: usize) -> Result<()> {
    if dim >= t.dims() {
        return Err(Error::shape(
            op,
            &[t.shape()],
            format!("dimension {dim} out of range for {} dimensions", t.dims()),
        ));
    }
    Ok(())
}

/// `0, 1, ..., n-1` along `dim` of a tensor of `dims` dimensions (size 1 elsewhere), on
/// `like`'s device; each value plus `shift`.
fn arange_along(like: &Tensor, dims: usize, dim: usize, shift: f32) -> Result<Tensor> {
    let n = like.shape()[dim];
    let mut shape = vec![1; dims];
    shape[dim] = n;
    let v = (0..n).map(|i| i as f32 + shift).collect();
    Tensor::from_vec(v, &shape, like.device())
}

/// The recorded max whose gradient goes to the first maximum only (PyTorch's rule).
struct MaxFirst(usize);

impl Function for MaxFirst {
    fn name(&self) -> &'static str {
        "MaxFirst"
    }
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads> {
        let x = &inputs[0];
        let first = x.argmax(self.0)?;
        let mask = arange_along(x, x.dims(), self.0, 0.0)?.eq(&first)?;
        Ok(smallvec![Some(mask.mul(grad)?)])
    }
}

/// The recorded max pool (see [`Tensor::maxpool2d`]): its windows and the position of
/// each window's first maximum.
struct MaxPool2d {
    windows: Windows,
    first: Storage,
    /// Pooled in channel-major order (see [`planes`]).
    swapped: bool,
}

/// How a pool walks its input `x`: in `x`'s own plane order. A channel-major input (a
/// convolution's output, `[B, C, H, W]` stored as `[C, B, H, W]`) is pooled as
/// `[C, B, H, W]` (the planes are independent, so this only relabels them), and its
/// result and gradient come out channel-major too: the next convolution and the
/// activation's backward then read them contiguously. Returns the windows and the
/// input's layout in that order, and whether it is swapped.
fn planes(w: Windows, l: &Layout) -> Result<(Windows, Layout, bool)> {
    let st = l.strides();
    if st[1] > st[0] && w.shape[0] > 1 && w.shape[1] > 1 {
        let [b, c, h, wd] = w.shape;
        let swapped = Windows {
            shape: [c, b, h, wd],
            kernel: w.kernel,
        };
        return Ok((swapped, l.permute(&[1, 0, 2, 3])?, true));
    }
    Ok((w, l.clone(), false))
}

/// A contiguous result of `shape` in the pool's order, seen in the tensor's
/// (`[B, C, ..]`).
fn unplane(shape: [usize; 4], swapped: bool) -> Result<Layout> {
    let l = Layout::contiguous(&shape);
    if swapped {
        l.permute(&[1, 0, 2, 3])
    } else {
        Ok(l)
    }
}

/// `l` (a gradient in the tensor's order) in the pool's order.
fn replane(l: &Layout, swapped: bool) -> Result<Layout> {
    if swapped {
        l.permute(&[1, 0, 2, 3])
    } else {
        Ok(l.clone())
    }
}

impl Function for MaxPool2d {
    fn name(&self) -> &'static str {
        "MaxPool2d"
    }

    fn backward(&self, grad: &Tensor, _inputs: &[Tensor]) -> Result<Grads> {
        let w = &self.windows;
        let gl = replane(grad.layout(), self.swapped)?;
        let gx = grad
            .backend()
            .max_pool2d_backward(grad.storage(), &gl, &self.first, w)?;
        Ok(smallvec![Some(Tensor::from_storage(
            gx,
            unplane(w.shape, self.swapped)?,
            grad.backend().clone(),
        ))])
    }
}

/// The recorded average pool (see [`Tensor::avgpool2d`]).
struct AvgPool2d {
    windows: Windows,
    /// Pooled in channel-major order (see [`planes`]).
    swapped: bool,
}

impl Function for AvgPool2d {
    fn name(&self) -> &'static str {
        "AvgPool2d"
    }

    fn backward(&self, grad: &Tensor, _inputs: &[Tensor]) -> Result<Grads> {
        let w = &self.windows;
        let gl = replane(grad.layout(), self.swapped)?;
        let gx = grad.backend().avg_pool2d_backward(grad.storage(), &gl, w)?;
        Ok(smallvec![Some(Tensor::from_storage(
            gx,
            unplane(w.shape, self.swapped)?,
            grad.backend().clone(),
        ))])
    }
}

impl Tensor {
    /// Maximum over `dim` (kept with size 1) whose gradient goes to the first maximum of
    /// each slice; the value is [`Tensor::max`]'s (NaN when the slice holds a NaN).
    pub fn max_first(&self, dim: usize) -> Result<Tensor> {
        check_dim("max_first", self, dim)?;
        let (s, l) = self.reduce_storage(ReduceOp::Max, dim)?;
        Ok(Tensor::from_op(
            s,
            l,
            self.backend().clone(),
            MaxFirst(dim),
            &[self],
        ))
    }

    /// Index of the first maximum along `dim` (kept with size 1), as f32 values; no
    /// gradient. NaN rule as [`Tensor::max`]: a slice holding a NaN gives its first NaN.
    pub fn argmax(&self, dim: usize) -> Result<Tensor> {
        check_dim("argmax", self, dim)?;
        let x = self.detach();
        let m = x.max(dim)?;
        // A hit is a maximum, or a NaN (which is the maximum exactly when there is one).
        let not_nan = x.eq(&x)?;
        let hit = x.eq(&m)?.sub(&not_nan)?.add_scalar(1.0)?;
        // Hits keep their index, misses become n: n + hit * (index - n).
        let n = self.shape()[dim] as f32;
        let cand = hit
            .mul(&arange_along(&x, x.dims(), dim, -n)?)?
            .add_scalar(n)?;
        cand.neg()?.max(dim)?.neg()
    }

    /// The course's `tile`: `[B, C, H, W]` to `[B, C, H/kh, W/kw, kh*kw]`, each window's
    /// values along the last dimension (kh must divide H and kw divide W).
    pub fn tile(&self, kernel: [usize; 2]) -> Result<Tensor> {
        self.tile_named("tile", kernel)
    }

    fn tile_named(&self, op: &'static str, [kh, kw]: [usize; 2]) -> Result<Tensor> {
        let s = self.shape();
        if s.len() != 4 {
            return Err(Error::shape(op, &[s], "needs an input [B, C, H, W]"));
        }
        if kh == 0 || kw == 0 || !s[2].is_multiple_of(kh) || !s[3].is_multiple_of(kw) {
            return Err(Error::shape(
                op,
                &[s, &[kh, kw]],
                "the kernel must divide the height and width",
            ));
        }
        let (nh, nw) = (s[2] / kh, s[3] / kw);
        self.contiguous()?
            .view(&[s[0], s[1], nh, kh, nw, kw])?
            .permute(&[0, 1, 2, 4, 3, 5])?
            .contiguous()?
            .view(&[s[0], s[1], nh, nw, kh * kw])
    }

    /// Average pooling with the course's windows: kernel = stride, dividing H and W;
    /// `[B, C, H, W]` to `[B, C, H/kh, W/kw]`.
    pub fn avgpool2d(&self, kernel: [usize; 2]) -> Result<Tensor> {
        let w = Windows::new("avgpool2d", self.shape(), kernel)?;
        let (w, xl, swapped) = planes(w, self.layout())?;
        let m = self.backend().avg_pool2d(self.storage(), &xl, &w)?;
        Ok(Tensor::from_op(
            m,
            unplane(w.out_shape(), swapped)?,
            self.backend().clone(),
            AvgPool2d {
                windows: w,
                swapped,
            },
            &[self],
        ))
    }

    /// Max pooling with the course's windows (kernel = stride, dividing H and W); each
    /// window's gradient goes to its first maximum (PyTorch's rule).
    ///
    /// One backend op each way ([`Backend::max_pool2d`](crate::backend::Backend::max_pool2d)
    /// and its backward): the forward also returns each window's first maximum, which the
    /// backward sends the gradient to.
    pub fn maxpool2d(&self, kernel: [usize; 2]) -> Result<Tensor> {
        let w = Windows::new("maxpool2d", self.shape(), kernel)?;
        let (w, xl, swapped) = planes(w, self.layout())?;
        let (m, first) = self.backend().max_pool2d(self.storage(), &xl, &w)?;
        Ok(Tensor::from_op(
            m,
            unplane(w.out_shape(), swapped)?,
            self.backend().clone(),
            MaxPool2d {
                windows: w,
                first,
                swapped,
            },
            &[self],
        ))
    }

    /// Softmax along `dim`: `exp(x - max) / sum(exp(x - max))`.
    pub fn softmax(&self, dim: usize) -> Result<Tensor> {
        check_dim("softmax", self, dim)?;
        let m = self.detach().max(dim)?;
        let e = self.sub(&m)?.exp()?;
        let s = e.sum(dim)?;
        e.div(&s)
    }

    /// Log-softmax along `dim`: `x - max - log(sum(exp(x - max)))`.
    pub fn log_softmax(&self, dim: usize) -> Result<Tensor> {
        check_dim("log_softmax", self, dim)?;
        // The max is a constant here: it cancels, and stops exp from overflowing.
        let m = self.detach().max(dim)?;
        let z = self.sub(&m)?;
        let lse = z.exp()?.sum(dim)?.log()?;
        z.sub(&lse)
    }

    /// One-hot rows `[N, C]` of `labels`, checked against a score tensor `[N, C]`.
    fn one_hot(&self, op: &'static str, labels: &[u32]) -> Result<Tensor> {
        let s = self.shape();
        if s.len() != 2 || labels.len() != s[0] {
            return Err(Error::shape(
                op,
                &[s, &[labels.len()]],
                "needs scores [N, C] and N labels",
            ));
        }
        let c = s[1];
        let mut v = crate::backend::check::host_vec(op, s[0] * c, 0.0)?;
        for (i, &l) in labels.iter().enumerate() {
            if l as usize >= c {
                return Err(Error::shape(
                    op,
                    &[s, &[labels.len()]],
                    format!("label {l} at position {i} is out of range for {c} classes"),
                ));
            }
            v[i * c + l as usize] = 1.0;
        }
        Tensor::from_vec(v, s, self.device())
    }

    /// Sum or mean (over the first dimension's `n` samples) of per-sample values.
    fn reduce_loss(per: &Tensor, n: usize, reduction: Reduction) -> Result<Tensor> {
        let total = per.sum_all()?;
        match reduction {
            Reduction::Sum => Ok(total),
            Reduction::Mean => total.mul_scalar(1.0 / n.max(1) as f32),
        }
    }

    /// Negative log-likelihood of log-probabilities `[N, C]` at integer `labels`
    /// (PyTorch's `nll_loss`). A `-inf` log-probability of another class gives NaN (the
    /// label is picked with a one-hot product).
    pub fn nll_loss(&self, labels: &[u32], reduction: Reduction) -> Result<Tensor> {
        let hot = self.one_hot("nll_loss", labels)?;
        let picked = self.mul(&hot)?.sum(1)?;
        Self::reduce_loss(&picked.neg()?, labels.len(), reduction)
    }

    /// Cross-entropy of logits `[N, C]` at integer `labels` (PyTorch's `cross_entropy`):
    /// `log(sum(exp(x))) - x[label]` per row, through the log-sum-exp trick, so finite for
    /// any finite logits.
    pub fn cross_entropy(&self, labels: &[u32], reduction: Reduction) -> Result<Tensor> {
        let hot = self.one_hot("cross_entropy", labels)?;
        check_dim("cross_entropy", self, 1)?;
        let m = self.detach().max(1)?;
        let lse = self.sub(&m)?.exp()?.sum(1)?.log()?;
        // The label's logit is picked from x itself (finite), not from x - max, which is
        // -inf for logits far below the maximum (and -inf * 0 is NaN).
        let picked = self.mul(&hot)?.sum(1)?;
        let per = lse.add(&m)?.sub(&picked)?;
        Self::reduce_loss(&per, labels.len(), reduction)
    }

    /// Labels held in a tensor of integer values (`[N]` or `[N, 1]`), as `u32`s.
    pub fn labels(&self) -> Result<Vec<u32>> {
        let v = self.to_vec()?;
        v.iter()
            .map(|&x| {
                if x >= 0.0 && x.fract() == 0.0 && x < u32::MAX as f32 {
                    Ok(x as u32)
                } else {
                    Err(Error::shape(
                        "labels",
                        &[self.shape()],
                        format!("label {x} is not a non-negative integer"),
                    ))
                }
            })
            .collect()
    }

    /// Binary cross-entropy of probabilities `self` against `target` (same shape; PyTorch's
    /// `binary_cross_entropy`): `-(y log p + (1 - y) log(1 - p))` with each log clamped at
    /// -100 as PyTorch does, so p = 0 or 1 gives a finite loss.
    pub fn binary_cross_entropy(&self, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
        if self.shape() != target.shape() {
            return Err(Error::shape(
                "binary_cross_entropy",
                &[self.shape(), target.shape()],
                "probabilities and targets need one shape",
            ));
        }
        // max(l, -100) as relu(l + 100) - 100.
        let clamp =
            |l: Tensor| -> Result<Tensor> { l.add_scalar(100.0)?.relu()?.add_scalar(-100.0) };
        let lp = clamp(self.log()?)?;
        let lq = clamp(self.neg()?.add_scalar(1.0)?.log()?)?;
        let one_minus_y = target.neg()?.add_scalar(1.0)?;
        let per = target.mul(&lp)?.add(&one_minus_y.mul(&lq)?)?.neg()?;
        let n = self.size();
        match reduction {
            Reduction::Sum => per.sum_all(),
            Reduction::Mean => per.sum_all()?.mul_scalar(1.0 / n.max(1) as f32),
        }
    }

    /// Values uniform in `[0, 1)` of draw `counter` of generator `seed` (the library's
    /// one counter-based generator, `backend::random`), on `device`: the same values on
    /// every backend.
    pub fn rand_draw(
        shape: &[usize],
        seed: u64,
        counter: u64,
        device: crate::backend::Device,
    ) -> Result<Tensor> {
        let n = crate::layout::checked_shape_size("rand", shape)?;
        let backend = device.backend()?;
        let s = backend.uniform(n, random::key(seed, counter))?;
        Ok(Tensor::from_storage(s, Layout::contiguous(shape), backend))
    }

    /// Dropout (PyTorch's, inverted): in training each element is zeroed with probability
    /// `p` and the others scaled by `1 / (1 - p)`; in evaluation the input itself. The mask
    /// is draw `counter` of generator `seed` ([`Tensor::rand_draw`]: element kept when its
    /// value is at least `p`), the same on every backend. `p` must be in `[0, 1]` (1 drops
    /// everything, as in PyTorch and the course).
    pub fn dropout(&self, p: f32, training: bool, seed: u64, counter: u64) -> Result<Tensor> {
        self.dropout_with(p, training, seed, counter, true)
    }

    /// The course's dropout: the same mask as [`Tensor::dropout`] but no scaling (the
    /// course's `ignore=True` is `training = false`).
    pub fn dropout_unscaled(
        &self,
        p: f32,
        training: bool,
        seed: u64,
        counter: u64,
    ) -> Result<Tensor> {
        self.dropout_with(p, training, seed, counter, false)
    }

    fn dropout_with(
        &self,
        p: f32,
        training: bool,
        seed: u64,
        counter: u64,
        scaled: bool,
    ) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::shape(
                "dropout",
                &[self.shape()],
                format!("probability p = {p} is outside [0, 1]"),
            ));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        let u = Tensor::rand_draw(self.shape(), seed, counter, self.device())?;
        // keep = 1 - (u < p); the scale is folded into the mask (0 when p = 1).
        let p_t = self.full_like(&[1], p)?;
        let scale = if scaled && p < 1.0 {
            1.0 / (1.0 - p)
        } else if scaled {
            0.0
        } else {
            1.0
        };
        let mask = u.lt(&p_t)?.neg()?.add_scalar(1.0)?.mul_scalar(scale)?;
        self.mul(&mask)
    }
}
