//! Batched matrix multiply on the CPU (task 3.2): packed, cache-blocked, SIMD, split over
//! rows, columns and batch.
//!
//! A product `[..batch, n, k] @ [..batch, k, m]` runs in three steps:
//! 1. A is packed once into row panels `MR` tall (each stored column by column), B into
//!    column panels `NR` wide, in parallel over panels; every thread then reads the same
//!    packed panels. Packing is skipped where it costs more than it saves: when few row
//!    panels would reuse a packed B and B's rows are contiguous, the micro-kernel reads B
//!    in place (masked loads at the right edge, rows prefetched ahead), which saves a full
//!    pass over the biggest operand of a skinny product; when few column panels would
//!    reuse a packed A, it reads A in place. A transposed B with few rows of A runs as
//!    `C^T = B^T A^T` (B^T then has contiguous rows), and the small result is transposed.
//! 2. The output is cut into tasks of up to [`MC`] rows by [`NC`] columns per batch, and cut
//!    smaller (columns first when the product is skinny) until every thread has work, so a
//!    `(10 x 1000) @ (1000 x 1000)` product uses every thread.
//! 3. Each task walks depth blocks of [`KC`], and for each row panel and column panel runs
//!    the micro-kernel: an `h x NR` tile accumulated in registers and written once per depth
//!    block (`h` = the panel's real rows, so a 1-row product does not compute 11 padding
//!    rows).
//!
//! A one-row product (`n == 1` per batch, B's rows contiguous: a vector times a matrix)
//! skips all of this: the row kernel holds a block of output columns (128 with AVX-512) in
//! registers over the whole depth and reads A and B in place, as nothing would reuse a
//! packed panel; the columns are split among threads when the product is large.
//!
//! Micro-kernels, detected at run time (the build stays portable): AVX-512F `12 x 32`,
//! AVX2 + FMA `6 x 16`, and a portable `6 x 16` loop, each with its row kernel. [`Kernel`]
//! can force one (tests run all three on one machine).
//!
//! Numerics: the micro-kernels run with DAZ and FTZ set in MXCSR (x86-64), so subnormal
//! inputs and results of a matmul count as zero and cost nothing extra (a saturating run
//! would otherwise spend most of its time in microcode assists). The previous MXCSR is
//! restored when the task group ends, on whichever thread ran it; nothing else the user's
//! threads compute is affected.

use rayon::prelude::*;

use super::pool::HostBuf;
use crate::layout::{Dims, Layout};

mod row;
use row::{RowFn, RowTile};

/// Depth of one block: a `KC x NR` panel of B and a `KC x MR` panel of A stay in L1.
pub const KC: usize = 256;
/// Most output rows per task (a `MC x KC` block of packed A stays in L2).
pub const MC: usize = 192;
/// Most output columns per task (a `KC x NC` block of B stays in L2).
pub const NC: usize = 1024;
/// Below this many multiply-adds a product runs on the calling thread.
pub const PARALLEL_MIN_FLOPS: usize = 1 << 20;
/// Below this many multiply-adds a one-row product runs on the calling thread. It reads
/// each value of B once for one multiply-add, so memory bounds it, and a second thread
/// did not pay on the 2-core machine it was measured on: from 1M to 16M multiply-adds
/// (1x1000 @ 1000x1000 to 1x4000 @ 4000x4000) the serial row kernel ran at 1.17-1.44x the
/// gemm crate's throughput and the parallel split at 0.84-1.27x.
pub const ROW_PARALLEL_MIN_FLOPS: usize = 1 << 26;
/// A task is not cut below this many multiply-adds to make more tasks.
pub const TASK_MIN_FLOPS: usize = 1 << 15;
/// B is packed when at least this many row panels of A reuse it (or when its rows are not
/// contiguous); below, the micro-kernel reads B in place.
pub const PACK_B_MIN_ROW_PANELS: usize = 4;
/// A is packed when at least this many column panels reuse it; below, the micro-kernel
/// reads A in place (packing would cost as much as the product).
pub const PACK_A_MIN_COL_PANELS: usize = 8;
/// Packing runs on the calling thread below this many packed values.
const PARALLEL_PACK_MIN: usize = 1 << 16;
/// Rows of B the micro-kernel prefetches ahead when it reads B in place (strided rows
/// defeat the hardware prefetcher). Only the x86-64 kernels prefetch.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PREFETCH_ROWS: usize = 32;

