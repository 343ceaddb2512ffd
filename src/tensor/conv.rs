//! Convolution (the course's Module 4, tasks 4.1 and 4.2) with PyTorch's semantics: NCHW
//! inputs, weights `[Cout, Cin, KH, KW]`, an optional bias `[Cout]`, a stride and zero
//! padding per side (PyTorch's symmetric `padding=p` is `(p, p)`; the course's convolution,
//! zeros past the right/bottom edge with the output as large as the input, is `(0, K-1)`).
//!
//! One mechanism for forward and backward, built from one kernel family and the existing
//! primitives, so every backend runs it ([`Backend::conv2d`]'s default):
//! 1. [`Backend::pad`](crate::backend::Backend::pad) pads the input, read channel-major as
//!    `[Cin, B, H, W]` (skipped without padding);
//! 2. a strided window view of it (shape `[Cin, KH, KW, B, OH, OW]`, an `as_strided`
//!    layout: MiniTorch's strides idea) is read as the columns `[Cin*KH*KW, B*OH*OW]`
//!    (im2col, the batch inside the columns) by a [`MatrixView`](crate::backend::MatrixView);
//! 3. one matmul `W [Cout, Cin*KH*KW] @ cols` for the whole batch
//!    ([`Backend::matmul_view`](crate::backend::Backend::matmul_view)) gives
//!    `[Cout, B, OH, OW]`, with the bias added in the matmul's epilogue; the result is that
//!    storage seen as `[B, Cout, OH, OW]` (a permuted view: nothing copies it back to
//!    batch-major). The GPU backends copy the columns out first (one kernel); the CPU runs
//!    a direct convolution where it applies (else packs its panels from the view).
//!
//! So a forward layer with bias is at most three kernels. The padded input and the view
//! (the columns) are kept for the backward where the weight needs a gradient. Backward,
//! channel-major too: the weight gradient is one matmul over the columns (no sum over the
//! batch), the bias gradient a sum along rows, and the input gradient
//! [`Backend::conv2d_input_grad`](crate::backend::Backend::conv2d_input_grad), by default
//! the transposed convolution: the gradient dilated by the stride and padded by
//! `K-1-pad` in one pad, convolved (stride 1) with the weight flipped in space and
//! transposed in channels.
//!
//! [`Backend::conv2d`]: crate::backend::Backend::conv2d

use std::sync::OnceLock;

use smallvec::smallvec;

use crate::backend::fused::{Program, ProgramBuilder};
use crate::backend::MatrixView;
use crate::backend::{BinaryOp, UnaryOp};
use crate::error::{Error, Result};
use crate::layout::Layout;

use super::{Activation, Function, Grads, Tensor};

pub use crate::backend::conv2d::Padding;
use crate::backend::conv2d::{unfold, Columns, ConvGeometry as Geometry};

/// The matmul epilogue of a convolution: `act(in0 + in1)` with a bias, `act(in0)`
/// without; one program per case, built once.
fn epilogue(act: Activation, bias: bool) -> &'static Program {
    static P: [OnceLock<Program>; 6] = [const { OnceLock::new() }; 6];
    P[act as usize * 2 + bias as usize].get_or_init(|| {
        let mut p = ProgramBuilder::new();
        let mut z = p.input(0);
        if bias {
            let b = p.input(1);
            z = p.add(z, b);
        }
        let out = match act {
            Activation::Identity => z,
            Activation::Relu => p.unary(UnaryOp::Relu, z),
            Activation::Sigmoid => p.unary(UnaryOp::Sigmoid, z),
        };
        p.build(&[out])
    })
}

/// Errors unless both tensors live on one device.
pub(crate) fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch {
            op,
            a: a.device().to_string(),
            b: b.device().to_string(),
        });
    }
    Ok(())
}

