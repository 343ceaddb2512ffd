//! Pooling over 2-D windows with kernel = stride. Max pooling ([`Backend::max_pool2d`]
//! and its backward): each window's maximum and the position of its first maximum
//! (PyTorch's rule for the gradient; the NaN rule of `max`: a window holding a NaN gives
//! NaN and its first NaN), then the gradient sent to that position alone. Average pooling
//! ([`Backend::avg_pool2d`]): each window's mean, and its gradient spread back.
//!
//! The defaults here compose the primitives (a strided copy, reductions and fused
//! programs), so every backend runs them; the CPU overrides each with one direct pass.
//!
//! [`Backend::avg_pool2d`]: super::Backend::avg_pool2d
//!
//! [`Backend::max_pool2d`]: super::Backend::max_pool2d

use std::sync::OnceLock;

use smallvec::smallvec;

use super::fused::{Program, ProgramBuilder};
use super::{check, Backend, BinaryOp, ReduceOp, Storage, UnaryOp};
use crate::error::{Error, Result};
use crate::layout::Layout;

/// The windows of a 2-D pooling with kernel = stride: `[B, C, H, W]` cut into
/// `[B, C, H/kh, W/kw]` windows of `kh x kw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// The input's shape `[B, C, H, W]`.
    pub shape: [usize; 4],
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
}

impl Windows {
    /// Errors (naming `op` and the shapes) unless `shape` is `[B, C, H, W]` and the kernel
    /// divides H and W.
    pub fn new(op: &'static str, shape: &[usize], [kh, kw]: [usize; 2]) -> Result<Windows> {
        if shape.len() != 4 {
            return Err(Error::shape(op, &[shape], "needs an input [B, C, H, W]"));
        }
        if kh == 0 || kw == 0 || !shape[2].is_multiple_of(kh) || !shape[3].is_multiple_of(kw) {
            return Err(Error::shape(
                op,
                &[shape, &[kh, kw]],
                "the kernel must divide the height and width",
            ));
        }
        Ok(Windows {
            shape: [shape[0], shape[1], shape[2], shape[3]],
            kernel: [kh, kw],
        })
    }

    /// Values per window.
    pub fn k(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// `[B, C, H/kh, W/kw]`.
    pub fn out_shape(&self) -> [usize; 4] {
        let [b, c, h, w] = self.shape;
        [b, c, h / self.kernel[0], w / self.kernel[1]]
    }

    /// Windows in all.
    pub fn count(&self) -> usize {
        self.out_shape().iter().product()
    }

    /// `l` (of the input's shape) seen as `[B, C, H/kh, W/kw, kh, kw]`: each window's
    /// values last (a strided view, no copy).
    pub fn tiled(&self, l: &Layout) -> Result<Layout> {
        let [b, c, nh, nw] = self.out_shape();
        let [kh, kw] = self.kernel;
        let st = l.strides();
        Layout::new(
            smallvec![b, c, nh, nw, kh, kw],
            smallvec![st[0], st[1], st[2] * kh, st[3] * kw, st[2], st[3]],
            l.offset(),
        )
    }

    /// `l` (of the output's shape) seen as `[B, C, H/kh, kh, W/kw, kw]` with stride 0 along
    /// `kh` and `kw`: each window's value over its positions, in the input's element order.
    pub fn spread(&self, l: &Layout) -> Result<Layout> {
        let [b, c, nh, nw] = self.out_shape();
        let [kh, kw] = self.kernel;
        let st = l.strides();
        Layout::new(
            smallvec![b, c, nh, kh, nw, kw],
            smallvec![st[0], st[1], st[2], 0, st[3], 0],
            l.offset(),
        )
    }

    /// Contract checks of both directions: `l` has the input's shape (forward) or the
    /// output's (backward) and lies inside `x`. (A backend checks its own allocations.)
    pub fn check(&self, op: &'static str, x: &Storage, l: &Layout, out: bool) -> Result<()> {
        let want = if out { self.out_shape() } else { self.shape };
        if l.shape() != want {
            return Err(Error::shape(
                op,
                &[l.shape(), &want],
                "shape of the pooled tensor",
            ));
        }
        check::fits(op, x, l)
    }
}

/// Each position's candidacy as its window's first maximum, negated: `-i` for a maximum
/// (or a NaN) at position `i`, `-k` otherwise; inputs (x, the window's max, i), param k.
/// A NaN is a maximum exactly when the max is NaN, so a window holding one picks its
/// first NaN.
fn first_max_program() -> &'static Program {
    static P: OnceLock<Program> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = ProgramBuilder::new();
        let (x, m, i, k) = (p.input(0), p.input(1), p.input(2), p.param(0));
        // hit = (x == m) - (x == x) + 1: 1 for a maximum or a NaN, else 0.
        let eq = p.binary(BinaryOp::Eq, x, m);
        let num = p.binary(BinaryOp::Eq, x, x);
        let not_num = p.unary(UnaryOp::Neg, num);
        let one = p.constant(1.0);
        let hit = p.add(eq, not_num);
        let hit = p.add(hit, one);
        // -(k + hit * (i - k)) = hit * (k - i) - k
        let nk = p.unary(UnaryOp::Neg, k);
        let ni = p.unary(UnaryOp::Neg, i);
        let d = p.add(k, ni);
        let t = p.mul(hit, d);
        let out = p.add(t, nk);
        p.build(&[out])
    })
}

