//! matmul (shaders/matmul.wgsl): 64x64 output tiles per workgroup of 16x16 threads, 4x4
//! outputs per thread, BK = 16 tiles of A and B in workgroup memory; column tiles, row
//! tiles and the batch on the x, y and z axes of the grid, each capped at the device's
//! workgroups per dimension (the kernel loops over the rest).

use super::runtime::{Family, Launch, Runtime};
use super::{buffer, push_shape, to_u32, WgpuBackend};
use crate::backend::gpu::plan::{matmul_fast_applies, MATMUL_FAST_TILE};
use crate::backend::{check, Storage};
use crate::error::Result;
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

/// Workgroups `(x, y, z)` for `(batch, n, m)`: column tiles, row tiles and batches, each
/// capped at `max` per dimension (the kernel loops over the rest).
pub fn grid((batch, n, m): (usize, usize, usize), max: usize) -> (u32, u32, u32) {
    let cap = |v: usize| v.clamp(1, max.max(1)) as u32;
    (cap(m.div_ceil(TILE)), cap(n.div_ceil(TILE)), cap(batch))
}

/// Workgroups of `matmul_fast` (128x128 tiles; n and m are whole tiles), capped as in
/// [`grid`].
pub fn fast_grid((batch, n, m): (usize, usize, usize), max: usize) -> (u32, u32, u32) {
    let t = MATMUL_FAST_TILE as usize;
    let cap = |v: usize| v.clamp(1, max.max(1)) as u32;
    (cap(m / t), cap(n / t), cap(batch))
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
        // Whole aligned tiles take the vec4 kernel; edges and strides the general one.
        let fast = matmul_fast_applies(&meta);
        let (entry, groups) = if fast {
            ("matmul_fast", fast_grid((batch, n, m), max))
        } else {
            ("matmul", grid((batch, n, m), max))
        };
        crate::backend::gpu_plan::note_matmul_kernel(entry);
        let pipeline = rt.pipeline(Family::Matmul, entry, false)?;
        let launch = Launch {
            op: "matmul",
            kernel: Family::Matmul,
            pipeline: &pipeline,
            groups,
        };
        rt.dispatch(&launch, &[ab, bb], out.raw(), &meta)?;
    }
    Ok(WgpuBackend::wrap(out, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_capped_per_dimension() {
        assert_eq!(grid((3, 65, 129), 65_535), (3, 2, 3));
        assert_eq!(grid((100_000, 1, 1), 65_535), (1, 1, 65_535));
        assert_eq!(
            grid((1, 10_000_000, 5_000_000), 65_535),
            (65_535, 65_535, 1)
        );
        assert_eq!(fast_grid((70_000, 256, 384), 65_535), (3, 2, 65_535));
    }
}
