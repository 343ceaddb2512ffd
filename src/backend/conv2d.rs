//! The convolution's description shared by the tensor layer and the backends
//! ([`ConvGeometry`]), the window view that reads an input as its im2col columns
//! ([`window`], [`unfold`]), the forward ([`Backend::conv2d`]) and the input gradient
//! ([`Backend::conv2d_input_grad`]): by default both composed from the primitives
//! ([`forward`], [`input_grad`]), which every backend runs; the CPU overrides them with
//! direct convolutions where those apply.
//!
//! [`Backend::conv2d`]: super::Backend::conv2d
//! [`Backend::conv2d_input_grad`]: super::Backend::conv2d_input_grad

use smallvec::smallvec;

use super::pad::PadSpec;
use super::{Backend, MatrixView, Storage};
use crate::error::{Error, Result};
use crate::layout::{checked_shape_size, Layout};

/// Zeros before and after one spatial dimension.
pub type Padding = (usize, usize);

/// The sizes of one 2-D convolution (NCHW input `[B, Cin, H, W]`, weight
/// `[Cout, Cin, KH, KW]`, output `[B, Cout, OH, OW]`), checked by [`ConvGeometry::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch.
    pub b: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Zeros before and after, per spatial dimension.
    pub pad: [Padding; 2],
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl ConvGeometry {
    /// The geometry of an input of shape `x` and a weight of shape `wt`; an error naming
    /// `op` and both shapes for wrong ranks, a channel mismatch, a zero stride, a padding
    /// that overflows or a kernel larger than the padded input.
    pub fn new(
        op: &'static str,
        x: &[usize],
        wt: &[usize],
        stride: [usize; 2],
        pad: [Padding; 2],
    ) -> Result<ConvGeometry> {
        let err = |msg: String| Error::shape(op, &[x, wt], msg);
        if x.len() != 4 || wt.len() != 4 {
            return Err(err(
                "needs an input [B, Cin, H, W] and a weight [Cout, Cin, KH, KW]".into(),
            ));
        }
        if x[1] != wt[1] {
            return Err(err(format!(
                "the input has {} channels but the weight expects {}",
                x[1], wt[1]
            )));
        }
        if stride.contains(&0) {
            return Err(err(format!("stride {stride:?} must be at least 1")));
        }
        let mut out = [0usize; 2];
        for d in 0..2 {
            let (n, k) = (x[2 + d], wt[2 + d]);
            let padded = n
                .checked_add(pad[d].0)
                .and_then(|v| v.checked_add(pad[d].1))
                .filter(|&v| v < 1 << 31)
                .ok_or_else(|| err(format!("padding {:?} overflows", pad[d])))?;
            if k == 0 || k > padded {
                return Err(err(format!(
                    "kernel size {k} does not fit the padded input size {padded}"
                )));
            }
            out[d] = (padded - k) / stride[d] + 1;
        }
        let g = ConvGeometry {
            b: x[0],
            cin: x[1],
            h: x[2],
            w: x[3],
            cout: wt[0],
            kh: wt[2],
            kw: wt[3],
            stride,
            pad,
            oh: out[0],
            ow: out[1],
        };
        checked_shape_size(op, &[g.b, g.cin, g.kh, g.kw, g.oh, g.ow])?;
        checked_shape_size(op, &[g.b, g.cout, g.oh, g.ow])?;
        Ok(g)
    }

    /// `Cin * KH * KW`: the rows of the columns.
    pub fn ckk(&self) -> usize {
        self.cin * self.kh * self.kw
    }
}

/// The columns `[Cin*KH*KW, B*OH*OW]` of an input `src` laid out channel-major
/// `[Cin, B, Hp, Wp]` (already padded: `g.pad` is not applied here) as a matrix view: the
/// strided window view `[Cin, KH, KW | B, OH, OW]` (MiniTorch's strides idea, an
/// `as_strided` layout).
pub fn window(src: &Layout, g: &ConvGeometry) -> Result<MatrixView> {
    let s = src.strides();
    let [sh, sw] = g.stride;
    let l = Layout::new(
        smallvec![g.cin, g.kh, g.kw, g.b, g.oh, g.ow],
        smallvec![s[0], s[2], s[3], s[1], sh * s[2], sw * s[3]],
        src.offset(),
    )?;
    MatrixView::new(l, 3)
}

