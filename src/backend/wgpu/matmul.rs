//! matmul (shaders/matmul.wgsl): 64x64 output tiles per workgroup of 16x16 threads, 4x4
//! outputs per thread, BK = 16 tiles of A and B in workgroup memory (or `matmul_fast`'s
//! 128-tiles where it applies); column tiles, row tiles and the batch on the x, y and z
//! axes of the grid, each capped at the device's workgroups per dimension (the kernel
//! loops over the rest). Metadata and launch from `gpu::meta` and `gpu::plan`, shared
//! with CUDA.

use super::runtime::{Family, Launch, Runtime};
use super::{buffer, meta_words, WgpuBackend};
use crate::backend::gpu::{meta, plan};
use crate::backend::{check, Storage};
use crate::error::Result;
use crate::layout::Layout;

/// `[..batch, n, k] @ [..batch, k, m]` into a fresh contiguous `[..batch, n, m]`.
pub fn matmul(rt: &Runtime, a: &Storage, al: &Layout, b: &Storage, bl: &Layout) -> Result<Storage> {
    check::matmul(a, al, b, bl)?;
    let (ab, bb) = (buffer(a)?, buffer(b)?);
    let mut words = meta_words("matmul");
    let dims = meta::tiled_matmul_meta("matmul", al, bl, |what, v| words.push(what, v))?;
    let size = dims.out_size();
    let out = rt.alloc("matmul", size)?;
    if size > 0 {
        let max = rt.limits.max_compute_workgroups_per_dimension;
        let launch = plan::matmul_launch(words.words(), &dims, (max, max, max));
        let launch = Launch {
            op: "matmul",
            kernel: Family::Matmul,
            entry: launch.entry,
            contiguous: false,
            groups: launch.grid,
        };
        rt.dispatch(&launch, &[ab, bb], out.raw(), words.words())?;
    }
    Ok(WgpuBackend::wrap(out, size))
}
