//! The plan of a matmul: whether to swap to `C^T = B^T A^T`, which operands to pack,
//! how the output is cut into tasks, and whether they run on rayon.

use super::*;

/// Choices the automatic plan makes, which tests can force.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// The micro-kernel (must be available on this CPU).
    pub kernel: Kernel,
    /// Pack B (`Some(true)`), read it in place where its rows are contiguous
    /// (`Some(false)`), or decide by shape (`None`).
    pub pack_b: Option<bool>,
    /// Pack A (`Some(true)`), read it in place (`Some(false)`), or decide by shape.
    pub pack_a: Option<bool>,
    /// Pack B block by block inside each task (`Some(true)`), all of it up front
    /// (`Some(false)`), or decide by the split (`None`: in the task when no other task
    /// reads the same columns). Only matters where B is packed.
    pub pack_b_in_task: Option<bool>,
    /// Whether a transposed B with few rows of A may run as `C^T = B^T A^T` (default yes).
    pub swap: Option<bool>,
    /// Run the tasks on rayon (`Some(true)`), serially, or decide by size (`None`).
    pub parallel: Option<bool>,
    /// Row panels and column panels per task, instead of the automatic split (for the row
    /// kernel: row-kernel blocks of columns per task).
    pub block: Option<(usize, usize)>,
    /// Whether a one-row product with contiguous rows of B may use the row kernel (default
    /// yes; `Some(false)` sends it through the micro-kernels).
    pub row: Option<bool>,
}

impl Options {
    /// Everything decided automatically, with the detected kernel.
    pub fn auto() -> Options {
        Options {
            kernel: Kernel::detect(),
            pack_b: None,
            pack_b_in_task: None,
            pack_a: None,
            swap: None,
            parallel: None,
            block: None,
            row: None,
        }
    }
}

/// How [`batched_into`](super::batched_into) divides a product among threads, for diagnostics (`parallel_check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Whether the tasks run on rayon's threads (else all on the calling thread).
    pub parallel: bool,
    /// Independent tasks: `batch x row_blocks x col_blocks`.
    pub tasks: usize,
    /// Blocks of output rows per batch.
    pub row_blocks: usize,
    /// Output rows per task (the last block may be shorter).
    pub rows_per_task: usize,
    /// Blocks of output columns per batch.
    pub col_blocks: usize,
    /// Output columns per task (the last block may be shorter).
    pub cols_per_task: usize,
    /// Blocks of depth [`KC`] each task walks through.
    pub k_blocks: usize,
    /// Whether B is packed into panels (else the micro-kernel reads it in place).
    pub pack_b: bool,
    /// Whether A is packed into panels (else the micro-kernel reads it in place).
    pub pack_a: bool,
    /// Whether the product runs as `C^T = B^T A^T` (a transposed B with few rows of A;
    /// the other fields then describe that product).
    pub swapped: bool,
    /// Whether the row kernel runs it (one row of A per batch, contiguous rows of B):
    /// nothing packed, columns split among tasks.
    pub row: bool,
    /// The micro-kernel ([`kernel_name`]).
    pub kernel: &'static str,
    /// Rows x columns of the micro-kernel's tile.
    pub tile: (usize, usize),
}

/// The split [`batched_into`](super::batched_into) uses for `[batch, n, k] @ [batch, k, m]` in the current rayon pool,
/// where A's rows are contiguous and B's row and column strides are `b_strides` (column
/// stride 1: rows contiguous).
pub fn split(batch: usize, n: usize, k: usize, m: usize, b_strides: (usize, usize)) -> Split {
    let opts = Options::auto();
    if swaps(n, b_strides, &opts) {
        // A^T is packed (its column stride is A's row stride, never 1 for a matrix).
        return Split {
            swapped: true,
            ..plan(batch, m, k, n, (2, 2), &opts)
        };
    }
    plan(batch, n, k, m, (1, b_strides.1), &opts)
}

/// Whether `batched_into_with` runs the product as `C^T = B^T A^T`: B stored transposed,
/// and few enough rows of A that B^T is read in place there (`n` becomes its column count).
#[inline]
pub(super) fn swaps(n: usize, (b_rs, b_cs): (usize, usize), opts: &Options) -> bool {
    b_cs != 1
        && b_rs == 1
        && n.div_ceil(opts.kernel.nr()) < PACK_A_MIN_COL_PANELS
        && opts.swap != Some(false)
}

