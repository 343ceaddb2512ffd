//! Pooling on the CPU ([`Backend::max_pool2d`](crate::backend::Backend::max_pool2d), its
//! backward, and [`Backend::avg_pool2d`](crate::backend::Backend::avg_pool2d)): one pass
//! each, parallel over rows of windows, reading the input (or gradient) through its
//! strides, where the composed defaults copy the windows out first.

use rayon::prelude::*;
use smallvec::SmallVec;

use super::pool::HostBuf;
use super::PARALLEL_MIN;
use crate::backend::pool2d::Windows;
use crate::layout::Layout;

/// Whether the AVX-512 paths for 2-wide windows run (detected once).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static A: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *A.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

/// Rows of output handed to one rayon task at least.
fn rows_per_task(rows: usize, row_len: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads == 1 || rows * row_len < PARALLEL_MIN {
        return rows.max(1);
    }
    rows.div_ceil(4 * threads).max(1)
}

/// Run `task(first_row, values)` over `out` in runs of whole rows of `row_len` values:
/// on rayon, a few runs per thread, when the rows hold enough work (`cost` per row), else
/// in one run on this thread.
fn for_rows(out: &mut [f32], row_len: usize, cost: usize, task: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len() / row_len;
    let per = rows_per_task(rows, cost);
    if per >= rows {
        task(0, out);
    } else {
        out.par_chunks_mut(per * row_len)
            .enumerate()
            .for_each(|(t, c)| task(t * per, c));
    }
}

/// Each window's maximum and the position of its first maximum (a NaN wins, the first
/// one), both `[B, C, H/kh, W/kw]`.
pub fn max_pool2d(x: &[f32], l: &Layout, w: &Windows) -> (HostBuf, HostBuf) {
    let [_, c, nh, nw] = w.out_shape();
    let [kh, kw] = w.kernel;
    let st = l.strides();
    let n = w.count();
    let (mut vals, mut first) = (HostBuf::take(n), HostBuf::take(n));
    if n == 0 || nw == 0 {
        return (vals, first);
    }
    let rows = n / nw;
    let per = rows_per_task(rows, nw * kh * kw);
    let task = |(t, (vs, fs)): (usize, (&mut [f32], &mut [f32]))| {
        let mut rows: SmallVec<[&[f32]; 8]> = SmallVec::new();
        for (r, (vr, fr)) in vs.chunks_mut(nw).zip(fs.chunks_mut(nw)).enumerate() {
            // Row (b, c, oh) of windows.
            let row = t * per + r;
            let (bc, oh) = (row / nh, row % nh);
            let base = l.offset() + (bc / c) * st[0] + (bc % c) * st[1] + oh * kh * st[2];
            if st[3] == 1 {
                // The window rows' kh input rows, contiguous: one loop per kernel width.
                rows.clear();
                rows.extend((0..kh).map(|i| &x[base + i * st[2]..][..nw * kw]));
                match kw {
                    1 => window_row::<1>(&rows, vr, fr),
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX-512F is available; each row holds 2 * nw values.
                    2 if avx512() => unsafe { avx512::window_row2(&rows, vr, fr) },
                    2 => window_row::<2>(&rows, vr, fr),
                    3 => window_row::<3>(&rows, vr, fr),
                    4 => window_row::<4>(&rows, vr, fr),
                    _ => window_row_any(&rows, kw, vr, fr),
                }
                continue;
            }
            for (ow, (v, f)) in vr.iter_mut().zip(fr.iter_mut()).enumerate() {
                let at = base + ow * kw * st[3];
                let (mut best, mut pos) = (x[at], 0);
                for i in 0..kh {
                    for j in 0..kw {
                        let e = x[at + i * st[2] + j * st[3]];
                        if beats(e, best) {
                            (best, pos) = (e, i * kw + j);
                        }
                    }
                }
                *v = best;
                *f = pos as f32;
            }
        }
    };
    let chunks = vals.chunks_mut(per * nw).zip(first.chunks_mut(per * nw));
    if per >= rows {
        chunks.enumerate().for_each(task);
    } else {
        chunks
            .collect::<Vec<_>>()
            .into_par_iter()
            .enumerate()
            .for_each(task);
    }
    (vals, first)
}

