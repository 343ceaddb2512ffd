//! Batched matrix multiply on the CPU (task 3.2): packed, cache-blocked, SIMD, split over
//! rows, columns and batch.
//!
//! A product `[..batch, n, k] @ [..batch, k, m]` runs in three steps:
//! 1. A is packed once into row panels `MR` tall (each stored column by column), B into
//!    column panels `NR` wide, in parallel over panels; every thread then reads the same
//!    packed panels. Where only one task reads a column block of B (one block of rows,
//!    B not shared by the batches), that task packs B itself, one `KC x NC` block at a
//!    time right before using it, so B is never copied whole: its packed block stays in
//!    cache (a convolution's columns, tens of MB, would otherwise be written and read back
//!    from memory once more). Packing is skipped where it costs more than it saves: when few row
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

mod depth;
mod flush;
mod gather;
mod lanes;
mod micro;
mod pack;
mod plan;
mod row;

use depth::{split_depth, DepthCut, SPLIT_K_DEPTH, SPLIT_K_MAX_OUTPUT};
pub(crate) use flush::FlushSubnormals;
#[cfg(all(test, target_arch = "x86_64"))]
use flush::{mxcsr, MXCSR_DAZ_FTZ};
pub use micro::{kernel_name, Kernel};
use micro::{BandC, RowsTile, Tile};
pub(crate) use pack::Operand;
use pack::{mat, pack_a, pack_b, pack_b_block};
pub(crate) use plan::Options;
use plan::{plan, swaps};
pub use plan::{split, Split};
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
/// did not pay up to 16M multiply-adds where it was measured (docs/results.md, "CPU at
/// scale").
pub const ROW_PARALLEL_MIN_FLOPS: usize = 1 << 26;
/// A task is not cut below this many multiply-adds to make more tasks.
pub const TASK_MIN_FLOPS: usize = 1 << 15;
/// B is packed when at least this many row panels of A reuse it (or when its rows are not
/// contiguous); below, the micro-kernel reads B in place.
pub const PACK_B_MIN_ROW_PANELS: usize = 2;
/// A is packed when at least this many column panels reuse it; below, the micro-kernel
/// reads A in place (packing would cost as much as the product).
pub const PACK_A_MIN_COL_PANELS: usize = 8;
/// The same for an A whose rows are contiguous (its in-place reads are cheap).
pub const PACK_A_CONTIGUOUS_MIN_COL_PANELS: usize = 16;
/// Packing runs on the calling thread below this many packed values.
const PARALLEL_PACK_MIN: usize = 1 << 16;
/// Rows of B the micro-kernel prefetches ahead when it reads B in place (strided rows
/// defeat the hardware prefetcher). Only the x86-64 kernels prefetch.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PREFETCH_ROWS: usize = 32;

