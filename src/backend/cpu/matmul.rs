//! Batched matrix multiply on the CPU (task 3.2): packed, cache-blocked, SIMD.
//!
//! For each batch, B is packed once into column panels `NR` wide (any strides, so a
//! transposed or broadcast B is read in place), then row blocks of `MC` rows of the output
//! run in parallel: each packs its block of A into row panels `MR` tall and runs the
//! `MR x NR` micro-kernel over every panel pair, accumulating in registers and writing each
//! output tile once per `KC` block. The micro-kernel uses AVX2+FMA when the CPU has them
//! (detected at run time; the build stays portable) and a plain loop the compiler
//! vectorises otherwise.

use rayon::prelude::*;

use crate::layout::{to_index, Layout};

/// Rows of the micro-kernel's output tile.
pub const MR: usize = 6;
/// Columns of the micro-kernel's output tile (two AVX registers).
pub const NR: usize = 16;
/// Depth of one packed block (a `KC x NR` panel of B stays in L1).
pub const KC: usize = 256;
/// Rows of A per parallel task (a `MC x KC` block of A stays in L2).
pub const MC: usize = 96;
/// Below this many multiply-adds a product runs on the calling thread.
pub const PARALLEL_MIN_FLOPS: usize = 1 << 22;

/// One matrix operand: base position and row / column strides.
#[derive(Clone, Copy, Debug)]
struct Mat<'a> {
    data: &'a [f32],
    base: usize,
    rs: usize,
    cs: usize,
}

impl Mat<'_> {
    #[inline]
    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[self.base + r * self.rs + c * self.cs]
    }
}

/// Base storage position of batch `z` of a `[..batch, r, c]` layout.
fn batch_base(l: &Layout, z: usize, index: &mut [usize]) -> usize {
    let nb = l.dims() - 2;
    to_index(z, &l.shape()[..nb], &mut index[..nb]);
    l.offset()
        + index[..nb]
            .iter()
            .zip(l.strides())
            .map(|(i, s)| i * s)
            .sum::<usize>()
}

/// How [`batched`] divides a product among threads, for diagnostics (`parallel_check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Whether the tasks run on rayon's threads (else all on the calling thread).
    pub parallel: bool,
    /// Independent tasks: `batch` times the row blocks of one output matrix.
    pub tasks: usize,
    /// Output rows per task ([`MC`]; the last block of a batch may be shorter).
    pub rows_per_task: usize,
    /// Blocks of depth [`KC`] each task walks through.
    pub k_blocks: usize,
    /// The micro-kernel ([`kernel_name`]).
    pub kernel: &'static str,
}

/// The split [`batched`] uses for `[batch, n, k] @ [batch, k, m]` in the current rayon pool.
pub fn split(batch: usize, n: usize, k: usize, m: usize) -> Split {
    Split {
        parallel: batch * n * m * k >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1,
        tasks: batch * n.div_ceil(MC),
        rows_per_task: MC.min(n),
        k_blocks: k.div_ceil(KC),
        kernel: kernel_name(),
    }
}

/// `[..batch, n, k] @ [..batch, k, m]` into a fresh contiguous `[..batch, n, m]`.
pub fn batched(
    a: &[f32],
    al: &Layout,
    b: &[f32],
    bl: &Layout,
    (batch, n, k, m): (usize, usize, usize, usize),
) -> Vec<f32> {
    let mut out = vec![0.0f32; batch * n * m];
    if out.is_empty() || k == 0 {
        return out;
    }
    let r = al.dims();
    let mut idx = vec![0; r];
    let mats: Vec<(Mat, Mat)> = (0..batch)
        .map(|z| {
            let ma = Mat {
                data: a,
                base: batch_base(al, z, &mut idx),
                rs: al.strides()[r - 2],
                cs: al.strides()[r - 1],
            };
            let mb = Mat {
                data: b,
                base: batch_base(bl, z, &mut idx),
                rs: bl.strides()[r - 2],
                cs: bl.strides()[r - 1],
            };
            (ma, mb)
        })
        .collect();
    let parallel = split(batch, n, k, m).parallel;

    // Pack every batch's B once; tasks share the packed panels read-only.
    let packed_b: Vec<Vec<f32>> = if parallel {
        mats.par_iter().map(|(_, mb)| pack_b(mb, k, m)).collect()
    } else {
        mats.iter().map(|(_, mb)| pack_b(mb, k, m)).collect()
    };

    // Tasks own disjoint row blocks of the output; a block never straddles two batches.
    let mut pieces: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (z, batch_out) in out.chunks_mut(n * m).enumerate() {
        for (bi, rows) in batch_out.chunks_mut(MC * m).enumerate() {
            pieces.push((z, bi * MC, rows));
        }
    }
    let task = |(z, i0, chunk): (usize, usize, &mut [f32])| {
        let rows = chunk.len() / m;
        block(&mats[z].0, &packed_b[z], chunk, i0, rows, k, m);
    };
    if parallel {
        pieces.into_par_iter().for_each(task);
    } else {
        pieces.into_iter().for_each(task);
    }
    out
}