/// `grad` (`[B, C, H/kh, W/kw]` through `gl`) at each window's first maximum, zero
/// elsewhere: `[B, C, H, W]`, written row by row (each value once, no scatter).
pub fn max_pool2d_backward(g: &[f32], gl: &Layout, first: &[f32], w: &Windows) -> HostBuf {
    let [_, c, h, wd] = w.shape;
    let [_, _, nh, nw] = w.out_shape();
    let [kh, kw] = w.kernel;
    let st = gl.strides();
    let n: usize = w.shape.iter().product();
    let mut out = HostBuf::take(n);
    if n == 0 {
        return out;
    }
    for_rows(&mut out, wd, wd, |first_row, chunk| {
        for (r, o) in chunk.chunks_mut(wd).enumerate() {
            // Row (b, c, y) of the input.
            let row = first_row + r;
            let (bc, y) = (row / h, row % h);
            let (oh, i) = (y / kh, y % kh);
            let gbase = gl.offset() + (bc / c) * st[0] + (bc % c) * st[1] + oh * st[2];
            let fr = &first[(bc * nh + oh) * nw..][..nw];
            let gv = |ow: usize| g[gbase + ow * st[3]];
            match kw {
                1 => grad_row::<1>(o, fr, gv, i),
                #[cfg(target_arch = "x86_64")]
                2 if avx512() && st[3] == 1 => {
                    let gr = &g[gbase..][..nw];
                    // SAFETY: AVX-512F is available; o holds 2 * nw values, fr and gr nw.
                    unsafe { avx512::grad_row2(o, fr, gr, i) }
                }
                2 => grad_row::<2>(o, fr, gv, i),
                3 => grad_row::<3>(o, fr, gv, i),
                4 => grad_row::<4>(o, fr, gv, i),
                _ => {
                    for (ow, cells) in o.chunks_mut(kw).enumerate() {
                        let at = fr[ow] as usize;
                        let v = gv(ow);
                        for (j, c) in cells.iter_mut().enumerate() {
                            *c = if at == i * kw + j { v } else { 0.0 };
                        }
                    }
                }
            }
        }
    });
    out
}

/// Whether `e` replaces `best` as a window's maximum so far: a NaN stays, a NaN or a
/// larger value wins (so ties and later NaNs keep the first).
#[inline(always)]
fn beats(e: f32, best: f32) -> bool {
    !best.is_nan() && (e.is_nan() || e > best)
}

/// The larger of `a` and `b`, NaN when either is (`a` on a tie): branch-free, as a
/// select on two comparisons (random data would mispredict a branch half the time).
#[inline(always)]
fn nan_max(a: f32, b: f32) -> f32 {
    #[allow(clippy::eq_op)]
    let take_b = (b > a) | (b != b);
    if take_b {
        b
    } else {
        a
    }
}

/// One row of windows `KW` wide from its `kh` contiguous input rows: the maxima (NaN
/// wins), then each window's first cell equal to its maximum (or first NaN), both as
/// selects in loops across the row's windows, which the compiler vectorises (a branch
/// per value would mispredict half the time on real data).
#[inline]
fn window_row<const KW: usize>(rows: &[&[f32]], vals: &mut [f32], first: &mut [f32]) {
    let nw = vals.len();
    for (v, c) in vals.iter_mut().zip(rows[0].chunks_exact(KW)) {
        *v = c[0];
    }
    for r in rows {
        for j in 0..KW {
            for (v, c) in vals.iter_mut().zip(r[..nw * KW].chunks_exact(KW)) {
                *v = nan_max(*v, c[j]);
            }
        }
    }
    // Last cell to first, so the first hit is the one left.
    let mut p = (rows.len() * KW) as f32;
    first.fill(0.0);
    for r in rows.iter().rev() {
        for j in (0..KW).rev() {
            p -= 1.0;
            for ((f, &m), c) in first
                .iter_mut()
                .zip(&*vals)
                .zip(r[..nw * KW].chunks_exact(KW))
            {
                let e = c[j];
                #[allow(clippy::eq_op)]
                let hit = (e == m) | (e != e);
                *f = if hit { p } else { *f };
            }
        }
    }
}