/// `[..batch, n, k] @ [..batch, k, m]` into `out` (`batch * n * m` values, every one overwritten).
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
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: tasks write disjoint rectangles of the output (see `batched_into`; the direct
// convolution's tasks write disjoint images).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The address `off` values in (a method, so closures capture the whole `OutPtr`).
    pub(crate) fn at(self, off: usize) -> *mut f32 {
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
    let s = plan(batch, n, k, m, (mat(al, 0).cs, b0.cs), opts);
    if s.row {
        row_product(out, a, al, b, bl, (k, m), &s, kern);
        return;
    }
    blocked(
        out,
        (a, Operand::Strided(al)),
        (b, Operand::Strided(bl)),
        (batch, n, k, m),
        &s,
        opts,
        None,
    );
}

/// One matrix `[n, k] @ [k, m]` into `out` (`n * m` values, every one overwritten), where
/// either operand may be gathered ([`Operand::Gathered`]): a gathered operand is always
/// packed, straight from its positions.
///
/// `finish`, where given, runs on each task's rectangle of the output ([`Finished`]) once
/// the task has summed the whole depth, while the rectangle is still in cache (a matmul
/// epilogue applied in place, or a convolution's col2im).
pub(crate) fn gathered_into(
    out: &mut [f32],
    a: (&[f32], Operand),
    b: (&[f32], Operand),
    (n, k, m): (usize, usize, usize),
    opts: &Options,
    finish: Option<Finish>,
) {
    assert_eq!(out.len(), n * m, "matmul output size");
    assert!(opts.kernel.is_available(), "matmul kernel not available");
    if out.is_empty() {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        if let Some(f) = finish {
            f(&mut Finished::new(
                OutPtr(out.as_mut_ptr()),
                m,
                (0, n),
                (0, m),
            ));
        }
        return;
    }
    if finish.is_none() && n * m <= SPLIT_K_MAX_OUTPUT && k >= 2 * SPLIT_K_DEPTH {
        if let (Some(ac), Some(bc)) = (DepthCut::new(a.1, 1, k), DepthCut::new(b.1, 0, k)) {
            split_depth(out, (a.0, ac), (b.0, bc), (n, k, m), opts);
            return;
        }
    }
    // Not 1: a gathered operand is packed.
    let cs = |o: &Operand| match o {
        Operand::Strided(l) => mat(l, 0).cs,
        Operand::Gathered { .. } => 0,
    };
    let strides = (cs(&a.1), cs(&b.1));
    let mut s = plan(1, n, k, m, strides, opts);
    // A gathered A is packed, unless its depth comes in long runs of consecutive positions
    // and the kernel can read it in place through its rows' positions (a convolution's
    // window with the pixels along the depth: its weight gradient).
    let a_packed = match a.1 {
        Operand::Gathered { cols, .. } => {
            opts.kernel.rows_kernel(1).is_none()
                || opts
                    .pack_a
                    .unwrap_or_else(|| mean_run(cols) < MIN_IN_PLACE_RUN)
        }
        Operand::Strided(_) => false,
    };
    s.pack_a |= a_packed;
    if s.row {
        // Only a strided B with contiguous rows takes the row kernel.
        s = plan(
            1,
            n,
            k,
            m,
            strides,
            &Options {
                row: Some(false),
                ..*opts
            },
        );
        s.pack_a |= a_packed;
    }
    blocked(out, a, b, (1, n, k, m), &s, opts, finish);
}

/// A gathered A whose depth runs are at least this long on average is read in place.
const MIN_IN_PLACE_RUN: usize = 8;

/// The mean length of the runs of consecutive positions in `pos`.
fn mean_run(pos: &[usize]) -> usize {
    let runs = 1 + pos.windows(2).filter(|w| w[1] != w[0] + 1).count();
    pos.len() / runs
}

/// `pos` as runs of consecutive positions, `(first, length)`.
fn runs_of(pos: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &p in pos {
        match out.last_mut() {
            Some((first, len)) if *first + *len == p => *len += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

/// A hook on the finished rectangles of a product's output (see [`gathered_into`]).
pub(crate) type Finish<'f> = &'f (dyn Fn(&mut Finished) + Sync);

/// One task's finished rectangle of a product's output `[n, m]`: rows
/// `row0..row0 + rows`, columns `col0..col0 + cols`, which only this task writes. Rows are
/// handed out one at a time (the rows of neighbouring tasks lie between them in memory).
pub(crate) struct Finished {
    out: OutPtr,
    m: usize,
    /// First row.
    pub row0: usize,
    /// Rows.
    pub rows: usize,
    /// First column.
    pub col0: usize,
    /// Columns.
    pub cols: usize,
}

impl Finished {
    /// The rectangle `rows` x `cols` of `out` (of row length `m`); the caller owns it.
    fn new(out: OutPtr, m: usize, (row0, row1): (usize, usize), (c0, c1): (usize, usize)) -> Self {
        Finished {
            out,
            m,
            row0,
            rows: row1 - row0,
            col0: c0,
            cols: c1 - c0,
        }
    }

    /// The position in the output of row `i`'s first value.
    pub fn at(&self, i: usize) -> usize {
        (self.row0 + i) * self.m + self.col0
    }

    /// Row `i` (`0..rows`) of the rectangle.
    pub fn row(&self, i: usize) -> &[f32] {
        assert!(i < self.rows);
        // SAFETY: the row lies inside the output and belongs to the task that made this
        // rectangle (`new`'s contract); `&self` only lends it for reading.
        unsafe { std::slice::from_raw_parts(self.out.at(self.at(i)), self.cols) }
    }

    /// Row `i` (`0..rows`) of the rectangle, to write.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.rows);
        // SAFETY: as `row`, and `&mut self` makes the loan exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.out.at(self.at(i)), self.cols) }
    }
}

/// The packed, blocked product of [`batched_into_with`] and [`gathered_into`] by the split
/// `s` (not a row-kernel split).
fn blocked(
    out: &mut [f32],
    (a, ao): (&[f32], Operand),
    (b, bo): (&[f32], Operand),
    (batch, n, k, m): (usize, usize, usize, usize),
    s: &Split,
    opts: &Options,
    finish: Option<Finish>,
) {
    let kern = opts.kernel;
    let (mr, nr) = (kern.mr(), kern.nr());
    let (rp, cp) = (n.div_ceil(mr), m.div_ceil(nr));
    // A gathered and not packed: read in place through its rows' positions.
    let a_rows = match ao {
        Operand::Gathered { rows, cols } if !s.pack_a => {
            let (rmax, cmax) = (rows.iter().max(), cols.iter().max());
            assert!(
                kern.rows_kernel(1).is_some()
                    && rmax.zip(cmax).is_none_or(|(r, c)| r + c < a.len()),
                "an A read in place lies inside its storage"
            );
            Some((rows, cols))
        }
        _ => None,
    };
    let (a_shared, b_shared) = (ao.shared(), bo.shared());
    // Depth blocks of equal size, at most KC (288 = 144 + 144, not 256 + 32: a short
    // last block pays a whole tile's load and store for a few steps).
    let kc_max = k.div_ceil(k.div_ceil(KC));

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
        pack_a(a, &ao.mat(z), ip * mr, h, k, mr, panel);
    };
    let b_len = cp * k * nr;
    // B packed block by block inside the task that reads it (a `KC x NC` block stays in
    // cache, and no B-sized buffer is written and read back) when no other task reads the
    // same columns: one row block, and B not shared by the batches.
    let in_task = s.pack_b
        && opts
            .pack_b_in_task
            .unwrap_or(s.row_blocks == 1 && (!b_shared || batch == 1));
    let b_count = if s.pack_b && !in_task {
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
        pack_b(b, &bo.mat(z), jp * nr, w, k, nr, panel);
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
        let (am, bm) = (ao.mat(z), bo.mat(z));
        let a_z = if a_shared { 0 } else { z };
        let b_z = if b_shared { 0 } else { z };
        let (j0, j1) = (bj * cb, ((bj + 1) * cb).min(cp));
        let mut bblock = HostBuf::take(if in_task { (j1 - j0) * kc_max * nr } else { 0 });
        let mut p0 = 0;
        while p0 < k {
            let kc = kc_max.min(k - p0);
            if in_task {
                // Rows p0..p0+kc of this task's column panels, each `kc x nr`.
                let rows = bm.skip_rows(p0);
                pack_b_block(b, &rows, (j0 * nr, (j1 * nr).min(m)), kc, nr, &mut bblock);
            }
            // Tile (ip, jp)'s B panel (w columns of this depth block: packed, or in place)
            // and C tile (inside `out`: batch z, row ip*mr, column jp*nr).
            let band_c = |ip: usize, jp: usize| {
                let w = nr.min(m - jp * nr);
                let (b, b_rs) = if in_task {
                    let off = (jp - j0) * kc * nr;
                    (bblock[off..off + kc * nr].as_ptr(), nr)
                } else if s.pack_b {
                    let off = b_z * b_len + jp * k * nr + p0 * nr;
                    (bpack[off..off + kc * nr].as_ptr(), nr)
                } else {
                    let first = bm.base + p0 * bm.rs + jp * nr;
                    // The tile reads rows p0..p0+kc, columns jp*nr..+w of B.
                    assert!(first + (kc - 1) * bm.rs + w <= b.len());
                    (b[first..].as_ptr(), bm.rs)
                };
                BandC {
                    b,
                    b_rs,
                    c: outp.at(z * n * m + ip * mr * m + jp * nr),
                    c_rs: m,
                    w,
                    accumulate: p0 > 0,
                }
            };
            // This depth block's runs of A's positions, for an A read through its rows.
            let runs = a_rows.map(|(_, cols)| runs_of(&cols[p0..p0 + kc]));
            for ip in bi * rb..((bi + 1) * rb).min(rp) {
                let h = mr.min(n - ip * mr);
                if let (Some((rows, _)), Some(runs)) = (a_rows, &runs) {
                    for jp in j0..j1 {
                        let tile = RowsTile {
                            a: a.as_ptr(),
                            rows: &rows[ip * mr..ip * mr + h],
                            runs,
                            bc: band_c(ip, jp),
                        };
                        let f = kern.rows_kernel(h).expect("checked above");
                        // SAFETY: the kernel is available; every position of A the tile
                        // reads (a row's position plus a column's) lies inside `a`
                        // (asserted above); B and C as for `micro` below.
                        unsafe { f(&tile) };
                    }
                    continue;
                }
                let (aptr, a_rs, a_cs) = if s.pack_a {
                    let off = a_z * a_len + ip * k * mr + p0 * mr;
                    (apack[off..off + kc * mr].as_ptr(), 1, mr)
                } else {
                    let first = am.base + ip * mr * am.rs + p0 * am.cs;
                    // The tile reads rows ip*mr..+h, columns p0..p0+kc of A.
                    assert!(first + (h - 1) * am.rs + (kc - 1) * am.cs < a.len());
                    (a[first..].as_ptr(), am.rs, am.cs)
                };
                for jp in j0..j1 {
                    let tile = Tile {
                        kc,
                        a: aptr,
                        a_rs,
                        a_cs,
                        bc: band_c(ip, jp),
                        prefetch: !s.pack_b,
                    };
                    // SAFETY: the kernel is available (asserted above); A holds kc steps of
                    // a packed panel; B holds kc rows of w (packed: nr) readable values at
                    // stride b_rs (checked above); the C tile (h rows of w values at
                    // stride m) lies inside `out` and belongs to this task alone, as the
                    // tasks' row and column blocks are disjoint.
                    unsafe { kern.micro(h, tile.bc.w, s.pack_a)(&tile) };
                }
            }
            p0 += kc;
        }
        if let Some(f) = finish {
            // Rows and columns of batch z's product that this task alone wrote (the tasks'
            // rectangles are disjoint), now finished.
            let rows = (bi * rb * mr, ((bi + 1) * rb * mr).min(n));
            let cols = (j0 * nr, (j1 * nr).min(m));
            f(&mut Finished::new(
                OutPtr(outp.at(z * n * m)),
                m,
                rows,
                cols,
            ));
        }
    };
    run_tasks(s, task);
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
