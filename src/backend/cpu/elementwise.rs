//! Map, zip and reduce on the CPU: the aligned slice loops, the repeated-block zip, the
//! strided walks, and reductions (long sums in lanes, a single long reduction in fixed
//! pieces on every thread).

use rayon::prelude::*;

use super::pool::HostBuf;
use super::{
    contiguous_slice, monomorphise_reduce, run_chunks, strided_runs, with_reduce, CpuBackend,
};
use crate::backend::ReduceOp;
use crate::layout::{Layout, StridedCursor};
use crate::operators as ops;

pub(super) fn map_impl(f: impl Fn(f32) -> f32 + Sync, x: &[f32], l: &Layout) -> HostBuf {
    let plan = CpuBackend::map_plan(l);
    let mut out = HostBuf::take(l.size());
    if plan.aligned {
        let src = contiguous_slice(x, l);
        run_chunks(plan, &mut out, |start, chunk| {
            let end = start + chunk.len();
            for (o, &v) in chunk.iter_mut().zip(&src[start..end]) {
                *o = f(v);
            }
        });
    } else {
        run_chunks(plan, &mut out, |start, chunk| {
            strided_runs(l, start, chunk.len(), |i, p, s, n| {
                if s == 1 {
                    for (o, &v) in chunk[i..i + n].iter_mut().zip(&x[p..p + n]) {
                        *o = f(v);
                    }
                } else {
                    for (k, o) in chunk[i..i + n].iter_mut().enumerate() {
                        *o = f(x[p + k * s]);
                    }
                }
            });
        });
    }
    out
}

pub(super) fn zip_impl(
    f: impl Fn(f32, f32) -> f32 + Sync,
    a: &[f32],
    al: &Layout,
    b: &[f32],
    bl: &Layout,
) -> HostBuf {
    let plan = CpuBackend::zip_plan(al, bl);
    let mut out = HostBuf::take(al.size());
    if plan.aligned {
        let (sa, sb) = (contiguous_slice(a, al), contiguous_slice(b, bl));
        run_chunks(plan, &mut out, |start, chunk| {
            let end = start + chunk.len();
            for ((o, &x), &y) in chunk.iter_mut().zip(&sa[start..end]).zip(&sb[start..end]) {
                *o = f(x, y);
            }
        });
    } else if let (true, Some(p)) = (al.is_contiguous(), broadcast_period(bl)) {
        // B repeats one block (a scalar, a bias row): slice loops, no index math.
        let (sa, row) = (contiguous_slice(a, al), &b[bl.offset()..bl.offset() + p]);
        run_chunks(plan, &mut out, |start, chunk| {
            let xs = &sa[start..start + chunk.len()];
            zip_repeat(chunk, xs, row, start % p, &f)
        });
    } else if let (Some(p), true) = (broadcast_period(al), bl.is_contiguous()) {
        let (row, sb) = (&a[al.offset()..al.offset() + p], contiguous_slice(b, bl));
        run_chunks(plan, &mut out, |start, chunk| {
            let ys = &sb[start..start + chunk.len()];
            zip_repeat(chunk, ys, row, start % p, &|y: f32, x: f32| f(x, y))
        });
    } else {
        run_chunks(plan, &mut out, |start, chunk| {
            // One shape, so both cursors are at the same index: their rows end together.
            let mut ca = StridedCursor::new(al, start);
            let mut cb = StridedCursor::new(bl, start);
            let mut i = 0;
            while i < chunk.len() {
                let n = ca.row_left().min(chunk.len() - i);
                let (pa, sa) = (ca.pos(), ca.inner_stride());
                let (pb, sb) = (cb.pos(), cb.inner_stride());
                let out = &mut chunk[i..i + n];
                if sa == 1 && sb == 1 {
                    // Rows contiguous on both sides (a permuted or channel-major view):
                    // slice loops the compiler vectorises.
                    for ((o, &x), &y) in out.iter_mut().zip(&a[pa..pa + n]).zip(&b[pb..pb + n]) {
                        *o = f(x, y);
                    }
                } else {
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = f(a[pa + k * sa], b[pb + k * sb]);
                    }
                }
                ca.advance_in_row(n);
                cb.advance_in_row(n);
                i += n;
            }
        });
    }
    out
}