/// [`window_row`] for any width.
fn window_row_any(rows: &[&[f32]], kw: usize, vals: &mut [f32], first: &mut [f32]) {
    for (ow, (v, f)) in vals.iter_mut().zip(first.iter_mut()).enumerate() {
        let (mut best, mut pos) = (rows[0][ow * kw], 0);
        for (i, r) in rows.iter().enumerate() {
            for (j, &e) in r[ow * kw..][..kw].iter().enumerate() {
                if beats(e, best) {
                    (best, pos) = (e, i * kw + j);
                }
            }
        }
        *v = best;
        *f = pos as f32;
    }
}

/// Row `i` (within its windows) of the input's gradient, windows `KW` wide: each cell
/// gets its window's gradient `g(ow)` where it is the first maximum, else 0.
#[inline]
fn grad_row<const KW: usize>(o: &mut [f32], first: &[f32], g: impl Fn(usize) -> f32, i: usize) {
    for (ow, (cells, &f)) in o.chunks_exact_mut(KW).zip(first).enumerate() {
        let (at, v) = (f as usize, g(ow));
        for (j, c) in cells.iter_mut().enumerate() {
            *c = if at == i * KW + j { v } else { 0.0 };
        }
    }
}

/// Each window's mean (its sum, in row-major order, times `1/k`): `[B, C, H/kh, W/kw]`.
pub fn avg_pool2d(x: &[f32], l: &Layout, w: &Windows) -> HostBuf {
    let [_, c, nh, nw] = w.out_shape();
    let [kh, kw] = w.kernel;
    let st = l.strides();
    let n = w.count();
    let mut out = HostBuf::take(n);
    if n == 0 || nw == 0 {
        return out;
    }
    let scale = 1.0 / w.k() as f32;
    for_rows(&mut out, nw, nw * kh * kw, |first_row, vs| {
        for (r, vr) in vs.chunks_mut(nw).enumerate() {
            let row = first_row + r;
            let (bc, oh) = (row / nh, row % nh);
            let base = l.offset() + (bc / c) * st[0] + (bc % c) * st[1] + oh * kh * st[2];
            for (ow, v) in vr.iter_mut().enumerate() {
                let at = base + ow * kw * st[3];
                let mut sum = 0.0f32;
                for i in 0..kh {
                    for j in 0..kw {
                        sum += x[at + i * st[2] + j * st[3]];
                    }
                }
                *v = sum * scale;
            }
        }
    });
    out
}

/// Each window's gradient (`[B, C, H/kh, W/kw]` through `gl`) times `1/k` at each of its
/// positions: `[B, C, H, W]`, row by row.
pub fn avg_pool2d_backward(g: &[f32], gl: &Layout, w: &Windows) -> HostBuf {
    let [_, c, h, wd] = w.shape;
    let [kh, kw] = w.kernel;
    let st = gl.strides();
    let n: usize = w.shape.iter().product();
    let mut out = HostBuf::take(n);
    if n == 0 {
        return out;
    }
    let scale = 1.0 / w.k() as f32;
    for_rows(&mut out, wd, wd, |first_row, chunk| {
        for (r, o) in chunk.chunks_mut(wd).enumerate() {
            let row = first_row + r;
            let (bc, y) = (row / h, row % h);
            let gbase = gl.offset() + (bc / c) * st[0] + (bc % c) * st[1] + (y / kh) * st[2];
            for (ow, cells) in o.chunks_mut(kw).enumerate() {
                cells.fill(g[gbase + ow * st[3]] * scale);
            }
        }
    });
    out
}