/// Pack B (k x m) into panels of NR columns: panel j holds rows 0..k, each NR wide,
/// zero-padded past column m.
fn pack_b(mb: &Mat, k: usize, m: usize) -> Vec<f32> {
    let panels = m.div_ceil(NR);
    let mut buf = vec![0.0f32; panels * k * NR];
    for (j, panel) in buf.chunks_mut(k * NR).enumerate() {
        let j0 = j * NR;
        let w = NR.min(m - j0);
        for p in 0..k {
            let row = &mut panel[p * NR..p * NR + w];
            if mb.cs == 1 {
                let s = mb.base + p * mb.rs + j0;
                row.copy_from_slice(&mb.data[s..s + w]);
            } else {
                for (jj, v) in row.iter_mut().enumerate() {
                    *v = mb.at(p, j0 + jj);
                }
            }
        }
    }
    buf
}

/// Pack rows i0..i0+rows, columns p0..p0+kc of A into panels of MR rows, each stored
/// column by column (MR values per column), zero-padded past the last row.
fn pack_a(ma: &Mat, i0: usize, rows: usize, p0: usize, kc: usize, buf: &mut Vec<f32>) {
    let panels = rows.div_ceil(MR);
    buf.clear();
    buf.resize(panels * kc * MR, 0.0);
    for (ip, panel) in buf.chunks_mut(kc * MR).enumerate() {
        let r0 = ip * MR;
        let h = MR.min(rows - r0);
        for p in 0..kc {
            for ii in 0..h {
                panel[p * MR + ii] = ma.at(i0 + r0 + ii, p0 + p);
            }
        }
    }
}

/// Compute `rows` output rows starting at row i0 of one batch into `out` (rows x m).
fn block(ma: &Mat, bpack: &[f32], out: &mut [f32], i0: usize, rows: usize, k: usize, m: usize) {
    let mut apack = Vec::new();
    let kernel = select_kernel();
    let mut p0 = 0;
    while p0 < k {
        let kc = KC.min(k - p0);
        pack_a(ma, i0, rows, p0, kc, &mut apack);
        for j in 0..m.div_ceil(NR) {
            let j0 = j * NR;
            let w = NR.min(m - j0);
            // Panel j of packed B, rows p0..p0+kc.
            let bp = &bpack[j * k * NR + p0 * NR..j * k * NR + (p0 + kc) * NR];
            for ip in 0..rows.div_ceil(MR) {
                let r0 = ip * MR;
                let h = MR.min(rows - r0);
                let ap = &apack[ip * kc * MR..(ip + 1) * kc * MR];
                let mut acc = [[0.0f32; NR]; MR];
                kernel(kc, ap, bp, &mut acc);
                for (ii, acc_row) in acc.iter().enumerate().take(h) {
                    let o = &mut out[(r0 + ii) * m + j0..(r0 + ii) * m + j0 + w];
                    for (c, v) in o.iter_mut().zip(acc_row) {
                        *c += v;
                    }
                }
            }
        }
        p0 += kc;
    }
}

type Kernel = fn(usize, &[f32], &[f32], &mut [[f32; NR]; MR]);

/// The fastest micro-kernel this CPU supports and its name, detected once per process.
fn detected_kernel() -> (Kernel, &'static str) {
    static K: std::sync::OnceLock<(Kernel, &'static str)> = std::sync::OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return (kernel_avx2_entry as Kernel, "avx2+fma 6x16");
            }
        }
        (kernel_generic as Kernel, "portable 6x16")
    })
}

fn select_kernel() -> Kernel {
    detected_kernel().0
}

/// Name of the micro-kernel in use (for diagnostics).
pub fn kernel_name() -> &'static str {
    detected_kernel().1
}

/// Portable micro-kernel: one rank-1 update of the MR x NR tile per step of k.
fn kernel_generic(kc: usize, a: &[f32], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    for (ac, bc) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (row, &av) in acc.iter_mut().zip(ac) {
            for (c, &bv) in row.iter_mut().zip(bc) {
                *c += av * bv;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn kernel_avx2_entry(kc: usize, a: &[f32], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    // SAFETY: selected only when the CPU reports AVX2 and FMA; the slices were checked to
    // hold kc steps of both panels.
    unsafe { kernel_avx2(kc, a.as_ptr(), b.as_ptr(), acc) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(kc: usize, a: *const f32, b: *const f32, acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let mut c = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        let b0 = _mm256_loadu_ps(b.add(p * NR));
        let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
        for (i, ci) in c.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(p * MR + i));
            ci[0] = _mm256_fmadd_ps(av, b0, ci[0]);
            ci[1] = _mm256_fmadd_ps(av, b1, ci[1]);
        }
    }
    for (row, ci) in acc.iter_mut().zip(&c) {
        _mm256_storeu_ps(row.as_mut_ptr(), ci[0]);
        _mm256_storeu_ps(row.as_mut_ptr().add(8), ci[1]);
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