/// A micro-kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512F, `12 x 32` tile (24 accumulator registers), masked edges.
    Avx512,
    /// AVX2 + FMA, `6 x 16` tile.
    Avx2,
    /// Plain Rust the compiler vectorises, `6 x 16` tile.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU supports, detected once per process.
    pub fn detect() -> Kernel {
        static K: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *K.get_or_init(|| {
            [Kernel::Avx512, Kernel::Avx2]
                .into_iter()
                .find(|k| k.is_available())
                .unwrap_or(Kernel::Portable)
        })
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            Kernel::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Rows of the output tile.
    pub fn mr(self) -> usize {
        match self {
            Kernel::Avx512 => 12,
            Kernel::Avx2 | Kernel::Portable => 6,
        }
    }

    /// Columns of the output tile.
    pub fn nr(self) -> usize {
        match self {
            Kernel::Avx512 => 32,
            Kernel::Avx2 | Kernel::Portable => 16,
        }
    }

    /// Name and tile, for diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512f 12x32",
            Kernel::Avx2 => "avx2+fma 6x16",
            Kernel::Portable => "portable 6x16",
        }
    }

    /// Output columns the row kernel holds in registers (8 vector registers' worth).
    pub fn row_width(self) -> usize {
        match self {
            Kernel::Avx512 => row::width(16),
            Kernel::Avx2 | Kernel::Portable => row::width(8),
        }
    }

    /// Name of the row kernel, for diagnostics.
    pub fn row_name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512f row 1x128",
            Kernel::Avx2 => "avx2+fma row 1x64",
            Kernel::Portable => "portable row 1x64",
        }
    }

    /// The row kernel (see [`RowTile`]).
    fn row(self) -> RowFn {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => row::avx512,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => row::avx2,
            _ => row::portable,
        }
    }

    /// The micro-kernel for a tile of `h` rows (1..=mr) and `w` columns (1..=nr), reading A
    /// from a packed panel or in place.
    fn micro(self, h: usize, w: usize, packed_a: bool) -> MicroFn {
        let pa = usize::from(!packed_a);
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => x86::AVX512[pa][h - 1],
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if w == self.nr() => x86::AVX2_FULL[pa][h - 1],
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::AVX2_EDGE[pa][h - 1],
            _ => {
                let _ = w;
                PORTABLE[pa][h - 1]
            }
        }
    }
}

/// Name of the micro-kernel in use (for diagnostics).
pub fn kernel_name() -> &'static str {
    Kernel::detect().name()
}

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
            pack_a: None,
            swap: None,
            parallel: None,
            block: None,
            row: None,
        }
    }
}

/// How [`batched`] divides a product among threads, for diagnostics (`parallel_check`).
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

/// The split [`batched`] uses for `[batch, n, k] @ [batch, k, m]` in the current rayon pool,
/// where B's row and column strides are `b_strides` (column stride 1: rows contiguous).
pub fn split(batch: usize, n: usize, k: usize, m: usize, b_strides: (usize, usize)) -> Split {
    let opts = Options::auto();
    if swaps(n, b_strides, &opts) {
        // A^T is packed (its column stride is A's row stride, never 1 for a matrix).
        return Split {
            swapped: true,
            ..plan(batch, m, k, n, 2, &opts)
        };
    }
    plan(batch, n, k, m, b_strides.1, &opts)
}

/// Whether `batched_into_with` runs the product as `C^T = B^T A^T`: B stored transposed,
/// and few enough rows of A that B^T is read in place there (`n` becomes its column count).
fn swaps(n: usize, (b_rs, b_cs): (usize, usize), opts: &Options) -> bool {
    b_cs != 1
        && b_rs == 1
        && n.div_ceil(opts.kernel.nr()) < PACK_A_MIN_COL_PANELS
        && opts.swap != Some(false)
}

