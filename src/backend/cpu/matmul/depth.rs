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
/// A product at least twice this deep is split.
pub(super) const SPLIT_K_DEPTH: usize = 2048;
/// Slices are at least this deep.
const MIN_SLICE_DEPTH: usize = 2048;
/// Outputs one task sums over the slices.
const SUM_RUN: usize = 4096;
/// Slice counts, most first: each splits evenly among many thread counts (48 among 1, 2,
/// 3, 4, 6, 8, 12, 16, 24 and 48), so that no thread waits on another's extra slice.
const SLICE_COUNTS: [usize; 9] = [48, 24, 16, 12, 8, 6, 4, 3, 2];

/// The depth of one slice of a product of depth `k`: a function of `k` alone, so the
/// slices and the order of their sum (and so the result's bits) do not depend on the
/// number of threads. The most slices of [`SLICE_COUNTS`] at least [`MIN_SLICE_DEPTH`]
/// deep.
pub(super) fn slice_depth(k: usize) -> usize {
    let count = SLICE_COUNTS
        .into_iter()
        .find(|&c| k / c >= MIN_SLICE_DEPTH)
        .unwrap_or(1);
    k.div_ceil(count)
}

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
                .step_by(slice_depth(k))
                .map(|k0| {
                    let mut shape: Dims = l.shape().into();
                    shape[dim] = slice_depth(k).min(k - k0);
                    Layout::new(shape, l.strides(), l.offset() + k0 * l.strides()[dim]).ok()
                })
                .collect::<Option<Vec<_>>>()
                .map(DepthCut::Strided),
            Operand::Strided(_) => None,
        }
    }

    /// Slice `s` (depth `s * d ..`, at most `d` long, `k` in all; `d` the
    /// [`slice_depth`]).
    fn slice(&self, s: usize, k: usize) -> Operand<'_> {
        let d = slice_depth(k);
        let (k0, k1) = (s * d, ((s + 1) * d).min(k));
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

/// `out = A @ B` as the sum of slices of [`slice_depth`] along the depth, computed on
/// rayon (each slice serial, into its own buffer), then added in slice order.
pub(super) fn split_depth(
    out: &mut [f32],
    (a, ac): (&[f32], DepthCut),
    (b, bc): (&[f32], DepthCut),
    (n, k, m): (usize, usize, usize),
    opts: &Options,
) {
    let d = slice_depth(k);
    let slices = k.div_ceil(d);
    let inner = Options {
        parallel: Some(false),
        ..*opts
    };
    // The slices' buffers come from (and go back to) this thread's pool: taken on the
    // workers and dropped here, they would leave the workers' pools empty every call
    // (fresh pages, faulted in each time).
    let mut parts: Vec<HostBuf> = (0..slices).map(|_| HostBuf::take(n * m)).collect();
    let part = |(s, p): (usize, &mut HostBuf)| {
        let depth = d.min(k - s * d);
        gathered_into(
            p,
            (a, ac.slice(s, k)),
            (b, bc.slice(s, k)),
            (n, depth, m),
            &inner,
            None,
        );
    };
    if opts.parallel != Some(false) && rayon::current_num_threads() > 1 {
        parts.par_iter_mut().enumerate().for_each(part);
    } else {
        parts.iter_mut().enumerate().for_each(part);
    }
    // Each output the sum of its slices in slice order (the same bits on any number of
    // threads), runs of outputs on rayon.
    let sum = |(c, run): (usize, &mut [f32])| {
        let at = c * SUM_RUN;
        run.copy_from_slice(&parts[0][at..at + run.len()]);
        for p in &parts[1..] {
            for (o, &v) in run.iter_mut().zip(&p[at..]) {
                *o += v;
            }
        }
    };
    if opts.parallel != Some(false) && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(SUM_RUN).enumerate().for_each(sum);
    } else {
        out.chunks_mut(SUM_RUN).enumerate().for_each(sum);
    }
}
