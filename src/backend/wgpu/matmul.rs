//! matmul (shaders/matmul.wgsl): 64x64 output tiles per workgroup of 16x16 threads, 4x4
//! outputs per thread, BK = 16 tiles of A and B in workgroup memory; the batch on the z
//! axis of the grid.

use super::runtime::{Kernel, Launch, Runtime};
use super::{buffer, push_shape, to_u32, WgpuBackend};
use crate::backend::{check, Storage};
use crate::error::{Error, Result};
use crate::layout::Layout;

/// Output tile edge of one workgroup.
pub const TILE: usize = 64;

/// Metadata: `[batch, n, k, m, batch_rank, a_offset, b_offset, a_row_stride, a_col_stride,
/// b_row_stride, b_col_stride, batch_shape[batch_rank], a_batch_strides[batch_rank],
/// b_batch_strides[batch_rank]]`.
pub fn meta(
    al: &Layout,
    bl: &Layout,
    (batch, n, k, m): (usize, usize, usize, usize),
) -> Result<Vec<u32>> {
    let r = al.dims();
    let br = r - 2;
    // Strides of size-1 dimensions are never multiplied by a non-zero index.
    let stride = |l: &Layout, d: usize| if l.shape()[d] == 1 { 0 } else { l.strides()[d] };
    let mut meta = Vec::with_capacity(11 + 3 * br);
    for (what, v) in [
        ("batch", batch),
        ("rows", n),
        ("inner dimension", k),
        ("columns", m),
        ("rank", br),
        ("offset", al.offset()),
        ("offset", bl.offset()),
        ("stride", stride(al, r - 2)),
        ("stride", stride(al, r - 1)),
        ("stride", stride(bl, r - 2)),
        ("stride", stride(bl, r - 1)),
    ] {
        meta.push(to_u32("matmul", what, v)?);
    }
    push_shape("matmul", &mut meta, &al.shape()[..br])?;
    for l in [al, bl] {
        for d in 0..br {
            meta.push(to_u32("matmul", "stride", stride(l, d))?);
        }
    }
    Ok(meta)
}

/// `[..batch, n, k] @ [..batch, k, m]` into a fresh contiguous `[..batch, n, m]`.
pub fn matmul(rt: &Runtime, a: &Storage, al: &Layout, b: &Storage, bl: &Layout) -> Result<Storage> {
    let dims = check::matmul(a, al, b, bl)?;
    let (batch, n, _k, m) = dims;
    let (ab, bb) = (buffer(a)?, buffer(b)?);
    let size = batch * n * m;
    let out = rt.alloc("matmul", size)?;
    if size > 0 {
        let meta = meta(al, bl, dims)?;
        let max = rt.limits.max_compute_workgroups_per_dimension as usize;
        let groups = (m.div_ceil(TILE), n.div_ceil(TILE), batch);
        if groups.0 > max || groups.1 > max || groups.2 > max {
            return Err(Error::shape(
                "matmul",
                &[al.shape(), bl.shape()],
                format!("{groups:?} workgroups exceed the device's {max} per dimension"),
            ));
        }
        let pipeline = rt.pipeline(Kernel::Matmul, "matmul", false)?;
        let launch = Launch {
            op: "matmul",
            kernel: Kernel::Matmul,
            pipeline: &pipeline,
            groups: (groups.0 as u32, groups.1 as u32, groups.2 as u32),
        };
        rt.dispatch(&launch, &[ab, bb], out.raw(), &meta)?;
    }
    Ok(WgpuBackend::wrap(out, size))
}
