//! The CPU backend (MiniTorch's `fast_ops.py`, tasks 3.1 and 3.2): rayon-parallel map, zip
//! and reduce, and a cache-blocked SIMD matmul.
//!
//! Every op chooses a [`Plan`]: the aligned fast path when the inputs are contiguous like
//! the output (no index arithmetic at all), else a strided walk with an odometer cursor (no
//! allocation per element); serial below [`PARALLEL_MIN`] elements so small tensors do not
//! pay for threads, else parallel over chunks of the output.

use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use smallvec::SmallVec;

use super::{
    check, fused as fusion, Backend, BinaryOp, Device, MatrixView, Outputs, ReduceOp, Storage,
    UnaryOp,
};
use crate::error::Result;
use crate::layout::{Layout, StridedCursor};
use crate::operators as ops;

pub mod col2im;
pub mod copy;
pub mod interpreter;
pub mod matmul;
pub mod pool;
pub mod pooling;
#[cfg(test)]
mod zip_tests;

use pool::HostBuf;

/// Below this many output elements an op runs on the calling thread.
pub const PARALLEL_MIN: usize = 1 << 15;

/// Name used in errors.
const NAME: &str = "cpu";

/// How an elementwise op or reduction is executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Inputs contiguous like the output: plain slice loops, no index arithmetic.
    pub aligned: bool,
    /// Number of chunks of the output handed to rayon (1 = serial on the calling thread).
    pub chunks: usize,
    /// Output elements per chunk.
    pub chunk_len: usize,
}

impl Plan {
    /// The plan for `n` output elements; `cost` is the work per output element (the reduced
    /// length for a reduction, 1 for map and zip).
    pub fn new(n: usize, cost: usize, aligned: bool) -> Plan {
        let threads = rayon::current_num_threads().max(1);
        if n.saturating_mul(cost.max(1)) < PARALLEL_MIN || threads == 1 || n < 2 {
            return Plan {
                aligned,
                chunks: 1,
                chunk_len: n.max(1),
            };
        }
        // A few chunks per thread balance the load without many hand-offs.
        let target = (threads * 4).min(n);
        let chunk_len = n.div_ceil(target);
        Plan {
            aligned,
            chunks: n.div_ceil(chunk_len),
            chunk_len,
        }
    }

    /// True when the plan runs on more than one thread.
    pub fn is_parallel(&self) -> bool {
        self.chunks > 1
    }
}

/// Run `body(start, chunk)` over the output in the plan's chunks.
fn run_chunks(plan: Plan, out: &mut [f32], body: impl Fn(usize, &mut [f32]) + Sync) {
    if plan.is_parallel() {
        out.par_chunks_mut(plan.chunk_len)
            .enumerate()
            .for_each(|(i, c)| body(i * plan.chunk_len, c));
    } else {
        body(0, out);
    }
}

/// The CPU backend: storage is a `Vec<f32>`.
#[derive(Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    /// The process-wide CPU backend.
    pub fn global() -> Arc<dyn Backend> {
        static B: OnceLock<Arc<dyn Backend>> = OnceLock::new();
        B.get_or_init(|| Arc::new(CpuBackend)).clone()
    }

    /// Storage holding `v`: a [`HostBuf`], whose memory returns to the pool when dropped.
    fn wrap(v: impl Into<HostBuf>) -> Storage {
        let v = v.into();
        let n = v.len();
        Storage::new(v, n, Device::Cpu)
    }

    /// `a @ b` of checked operands with `dims` = `(batch, n, k, m)`, into a pooled buffer.
    fn product(
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
        dims: check::MatmulDims,
    ) -> Result<Storage> {
        check::host_alloc(
            "matmul",
            dims.0.saturating_mul(dims.1).saturating_mul(dims.3),
        )?;
        let (sa, sb) = (host(a)?, host(b)?);
        let mut out = HostBuf::take(dims.0 * dims.1 * dims.3);
        matmul::batched_into(&mut out, sa, al, sb, bl, dims);
        Ok(Self::wrap(out))
    }

    /// The plan `map` and `copy` use for this layout.
    pub fn map_plan(layout: &Layout) -> Plan {
        Plan::new(layout.size(), 1, layout.is_contiguous())
    }

    /// The plan `zip` uses for these layouts.
    pub fn zip_plan(al: &Layout, bl: &Layout) -> Plan {
        Plan::new(al.size(), 1, al.is_contiguous() && bl.is_contiguous())
    }

    /// The plan `reduce` uses: parallel over output positions, serial inner loop.
    pub fn reduce_plan(layout: &Layout, dim: usize) -> Plan {
        let len = layout.shape().get(dim).copied().unwrap_or(1);
        // Output positions: the product of the other dimensions (also when len is 0).
        let n = layout.reduced_shape(dim).iter().product();
        Plan::new(n, len, layout.strides().get(dim) == Some(&1) || len <= 1)
    }
}