fn plan(batch: usize, n: usize, k: usize, m: usize, b_cs: usize, opts: &Options) -> Split {
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
    let pack_a = opts.pack_a.unwrap_or(cp >= PACK_A_MIN_COL_PANELS);
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
fn row_plan(batch: usize, k: usize, m: usize, parallel: bool, opts: &Options) -> Split {
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

/// One matrix operand: base position and row / column strides.
#[derive(Clone, Copy, Debug)]
struct Mat {
    base: usize,
    rs: usize,
    cs: usize,
}

/// The matrix of batch `z` of a `[..batch, r, c]` layout (no allocation: small products
/// should not pay for their setup).
fn mat(l: &Layout, mut z: usize) -> Mat {
    let r = l.dims();
    let mut base = l.offset();
    // Batch dimensions from the last: the row-major ordinal's digits.
    for (&d, &st) in l.shape()[..r - 2].iter().zip(l.strides()).rev() {
        base += (z % d) * st;
        z /= d;
    }
    Mat {
        base,
        rs: l.strides()[r - 2],
        cs: l.strides()[r - 1],
    }
}

/// Whether every batch of `l` reads the same matrix (a broadcast batch: pack it once).
fn shared(l: &Layout) -> bool {
    let nb = l.dims() - 2;
    l.shape()[..nb]
        .iter()
        .zip(l.strides())
        .all(|(&d, &st)| d <= 1 || st == 0)
}

/// `[..batch, n, k] @ [..batch, k, m]` into a fresh contiguous `[..batch, n, m]`.
pub fn batched(
    a: &[f32],
    al: &Layout,
    b: &[f32],
    bl: &Layout,
    dims: (usize, usize, usize, usize),
) -> Vec<f32> {
    let mut out = vec![0.0f32; dims.0 * dims.1 * dims.3];
    batched_into(&mut out, a, al, b, bl, dims);
    out
}

/// [`batched`] into `out` (`batch * n * m` values, every one overwritten).
pub fn batched_into(
    out: &mut [f32],
    a: &[f32],
    al: &Layout,
    b: &[f32],
    bl: &Layout,
    dims: (usize, usize, usize, usize),
) {
    batched_into_with(out, a, al, b, bl, dims, &Options::auto());
}

/// Raw output pointer shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint rectangles of the output (see `batched_into`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The address `off` values in (a method, so closures capture the whole `OutPtr`).
    fn at(self, off: usize) -> *mut f32 {
        self.0.wrapping_add(off)
    }
}

/// The product into `out` (`batch * n * m` values, every one overwritten), with `opts`.
pub(crate) fn batched_into_with(
    out: &mut [f32],
    a: &[f32],
    al: &Layout,
    b: &[f32],
    bl: &Layout,
    (batch, n, k, m): (usize, usize, usize, usize),
    opts: &Options,
) {
    assert_eq!(out.len(), batch * n * m, "matmul output size");
    assert!(opts.kernel.is_available(), "matmul kernel not available");
    if out.is_empty() {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        return;
    }
    let kern = opts.kernel;
    let b0 = mat(bl, 0);
    if swaps(n, (b0.rs, b0.cs), opts) {
        // B is stored transposed and few rows of A would reuse a packed B: compute
        // C^T = B^T A^T instead, which reads B^T in place (rows contiguous) and packs only
        // the small A^T, then transpose the small result.
        swapped(out, a, al, b, bl, (batch, n, k, m), opts);
        return;
    }
    let s = plan(batch, n, k, m, b0.cs, opts);
    if s.row {
        row_product(out, a, al, b, bl, (k, m), &s, kern);
        return;
    }
    let (mr, nr) = (kern.mr(), kern.nr());
    let (rp, cp) = (n.div_ceil(mr), m.div_ceil(nr));
    let (a_shared, b_shared) = (shared(al), shared(bl));

    // 1. Pack A (every batch, or once when broadcast) and B where the plan says so.
    let a_len = rp * k * mr;
    let a_count = match (s.pack_a, a_shared) {
        (false, _) => 0,
        (true, true) => 1,
        (true, false) => batch,
    };
    let mut apack = HostBuf::take(a_count * a_len);
    let pack_a_panel = |idx: usize, panel: &mut [f32]| {
        let (z, ip) = (idx / rp, idx % rp);
        let h = mr.min(n - ip * mr);
        pack_a(a, &mat(al, z), ip * mr, h, k, mr, panel);
    };
    let b_len = cp * k * nr;
    let b_count = if s.pack_b {
        if b_shared {
            1
        } else {
            batch
        }
    } else {
        0
    };
    let mut bpack = HostBuf::take(b_count * b_len);
    let pack_b_panel = |idx: usize, panel: &mut [f32]| {
        let (z, jp) = (idx / cp, idx % cp);
        let w = nr.min(m - jp * nr);
        pack_b(b, &mat(bl, z), jp * nr, w, k, nr, panel);
    };
    if s.parallel && apack.len() + bpack.len() >= PARALLEL_PACK_MIN {
        rayon::join(
            || {
                apack
                    .par_chunks_mut(k * mr)
                    .enumerate()
                    .for_each(|(i, p)| pack_a_panel(i, p))
            },
            || {
                bpack
                    .par_chunks_mut(k * nr)
                    .enumerate()
                    .for_each(|(i, p)| pack_b_panel(i, p))
            },
        );
    } else {
        apack
            .chunks_mut(k * mr)
            .enumerate()
            .for_each(|(i, p)| pack_a_panel(i, p));
        bpack
            .chunks_mut(k * nr)
            .enumerate()
            .for_each(|(i, p)| pack_b_panel(i, p));
    }

    // 2. Tasks: (batch, row block, column block), each owning a rectangle of the output.
    let (rb, cb) = (s.rows_per_task.div_ceil(mr), s.cols_per_task.div_ceil(nr));
    let per_batch = s.row_blocks * s.col_blocks;
    let outp = OutPtr(out.as_mut_ptr());
    let (apack, bpack) = (&apack[..], &bpack[..]);
    let task = |t: usize| {
        let z = t / per_batch;
        let (bi, bj) = ((t % per_batch) / s.col_blocks, t % s.col_blocks);
        let (am, bm) = (mat(al, z), mat(bl, z));
        let a_z = if a_shared { 0 } else { z };
        let b_z = if b_shared { 0 } else { z };
        let mut p0 = 0;
        while p0 < k {
            let kc = KC.min(k - p0);
            for ip in bi * rb..((bi + 1) * rb).min(rp) {
                let h = mr.min(n - ip * mr);
                let (aptr, a_rs, a_cs) = if s.pack_a {
                    let off = a_z * a_len + ip * k * mr + p0 * mr;
                    (apack[off..off + kc * mr].as_ptr(), 1, mr)
                } else {
                    let first = am.base + ip * mr * am.rs + p0 * am.cs;
                    // The tile reads rows ip*mr..+h, columns p0..p0+kc of A.
                    assert!(first + (h - 1) * am.rs + (kc - 1) * am.cs < a.len());
                    (a[first..].as_ptr(), am.rs, am.cs)
                };
                for jp in bj * cb..((bj + 1) * cb).min(cp) {
                    let w = nr.min(m - jp * nr);
                    let (bptr, b_rs) = if s.pack_b {
                        let off = b_z * b_len + jp * k * nr + p0 * nr;
                        (bpack[off..off + kc * nr].as_ptr(), nr)
                    } else {
                        let first = bm.base + p0 * bm.rs + jp * nr;
                        // The tile reads rows p0..p0+kc, columns jp*nr..+w of B.
                        assert!(first + (kc - 1) * bm.rs + w <= b.len());
                        (b[first..].as_ptr(), bm.rs)
                    };
                    let tile = Tile {
                        kc,
                        a: aptr,
                        a_rs,
                        a_cs,
                        b: bptr,
                        b_rs,
                        // Inside `out`: batch z, row ip*mr, column jp*nr.
                        c: outp.at(z * n * m + ip * mr * m + jp * nr),
                        c_rs: m,
                        w,
                        accumulate: p0 > 0,
                        prefetch: !s.pack_b,
                    };
                    // SAFETY: the kernel is available (asserted above); A holds kc steps of
                    // a packed panel; B holds kc rows of w (packed: nr) readable values at
                    // stride b_rs (checked above); the C tile (h rows of w values at
                    // stride m) lies inside `out` and belongs to this task alone, as the
                    // tasks' row and column blocks are disjoint.
                    unsafe { kern.micro(h, w, s.pack_a)(&tile) };
                }
            }
            p0 += kc;
        }
    };
    run_tasks(&s, task);
}

/// Run tasks `0..s.tasks` with subnormals flushed: on rayon when the split is parallel
/// (many small tasks, such as a batch of small products, go in groups, a few per thread,
/// so each group pays for one hand-off and one MXCSR switch), else on this thread.
fn run_tasks(s: &Split, task: impl Fn(usize) + Sync) {
    if s.parallel {
        let groups = s.tasks.min(4 * rayon::current_num_threads());
        (0..groups).into_par_iter().for_each(|g| {
            let _flush = FlushSubnormals::new();
            (g * s.tasks / groups..(g + 1) * s.tasks / groups).for_each(&task);
        });
    } else {
        let _flush = FlushSubnormals::new();
        (0..s.tasks).for_each(task);
    }
}

/// A one-row product per batch by the row kernel (see [`row_plan`]): each task computes a
/// block of columns of one batch over the whole depth, reading A and B in place.
#[allow(clippy::too_many_arguments)]
fn row_product(
    out: &mut [f32],
    a: &[f32],
    al: &Layout,
    b: &[f32],
    bl: &Layout,
    (k, m): (usize, usize),
    s: &Split,
    kern: Kernel,
) {
    let rowf = kern.row();
    let outp = OutPtr(out.as_mut_ptr());
    let task = |t: usize| {
        let (z, bj) = (t / s.col_blocks, t % s.col_blocks);
        let (am, bm) = (mat(al, z), mat(bl, z));
        let j0 = bj * s.cols_per_task;
        let w = s.cols_per_task.min(m - j0);
        // The task reads A's row (k values at stride cs) and rows 0..k, columns j0..j0+w of
        // B (contiguous rows, stride rs).
        assert!(am.base + (k - 1) * am.cs < a.len());
        assert!(bm.base + (k - 1) * bm.rs + j0 + w <= b.len());
        let tile = RowTile {
            k,
            a: a[am.base..].as_ptr(),
            a_cs: am.cs,
            b: b[bm.base + j0..].as_ptr(),
            b_rs: bm.rs,
            // Inside `out`: batch z (one row of m), column j0.
            c: outp.at(z * m + j0),
            w,
        };
        // SAFETY: the kernel is available (asserted by the caller); A and B hold the values
        // read (checked above); the w outputs lie inside `out` and belong to this task
        // alone, as tasks cover disjoint column blocks of distinct batches.
        unsafe { rowf(&tile) };
    };
    run_tasks(s, task);
}

/// `C = A B` as `(B^T A^T)^T`, for a transposed B and a small A (see `batched_into_with`).
fn swapped(
    out: &mut [f32],
    a: &[f32],
    al: &Layout,
    b: &[f32],
    bl: &Layout,
    (batch, n, k, m): (usize, usize, usize, usize),
    opts: &Options,
) {
    let t = |l: &Layout| {
        let (r, st) = (l.dims(), l.strides());
        let mut shape: Dims = l.shape().into();
        let mut strides: Dims = st.into();
        shape.swap(r - 2, r - 1);
        strides.swap(r - 2, r - 1);
        Layout::new(shape, strides, l.offset()).expect("same rank")
    };
    let mut ct = HostBuf::take(batch * m * n);
    let inner = Options {
        swap: Some(false),
        ..*opts
    };
    batched_into_with(&mut ct, b, &t(bl), a, &t(al), (batch, m, k, n), &inner);
    for (o, c) in out.chunks_mut(n * m).zip(ct.chunks(m * n)) {
        for (i, row) in o.chunks_mut(m).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = c[j * n + i];
            }
        }
    }
}