/// Errors unless `weight` and `bias` live on `x`'s device and `bias` is `[Cout]`.
fn check_bias(
    op: &'static str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    g: &Geometry,
) -> Result<()> {
    same_device(op, x, weight)?;
    if let Some(b) = bias {
        same_device(op, x, b)?;
        if b.shape() != [g.cout] {
            return Err(Error::shape(
                op,
                &[x.shape(), weight.shape(), b.shape()],
                format!(
                    "the bias must be [{}], one value per output channel",
                    g.cout
                ),
            ));
        }
    }
    Ok(())
}

/// A tensor of `storage` seen through `layout` (no history).
fn raw_view(t: &Tensor, layout: Layout) -> Tensor {
    Tensor::from_storage(t.storage().clone(), layout, t.backend().clone())
}

/// `x` (`[B, C, H, W]`, or `[B, C, W]` read as `H = 1`) seen as `[C, B, H, W]`, the
/// channel-major order the columns and products use (a view, no copy, no history).
fn channels_first(x: &Tensor) -> Result<Tensor> {
    let (sh, st) = (x.shape(), x.layout().strides());
    let (shape, strides) = match sh.len() {
        4 => ([sh[1], sh[0], sh[2], sh[3]], [st[1], st[0], st[2], st[3]]),
        _ => ([sh[1], sh[0], 1, sh[2]], [st[1], st[0], 0, st[2]]),
    };
    Ok(raw_view(
        x,
        Layout::new(shape, strides, x.layout().offset())?,
    ))
}

/// The inverse of [`channels_first`]: `t`, contiguous `[C, B, ..spatial]`, seen as
/// `[B, C, ..spatial]` (`spatial` is `[H, W]`, or `[W]` for a 1-D convolution).
fn batch_first(t: &Tensor, spatial: &[usize]) -> Result<Layout> {
    let (c, b) = (t.shape()[0], t.shape()[1]);
    let plane: usize = spatial.iter().product();
    let mut shape: smallvec::SmallVec<[usize; 4]> = smallvec![b, c];
    let mut strides: smallvec::SmallVec<[usize; 4]> = smallvec![plane, b * plane];
    shape.extend_from_slice(spatial);
    let mut s = 1;
    let at = strides.len();
    for &d in spatial.iter().rev() {
        strides.insert(at, s);
        s *= d;
    }
    Layout::new(shape, strides, t.layout().offset())
}

/// The convolution without history: `out [Cout, B, OH, OW]`, channel-major, and where
/// `keep` the input's columns (for the weight gradient); `x` is `[Cin, B, H, W]`, `w2` the
/// weight as `[Cout, Cin*KH*KW]` (contiguous), `bias` `[Cout]`, `act` applied in the
/// epilogue ([`Backend::conv2d`](crate::backend::Backend::conv2d)).
fn conv_raw(
    x: &Tensor,
    w2: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    g: &Geometry,
    keep: bool,
) -> Result<(Tensor, Option<Columns>)> {
    let backend = x.backend();
    let (xs, xl, w) = (x.storage(), x.layout(), w2.storage());
    let (s, columns) = match bias {
        None => backend.conv2d(xs, xl, w, g, epilogue(act, false), &[], &[], keep)?,
        Some(bias) => {
            let l = bias
                .layout()
                .view(&[g.cout, 1])?
                .broadcast_to(&[g.cout, g.b * g.oh * g.ow])?;
            let extra = [(bias.storage(), &l)];
            backend.conv2d(xs, xl, w, g, epilogue(act, true), &extra, &[], keep)?
        }
    };
    let out = Tensor::from_storage(
        s,
        Layout::contiguous(&[g.cout, g.b, g.oh, g.ow]),
        backend.clone(),
    );
    Ok((out, columns))
}

/// Output rows at least this long give the weight gradient's product the pixels of each
/// row as a run of its depth (see [`Conv2d::backward`]).
const LONG_ROWS: usize = 16;

/// The recorded convolution: its geometry, its activation, and the input's columns where
/// the weight needs a gradient (the forward makes them as it reads the input).
struct Conv2d {
    g: Geometry,
    act: Activation,
    columns: Option<Columns>,
    /// The activated output (no history, channel-major), for the activation's derivative.
    out: Option<Tensor>,
}

