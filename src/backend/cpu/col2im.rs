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
            write_channels(&mut d, rect, g);
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
fn write_channels(dx: &mut [f32], rect: &Finished, g: &ConvGeometry) {
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