/// A convolution's columns `[Cin*KH*KW, B*OH*OW]` (im2col, with the batch inside the
/// columns so that one matmul serves the whole batch): the source a window view reads
/// (the input, or a padded copy of it) and that view. The weight gradient's product
/// reads them.
#[derive(Clone, Debug)]
pub struct Columns {
    /// The input, channel-major, padded where some window reads the padding.
    pub src: Storage,
    /// The strided window view over `src` ([`window`]).
    pub view: MatrixView,
}

/// The padding [`unfold`] applies to an input `[Cin, B, H, W]`: only the rows and columns
/// some window reads (`(O-1)*stride + K` of each); `None` where the windows read no
/// padding.
pub fn unfold_padding(g: &ConvGeometry) -> Option<PadSpec> {
    let [sh, sw] = g.stride;
    let [(pt, _), (pl, _)] = g.pad;
    let (hp, wp) = ((g.oh - 1) * sh + g.kh, (g.ow - 1) * sw + g.kw);
    if pt == 0 && pl == 0 && hp <= g.h && wp <= g.w {
        return None;
    }
    Some(PadSpec {
        out_shape: smallvec![g.cin, g.b, hp, wp],
        lo: smallvec![0, 0, pt as i64, pl as i64],
        step: smallvec![1, 1, 1, 1],
    })
}

/// The columns of `x`, read channel-major as `[Cin, B, H, W]` through `xl`: `x` itself
/// where no window reads the padding, else `x` padded (one [`Backend::pad`]), and the
/// window view over it. Nothing copies the columns out unless the backend's
/// [`matmul_view`](Backend::matmul_view) does.
pub fn unfold<B: Backend + ?Sized>(
    backend: &B,
    x: &Storage,
    xl: &Layout,
    g: &ConvGeometry,
) -> Result<Columns> {
    match unfold_padding(g) {
        None => Ok(Columns {
            src: x.clone(),
            view: window(xl, g)?,
        }),
        Some(spec) => Ok(Columns {
            src: backend.pad(x, xl, &spec)?,
            view: window(&Layout::contiguous(&spec.out_shape), g)?,
        }),
    }
}

/// The forward from the primitives: the columns of `x` ([`unfold`]: a pad, and a window
/// view) and one [`matmul_view`](Backend::matmul_view) `w [Cout, Cin*KH*KW] @ cols`, with
/// `epilogue` on the product (its inputs 1.. are `extra`, each read as `[Cout, B*OH*OW]`).
/// Returns the product `[Cout, B*OH*OW]`, contiguous, and the columns where `keep`.
#[allow(clippy::too_many_arguments)]
pub fn forward<B: Backend + ?Sized>(
    backend: &B,
    x: &Storage,
    xl: &Layout,
    w: &Storage,
    g: &ConvGeometry,
    epilogue: &super::fused::Program,
    extra: &[(&Storage, &Layout)],
    params: &[f32],
    keep: bool,
) -> Result<(Storage, Option<Columns>)> {
    let cols = unfold(backend, x, xl, g)?;
    let wv = MatrixView::matrix(&Layout::contiguous(&[g.cout, g.ckk()]))?;
    let out = backend.matmul_view(w, &wv, &cols.src, &cols.view, epilogue, extra, params)?;
    Ok((out, keep.then_some(cols)))
}

/// Inputs of [`Backend::conv2d`]: `x` read as `[Cin, B, H, W]` through `xl` inside its
/// storage, `w` holding `[Cout, Cin*KH*KW]`.
pub fn check_forward(x: &Storage, xl: &Layout, w: &Storage, g: &ConvGeometry) -> Result<()> {
    let (want, n_w) = ([g.cin, g.b, g.h, g.w], g.cout * g.ckk());
    if xl.shape() != want || w.len() < n_w {
        return Err(Error::shape(
            "conv2d",
            &[xl.shape(), &want, &[w.len()], &[n_w]],
            "the input or the weight does not match the geometry",
        ));
    }
    super::check::fits("conv2d", x, xl)?;
    super::check::host_alloc("conv2d", g.b * g.cout * g.oh * g.ow)
}

