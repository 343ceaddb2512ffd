//! zip (shaders/zip.wgsl): one thread per output element, entry `zip_<op>` for any layouts
//! or `zip_<op>_contiguous` when both inputs are contiguous.

use super::runtime::{Kernel, Launch, Runtime};
use super::{buffer, push_shape, push_strides, to_u32, WgpuBackend};
use crate::backend::{check, BinaryOp, Storage};
use crate::error::Result;
use crate::layout::Layout;

/// Metadata: `[size, rank, a_offset, b_offset, shape[rank], a_strides[rank], b_strides[rank]]`.
pub fn meta(al: &Layout, bl: &Layout) -> Result<Vec<u32>> {
    let mut m = Vec::with_capacity(4 + 3 * al.dims());
    m.push(to_u32("zip", "size", al.size())?);
    m.push(to_u32("zip", "rank", al.dims())?);
    m.push(to_u32("zip", "offset", al.offset())?);
    m.push(to_u32("zip", "offset", bl.offset())?);
    push_shape("zip", &mut m, al.shape())?;
    push_strides("zip", &mut m, al)?;
    push_strides("zip", &mut m, bl)?;
    Ok(m)
}

/// `op` on element pairs of `a` and `b` (layouts of one shape).
pub fn zip(
    rt: &Runtime,
    op: BinaryOp,
    a: &Storage,
    al: &Layout,
    b: &Storage,
    bl: &Layout,
) -> Result<Storage> {
    check::zip(a, al, b, bl)?;
    let (ab, bb) = (buffer(a)?, buffer(b)?);
    let size = al.size();
    let out = rt.alloc("zip", size)?;
    if size > 0 {
        let meta = meta(al, bl)?;
        let contiguous = al.is_contiguous() && bl.is_contiguous();
        let pipeline = rt.pipeline(Kernel::Zip, op.name(), contiguous)?;
        let groups = rt.groups_1d("zip", size.div_ceil(256))?;
        let launch = Launch {
            op: "zip",
            kernel: Kernel::Zip,
            pipeline: &pipeline,
            groups,
        };
        rt.dispatch(&launch, &[ab, bb], out.raw(), &meta)?;
    }
    Ok(WgpuBackend::wrap(out, size))
}