/// The values of a CPU storage (a pooled [`HostBuf`]; a plain `Vec<f32>` is accepted too).
pub fn host(x: &Storage) -> Result<&[f32]> {
    match x.downcast::<HostBuf>(NAME) {
        Ok(b) => Ok(&b[..]),
        Err(e) => x.downcast::<Vec<f32>>(NAME).map(|v| &v[..]).map_err(|_| e),
    }
}

/// Slice of `x` a contiguous layout covers.
fn contiguous_slice<'a>(x: &'a [f32], l: &Layout) -> &'a [f32] {
    // A zero-size layout may carry any offset (check::fits accepts it).
    if l.size() == 0 {
        return &[];
    }
    &x[l.offset()..l.offset() + l.size()]
}

/// Monomorphise `$body` for each unary op of the op table (`$f` is the row's `apply`, a
/// function item), so the inner loop has no branch per element.
macro_rules! with_unary {
    ($op:expr, $f:ident => $body:expr) => {
        $crate::backend::op_table::unary_table!(monomorphise!(UnaryOp, $op, $f, $body))
    };
}
pub(crate) use with_unary;

/// [`with_unary!`] for the binary ops.
macro_rules! with_binary {
    ($op:expr, $f:ident => $body:expr) => {
        $crate::backend::op_table::binary_table!(monomorphise!(BinaryOp, $op, $f, $body))
    };
}
pub(crate) use with_binary;

/// The match of [`with_unary!`] / [`with_binary!`] over the table's rows.
macro_rules! monomorphise {
    (($Op:ident, $op:expr, $f:ident, $body:expr)
     $( $(#[$doc:meta])* $V:ident { name: $name:literal, function: $function:literal,
        apply: $apply:expr, $($rest:tt)* } )*) => {
        match $op {
            $( $Op::$V => {
                let $f = $apply;
                $body
            } )*
        }
    };
}
pub(crate) use monomorphise;

/// Monomorphise `$body` for each reduction of the op table (`$combine` and `$identity` are
/// the row's).
macro_rules! with_reduce {
    ($op:expr, ($combine:ident, $identity:ident) => $body:expr) => {
        $crate::backend::op_table::reduce_table!(monomorphise_reduce!(
            $op, $combine, $identity, $body
        ))
    };
}

/// The match of [`with_reduce!`] over the table's rows.
macro_rules! monomorphise_reduce {
    (($op:expr, $c:ident, $i:ident, $body:expr)
     $( $(#[$doc:meta])* $V:ident { name: $name:literal, identity: $identity:expr,
        combine: $combine:expr, $($rest:tt)* } )*) => {
        match $op {
            $( ReduceOp::$V => {
                let ($c, $i) = ($combine, $identity);
                $body
            } )*
        }
    };
}

