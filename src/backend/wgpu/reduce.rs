//! reduce (shaders/reduce.wgsl): by shape ([`reduce_plan`]), one thread per output with a
//! serial loop, or one workgroup of 256 threads per output position with a strided share
//! of the reduced dimension per thread, then a shared-memory tree.

use super::runtime::{Family, Launch, Runtime};
use super::{buffer, push_shape, push_strides, to_u32, WgpuBackend};
use crate::backend::gpu::plan::{reduce_plan, ReducePlan};
use crate::backend::{check, ReduceOp, Storage};
use crate::error::{Error, Result};
use crate::layout::Layout;

/// Metadata: `[out_size, rank, x_offset, reduce_dim, reduce_len, reduce_stride,
/// out_shape[rank] (reduce_dim set to 1), x_strides[rank]]`.
pub fn meta(l: &Layout, dim: usize) -> Result<Vec<u32>> {
    let out_shape = l.reduced_shape(dim);
    let out_size: usize = out_shape.iter().product();
    let len = l.shape()[dim];
    let mut m = Vec::with_capacity(6 + 2 * l.dims());
    m.push(to_u32("reduce", "size", out_size)?);
    m.push(to_u32("reduce", "rank", l.dims())?);
    m.push(to_u32("reduce", "offset", l.offset())?);
    m.push(to_u32("reduce", "dimension", dim)?);
    m.push(to_u32("reduce", "length", len)?);
    m.push(if len <= 1 {
        0
    } else {
        to_u32("reduce", "stride", l.strides()[dim])?
    });
    push_shape("reduce", &mut m, &out_shape)?;
    push_strides("reduce", &mut m, l)?;
    Ok(m)
}

/// Reduce dimension `dim` of `x` with `op`, keeping it with size 1.
pub fn reduce(rt: &Runtime, op: ReduceOp, x: &Storage, l: &Layout, dim: usize) -> Result<Storage> {
    check::reduce(x, l, dim)?;
    let xb = buffer(x)?;
    let meta = meta(l, dim)?;
    let out_size = meta[0] as usize;
    let out = rt.alloc("reduce", out_size)?;
    if out_size > 0 {
        let len = l.shape()[dim];
        // The kernels count with u32 (`j + 256`, `o`): refuse lengths where that could wrap
        // (unreachable within wgpu's u32 binding sizes, checked so it stays that way).
        if len > (u32::MAX - 256) as usize {
            return Err(Error::shape(
                "reduce",
                &[l.shape()],
                format!("a reduced length of {len} is beyond the u32 counters of the wgpu kernels"),
            ));
        }
        // The fast path needs reduce_stride = product of the later dimensions, which a
        // contiguous layout guarantees only when the reduced dimension is longer than 1.
        let contiguous = l.is_contiguous() && len > 1;
        let plan = reduce_plan(out_size, len, l.strides()[dim] == 1);
        let (kernel, groups) = match plan {
            ReducePlan::Serial => (Family::ReduceSerial, out_size.div_ceil(256)),
            ReducePlan::Tree => (Family::Reduce, out_size),
        };
        let pipeline = rt.pipeline(kernel, op.name(), contiguous)?;
        let groups = rt.groups_1d("reduce", groups)?;
        let launch = Launch {
            op: "reduce",
            kernel,
            pipeline: &pipeline,
            groups,
        };
        rt.dispatch(&launch, &[xb], out.raw(), &meta)?;
    }
    Ok(WgpuBackend::wrap(out, out_size))
}