/// Inputs of [`Backend::conv2d_input_grad`]: `go`
/// holds `[Cout, B, OH, OW]` and `w` `[Cout, Cin*KH*KW]`, both contiguous.
pub fn check_input_grad(go: &Storage, w: &Storage, g: &ConvGeometry) -> Result<()> {
    let (n_go, n_w) = (g.cout * g.b * g.oh * g.ow, g.cout * g.ckk());
    if go.len() < n_go || w.len() < n_w {
        return Err(Error::shape(
            "conv2d backward",
            &[&[go.len()], &[n_go], &[w.len()], &[n_w]],
            "the gradient or the weight is smaller than the geometry says",
        ));
    }
    super::check::host_alloc("conv2d backward", g.b * g.cin * g.h * g.w)
}

/// The input gradient as the transposed convolution, from the primitives: the gradient
/// dilated by the stride and padded by `K-1-pad` in one pad, convolved (stride 1) with
/// the weight flipped in space and transposed in channels (`[Cin, Cout*KH*KW]`, made by
/// a matmul with a flip matrix and a permuting copy). Returns channel-major storage
/// `[Cin, B, H, W]` and its layout read as `[B, Cin, H, W]`.
pub fn input_grad<B: Backend + ?Sized>(
    backend: &B,
    go: &Storage,
    w: &Storage,
    g: &ConvGeometry,
) -> Result<(Storage, Layout)> {
    check_input_grad(go, w, g)?;
    let (kh, kw) = (g.kh, g.kw);
    // Dilate by the stride and pad by K-1-pad_before in one pad, to length H+K-1 (any
    // excess on the far side is cropped or zero-filled by the same kernel).
    let spec = PadSpec {
        out_shape: smallvec![g.cout, g.b, g.h + kh - 1, g.w + kw - 1],
        lo: smallvec![
            0,
            0,
            kh as i64 - 1 - g.pad[0].0 as i64,
            kw as i64 - 1 - g.pad[1].0 as i64
        ],
        step: smallvec![1, 1, g.stride[0], g.stride[1]],
    };
    let dp = backend.pad(go, &Layout::contiguous(&[g.cout, g.b, g.oh, g.ow]), &spec)?;
    // The weight flipped in space (index kk -> KK-1-kk reverses both axes) and with its
    // channel axes swapped: [Cin, Cout*KH*KW].
    let kk = kh * kw;
    let mut flip = vec![0.0f32; kk * kk];
    for i in 0..kk {
        flip[i * kk + (kk - 1 - i)] = 1.0;
    }
    let flip = backend.upload(&flip)?;
    let flipped = backend.matmul(
        w,
        &Layout::contiguous(&[g.cout * g.cin, kk]),
        &flip,
        &Layout::contiguous(&[kk, kk]),
    )?;
    let swapped = Layout::contiguous(&[g.cout, g.cin, kk]).permute(&[1, 0, 2])?;
    let wf = backend.copy(&flipped, &swapped)?;
    let gt = ConvGeometry::new(
        "conv2d backward",
        &[g.b, g.cout, g.h + kh - 1, g.w + kw - 1],
        &[g.cin, g.cout, kh, kw],
        [1, 1],
        [(0, 0), (0, 0)],
    )?;
    let src = Layout::contiguous(&spec.out_shape);
    let dx = backend.matmul_view(
        &wf,
        &MatrixView::matrix(&Layout::contiguous(&[g.cin, g.cout * kk]))?,
        &dp,
        &window(&src, &gt)?,
        &super::fused::Program::identity(),
        &[],
        &[],
    )?;
    let plane = g.h * g.w;
    let layout = Layout::new(
        smallvec![g.b, g.cin, g.h, g.w],
        smallvec![plane, g.b * plane, g.w, 1],
        0,
    )?;
    Ok((dx, layout))
}
