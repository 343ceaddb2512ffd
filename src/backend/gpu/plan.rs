//! Which kernel the GPU backends launch for a shape: the same choice for the CUDA kernels
//! in `cuda/` and their WGSL twins in `shaders/`.
//!
//! Reduce ([`reduce_plan`]): a block (workgroup) of 256 threads per output wastes almost all of its threads on a
//! short reduced dimension: `ones([2, 1 << 20]).sum(0)` launched a million blocks that each
//! added two numbers. One thread per output with a serial loop suits short reduced
//! dimensions, and many outputs whose reduced dimension is not the innermost one
//! (neighbouring threads then read neighbouring addresses). Long reduced dimensions with
//! few outputs keep the block tree, which spreads one output over 256 threads.

/// The shape of reduce kernel to launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReducePlan {
    /// One thread per output folds the reduced dimension in order.
    Serial,
    /// One block (workgroup) of 256 threads per output, then a shared-memory tree.
    Tree,
}

/// Longest reduced dimension always folded by one thread.
pub const SERIAL_MAX_LEN: usize = 64;

/// Outputs from which a reduction over a non-innermost dimension is folded one thread per
/// output whatever its length (enough threads to fill a device, reads coalesced).
pub const SERIAL_MIN_OUTPUTS: usize = 1024;

/// The kernel for `out_size` outputs each folding `len` elements, `innermost` when the
/// reduced dimension has stride 1 (consecutive outputs then start `len` elements apart).
pub fn reduce_plan(out_size: usize, len: usize, innermost: bool) -> ReducePlan {
    if len <= SERIAL_MAX_LEN || (!innermost && out_size >= SERIAL_MIN_OUTPUTS) {
        ReducePlan::Serial
    } else {
        ReducePlan::Tree
    }
}

/// Sizes of one matmul: `[..batch, n, k] @ [..batch, k, m]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulSizes {
    /// Number of matrix products.
    pub batch: usize,
    /// Rows of A and of the result.
    pub n: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// Columns of B and of the result.
    pub m: usize,
}

impl MatmulSizes {
    /// Elements of the result.
    pub fn out_size(&self) -> usize {
        self.batch * self.n * self.m
    }
}

/// Output tile edge of `matmul` (`TILE` in `cuda/matmul.cu` and `shaders/matmul.wgsl`).
pub const MATMUL_TILE: u32 = 64;
/// Output tile edge of `matmul_fast` (`FT` in `cuda/matmul.cu`, `FT` in `shaders/matmul.wgsl`).
pub const MATMUL_FAST_TILE: u32 = 128;
/// k step of `matmul_fast`.
pub const MATMUL_FAST_BK: u32 = 8;

/// Whether `matmul_fast` computes the product described by tiled-matmul metadata `w`
/// (`gpu::meta::tiled_matmul_meta`: `[batch, n, k, m, batch_rank, a_offset, b_offset,
/// a_row_stride, a_col_stride, b_row_stride, b_col_stride, batch_shape[r],
/// a_batch_strides[r], b_batch_strides[r]]`): both matrices row-major and packed (A rows
/// k apart, B rows m apart, unit column stride), n and m whole 128-tiles, k whole
/// 8-steps, every offset and batch stride a multiple of 4 floats, so each 4-float load is
/// aligned and in bounds with no check.
pub fn matmul_fast_applies(w: &[u32]) -> bool {
    if w.len() < 11 {
        return false;
    }
    let (n, k, m, br) = (w[1], w[2], w[3], w[4] as usize);
    let aligned = |v: &u32| v.is_multiple_of(4);
    n > 0
        && m > 0
        && k > 0
        && n.is_multiple_of(MATMUL_FAST_TILE)
        && m.is_multiple_of(MATMUL_FAST_TILE)
        && k.is_multiple_of(MATMUL_FAST_BK)
        && w[7] == k
        && w[8] == 1
        && w[9] == m
        && w[10] == 1
        && aligned(&w[5])
        && aligned(&w[6])
        && w.len() >= 11 + 3 * br
        && w[11 + br..11 + 3 * br].iter().all(aligned)
}

/// How to launch the tiled matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulLaunch {
    /// Whether it is `matmul_fast` (whole aligned tiles, vector loads) rather than `matmul`.
    pub fast: bool,
    /// The entry point: `"matmul_fast"` or `"matmul"`.
    pub entry: &'static str,
    /// Blocks (workgroups) `(x, y, z)`: column tiles, row tiles and batches.
    pub grid: (u32, u32, u32),
}