#[inline]
pub(super) fn plan(
    batch: usize,
    n: usize,
    k: usize,
    m: usize,
    (a_cs, b_cs): (usize, usize),
    opts: &Options,
) -> Split {
    let kern = opts.kernel;
    let (mr, nr) = (kern.mr(), kern.nr());
    let (rp, cp) = (n.div_ceil(mr).max(1), m.div_ceil(nr).max(1));
    let flops = batch * n * m * k;
    let threads = rayon::current_num_threads();
    let row = n == 1 && b_cs == 1 && opts.row != Some(false);
    let min_flops = if row {
        ROW_PARALLEL_MIN_FLOPS
    } else {
        PARALLEL_MIN_FLOPS
    };
    let parallel = opts.parallel.unwrap_or(threads > 1 && flops >= min_flops);
    if row {
        return row_plan(batch, k, m, parallel, opts);
    }
    let pack_b = b_cs != 1 || opts.pack_b.unwrap_or(rp >= PACK_B_MIN_ROW_PANELS);
    // Contiguous rows of A read in place cost the micro-kernel nothing extra, while a
    // packed copy of a long A (a weight gradient's, K in the tens of thousands) is written
    // to memory and read back: such an A needs more reuse to pay for its packing.
    let min_reuse = if a_cs == 1 {
        PACK_A_CONTIGUOUS_MIN_COL_PANELS
    } else {
        PACK_A_MIN_COL_PANELS
    };
    let pack_a = opts.pack_a.unwrap_or(cp >= min_reuse);
    let (mut rb, mut cb) = ((MC / mr).min(rp), (NC / nr).min(cp));
    if let Some((r, c)) = opts.block {
        (rb, cb) = (r.clamp(1, rp), c.clamp(1, cp));
    } else if parallel {
        // Cut tasks until each thread has about two; the longer side of a task first.
        let target = 2 * threads;
        while batch * rp.div_ceil(rb) * cp.div_ceil(cb) < target
            && rb * mr * cb * nr * k >= 2 * TASK_MIN_FLOPS
        {
            if cb > 1 && (cb * nr >= rb * mr || rb == 1) {
                cb = cb.div_ceil(2);
            } else if rb > 1 {
                rb = rb.div_ceil(2);
            } else {
                break;
            }
        }
    }
    let (row_blocks, col_blocks) = (rp.div_ceil(rb), cp.div_ceil(cb));
    Split {
        parallel,
        tasks: batch * row_blocks * col_blocks,
        row_blocks,
        rows_per_task: (rb * mr).min(n),
        col_blocks,
        cols_per_task: (cb * nr).min(m),
        k_blocks: k.div_ceil(KC),
        pack_b,
        pack_a,
        swapped: false,
        row: false,
        kernel: kern.name(),
        tile: (mr, nr),
    }
}

/// The split of a one-row product for the row kernel: blocks of [`Kernel::row_width`]
/// columns, cut into about two tasks per thread when it runs in parallel.
#[inline]
pub(super) fn row_plan(batch: usize, k: usize, m: usize, parallel: bool, opts: &Options) -> Split {
    let w = opts.kernel.row_width();
    let cp = m.div_ceil(w).max(1);
    let mut cb = cp;
    if let Some((_, c)) = opts.block {
        cb = c.clamp(1, cp);
    } else if parallel {
        let target = 2 * rayon::current_num_threads();
        while batch * cp.div_ceil(cb) < target && cb > 1 && cb * w * k >= 2 * TASK_MIN_FLOPS {
            cb = cb.div_ceil(2);
        }
    }
    let col_blocks = cp.div_ceil(cb);
    Split {
        parallel,
        tasks: batch * col_blocks,
        row_blocks: 1,
        rows_per_task: 1,
        col_blocks,
        cols_per_task: (cb * w).min(m),
        k_blocks: 1,
        pack_b: false,
        pack_a: false,
        swapped: false,
        row: true,
        kernel: opts.kernel.row_name(),
        tile: (1, w),
    }
}
