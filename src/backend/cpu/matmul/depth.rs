//! The depth split: a product with few outputs over a deep depth (a convolution's weight
//! gradient) cut into fixed slices along the depth, each computed into its own buffer on
//! rayon and summed in slice order, so the bits do not depend on the number of threads.

use rayon::prelude::*;

use super::pack::Operand;
use super::{gathered_into, Options};
use crate::backend::cpu::pool::HostBuf;
use crate::layout::{Dims, Layout};

/// A product with at most this many outputs and a deep depth is split along the depth
/// (a convolution's weight gradient: `[Cout, Cin*KH*KW]` summed over every pixel of the
/// batch), as its few output tiles would leave threads idle.
pub(super) const SPLIT_K_MAX_OUTPUT: usize = 1 << 17;
/// The depth of one slice of a split product: fixed, so the slices and the order of their
/// sum (and so the result's bits) do not depend on the number of threads.
pub(super) const SPLIT_K_DEPTH: usize = 2048;

/// An operand cut along the depth for [`split_depth`]: A's columns or B's rows.
pub(super) enum DepthCut<'t> {
    /// A gathered operand: the positions along the depth are sliced.
    Gathered {
        rows: &'t [usize],
        cols: &'t [usize],
        depth_is_rows: bool,
    },
    /// A 2-D strided operand: one layout per slice.
    Strided(Vec<Layout>),
}

impl<'t> DepthCut<'t> {
    /// `op` cut along dimension `dim` (1: A's columns, 0: B's rows) of depth `k`.
    pub(super) fn new(op: Operand<'t>, dim: usize, k: usize) -> Option<DepthCut<'t>> {
        match op {
            Operand::Gathered { rows, cols } => Some(DepthCut::Gathered {
                rows,
                cols,
                depth_is_rows: dim == 0,
            }),
            Operand::Strided(l) if l.dims() == 2 => (0..k)
                .step_by(SPLIT_K_DEPTH)
                .map(|k0| {
                    let mut shape: Dims = l.shape().into();
                    shape[dim] = SPLIT_K_DEPTH.min(k - k0);
                    Layout::new(shape, l.strides(), l.offset() + k0 * l.strides()[dim]).ok()
                })
                .collect::<Option<Vec<_>>>()
                .map(DepthCut::Strided),
            Operand::Strided(_) => None,
        }
    }

    /// Slice `s` (depth `s * SPLIT_K_DEPTH ..`, at most `SPLIT_K_DEPTH` long, `k` in all).
    fn slice(&self, s: usize, k: usize) -> Operand<'_> {
        let (k0, k1) = (s * SPLIT_K_DEPTH, ((s + 1) * SPLIT_K_DEPTH).min(k));
        match self {
            DepthCut::Gathered {
                rows,
                cols,
                depth_is_rows: true,
            } => Operand::Gathered {
                rows: &rows[k0..k1],
                cols,
            },
            DepthCut::Gathered { rows, cols, .. } => Operand::Gathered {
                rows,
                cols: &cols[k0..k1],
            },
            DepthCut::Strided(ls) => Operand::Strided(&ls[s]),
        }
    }
}

/// `out = A @ B` as the sum of slices of [`SPLIT_K_DEPTH`] along the depth, computed on
/// rayon (each slice serial, into its own buffer), then added in slice order.
pub(super) fn split_depth(
    out: &mut [f32],
    (a, ac): (&[f32], DepthCut),
    (b, bc): (&[f32], DepthCut),
    (n, k, m): (usize, usize, usize),
    opts: &Options,
) {
    let slices = k.div_ceil(SPLIT_K_DEPTH);
    let inner = Options {
        parallel: Some(false),
        ..*opts
    };
    let part = |s: usize| {
        let mut p = HostBuf::take(n * m);
        let depth = SPLIT_K_DEPTH.min(k - s * SPLIT_K_DEPTH);
        gathered_into(
            &mut p,
            (a, ac.slice(s, k)),
            (b, bc.slice(s, k)),
            (n, depth, m),
            &inner,
            None,
        );
        p
    };
    let parts: Vec<HostBuf> = if opts.parallel != Some(false) && rayon::current_num_threads() > 1 {
        (0..slices).into_par_iter().map(part).collect()
    } else {
        (0..slices).map(part).collect()
    };
    out.copy_from_slice(&parts[0]);
    for p in &parts[1..] {
        for (o, &v) in out.iter_mut().zip(p.iter()) {
            *o += v;
        }
    }
}