impl Function for Conv2d {
    fn name(&self) -> &'static str {
        "Conv2d"
    }

    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads> {
        let g = &self.g;
        let (x, w) = (&inputs[0], &inputs[1]);
        // Channel-major like the product: [Cout, B, OH, OW]. Through the activation first:
        // relu' from the output's sign, sigmoid' = s (1 - s); each gives it contiguous.
        let gc = channels_first(grad)?;
        let go = match (&self.out, self.act) {
            (Some(y), Activation::Relu) => y.zip_raw(BinaryOp::ReluBack, &gc)?,
            (Some(y), Activation::Sigmoid) => y.mul(&y.neg()?.add_scalar(1.0)?)?.mul(&gc)?,
            _ => gc.contiguous()?,
        };
        let go2 = go.view(&[g.cout, g.b * g.oh * g.ow])?;
        let mut grads: Grads = smallvec![None, None];
        if w.needs_grad() {
            // One product over the whole batch, the pixels along its depth. Where output
            // rows are long, dW^T = cols [CKK, B*OHW] @ grad^T [B*OHW, Cout], then
            // transposed (small): the columns (the window view) run along output rows,
            // and the CPU reads them in place row by row. Short rows (a 14-wide map) make
            // short runs: there dW = grad [Cout, B*OHW] @ cols^T, the window packed as B.
            let backend = go.backend();
            let ckk = g.ckk();
            let identity = epilogue(Activation::Identity, false);
            let grad = MatrixView::matrix(go2.layout())?;
            let Columns { src, view: window } = match &self.columns {
                Some(c) => c.clone(),
                None => {
                    let xc = channels_first(x)?;
                    unfold(backend.as_ref(), xc.storage(), xc.layout(), g)?
                }
            };
            let dw = if g.ow >= LONG_ROWS {
                let dwt = backend.matmul_view(
                    &src,
                    &window,
                    go2.storage(),
                    &grad.transpose(),
                    identity,
                    &[],
                    &[],
                )?;
                let transposed = Layout::new(smallvec![g.cout, ckk], smallvec![1, g.cout], 0)?;
                backend.copy(&dwt, &transposed)?
            } else {
                backend.matmul_view(
                    go2.storage(),
                    &grad,
                    &src,
                    &window.transpose(),
                    identity,
                    &[],
                    &[],
                )?
            };
            let dw = Tensor::from_storage(dw, Layout::contiguous(w.shape()), backend.clone());
            grads[1] = Some(dw);
        }
        if let Some(b) = inputs.get(2) {
            let db = if b.needs_grad() {
                Some(go2.sum(1)?.view(b.shape())?)
            } else {
                None
            };
            grads.push(db);
        }
        if x.needs_grad() {
            let backend = go.backend();
            let w = w.contiguous()?;
            let (dx, layout) =
                backend.conv2d_input_grad(dense(&go)?.storage(), dense(&w)?.storage(), g)?;
            let layout = if x.dims() == 4 {
                layout
            } else {
                // A 1-D convolution's input [B, Cin, W]: its height (1) dropped.
                let (sh, st) = (layout.shape(), layout.strides());
                Layout::new(
                    smallvec![sh[0], sh[1], sh[3]],
                    smallvec![st[0], st[1], st[3]],
                    layout.offset(),
                )?
            };
            grads[0] = Some(Tensor::from_storage(dx, layout, backend.clone()));
        }
        Ok(grads)
    }
}

/// `t` contiguous from position 0 of its storage (a copy only when it is not).
fn dense(t: &Tensor) -> Result<Tensor> {
    if t.is_contiguous() && t.layout().offset() == 0 {
        return Ok(t.clone());
    }
    let s = t.backend().copy(t.storage(), t.layout())?;
    Ok(Tensor::from_storage(
        s,
        Layout::contiguous(t.shape()),
        t.backend().clone(),
    ))
}