/// Calls `f(i, p, s, n)` for each run of `l`'s innermost dimension among its row-major
/// elements `start..start + len`: `n` elements from output offset `i`, read from storage
/// positions `p, p + s, ...`. Strided loops index plainly within a run and step the
/// odometer once per run, not once per element.
///
/// Where the innermost rows are short (a pooling window's 2 or 3 values), the two or three
/// innermost dimensions are walked by plain loops and the odometer steps once per block
/// of them, not once per short row.
pub(crate) fn strided_runs(
    l: &Layout,
    start: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let (shape, strides) = (l.shape(), l.strides());
    let r = shape.len();
    if r < 2 || shape[r - 1] >= SHORT_ROW {
        return runs_by_row(l, start, len, f);
    }
    let q = if r >= 3 && shape[r - 1] * shape[r - 2] < 4 * SHORT_ROW {
        3
    } else {
        2
    };
    let (inner, ist) = (&shape[r - q..], &strides[r - q..]);
    let block: usize = inner.iter().product();
    if block == 0 || len == 0 {
        return;
    }
    // The partial block at the start, whole blocks, then the partial block at the end.
    let head = ((block - start % block) % block).min(len);
    runs_by_row(l, start, head, &mut f);
    let mut i = head;
    let full = (len - i) / block;
    if full > 0 {
        let outer = Layout::new(&shape[..r - q], &strides[..r - q], l.offset())
            .expect("a layout's outer dimensions are a layout");
        let mut cur = StridedCursor::new(&outer, (start + i) / block);
        let n0 = inner[q - 1];
        for _ in 0..full {
            let p = cur.pos();
            if q == 2 {
                for a in 0..inner[0] {
                    f(i, p + a * ist[0], ist[1], n0);
                    i += n0;
                }
            } else {
                for a in 0..inner[0] {
                    for b in 0..inner[1] {
                        f(i, p + a * ist[0] + b * ist[1], ist[2], n0);
                        i += n0;
                    }
                }
            }
            cur.advance();
        }
    }
    runs_by_row(l, start + i, len - i, |j, p, s, n| f(i + j, p, s, n));
}

/// Rows shorter than this take [`strided_runs`]' block walk.
const SHORT_ROW: usize = 16;

/// [`strided_runs`] one innermost row at a time.
fn runs_by_row(
    l: &Layout,
    start: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    if len == 0 {
        return;
    }
    let mut cur = StridedCursor::new(l, start);
    let mut i = 0;
    while i < len {
        let n = cur.row_left().min(len - i);
        f(i, cur.pos(), cur.inner_stride(), n);
        cur.advance_in_row(n);
        i += n;
    }
}

