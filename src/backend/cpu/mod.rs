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
use crate::layout::Layout;
use crate::operators as ops;

pub mod col2im;
pub mod copy;
pub mod direct;
mod elementwise;
pub mod interpreter;
pub mod matmul;
pub mod pool;
pub mod pooling;
mod strided;
#[cfg(test)]
mod zip_tests;

#[cfg(test)]
use elementwise::{broadcast_period, REDUCE_PIECE};
use elementwise::{map_impl, reduce_impl, zip_impl};
pub(crate) use strided::strided_runs;

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

pub(crate) use with_reduce;

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

pub(crate) use monomorphise_reduce;

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

    fn conv2d(
        &self,
        x: &Storage,
        xl: &Layout,
        w: &Storage,
        g: &super::conv2d::ConvGeometry,
        epilogue: &fusion::Program,
        extra: &[(&Storage, &Layout)],
        params: &[f32],
        keep: bool,
    ) -> Result<(Storage, Option<super::conv2d::Columns>)> {
        use super::conv2d;
        conv2d::check_forward(x, xl, w, g)?;
        let m = g.b * g.oh * g.ow;
        check::matmul_epilogue("conv2d", &[g.cout, m], epilogue, extra, params)?;
        let product = Layout::contiguous(&[g.cout, m]);
        let mut ins: SmallVec<[(&[f32], &Layout); 4]> = smallvec::smallvec![(&[][..], &product)];
        for (e, l) in extra {
            ins.push((host(e)?, *l));
        }
        let runs = epilogue_runs(epilogue, &ins, params, m);
        // Nothing, or a bias per channel and relu, goes on the tiles' registers; any other
        // program on each finished run.
        let bias_relu = match row_bias(epilogue, &ins) {
            _ if epilogue.is_identity() => Some(None),
            Some((act @ (None | Some(UnaryOp::Relu)), b, bl)) => Some(Some((
                (0..g.cout)
                    .map(|o| b[bl.offset() + o * bl.strides()[0]])
                    .collect::<Vec<f32>>(),
                act.is_some(),
            ))),
            _ => None,
        };
        let finish = match &bias_relu {
            Some(br) => direct::Epilogue::BiasRelu {
                bias: br.as_ref().map(|(b, _)| &b[..]),
                relu: br.as_ref().is_some_and(|&(_, relu)| relu),
            },
            None => direct::Epilogue::Runs(&runs),
        };
        // The columns' source: the input itself, or its padded copy, which each image's
        // task writes as it reads the image.
        let spec = conv2d::unfold_padding(g).filter(|_| keep);
        let mut padded = match &spec {
            Some(spec) => {
                let size = spec.out_shape.iter().product();
                check::host_alloc("conv2d", size)?;
                Some(HostBuf::take(size))
            }
            None => None,
        };
        let to = padded.as_deref_mut().zip(spec.as_ref());
        let Some(out) = direct::forward(host(x)?, xl, host(w)?, g, finish, to) else {
            return conv2d::forward(self, x, xl, w, g, epilogue, extra, params, keep);
        };
        let columns = match (keep, padded, spec) {
            (false, ..) => None,
            (true, Some(p), Some(spec)) => Some(conv2d::Columns {
                src: Self::wrap(p),
                view: conv2d::window(&Layout::contiguous(&spec.out_shape), g)?,
            }),
            (true, ..) => Some(conv2d::Columns {
                src: x.clone(),
                view: conv2d::window(xl, g)?,
            }),
        };
        Ok((Self::wrap(out), columns))
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
        check::host_alloc("max_pool2d", windows.shape.iter().product())?;
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
        check::host_alloc("avg_pool2d", windows.shape.iter().product())?;
        Ok(Self::wrap(pooling::avg_pool2d(host(x)?, layout, windows)))
    }

    fn avg_pool2d_backward(
        &self,
        grad: &Storage,
        gl: &Layout,
        windows: &super::pool2d::Windows,
    ) -> Result<Storage> {
        windows.check("avg_pool2d backward", grad, gl, true)?;
        check::host_alloc("avg_pool2d backward", windows.shape.iter().product())?;
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
        check::host_alloc("max_pool2d backward", windows.shape.iter().product())?;
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
        let runs = epilogue_runs(epilogue, &ins, params, m);
        let apply = |t: &mut matmul::Finished| {
            for i in 0..t.rows {
                runs(t.at(i), t.row_mut(i));
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

/// `epilogue` applied in place to runs of its result, a product with `m` columns:
/// `f(at, run)` for the run of one row that starts at position `at` (input 0 is the run
/// itself; inputs 1.. are `ins[1..]`). A bias per row and an activation (a convolution's
/// epilogue) take plain loops with the same operations the interpreter would run.
fn epilogue_runs<'a>(
    epilogue: &'a fusion::Program,
    ins: &'a [(&'a [f32], &'a Layout)],
    params: &'a [f32],
    m: usize,
) -> impl Fn(usize, &mut [f32]) + Sync + 'a {
    let row_bias = row_bias(epilogue, ins);
    move |at: usize, run: &mut [f32]| {
        if let Some((act, b, bl)) = row_bias {
            let bias = b[bl.offset() + at / m * bl.strides()[0]];
            match act {
                None => run.iter_mut().for_each(|v| *v += bias),
                Some(op) => with_unary!(op, f => run.iter_mut().for_each(|v| *v = f(*v + bias))),
            }
            return;
        }
        interpreter::apply_in_place(epilogue, ins, params, at, run);
    }
}

/// `epilogue` as a bias per row (input 1, broadcast along rows) and an optional
/// activation, where it is one (a convolution's epilogue).
fn row_bias<'a>(
    epilogue: &fusion::Program,
    ins: &[(&'a [f32], &'a Layout)],
) -> Option<(Option<UnaryOp>, &'a [f32], &'a Layout)> {
    match (epilogue.as_bias_act(), ins.get(1)) {
        (Some(act), Some(&(b, bl))) if bl.strides()[1] == 0 => Some((act, b, bl)),
        _ => None,
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
