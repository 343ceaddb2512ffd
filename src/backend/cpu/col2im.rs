//! The input gradient of a convolution on the CPU
//! ([`Backend::conv2d_input_grad`](crate::backend::Backend::conv2d_input_grad)): for a
//! few images at a time, `W^T [Cin*KH*KW, Cout] @ grad [Cout, images*OH*OW]`, each
//! finished row of a tile added straight into the input's gradient at the positions its
//! window read (col2im) while it is in cache. Nothing is padded or gathered: the product's
//! B is the gradient itself, read in place, and its depth is `Cout` (the transposed
//! convolution's is `Cout*KH*KW` over a padded copy).
//!
//! Images go to rayon tasks; each task owns its images' gradient, so the additions are
//! race-free and their order fixed (the same result on any number of threads).

use std::sync::Mutex;

use rayon::prelude::*;

use super::matmul::{self, Operand, Options};
use super::pool::HostBuf;
use crate::backend::conv2d::ConvGeometry;
use crate::layout::Layout;

/// Product columns one task aims for (a few images of a small layer, one of a large).
const TASK_COLUMNS: usize = 2048;

/// The input gradient `[B, Cin, H, W]` (contiguous) from the output's gradient `go`
/// (`[Cout, B, OH, OW]`) and the weight `w` (`[Cout, Cin*KH*KW]`), both contiguous.
pub fn input_grad(go: &[f32], w: &[f32], g: &ConvGeometry) -> HostBuf {
    let (ckk, per_image) = (g.ckk(), g.oh * g.ow);
    let img_in = g.cin * g.h * g.w;
    let mut dx = HostBuf::take(g.b * img_in);
    if dx.is_empty() {
        return dx;
    }
    let per = (TASK_COLUMNS / per_image.max(1)).clamp(1, g.b);
    // A = W^T: the weight read transposed, in place.
    let al = Layout::new(
        smallvec::smallvec![ckk, g.cout],
        smallvec::smallvec![1, ckk],
        0,
    )
    .expect("the weight's layout");
    let task = |(t, dxc): (usize, &mut [f32])| {
        dxc.fill(0.0);
        let (b0, nb) = (t * per, dxc.len() / img_in);
        let m = nb * per_image;
        // B = the gradient's columns of images b0..b0+nb, in place.
        let bl = Layout::new(
            smallvec::smallvec![g.cout, m],
            smallvec::smallvec![g.b * per_image, 1],
            b0 * per_image,
        )
        .expect("the gradient's layout");
        let dst = Mutex::new(dxc);
        let finish = |at: usize, row: &mut [f32]| {
            let mut d = dst.lock().expect("one task's gradient");
            add_row(&mut d, row, at / m, at % m, g);
        };
        let mut cols = HostBuf::take(ckk * m);
        let opts = Options {
            parallel: Some(false),
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

/// Add row `r` (= `(ci, kh, kw)`) of the product, its columns `c0..c0 + row.len()` (=
/// `(image, oh, ow)` of this task's images), into `dx` (`[images, Cin, H, W]`) at the
/// input positions those windows read: `(oh*sh + kh - pad_top, ow*sw + kw - pad_left)`,
/// where inside the input.
fn add_row(dx: &mut [f32], row: &[f32], r: usize, c0: usize, g: &ConvGeometry) {
    let (ci, kh, kw) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
    let [sh, sw] = g.stride;
    let (pt, pl) = (g.pad[0].0 as isize, g.pad[1].0 as isize);
    let (h, w) = (g.h as isize, g.w as isize);
    let per_image = g.oh * g.ow;
    let (plane, img) = (g.h * g.w, g.cin * g.h * g.w);
    // The output columns whose x = ow*sw + kw - pl lies in 0..w: ow in ow_lo..ow_hi.
    let need = pl - kw as isize;
    let ow_lo = if need <= 0 {
        0
    } else {
        (need as usize).div_ceil(sw)
    };
    let lim = w + pl - kw as isize;
    let ow_hi = if lim <= 0 {
        0
    } else {
        (lim as usize).div_ceil(sw).min(g.ow)
    };
    // Walk the segment output row by output row: (image, oh) and the first ow, found
    // once, then stepped (no division per output row).
    let (mut im, rem) = (c0 / per_image, c0 % per_image);
    let (mut oh, mut ow0) = (rem / g.ow, rem % g.ow);
    let mut c = c0;
    let end = c0 + row.len();
    while c < end {
        let run = (g.ow - ow0).min(end - c);
        let y = (oh * sh) as isize + kh as isize - pt;
        let (lo, hi) = (ow_lo.max(ow0), ow_hi.min(ow0 + run));
        if (0..h).contains(&y) && lo < hi {
            let base = im * img + ci * plane + y as usize * g.w;
            let src = &row[c - c0 + (lo - ow0)..c - c0 + (hi - ow0)];
            // x of column ow: ow*sw + kw - pl (>= 0 from ow_lo on).
            let x0 = ((lo * sw + kw) as isize - pl) as usize;
            if sw == 1 {
                let dst = &mut dx[base + x0..][..src.len()];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d += v;
                }
            } else {
                for (t, &v) in src.iter().enumerate() {
                    dx[base + x0 + t * sw] += v;
                }
            }
        }
        c += run;
        ow0 = 0;
        oh += 1;
        if oh == g.oh {
            (oh, im) = (0, im + 1);
        }
    }
}