impl Tensor {
    /// 2-D convolution (PyTorch's `conv2d`, cross-correlation): `self` is `[B, Cin, H, W]`,
    /// `weight` `[Cout, Cin, KH, KW]`, `bias` `[Cout]`; `padding` is `(before, after)` zeros
    /// per spatial dimension (height, then width). The result is `[B, Cout, OH, OW]` with
    /// `O = (N + before + after - K) / stride + 1`. Gradients for input, weight and bias.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: [usize; 2],
        padding: [Padding; 2],
    ) -> Result<Tensor> {
        self.conv2d_act(weight, bias, stride, padding, Activation::Identity)
    }

    /// [`Tensor::conv2d`] followed by `act`, applied in the matmul's epilogue: a layer with
    /// bias and relu is at most three kernels (pad, window copy, matmul), and its backward
    /// takes the activation's derivative from the stored output.
    pub fn conv2d_act(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: [usize; 2],
        padding: [Padding; 2],
        act: Activation,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        same_device(OP, self, weight)?;
        let g = Geometry::new(OP, self.shape(), weight.shape(), stride, padding)?;
        check_bias(OP, self, weight, bias, &g)?;
        self.conv_recorded(weight, bias, act, g)
    }

    /// The convolution of `self` (`[B, Cin, H, W]`, or `[B, Cin, W]` with `g.h == 1`) by
    /// `weight` of the same rank, recorded for autodiff; the result is `[B, Cout, ..]` of
    /// self's rank, a view of the channel-major product `[Cout, B, ..]` (no copy back to
    /// batch-major: every op reads strided views, and `contiguous` makes one when needed).
    fn conv_recorded(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        act: Activation,
        g: Geometry,
    ) -> Result<Tensor> {
        let w2 = weight.contiguous()?;
        let w2 = raw_view(&w2, Layout::contiguous(&[g.cout, g.ckk()]));
        let bias_c = bias.map(|b| b.contiguous()).transpose()?;
        let keep = weight.needs_grad();
        let (out, columns) = conv_raw(&channels_first(self)?, &w2, bias_c.as_ref(), act, &g, keep)?;
        let spatial: &[usize] = if self.dims() == 4 {
            &[g.oh, g.ow]
        } else {
            &[g.ow]
        };
        let layout = batch_first(&out, spatial)?;
        let mut inputs: Vec<&Tensor> = vec![self, weight];
        inputs.extend(bias);
        let saved = (act != Activation::Identity).then(|| out.clone());
        Ok(Tensor::from_op(
            out.storage().clone(),
            layout,
            self.backend().clone(),
            Conv2d {
                g,
                act,
                columns,
                out: saved,
            },
            &inputs,
        ))
    }

    /// 1-D convolution (PyTorch's `conv1d`): `self` is `[B, Cin, W]`, `weight`
    /// `[Cout, Cin, K]`, `bias` `[Cout]`; `padding` is `(before, after)`. The result is
    /// `[B, Cout, (W + before + after - K) / stride + 1]`. The course's `Conv1dFun` is
    /// `padding = (0, K - 1)`.
    pub fn conv1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: Padding,
    ) -> Result<Tensor> {
        const OP: &str = "conv1d";
        let (x, w) = (self.shape(), weight.shape());
        if x.len() != 3 || w.len() != 3 {
            return Err(Error::shape(
                OP,
                &[x, w],
                "needs an input [B, Cin, W] and a weight [Cout, Cin, K]",
            ));
        }
        same_device(OP, self, weight)?;
        // Height 1: the 2-D convolution's mechanism on [B, Cin, 1, W].
        let g = Geometry::new(
            OP,
            &[x[0], x[1], 1, x[2]],
            &[w[0], w[1], 1, w[2]],
            [1, stride],
            [(0, 0), padding],
        )
        .map_err(|e| match e {
            Error::Shape { msg, .. } => Error::shape(OP, &[x, w], msg),
            other => other,
        })?;
        check_bias(OP, self, weight, bias, &g)?;
        self.conv_recorded(weight, bias, Activation::Identity, g)
    }
}
