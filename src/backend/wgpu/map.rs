//! map (shaders/map.wgsl): one thread per output element, entry `map_<op>` for any layout
//! or `map_<op>_contiguous` when the input is contiguous.

use super::runtime::{Kernel, Launch, Runtime};
use super::{buffer, push_shape, push_strides, to_u32, WgpuBackend};
use crate::backend::{check, Storage, UnaryOp};
use crate::error::Result;
use crate::layout::Layout;

/// Metadata: `[size, rank, x_offset, shape[rank], x_strides[rank]]`.
pub fn meta(op: &'static str, l: &Layout) -> Result<Vec<u32>> {
    let mut m = Vec::with_capacity(3 + 2 * l.dims());
    m.push(to_u32(op, "size", l.size())?);
    m.push(to_u32(op, "rank", l.dims())?);
    m.push(to_u32(op, "offset", l.offset())?);
    push_shape(op, &mut m, l.shape())?;
    push_strides(op, &mut m, l)?;
    Ok(m)
}

/// `op` on every element of `x` read through `layout`.
pub fn map(rt: &Runtime, op: UnaryOp, x: &Storage, layout: &Layout) -> Result<Storage> {
    map_named(rt, "map", op, x, layout)
}

/// [`map`] reporting errors as `name` (copy is map with `id`).
pub fn map_named(
    rt: &Runtime,
    name: &'static str,
    op: UnaryOp,
    x: &Storage,
    layout: &Layout,
) -> Result<Storage> {
    check::fits(name, x, layout)?;
    let xb = buffer(x)?;
    let size = layout.size();
    let out = rt.alloc(name, size)?;
    if size > 0 {
        let meta = meta(name, layout)?;
        let contiguous = layout.is_contiguous();
        let pipeline = rt.pipeline(Kernel::Map, op.name(), contiguous)?;
        let groups = rt.groups_1d(name, size.div_ceil(256))?;
        let launch = Launch {
            op: name,
            kernel: Kernel::Map,
            pipeline: &pipeline,
            groups,
        };
        rt.dispatch(&launch, &[xb], out.raw(), &meta)?;
    }
    Ok(WgpuBackend::wrap(out, size))
}
