//! reduce (shaders/reduce.wgsl): by shape ([`reduce_plan`]), one thread per output with a
//! serial loop, or one workgroup of 256 threads per output position with a strided share
//! of the reduced dimension per thread, then a shared-memory tree. Metadata from
//! [`meta::reduce_meta`], shared with CUDA.
//!
//! [`reduce_plan`]: crate::backend::gpu::plan::reduce_plan

use super::runtime::{Family, Launch, Runtime};
use super::{buffer, meta_words, WgpuBackend};
use crate::backend::gpu::meta;
use crate::backend::gpu::plan::ReducePlan;
use crate::backend::{check, ReduceOp, Storage};
use crate::error::{Error, Result};
use crate::layout::Layout;

/// Reduce dimension `dim` of `x` with `op`, keeping it with size 1.
pub fn reduce(rt: &Runtime, op: ReduceOp, x: &Storage, l: &Layout, dim: usize) -> Result<Storage> {
    check::reduce(x, l, dim)?;
    let xb = buffer(x)?;
    let mut words = meta_words("reduce");
    let launch = meta::reduce_meta("reduce", l, dim, |what, v| words.push(what, v))?;
    let out_size = launch.out_size;
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
        let (kernel, groups) = match launch.plan {
            ReducePlan::Serial => (Family::ReduceSerial, out_size.div_ceil(256)),
            ReducePlan::Tree => (Family::Reduce, out_size),
        };
        let launch = Launch {
            op: "reduce",
            kernel,
            entry: op.name(),
            contiguous: launch.contiguous,
            groups: rt.groups_1d("reduce", groups)?,
        };
        rt.dispatch(&launch, &[xb], out.raw(), words.words())?;
    }
    Ok(WgpuBackend::wrap(out, out_size))
}