fn map_impl(f: impl Fn(f32) -> f32 + Sync, x: &[f32], l: &Layout) -> HostBuf {
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

fn zip_impl(
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
fn broadcast_period(l: &Layout) -> Option<usize> {
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
const REDUCE_PIECE: usize = 1 << 16;

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

fn reduce_impl(op: ReduceOp, x: &[f32], l: &Layout, dim: usize) -> HostBuf {
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

impl Backend for CpuBackend {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn describe(&self) -> String {
        format!("{} ({} threads)", cpu_model(), rayon::current_num_threads())
    }

    fn full(&self, len: usize, value: f32) -> Result<Storage> {
        check::host_alloc("full", len)?;
        Ok(Self::wrap(HostBuf::full(len, value)))
    }

    fn upload(&self, data: &[f32]) -> Result<Storage> {
        check::host_alloc("upload", data.len())?;
        Ok(Self::wrap(HostBuf::copy_of(data)))
    }

    fn download(&self, x: &Storage) -> Result<Vec<f32>> {
        Ok(host(x)?.to_vec())
    }

    fn map(&self, op: UnaryOp, x: &Storage, layout: &Layout) -> Result<Storage> {
        check::fits("map", x, layout)?;
        check::host_alloc("map", layout.size())?;
        let src = host(x)?;
        Ok(Self::wrap(with_unary!(op, f => map_impl(f, src, layout))))
    }

    fn zip(
        &self,
        op: BinaryOp,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
    ) -> Result<Storage> {
        check::zip(a, al, b, bl)?;
        check::host_alloc("zip", al.size())?;
        let (sa, sb) = (host(a)?, host(b)?);
        Ok(Self::wrap(
            with_binary!(op, f => zip_impl(f, sa, al, sb, bl)),
        ))
    }

    fn reduce(&self, op: ReduceOp, x: &Storage, layout: &Layout, dim: usize) -> Result<Storage> {
        check::reduce(x, layout, dim)?;
        check::host_alloc("reduce", layout.size() / layout.shape()[dim].max(1))?;
        let src = host(x)?;
        Ok(Self::wrap(reduce_impl(op, src, layout, dim)))
    }

    fn matmul(&self, a: &Storage, al: &Layout, b: &Storage, bl: &Layout) -> Result<Storage> {
        let dims = check::matmul(a, al, b, bl)?;
        Self::product(a, al, b, bl, dims)
    }

    fn copy(&self, x: &Storage, layout: &Layout) -> Result<Storage> {
        check::fits("copy", x, layout)?;
        check::host_alloc("copy", layout.size())?;
        Ok(Self::wrap(copy::copy(host(x)?, layout)))
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn pad(&self, x: &Storage, layout: &Layout, spec: &super::pad::PadSpec) -> Result<Storage> {
        check::pad(x, layout, spec)?;
        let size = crate::layout::shape_size(&spec.out_shape);
        check::host_alloc("pad", size)?;
        let mut out = HostBuf::take(size);
        let x = host(x)?;
        // Runs of whole rows (of the last dimension) on the plan's threads.
        let row = spec.out_shape.last().copied().unwrap_or(1).max(1);
        let plan = Plan::new(size / row, row, false);
        if plan.is_parallel() && layout.dims() > 0 {
            out.par_chunks_mut(plan.chunk_len * row)
                .enumerate()
                .for_each(|(i, c)| super::pad::pad_rows(c, i * plan.chunk_len, x, layout, spec));
        } else {
            super::pad::pad_into(&mut out, x, layout, spec);
        }
        Ok(Self::wrap(out))
    }

    fn fused(
        &self,
        program: &fusion::Program,
        inputs: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<Outputs> {
        check::fused(program, inputs, params)?;
        let size = inputs[0].1.size();
        let ins = inputs
            .iter()
            .map(|(x, l)| Ok((host(x)?, *l)))
            .collect::<Result<SmallVec<[_; 4]>>>()?;
        let outs = interpreter::run(program, &ins, params, size);
        Ok(outs.into_iter().map(Self::wrap).collect())
    }

    fn matmul_fused(
        &self,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
        epilogue: &fusion::Program,
        extra: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<Storage> {
        // The epilogue runs over the product right after it (one pass, no kernel to fuse).
        let (dims, shape) = check::matmul_fused(a, al, b, bl, epilogue, extra, params)?;
        let product = Self::product(a, al, b, bl, dims)?;
        if epilogue.is_identity() {
            return Ok(product);
        }
        fusion::then_epilogue(&product, &shape, extra, |ins| {
            self.fused(epilogue, ins, params)
        })
    }

    fn conv2d_input_grad(
        &self,
        go: &Storage,
        w: &Storage,
        g: &super::conv2d::ConvGeometry,
    ) -> Result<(Storage, Layout)> {
        super::conv2d::check_input_grad(go, w, g)?;
        let dx = col2im::input_grad(host(go)?, host(w)?, g);
        Ok((Self::wrap(dx), Layout::contiguous(&[g.b, g.cin, g.h, g.w])))
    }

    fn max_pool2d(
        &self,
        x: &Storage,
        layout: &Layout,
        windows: &super::pool2d::Windows,
    ) -> Result<(Storage, Storage)> {
        windows.check("max_pool2d", x, layout, false)?;
        let (v, f) = pooling::max_pool2d(host(x)?, layout, windows);
        Ok((Self::wrap(v), Self::wrap(f)))
    }

    fn avg_pool2d(
        &self,
        x: &Storage,
        layout: &Layout,
        windows: &super::pool2d::Windows,
    ) -> Result<Storage> {
        windows.check("avg_pool2d", x, layout, false)?;
        Ok(Self::wrap(pooling::avg_pool2d(host(x)?, layout, windows)))
    }

    fn avg_pool2d_backward(
        &self,
        grad: &Storage,
        gl: &Layout,
        windows: &super::pool2d::Windows,
    ) -> Result<Storage> {
        windows.check("avg_pool2d backward", grad, gl, true)?;
        Ok(Self::wrap(pooling::avg_pool2d_backward(
            host(grad)?,
            gl,
            windows,
        )))
    }

    fn max_pool2d_backward(
        &self,
        grad: &Storage,
        gl: &Layout,
        first: &Storage,
        windows: &super::pool2d::Windows,
    ) -> Result<Storage> {
        windows.check("max_pool2d backward", grad, gl, true)?;
        let f = host(first)?;
        if f.len() < windows.count() {
            return Err(crate::error::Error::invalid(
                "max_pool2d backward",
                format!(
                    "{} first positions for {} windows",
                    f.len(),
                    windows.count()
                ),
            ));
        }
        Ok(Self::wrap(pooling::max_pool2d_backward(
            host(grad)?,
            gl,
            f,
            windows,
        )))
    }

    fn matmul_view(
        &self,
        a: &Storage,
        av: &MatrixView,
        b: &Storage,
        bv: &MatrixView,
        epilogue: &fusion::Program,
        extra: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<Storage> {
        let (n, k, m) = check::matmul_view(a, av, b, bv)?;
        if let (Some(al), Some(bl)) = (av.as_matrix(), bv.as_matrix()) {
            return self.matmul_fused(a, &al, b, &bl, epilogue, extra, params);
        }
        check::matmul_epilogue("matmul_view", &[n, m], epilogue, extra, params)?;
        check::host_alloc("matmul_view", n.saturating_mul(m))?;
        // A plain operand is read through its 2-D layout, any other packed from positions.
        let (al, bl) = (av.as_matrix(), bv.as_matrix());
        let (ao, bo) = (
            al.is_none().then(|| av.offsets()),
            bl.is_none().then(|| bv.offsets()),
        );
        fn operand<'t>(
            plain: &'t Option<Layout>,
            offsets: &'t Option<(Vec<usize>, Vec<usize>)>,
        ) -> matmul::Operand<'t> {
            match (plain, offsets) {
                (Some(l), _) => matmul::Operand::Strided(l),
                (None, Some((rows, cols))) => matmul::Operand::Gathered { rows, cols },
                (None, None) => unreachable!("a view is plain or has offsets"),
            }
        }
        // The epilogue runs on each finished row of a tile, in place, while it is in cache
        // (input 0 is the product itself; the layout in its slot is never read).
        let product = Layout::contiguous(&[n, m]);
        let mut ins: SmallVec<[(&[f32], &Layout); 4]> = smallvec::smallvec![(&[][..], &product)];
        for (x, l) in extra {
            ins.push((host(x)?, *l));
        }
        // A bias per row and an activation (a convolution's epilogue): plain loops, with
        // the same operations the interpreter would run.
        let row_bias = match (epilogue.as_bias_act(), ins.get(1)) {
            (Some(act), Some(&(b, bl))) if bl.strides()[1] == 0 => Some((act, b, bl)),
            _ => None,
        };
        let apply = |t: &mut matmul::Finished| {
            for i in 0..t.rows {
                let at = t.at(i);
                if let Some((act, b, bl)) = row_bias {
                    let bias = b[bl.offset() + (t.row0 + i) * bl.strides()[0]];
                    let row = t.row_mut(i);
                    match act {
                        None => row.iter_mut().for_each(|v| *v += bias),
                        Some(op) => with_unary!(op, f => row
                            .iter_mut()
                            .for_each(|v| *v = f(*v + bias))),
                    }
                    continue;
                }
                interpreter::apply_in_place(epilogue, &ins, params, at, t.row_mut(i));
            }
        };
        let finish: Option<matmul::Finish> = (!epilogue.is_identity()).then_some(&apply);
        let mut out = HostBuf::take(n * m);
        matmul::gathered_into(
            &mut out,
            (host(a)?, operand(&al, &ao)),
            (host(b)?, operand(&bl, &bo)),
            (n, k, m),
            &matmul::Options::auto(),
            finish,
        );
        Ok(Self::wrap(out))
    }
}

/// The CPU's model name, from /proc/cpuinfo where there is one.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