/// Pack `h` rows from `r0`, all `k` columns of A, into one panel stored column by column
/// (`mr` values per column, zero-padded past row `h`).
fn pack_a(a: &[f32], ma: &Mat, r0: usize, h: usize, k: usize, mr: usize, panel: &mut [f32]) {
    let base = ma.base + r0 * ma.rs;
    if ma.cs <= ma.rs {
        // Rows contiguous (or nearly): read along rows.
        for ii in 0..h {
            let row = base + ii * ma.rs;
            for p in 0..k {
                panel[p * mr + ii] = a[row + p * ma.cs];
            }
        }
    } else {
        for p in 0..k {
            let col = base + p * ma.cs;
            for ii in 0..h {
                panel[p * mr + ii] = a[col + ii * ma.rs];
            }
        }
    }
}

/// Pack `w` columns from `c0`, all `k` rows of B, into one panel stored row by row (`nr`
/// values per row, zero-padded past column `w`).
fn pack_b(b: &[f32], mb: &Mat, c0: usize, w: usize, k: usize, nr: usize, panel: &mut [f32]) {
    let base = mb.base + c0 * mb.cs;
    if mb.cs == 1 {
        for p in 0..k {
            let s = base + p * mb.rs;
            panel[p * nr..p * nr + w].copy_from_slice(&b[s..s + w]);
        }
    } else if mb.rs < mb.cs {
        // Transposed B: read down its columns, which are contiguous, in blocks of rows
        // so the panel rows written stay in L1.
        for p0 in (0..k).step_by(64) {
            let p1 = (p0 + 64).min(k);
            for jj in 0..w {
                let col = base + jj * mb.cs;
                for p in p0..p1 {
                    panel[p * nr + jj] = b[col + p * mb.rs];
                }
            }
        }
    } else {
        for p in 0..k {
            let row = base + p * mb.rs;
            for jj in 0..w {
                panel[p * nr + jj] = b[row + jj * mb.cs];
            }
        }
    }
}