/// The gradient at position i of a window: inputs (i, the window's first maximum, the
/// output's gradient): the gradient where `i == first`, else 0.
fn to_first_program() -> &'static Program {
    static P: OnceLock<Program> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = ProgramBuilder::new();
        let (i, f, g) = (p.input(0), p.input(1), p.input(2));
        let hit = p.binary(BinaryOp::Eq, i, f);
        let out = p.mul(hit, g);
        p.build(&[out])
    })
}

/// Positions `0..k` of a window, uploaded.
fn positions<B: Backend + ?Sized>(backend: &B, k: usize) -> Result<Storage> {
    backend.upload(&(0..k).map(|i| i as f32).collect::<Vec<_>>())
}

/// [`Backend::max_pool2d`] from the primitives: the windows
/// copied out `[N, k]`, their maxima, each position's candidacy (a fused program) and the
/// first candidate (a reduction, negated by a map).
pub fn max_pool2d<B: Backend + ?Sized>(
    backend: &B,
    x: &Storage,
    l: &Layout,
    w: &Windows,
) -> Result<(Storage, Storage)> {
    w.check("max_pool2d", x, l, false)?;
    let (n, k) = (w.count(), w.k());
    let tiles = backend.copy(x, &w.tiled(l)?)?;
    let tl = Layout::contiguous(&[n, k]);
    let maxima = backend.reduce(ReduceOp::Max, &tiles, &tl, 1)?;
    let idx = positions(backend, k)?;
    let m_b = Layout::new(smallvec![n, k], smallvec![1, 0], 0)?;
    let i_b = Layout::new(smallvec![n, k], smallvec![0, 1], 0)?;
    let cand = backend
        .fused(
            first_max_program(),
            &[(&tiles, &tl), (&maxima, &m_b), (&idx, &i_b)],
            &[k as f32],
        )?
        .remove(0);
    let neg_first = backend.reduce(ReduceOp::Max, &cand, &tl, 1)?;
    let first = backend.map(UnaryOp::Neg, &neg_first, &Layout::contiguous(&[n]))?;
    Ok((maxima, first))
}

/// [`Backend::max_pool2d_backward`] from the
/// primitives: one fused program written in the input's element order, reading each
/// window's first maximum and gradient through stride-0 layouts.
pub fn max_pool2d_backward<B: Backend + ?Sized>(
    backend: &B,
    grad: &Storage,
    gl: &Layout,
    first: &Storage,
    w: &Windows,
) -> Result<Storage> {
    w.check("max_pool2d backward", grad, gl, true)?;
    let [kh, kw] = w.kernel;
    let idx = positions(backend, w.k())?;
    let il = Layout::new(
        smallvec![1, 1, 1, kh, 1, kw],
        smallvec![0, 0, 0, kw, 0, 1],
        0,
    )?
    .broadcast_to(&spread_shape(w))?;
    let fl = w.spread(&Layout::contiguous(&w.out_shape()))?;
    let g = w.spread(gl)?;
    Ok(backend
        .fused(
            to_first_program(),
            &[(&idx, &il), (first, &fl), (grad, &g)],
            &[],
        )?
        .remove(0))
}

/// `[B, C, H/kh, kh, W/kw, kw]`.
fn spread_shape(w: &Windows) -> [usize; 6] {
    let [b, c, nh, nw] = w.out_shape();
    [b, c, nh, w.kernel[0], nw, w.kernel[1]]
}

/// `in0 * param0`.
fn scale_program() -> &'static Program {
    static P: OnceLock<Program> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = ProgramBuilder::new();
        let (x, c) = (p.input(0), p.param(0));
        let out = p.mul(x, c);
        p.build(&[out])
    })
}

/// [`Backend::avg_pool2d`] from the primitives: the windows
/// copied out `[N, k]`, summed, and scaled by `1/k` (a fused program): a mean as
/// [`Tensor::mean`](crate::Tensor::mean) computes it.
pub fn avg_pool2d<B: Backend + ?Sized>(
    backend: &B,
    x: &Storage,
    l: &Layout,
    w: &Windows,
) -> Result<Storage> {
    w.check("avg_pool2d", x, l, false)?;
    let (n, k) = (w.count(), w.k());
    let tiles = backend.copy(x, &w.tiled(l)?)?;
    let sums = backend.reduce(ReduceOp::Sum, &tiles, &Layout::contiguous(&[n, k]), 1)?;
    Ok(backend
        .fused(
            scale_program(),
            &[(&sums, &Layout::contiguous(&[n]))],
            &[1.0 / k as f32],
        )?
        .remove(0))
}

/// [`Backend::avg_pool2d_backward`] from the
/// primitives: one fused program reading the gradient through a stride-0 layout.
pub fn avg_pool2d_backward<B: Backend + ?Sized>(
    backend: &B,
    grad: &Storage,
    gl: &Layout,
    w: &Windows,
) -> Result<Storage> {
    w.check("avg_pool2d backward", grad, gl, true)?;
    Ok(backend
        .fused(
            scale_program(),
            &[(grad, &w.spread(gl)?)],
            &[1.0 / w.k() as f32],
        )?
        .remove(0))
}
