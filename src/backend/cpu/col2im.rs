//! The input gradient of a convolution on the CPU
//! ([`Backend::conv2d_input_grad`](crate::backend::Backend::conv2d_input_grad)): for a
//! few images at a time, `W^T [Cin*KH*KW, Cout] @ grad [Cout, images*OH*OW]`, and as each
//! task finishes a block of rows (whole input channels: all `KH*KW` rows of each), the
//! input gradient's rows of those channels are written from it in one pass (col2im: each
//! value is the sum of the `KH*KW` products that read that input position). Nothing is
//! padded or gathered: the product's B is the gradient itself, and its depth is `Cout`
//! (the transposed convolution's is `Cout*KH*KW` over a padded copy).
//!
//! Images go to rayon tasks; each task owns its images' gradient, so every value is
//! written once, by one thread, in a fixed order (the same result on any number of
//! threads).

use rayon::prelude::*;

use super::matmul::{self, Finished, Kernel, Operand, Options};
use super::pool::HostBuf;
use crate::backend::conv2d::ConvGeometry;
use crate::layout::Layout;

/// Kernel heights the vector row path takes (taller kernels take the plain loops).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const MAX_KH: usize = 8;

/// Product columns one task aims for (a few images of a small layer, one of a large).
const TASK_COLUMNS: usize = 2048;

/// Row panels per block of the product: a multiple of `kk / gcd(mr, kk)`, so a block holds
/// whole input channels (`kk` rows each), and about 16 panels.
fn panels_per_block(mr: usize, kk: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let unit = kk / gcd(mr, kk);
    unit * (16 / unit).max(1)
}

/// The input gradient `[B, Cin, H, W]` (contiguous) from the output's gradient `go`
/// (`[Cout, B, OH, OW]`) and the weight `w` (`[Cout, Cin*KH*KW]`), both contiguous.
pub fn input_grad(go: &[f32], w: &[f32], g: &ConvGeometry) -> HostBuf {
    if let Some(dx) = super::direct::input_grad(go, w, g) {
        return dx;
    }
    input_grad_with(go, w, g, Kernel::detect() == Kernel::Avx512)
}

/// [`input_grad`], its rows summed by the AVX-512 path where `vector` (and the stride
/// along the width is 1), else by the plain loops.
fn input_grad_with(go: &[f32], w: &[f32], g: &ConvGeometry, vector: bool) -> HostBuf {
    let (ckk, per_image) = (g.ckk(), g.oh * g.ow);
    let img_in = g.cin * g.h * g.w;
    let mut dx = HostBuf::take(g.b * img_in);
    if dx.is_empty() {
        return dx;
    }
    if per_image == 0 || g.cout == 0 {
        dx.fill(0.0);
        return dx;
    }
    // A few images per task, and at least four tasks per thread where there are enough
    // images (equal shares: the last task may be short).
    let threads = rayon::current_num_threads();
    let per = (TASK_COLUMNS / per_image)
        .min(g.b.div_ceil(4 * threads))
        .clamp(1, g.b);
    // A = W^T: the weight read transposed, in place.
    let al = Layout::new(
        smallvec::smallvec![ckk, g.cout],
        smallvec::smallvec![1, ckk],
        0,
    )
    .expect("the weight's layout");
    let kern = Kernel::detect();
    let task = |(t, dxc): (usize, &mut [f32])| {
        let (b0, nb) = (t * per, dxc.len() / img_in);
        let m = nb * per_image;
        // B = the gradient's columns of images b0..b0+nb, in place.
        let bl = Layout::new(
            smallvec::smallvec![g.cout, m],
            smallvec::smallvec![g.b * per_image, 1],
            b0 * per_image,
        )
        .expect("the gradient's layout");
        let dst = std::sync::Mutex::new(dxc);
        let finish = |rect: &mut Finished| {
            let mut d = dst.lock().expect("one task's gradient");
            write_channels(&mut d, rect, g, vector);
        };
        let mut cols = HostBuf::take(ckk * m);
        // Serial (the images are the parallel split); blocks of whole channels and every
        // column, so each finished rectangle holds everything its channels' rows need.
        let opts = Options {
            kernel: kern,
            parallel: Some(false),
            block: Some((
                panels_per_block(kern.mr(), g.kh * g.kw),
                m.div_ceil(kern.nr()),
            )),
            ..Options::auto()
        };
        matmul::gathered_into(
            &mut cols,
            (w, Operand::Strided(&al)),
            (go, Operand::Strided(&bl)),
            (ckk, g.cout, m),
            &opts,
            Some(&finish),
        );
    };
    let chunk = per * img_in;
    if rayon::current_num_threads() > 1 && g.b > per {
        dx.par_chunks_mut(chunk).enumerate().for_each(task);
    } else {
        dx.chunks_mut(chunk).enumerate().for_each(task);
    }
    dx
}