/// The tiled matmul launch for metadata `w` and sizes `d`: `matmul_fast` where
/// [`matmul_fast_applies`], else `matmul`; its grid has column tiles on x, row tiles on y
/// and batches on z, each capped at `caps` (the device's limits; the kernels loop over the
/// rest). The choice is recorded for [`last_matmul_kernel`].
pub fn matmul_launch(w: &[u32], d: &MatmulSizes, caps: (u32, u32, u32)) -> MatmulLaunch {
    let fast = matmul_fast_applies(w);
    let (tile, entry) = if fast {
        (MATMUL_FAST_TILE as usize, "matmul_fast")
    } else {
        (MATMUL_TILE as usize, "matmul")
    };
    let cap = |v: usize, c: u32| v.clamp(1, c.max(1) as usize) as u32;
    note_matmul_kernel(entry);
    MatmulLaunch {
        fast,
        entry,
        // matmul_fast's n and m are whole tiles.
        grid: (
            cap(d.m.div_ceil(tile), caps.0),
            cap(d.n.div_ceil(tile), caps.1),
            cap(d.batch, caps.2),
        ),
    }
}

/// The matmul entry point (`"matmul_fast"` or `"matmul"`) the last GPU matmul launched
/// from this thread chose, if any: a diagnostic, so tests check the choice a backend made
/// rather than recomputing it.
pub fn last_matmul_kernel() -> Option<&'static str> {
    LAST_MATMUL_KERNEL.with(|k| k.get())
}

/// Record the matmul entry point a GPU backend launches (see [`last_matmul_kernel`]).
fn note_matmul_kernel(entry: &'static str) {
    LAST_MATMUL_KERNEL.with(|k| k.set(Some(entry)));
}

thread_local! {
    static LAST_MATMUL_KERNEL: std::cell::Cell<Option<&'static str>> =
        const { std::cell::Cell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_by_shape() {
        // [2, 1 << 20].sum(0): a million outputs of two elements.
        assert_eq!(reduce_plan(1 << 20, 2, false), ReducePlan::Serial);
        // [2, 1 << 20].sum(1): two long rows.
        assert_eq!(reduce_plan(2, 1 << 20, true), ReducePlan::Tree);
        // [4096, 4096].sum(0): columns, coalesced across outputs.
        assert_eq!(reduce_plan(4096, 4096, false), ReducePlan::Serial);
        // [4096, 4096].sum(1): rows.
        assert_eq!(reduce_plan(4096, 4096, true), ReducePlan::Tree);
        // [1 << 20, 2].sum(0): two long strided columns.
        assert_eq!(reduce_plan(2, 1 << 20, false), ReducePlan::Tree);
        assert_eq!(reduce_plan(10, 0, true), ReducePlan::Serial);
    }

    #[test]
    fn matmul_fast_needs_packed_aligned_whole_tiles() {
        // [256, 64] @ [64, 128], offsets 0.
        let w = [1, 256, 64, 128, 0, 0, 0, 64, 1, 128, 1];
        assert!(matmul_fast_applies(&w));
        let mut odd = w;
        odd[1] = 200;
        assert!(!matmul_fast_applies(&odd));
        let mut k12 = w;
        (k12[2], k12[7]) = (12, 12);
        assert!(!matmul_fast_applies(&k12));
        let mut off = w;
        off[6] = 2;
        assert!(!matmul_fast_applies(&off));
        let mut transposed = w;
        (transposed[7], transposed[8]) = (1, 256);
        assert!(!matmul_fast_applies(&transposed));
        // Batch of 2 with B broadcast (batch stride 0), then a misaligned batch stride.
        let b = [2, 128, 8, 128, 1, 0, 4, 8, 1, 128, 1, 2, 1024, 0];
        assert!(matmul_fast_applies(&b));
        let mut bad = b;
        bad[12] = 1026;
        assert!(!matmul_fast_applies(&bad));
    }

    #[test]
    fn matmul_grid_is_capped_per_dimension() {
        let grid = |(batch, n, m): (usize, usize, usize), k: usize, max: u32| {
            let d = MatmulSizes { batch, n, k, m };
            matmul_launch(&[], &d, (max, max, max)).grid
        };
        assert_eq!(grid((3, 65, 129), 1, 65_535), (3, 2, 3));
        assert_eq!(grid((100_000, 1, 1), 1, 65_535), (1, 1, 65_535));
        assert_eq!(
            grid((1, 10_000_000, 5_000_000), 1, 65_535),
            (65_535, 65_535, 1)
        );
        // A k = 0 product still launches one block (it writes zeros).
        assert_eq!(grid((2, 3, 5), 0, 65_535), (1, 1, 2));
        // matmul_fast: 128-tiles.
        let w = [70_000, 256, 8, 384, 0, 0, 0, 8, 1, 384, 1];
        let d = MatmulSizes {
            batch: 70_000,
            n: 256,
            k: 8,
            m: 384,
        };
        let l = matmul_launch(&w, &d, (u32::MAX, 65_535, 65_535));
        assert!(l.fast);
        assert_eq!((l.entry, l.grid), ("matmul_fast", (3, 2, 65_535)));
        assert_eq!(last_matmul_kernel(), Some("matmul_fast"));
    }
}