/// 2-wide windows (the common 2x2 pool) with AVX-512: 16 windows per step, each input
/// row's 32 values split into even and odd columns by two permutes, the candidates then
/// compared in the window's row-major order with the same rule as [`beats`].
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Masks for `lanes` (0..=32) values over two 16-lane vectors.
    fn masks(lanes: usize) -> (u16, u16) {
        let lo = if lanes >= 16 {
            0xffff
        } else {
            ((1u32 << lanes) - 1) as u16
        };
        let hi = if lanes >= 32 {
            0xffff
        } else if lanes > 16 {
            ((1u32 << (lanes - 16)) - 1) as u16
        } else {
            0
        };
        (lo, hi)
    }

    /// [`super::window_row`] for `KW = 2`.
    ///
    /// # Safety
    /// AVX-512F available; every row holds `2 * vals.len()` values; `first` as many as
    /// `vals`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn window_row2(rows: &[&[f32]], vals: &mut [f32], first: &mut [f32]) {
        let nw = vals.len();
        assert!(first.len() == nw && rows.iter().all(|r| r.len() >= 2 * nw));
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let mut w0 = 0;
        while w0 < nw {
            let n = (nw - w0).min(16);
            let (mlo, mhi) = masks(2 * n);
            let (mut best, mut pos) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for (i, r) in rows.iter().enumerate() {
                let p = r.as_ptr().add(2 * w0);
                let lo = _mm512_maskz_loadu_ps(mlo, p);
                let hi = _mm512_maskz_loadu_ps(mhi, p.wrapping_add(16));
                let cells = [
                    _mm512_permutex2var_ps(lo, even, hi),
                    _mm512_permutex2var_ps(lo, odd, hi),
                ];
                for (j, e) in cells.into_iter().enumerate() {
                    let at = _mm512_set1_ps((2 * i + j) as f32);
                    if i == 0 && j == 0 {
                        (best, pos) = (e, at);
                        continue;
                    }
                    // beats(e, best): best is a number, and e is NaN or larger.
                    let num = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(best, best);
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(e, e);
                    let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(e, best);
                    let take = num & (nan | gt);
                    best = _mm512_mask_blend_ps(take, best, e);
                    pos = _mm512_mask_blend_ps(take, pos, at);
                }
            }
            let m = masks(n).0;
            _mm512_mask_storeu_ps(vals.as_mut_ptr().add(w0), m, best);
            _mm512_mask_storeu_ps(first.as_mut_ptr().add(w0), m, pos);
            w0 += 16;
        }
    }

    /// [`super::grad_row`] for `KW = 2`, the gradient contiguous.
    ///
    /// # Safety
    /// AVX-512F available; `o` holds `2 * first.len()` values, `g` `first.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn grad_row2(o: &mut [f32], first: &[f32], g: &[f32], i: usize) {
        let nw = first.len();
        assert!(g.len() == nw && o.len() == 2 * nw);
        let (c0, c1) = (
            _mm512_set1_ps((2 * i) as f32),
            _mm512_set1_ps((2 * i + 1) as f32),
        );
        // Interleave (even column, odd column) pairs back into a row.
        let lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let hi_idx =
            _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let mut w0 = 0;
        while w0 < nw {
            let n = (nw - w0).min(16);
            let m = masks(n).0;
            let f = _mm512_maskz_loadu_ps(m, first.as_ptr().add(w0));
            let gv = _mm512_maskz_loadu_ps(m, g.as_ptr().add(w0));
            let e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(f, c0), gv);
            let od = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(f, c1), gv);
            let (mlo, mhi) = masks(2 * n);
            let p = o.as_mut_ptr().add(2 * w0);
            _mm512_mask_storeu_ps(p, mlo, _mm512_permutex2var_ps(e, lo_idx, od));
            _mm512_mask_storeu_ps(
                p.wrapping_add(16),
                mhi,
                _mm512_permutex2var_ps(e, hi_idx, od),
            );
            w0 += 16;
        }
    }
}