/// The input gradient's rows of the channels whose product rows `rect` holds (rows
/// `(ci, kh, kw)`, all columns `(image, oh, ow)` of this task's images), into `dx`
/// (`[images, Cin, H, W]`): input position `(y, x)` of channel `ci` sums row
/// `(ci, kh, kw)` at output `(oh, ow)` wherever `y = oh*sh + kh - pad_top` and
/// `x = ow*sw + kw - pad_left`.
fn write_channels(dx: &mut [f32], rect: &Finished, g: &ConvGeometry, vector: bool) {
    let kk = g.kh * g.kw;
    // Whole channels, every column (the blocks `input_grad` asks the product for).
    assert!(rect.row0.is_multiple_of(kk) && rect.rows.is_multiple_of(kk) && rect.col0 == 0);
    let [sh, sw] = g.stride;
    let (pt, pl) = (g.pad[0].0 as isize, g.pad[1].0 as isize);
    let per_image = g.oh * g.ow;
    let (plane, img) = (g.h * g.w, g.cin * g.h * g.w);
    let images = rect.cols / per_image;
    // For each kernel column kw: the output columns ow whose x lies in 0..W, and the x of
    // the first one (x = ow*sw + kw - pl).
    let spans: Vec<(usize, usize, usize)> = (0..g.kw)
        .map(|kw| {
            let need = pl - kw as isize;
            let lo = if need <= 0 {
                0
            } else {
                (need as usize).div_ceil(sw)
            };
            let lim = g.w as isize + pl - kw as isize;
            let hi = if lim <= 0 {
                0
            } else {
                (lim as usize).div_ceil(sw).min(g.ow)
            };
            let x0 = ((lo * sw + kw) as isize - pl).max(0) as usize;
            (lo, hi.max(lo), x0)
        })
        .collect();
    #[cfg(not(target_arch = "x86_64"))]
    let _ = vector;
    #[cfg(target_arch = "x86_64")]
    if vector && sw == 1 && g.kh <= MAX_KH && Kernel::detect() == Kernel::Avx512 {
        // For each input row y and kernel row kh: the output row oh that reads it.
        let ohs: Vec<[Option<usize>; MAX_KH]> = (0..g.h)
            .map(|y| {
                std::array::from_fn(|kh| {
                    let t = y as isize + pt - kh as isize;
                    (kh < g.kh
                        && t >= 0
                        && (t as usize).is_multiple_of(sh)
                        && (t as usize) / sh < g.oh)
                        .then(|| t as usize / sh)
                })
            })
            .collect();
        assert!(rect.cols >= images * per_image);
        let runs = avx512::runs(g);
        for ci in rect.row0 / kk..(rect.row0 + rect.rows) / kk {
            let rows: Vec<&[f32]> = (0..kk).map(|r| rect.row(ci * kk - rect.row0 + r)).collect();
            for im in 0..images {
                let plane_out = &mut dx[im * img + ci * plane..][..plane];
                // SAFETY: AVX-512F is available (`Kernel::detect`); each row holds every
                // column of this task's images (asserted above).
                unsafe { avx512::sum_plane(plane_out, g, &rows, &ohs, &runs, im * per_image) };
            }
        }
        return;
    }
    for ci in rect.row0 / kk..(rect.row0 + rect.rows) / kk {
        let first = ci * kk - rect.row0;
        for im in 0..images {
            for y in 0..g.h {
                let out = &mut dx[im * img + ci * plane + y * g.w..][..g.w];
                out.fill(0.0);
                for kh in 0..g.kh {
                    // The output row oh with oh*sh + kh - pt == y, if any.
                    let t = y as isize + pt - kh as isize;
                    if t < 0 || !(t as usize).is_multiple_of(sh) || t as usize / sh >= g.oh {
                        continue;
                    }
                    let oh = t as usize / sh;
                    for (kw, &(lo, hi, x0)) in spans.iter().enumerate() {
                        let row = rect.row(first + kh * g.kw + kw);
                        let src = &row[im * per_image + oh * g.ow..][lo..hi];
                        if sw == 1 {
                            for (o, &v) in out[x0..x0 + src.len()].iter_mut().zip(src) {
                                *o += v;
                            }
                        } else {
                            for (j, &v) in src.iter().enumerate() {
                                out[x0 + j * sw] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Stride-1 input planes summed in registers: each 16 values of a row add their
/// `KH*KW` products in the plain loops' order (so the bits are the same) and are stored
/// once. (Adding each product into the row in memory stalls every load on the previous
/// pass's shifted stores.)
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::direct::lanes;
    use super::{ConvGeometry, MAX_KH};

    /// For each run of 16 columns of an input row (`x0 = 16c`) and kernel column `kw`
    /// (entry `c * KW + kw`): the output column `s` its lane 0 reads, and the lanes whose
    /// column lies in `0..OW` and inside the row.
    pub(super) fn runs(g: &ConvGeometry) -> Vec<(isize, u16)> {
        let (w, ow, pl) = (g.w, g.ow as isize, g.pad[1].0 as isize);
        (0..w.div_ceil(16) * g.kw)
            .map(|i| {
                let (x0, kw) = (i / g.kw * 16, i % g.kw);
                let s = x0 as isize + pl - kw as isize;
                let n = (w - x0).min(16) as isize;
                (s, lanes(-s, (ow - s).min(n)))
            })
            .collect()
    }

    /// One input plane `out` (`H x W`) of one image: `out[y][x]` sums, over `kh` with
    /// `ohs[y][kh] = Some(oh)` and every `kw`, `rows[kh*KW + kw][at + oh*OW + ow]` where
    /// `ow = x + pad_left - kw` lies in `0..OW`; `runs` as [`runs`] makes it.
    ///
    /// # Safety
    /// AVX-512F available; every row holds the columns `at..at + OH*OW`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sum_plane(
        out: &mut [f32],
        g: &ConvGeometry,
        rows: &[&[f32]],
        ohs: &[[Option<usize>; MAX_KH]],
        runs: &[(isize, u16)],
        at: usize,
    ) {
        let (w, kw_n) = (g.w, g.kw);
        let chunks = w.div_ceil(16);
        assert!(out.len() == g.h * w && rows.len() == g.kh * kw_n && ohs.len() == g.h);
        assert!(runs.len() == chunks * kw_n);
        assert!(rows.iter().all(|r| r.len() >= at + g.oh * g.ow));
        for (orow, ohs) in out.chunks_exact_mut(w).zip(ohs) {
            for c in 0..chunks {
                let mut acc = _mm512_setzero_ps();
                for (kh, oh) in ohs.iter().enumerate().take(g.kh) {
                    let Some(oh) = *oh else { continue };
                    for kw in 0..kw_n {
                        let row = rows[kh * kw_n + kw];
                        let (s, m) = runs[c * kw_n + kw];
                        // Lanes of `m` read columns inside 0..OW of this output row, which
                        // the row holds; masked-off lanes are neither read nor faulted on.
                        let p = row.as_ptr().wrapping_offset((at + oh * g.ow) as isize + s);
                        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, p));
                    }
                }
                let n = (w - 16 * c).min(16) as isize;
                _mm512_mask_storeu_ps(orow.as_mut_ptr().add(16 * c), lanes(0, n), acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_infinite_weight_reaches_only_the_positions_it_touches() {
        // The direct transposed convolution leaves masked lanes out of its sums: an
        // infinite weight makes a position infinite only where the plain loops (which add
        // only real products) do, never NaN at the edges.
        let g = ConvGeometry::new(
            "test",
            &[2, 9, 5, 28],
            &[3, 9, 3, 3],
            [1, 1],
            [(1, 1), (1, 1)],
        )
        .unwrap();
        let go = vec![1.0f32; g.cout * g.b * g.oh * g.ow];
        let mut w = vec![0.5f32; g.cout * g.ckk()];
        w[0] = f32::INFINITY;
        let plain = input_grad_with(&go, &w, &g, false);
        let Some(direct) = super::super::direct::input_grad(&go, &w, &g) else {
            assert_ne!(
                Kernel::detect(),
                Kernel::Avx512,
                "28-wide rows take the direct path"
            );
            eprintln!("skipped: this CPU has no AVX-512F, so the direct path does not run");
            return;
        };
        let kind = |v: f32| (v.is_nan(), v.is_infinite(), v.is_finite());
        assert!(plain.iter().any(|v| v.is_infinite()) && plain.iter().any(|v| v.is_finite()));
        for (i, (p, d)) in plain.iter().zip(direct.iter()).enumerate() {
            assert_eq!(kind(*p), kind(*d), "element {i}: {p} vs {d}");
            if p.is_finite() {
                assert!(
                    (p - d).abs() <= 1e-5 * (1.0 + p.abs()),
                    "element {i}: {p} vs {d}"
                );
            }
        }
    }

    #[test]
    fn the_vector_rows_give_the_plain_loops_bits() {
        if Kernel::detect() != Kernel::Avx512 {
            eprintln!("skipped: this CPU has no AVX-512F, so only the plain loops run");
            return;
        }
        let value = |i: usize| ((i * 7919 + 13) % 1009) as f32 / 97.0 - 5.0;
        // Widths over and under 16 and 32, asymmetric padding, kernels wider than 3, a
        // row stride of 2 (the width's stride is 1: the vector path).
        for (x, wt, stride, pad) in [
            ([3, 2, 9, 37], [4, 2, 3, 5], [1, 1], [(1, 1), (2, 1)]),
            ([2, 3, 11, 16], [5, 3, 2, 3], [2, 1], [(0, 2), (0, 2)]),
            ([5, 1, 6, 7], [2, 1, 6, 7], [1, 1], [(0, 0), (3, 3)]),
        ] {
            let g = ConvGeometry::new("test", &x, &wt, stride, pad).unwrap();
            let go: Vec<f32> = (0..g.cout * g.b * g.oh * g.ow).map(value).collect();
            let w: Vec<f32> = (0..g.cout * g.ckk()).map(|i| value(i + 5)).collect();
            let (v, p) = (
                input_grad_with(&go, &w, &g, true),
                input_grad_with(&go, &w, &g, false),
            );
            let bits = |b: &HostBuf| b.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&v), bits(&p), "{x:?} {wt:?}");
        }
    }
}