/// One micro-kernel call: `C[h x w] (+)= A[h x kc] B[kc x w]`.
struct Tile {
    /// Depth.
    kc: usize,
    /// A: row i of step p at `a[i * a_rs + p * a_cs]` (a packed panel: `a_rs` 1, `a_cs` mr).
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    /// B: step p holds the tile's columns at `b[p * b_rs ..]` (`w` readable values).
    b: *const f32,
    b_rs: usize,
    /// Output tile, row stride `c_rs`.
    c: *mut f32,
    c_rs: usize,
    /// Valid columns (the rest of the tile is neither read from B nor written).
    w: usize,
    /// Add to C (later depth blocks) instead of overwriting it (the first).
    accumulate: bool,
    /// Prefetch B [`PREFETCH_ROWS`] rows ahead (B read in place; x86-64 kernels only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    prefetch: bool,
}

/// A micro-kernel for a fixed number of rows.
type MicroFn = unsafe fn(&Tile);

const PORTABLE_MR: usize = 6;
const PORTABLE_NR: usize = 16;

/// Portable micro-kernel: one rank-1 update of the `H x 16` tile per step.
///
/// # Safety
/// The pointers in `t` must be valid as [`Tile`] describes.
unsafe fn portable<const H: usize, const PA: bool>(t: &Tile) {
    let mut acc = [[0.0f32; PORTABLE_NR]; H];
    let mut bv = [0.0f32; PORTABLE_NR];
    let (a_rs, a_cs) = if PA {
        (1, PORTABLE_MR)
    } else {
        (t.a_rs, t.a_cs)
    };
    for p in 0..t.kc {
        let b = std::slice::from_raw_parts(t.b.wrapping_add(p * t.b_rs), t.w);
        bv[..t.w].copy_from_slice(b);
        for (i, row) in acc.iter_mut().enumerate() {
            let av = *t.a.add(i * a_rs + p * a_cs);
            for (c, &x) in row.iter_mut().zip(&bv) {
                *c += av * x;
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let c = std::slice::from_raw_parts_mut(t.c.add(i * t.c_rs), t.w);
        for (o, &v) in c.iter_mut().zip(row) {
            *o = if t.accumulate { *o + v } else { v };
        }
    }
}

/// Kernels for every tile height, with A packed (`[0]`) and in place (`[1]`).
macro_rules! table {
    ($f:ident; $($h:literal),*) => {
        [[$($f::<$h, true> as MicroFn),*], [$($f::<$h, false> as MicroFn),*]]
    };
}

const PORTABLE: [[MicroFn; PORTABLE_MR]; 2] = table!(portable; 1, 2, 3, 4, 5, 6);

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MicroFn, Tile};
    use std::arch::x86_64::*;

    const MR512: usize = 12;
    const MR2: usize = 6;

    pub(super) const AVX512: [[MicroFn; MR512]; 2] =
        table!(avx512; 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);

    macro_rules! table2 {
        ($full:literal; $($h:literal),*) => {
            [
                [$(avx2::<$h, $full, true> as MicroFn),*],
                [$(avx2::<$h, $full, false> as MicroFn),*],
            ]
        };
    }
    pub(super) const AVX2_FULL: [[MicroFn; MR2]; 2] = table2!(true; 1, 2, 3, 4, 5, 6);
    pub(super) const AVX2_EDGE: [[MicroFn; MR2]; 2] = table2!(false; 1, 2, 3, 4, 5, 6);

    /// Mask of the first `n` (at most 16) lanes.
    #[inline]
    pub(super) fn mask16(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// AVX-512F micro-kernel: `H x 32` tile in `2H` registers; masked loads and stores at
    /// the right edge, so B need not be padded.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the pointers in `t` must be valid as [`Tile`] describes.
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512<const H: usize, const PA: bool>(t: &Tile) {
        let (m0, m1) = (mask16(t.w), mask16(t.w.saturating_sub(16)));
        let mut acc = [[_mm512_setzero_ps(); 2]; H];
        let (a_rs, a_cs) = if PA { (1, MR512) } else { (t.a_rs, t.a_cs) };
        let (mut a, mut b) = (t.a, t.b);
        let mut steps = t.kc;
        if H <= 2 {
            // Few rows leave the FMA latency exposed: run even and odd steps on two sets of
            // accumulators, added at the end.
            let mut odd = [[_mm512_setzero_ps(); 2]; H];
            while steps >= 2 {
                if t.prefetch {
                    let ahead = b.wrapping_add(super::PREFETCH_ROWS * t.b_rs) as *const i8;
                    let next = ahead.wrapping_add(4 * t.b_rs);
                    _mm_prefetch::<_MM_HINT_T0>(ahead);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                    _mm_prefetch::<_MM_HINT_T0>(next);
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64));
                }
                let b0 = _mm512_maskz_loadu_ps(m0, b);
                let b1 = _mm512_maskz_loadu_ps(m1, b.wrapping_add(16));
                let bn = b.wrapping_add(t.b_rs);
                let b2 = _mm512_maskz_loadu_ps(m0, bn);
                let b3 = _mm512_maskz_loadu_ps(m1, bn.wrapping_add(16));
                for (i, (c, d)) in acc.iter_mut().zip(odd.iter_mut()).enumerate() {
                    let av = _mm512_set1_ps(*a.add(i * a_rs));
                    let an = _mm512_set1_ps(*a.wrapping_add(a_cs).add(i * a_rs));
                    c[0] = _mm512_fmadd_ps(av, b0, c[0]);
                    c[1] = _mm512_fmadd_ps(av, b1, c[1]);
                    d[0] = _mm512_fmadd_ps(an, b2, d[0]);
                    d[1] = _mm512_fmadd_ps(an, b3, d[1]);
                }
                a = a.wrapping_add(2 * a_cs);
                b = b.wrapping_add(2 * t.b_rs);
                steps -= 2;
            }
            for (c, d) in acc.iter_mut().zip(&odd) {
                c[0] = _mm512_add_ps(c[0], d[0]);
                c[1] = _mm512_add_ps(c[1], d[1]);
            }
        }
        for _ in 0..steps {
            if t.prefetch {
                let ahead = b.wrapping_add(super::PREFETCH_ROWS * t.b_rs) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            }
            let b0 = _mm512_maskz_loadu_ps(m0, b);
            let b1 = _mm512_maskz_loadu_ps(m1, b.wrapping_add(16));
            for (i, c) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i * a_rs));
                c[0] = _mm512_fmadd_ps(av, b0, c[0]);
                c[1] = _mm512_fmadd_ps(av, b1, c[1]);
            }
            a = a.wrapping_add(a_cs);
            b = b.wrapping_add(t.b_rs);
        }
        for (i, c) in acc.iter().enumerate() {
            let o = t.c.add(i * t.c_rs);
            let o1 = o.wrapping_add(16);
            let (mut v0, mut v1) = (c[0], c[1]);
            if t.accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, o));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, o1));
            }
            _mm512_mask_storeu_ps(o, m0, v0);
            _mm512_mask_storeu_ps(o1, m1, v1);
        }
    }

    /// Lane mask (high bit set) of the first `n` lanes of 8, as AVX2 masked moves take it.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn mask8(n: usize) -> __m256i {
        let n = n.min(8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// AVX2 + FMA micro-kernel: `H x 16` tile in `2H` registers; `FULL` when all 16
    /// columns are valid (plain loads), else masked loads and stores.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the pointers in `t` must be valid as [`Tile`]
    /// describes.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<const H: usize, const FULL: bool, const PA: bool>(t: &Tile) {
        let (m0, m1) = (mask8(t.w), mask8(t.w.saturating_sub(8)));
        let mut acc = [[_mm256_setzero_ps(); 2]; H];
        let (a_rs, a_cs) = if PA { (1, MR2) } else { (t.a_rs, t.a_cs) };
        let (mut a, mut b) = (t.a, t.b);
        for _ in 0..t.kc {
            if t.prefetch {
                let ahead = b.wrapping_add(super::PREFETCH_ROWS * t.b_rs) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
            }
            let (b0, b1) = if FULL {
                (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)))
            } else {
                (
                    _mm256_maskload_ps(b, m0),
                    _mm256_maskload_ps(b.wrapping_add(8), m1),
                )
            };
            for (i, c) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(i * a_rs));
                c[0] = _mm256_fmadd_ps(av, b0, c[0]);
                c[1] = _mm256_fmadd_ps(av, b1, c[1]);
            }
            a = a.wrapping_add(a_cs);
            b = b.wrapping_add(t.b_rs);
        }
        for (i, c) in acc.iter().enumerate() {
            let o = t.c.add(i * t.c_rs);
            let o1 = o.wrapping_add(8);
            let (mut v0, mut v1) = (c[0], c[1]);
            if FULL {
                if t.accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(o));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(o1));
                }
                _mm256_storeu_ps(o, v0);
                _mm256_storeu_ps(o1, v1);
            } else {
                if t.accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_maskload_ps(o, m0));
                    v1 = _mm256_add_ps(v1, _mm256_maskload_ps(o1, m1));
                }
                _mm256_maskstore_ps(o, m0, v0);
                _mm256_maskstore_ps(o1, m1, v1);
            }
        }
    }
}