/// When `l` (of non-zero size) repeats one contiguous block of its trailing dimensions
/// over broadcast leading ones (a scalar, a bias row), the block's length.
pub(super) fn broadcast_period(l: &Layout) -> Option<usize> {
    let (shape, strides) = (l.shape(), l.strides());
    if l.size() == 0 {
        return None;
    }
    let (mut s, mut period) = (shape.len(), 1);
    while s > 0 && (strides[s - 1] == period || shape[s - 1] == 1) {
        period *= shape[s - 1];
        s -= 1;
    }
    let broadcast = shape[..s]
        .iter()
        .zip(strides)
        .all(|(&d, &st)| st == 0 || d == 1);
    broadcast.then_some(period)
}

/// `out[i] = f(xs[i], row[(j0 + i) % row.len()])`, in runs of the row.
fn zip_repeat(out: &mut [f32], xs: &[f32], row: &[f32], j0: usize, f: &impl Fn(f32, f32) -> f32) {
    if let [y] = row {
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = f(x, *y);
        }
        return;
    }
    let (mut i, mut j) = (0, j0);
    while i < out.len() {
        let n = (row.len() - j).min(out.len() - i);
        for ((o, &x), &y) in out[i..i + n]
            .iter_mut()
            .zip(&xs[i..i + n])
            .zip(&row[j..j + n])
        {
            *o = f(x, y);
        }
        i += n;
        j = 0;
    }
}

/// The piece a long single reduction is cut into (see `reduce_impl`).
pub(super) const REDUCE_PIECE: usize = 1 << 16;

/// Partial results [`in_lanes`] keeps.
const LANES: usize = 16;

/// `v` folded by `combine` in [`LANES`] interleaved partial results (element `i` into
/// partial `i % LANES`), then the partials in order and the tail: the compiler vectorises
/// the partials, so the fold runs at memory speed.
#[inline]
fn in_lanes(v: &[f32], identity: f32, combine: impl Fn(f32, f32) -> f32) -> f32 {
    let mut part = [identity; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (p, &x) in part.iter_mut().zip(c) {
            *p = combine(*p, x);
        }
    }
    let mut acc = identity;
    for p in part.into_iter().chain(tail.iter().copied()) {
        acc = combine(acc, p);
    }
    acc
}

pub(super) fn reduce_impl(op: ReduceOp, x: &[f32], l: &Layout, dim: usize) -> HostBuf {
    let len = l.shape()[dim];
    let stride = l.strides()[dim];
    // A long contiguous sum runs in interleaved partial sums (a serial sum waits on the
    // adder's latency at every element); max and min keep their serial order, which fixes
    // which of two equal-comparing values (+0 and -0) wins.
    let lanes = op == ReduceOp::Sum && len >= 4 * LANES;
    // Walk the output positions through the input's strides with `dim` pinned to 0.
    let outer = Layout::new(l.reduced_shape(dim), l.strides(), l.offset()).expect("same rank");
    let plan = CpuBackend::reduce_plan(l, dim);
    let mut out = HostBuf::take(outer.size());
    if outer.size() == 1 && stride == 1 && len >= 2 * REDUCE_PIECE {
        // One long contiguous reduction (a sum of everything): pieces of a fixed size,
        // on every thread, combined in order (the same result on any number of threads).
        let row = &x[outer.offset()..outer.offset() + len];
        with_reduce!(op, (combine, identity) => {
            let fold = |piece: &[f32]| {
                if lanes {
                    in_lanes(piece, identity, combine)
                } else {
                    piece.iter().fold(identity, |a, &v| combine(a, v))
                }
            };
            let parts: Vec<f32> = if rayon::current_num_threads() > 1 {
                row.par_chunks(REDUCE_PIECE).map(fold).collect()
            } else {
                row.chunks(REDUCE_PIECE).map(fold).collect()
            };
            out[0] = parts.into_iter().fold(identity, combine);
        });
        return out;
    }
    with_reduce!(op, (combine, identity) => {
        run_chunks(plan, &mut out, |start, chunk| {
            let mut cur = StridedCursor::new(&outer, start);
            for o in chunk.iter_mut() {
                let base = cur.pos();
                let mut acc = identity;
                if stride == 1 && lanes {
                    acc = in_lanes(&x[base..base + len], identity, combine);
                } else if stride == 1 {
                    for &v in &x[base..base + len] {
                        acc = combine(acc, v);
                    }
                } else {
                    for j in 0..len {
                        acc = combine(acc, x[base + j * stride]);
                    }
                }
                *o = acc;
                cur.advance();
            }
        })
    });
    out
}
