//! Fused elementwise programs on the CPU: the program is interpreted a block of elements at
//! a time (each node over the whole block, so the op dispatch happens once per block and
//! the inner loops are plain slice loops), serial below [`PARALLEL_MIN`] elements, else
//! parallel over blocks. One pass over the data and one pooled buffer per output, where
//! the chain of primitives makes one of each per op.

use std::cell::RefCell;

use rayon::prelude::*;
use smallvec::SmallVec;

use super::pool::HostBuf;
use super::{contiguous_slice, monomorphise, with_binary, with_unary, PARALLEL_MIN};
use crate::backend::fused::{Node, Program};
use crate::backend::{BinaryOp, UnaryOp};
use crate::layout::Layout;
use crate::operators as ops;

/// Elements per block of the interpreter (every node's block stays in L1).
const BLOCK: usize = 256;

fn each1(out: &mut [f32], a: &[f32], f: impl Fn(f32) -> f32) {
    for (o, &x) in out.iter_mut().zip(a) {
        *o = f(x);
    }
}

fn each2(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = f(x, y);
    }
}

/// `op` over a block, one monomorphised loop per op (from the op table).
fn unary(op: UnaryOp, out: &mut [f32], a: &[f32]) {
    with_unary!(op, f => each1(out, a, f))
}

fn binary(op: BinaryOp, out: &mut [f32], a: &[f32], b: &[f32]) {
    with_binary!(op, f => each2(out, a, b, f))
}

/// Evaluate `p` on the elements `start..start + len` into `outs` (one slice per output).
/// `in_place`: input 0 is read from `outs[0]` itself (its current values), not `inputs[0]`.
fn block(
    p: &Program,
    inputs: &[(&[f32], &Layout)],
    params: &[f32],
    start: usize,
    in_place: bool,
    vals: &mut [Vec<f32>],
    outs: &mut [&mut [f32]],
) {
    let len = outs[0].len();
    for (k, n) in p.nodes().iter().enumerate() {
        let (done, rest) = vals.split_at_mut(k);
        let v = &mut rest[0][..len];
        match *n {
            Node::Input(0) if in_place => v.copy_from_slice(&outs[0][..len]),
            Node::Input(i) => {
                let (x, l) = inputs[i];
                if l.is_contiguous() {
                    v.copy_from_slice(&contiguous_slice(x, l)[start..start + len]);
                } else {
                    super::strided_runs(l, start, len, |i, p, s, n| match s {
                        1 => v[i..i + n].copy_from_slice(&x[p..p + n]),
                        0 => v[i..i + n].fill(x[p]),
                        _ => {
                            for (k, o) in v[i..i + n].iter_mut().enumerate() {
                                *o = x[p + k * s];
                            }
                        }
                    });
                }
            }
            Node::Param(i) => v.fill(params[i]),
            Node::Const(bits) => v.fill(f32::from_bits(bits)),
            Node::Unary(op, a) => unary(op, v, &done[a][..len]),
            Node::Binary(op, a, b) => binary(op, v, &done[a][..len], &done[b][..len]),
        }
    }
    for (o, &node) in outs.iter_mut().zip(p.outputs()) {
        o.copy_from_slice(&vals[node][..len]);
    }
}

thread_local! {
    /// The interpreter's per-thread scratch, one block per program node, reused from call
    /// to call (a training step runs a few fused programs on small tensors, where fresh
    /// scratch vectors cost more than the arithmetic).
    static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// `f` with `nodes` scratch blocks of [`BLOCK`] values from this thread's [`SCRATCH`].
/// Nothing inside `block` calls back into rayon or the interpreter, so the borrow is never
/// taken twice on one thread.
fn with_scratch<R>(nodes: usize, f: impl FnOnce(&mut [Vec<f32>]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < nodes {
            s.resize_with(nodes, Vec::new);
        }
        for v in s[..nodes].iter_mut() {
            if v.len() < BLOCK {
                v.resize(BLOCK, 0.0);
            }
        }
        f(&mut s[..nodes])
    })
}

/// Evaluate `p` on the elements `lo..lo + outs[0].len()` into `outs` (one slice per
/// output), block by block; `in_place` as in [`block`].
fn run_span(
    p: &Program,
    inputs: &[(&[f32], &Layout)],
    params: &[f32],
    lo: usize,
    in_place: bool,
    outs: &mut [&mut [f32]],
) {
    let hi = lo + outs.first().map_or(0, |o| o.len());
    with_scratch(p.nodes().len(), |vals| {
        let mut start = lo;
        while start < hi {
            let end = (start + BLOCK).min(hi);
            let mut slices: SmallVec<[&mut [f32]; 2]> = outs
                .iter_mut()
                .map(|o| &mut o[start - lo..end - lo])
                .collect();
            block(p, inputs, params, start, in_place, vals, &mut slices);
            start = end;
        }
    });
}

/// Run `p` over `size` elements; `inputs` are storages with layouts of one shape of `size`
/// elements (checked by the caller). One pooled buffer per output, every value written.
pub fn run(
    p: &Program,
    inputs: &[(&[f32], &Layout)],
    params: &[f32],
    size: usize,
) -> SmallVec<[HostBuf; 2]> {
    let n_out = p.outputs().len();
    let mut outs: SmallVec<[HostBuf; 2]> = (0..n_out).map(|_| HostBuf::take(size)).collect();
    let threads = rayon::current_num_threads();
    if size < PARALLEL_MIN || threads == 1 {
        let mut whole: SmallVec<[&mut [f32]; 2]> = outs.iter_mut().map(|o| &mut o[..]).collect();
        run_span(p, inputs, params, 0, false, &mut whole);
        drop(whole);
        return outs;
    }
    // Parallel: each task fills a contiguous run of blocks of every output, in place.
    let run_len = size.div_ceil(threads * 4).next_multiple_of(BLOCK);
    let mut runs: Vec<Vec<&mut [f32]>> = (0..size.div_ceil(run_len))
        .map(|_| Vec::with_capacity(n_out))
        .collect();
    for o in outs.iter_mut() {
        for (r, chunk) in o.chunks_mut(run_len).enumerate() {
            runs[r].push(chunk);
        }
    }
    runs.into_par_iter()
        .enumerate()
        .for_each(|(r, mut parts)| run_span(p, inputs, params, r * run_len, false, &mut parts));
    outs
}

/// Apply the one-output program `p` in place to the elements `lo..lo + out.len()` of its
/// result, where input 0 is `out` itself (a matmul epilogue applied to a finished row of a
/// tile while it is in cache) and inputs 1.. are `inputs[1..]` (`inputs[0]` is unused).
pub fn apply_in_place(
    p: &Program,
    inputs: &[(&[f32], &Layout)],
    params: &[f32],
    lo: usize,
    out: &mut [f32],
) {
    run_span(p, inputs, params, lo, true, &mut [out]);
}