/// Sets DAZ and FTZ in MXCSR for its lifetime on the current thread, then restores the
/// previous value (see the module docs). A no-op off x86-64.
struct FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

#[cfg(target_arch = "x86_64")]
const MXCSR_DAZ_FTZ: u32 = (1 << 6) | (1 << 15);

/// The current thread's MXCSR.
#[cfg(target_arch = "x86_64")]
pub(crate) fn mxcsr() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: stmxcsr writes 4 bytes to the given address, a local.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut v as *mut u32, options(nostack, preserves_flags));
    }
    v
}

#[cfg(target_arch = "x86_64")]
fn set_mxcsr(v: u32) {
    // SAFETY: ldmxcsr reads 4 bytes from a local; the value is a valid MXCSR (a saved one,
    // or one with only the DAZ / FTZ bits added).
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &v as *const u32, options(nostack, preserves_flags, readonly));
    }
}

impl FlushSubnormals {
    fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = mxcsr();
            set_mxcsr(saved | MXCSR_DAZ_FTZ);
            FlushSubnormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushSubnormals {}
    }
}

impl Drop for FlushSubnormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        set_mxcsr(self.saved);
    }
}

/// The naive triple loop, for tests and benchmarks (the "naive operations" baseline).
pub fn naive(a: &[f32], b: &[f32], batch: usize, n: usize, k: usize, m: usize) -> Vec<f32> {
    let mut out = vec![0.0; batch * n * m];
    for z in 0..batch {
        for i in 0..n {
            for j in 0..m {
                let mut s = 0.0;
                for p in 0..k {
                    s += a[z * n * k + i * k + p] * b[z * k * m + p * m + j];
                }
                out[z * n * m + i * m + j] = s;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
