//! Max pooling on the CPU ([`Backend::max_pool2d`](crate::backend::Backend::max_pool2d)
//! and its backward): one pass each, parallel over rows of windows, reading the input
//! (or gradient) through its strides, where the composed default makes four passes
//! forward over a copy of the windows.

use rayon::prelude::*;

use super::pool::HostBuf;
use super::PARALLEL_MIN;
use crate::backend::pool2d::Windows;
use crate::layout::Layout;

/// Rows of output handed to one rayon task at least.
fn rows_per_task(rows: usize, row_len: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads == 1 || rows * row_len < PARALLEL_MIN {
        return rows.max(1);
    }
    rows.div_ceil(4 * threads).max(1)
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
        for (r, (vr, fr)) in vs.chunks_mut(nw).zip(fs.chunks_mut(nw)).enumerate() {
            // Row (b, c, oh) of windows.
            let row = t * per + r;
            let (bc, oh) = (row / nh, row % nh);
            let base = l.offset() + (bc / c) * st[0] + (bc % c) * st[1] + oh * kh * st[2];
            for (ow, (v, f)) in vr.iter_mut().zip(fr.iter_mut()).enumerate() {
                let at = base + ow * kw * st[3];
                let (mut best, mut pos) = (x[at], 0);
                for i in 0..kh {
                    for j in 0..kw {
                        let e = x[at + i * st[2] + j * st[3]];
                        if !best.is_nan() && (e.is_nan() || e > best) {
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
    let rows = n / wd;
    let per = rows_per_task(rows, wd);
    let task = |(t, chunk): (usize, &mut [f32])| {
        for (r, o) in chunk.chunks_mut(wd).enumerate() {
            // Row (b, c, y) of the input.
            let row = t * per + r;
            let (bc, y) = (row / h, row % h);
            let (oh, i) = (y / kh, y % kh);
            let gbase = gl.offset() + (bc / c) * st[0] + (bc % c) * st[1] + oh * st[2];
            let fbase = (bc * nh + oh) * nw;
            for (ow, cells) in o.chunks_mut(kw).enumerate() {
                let at = first[fbase + ow] as usize;
                let gv = g[gbase + ow * st[3]];
                for (j, v) in cells.iter_mut().enumerate() {
                    *v = if at == i * kw + j { gv } else { 0.0 };
                }
            }
        }
    };
    if per >= rows {
        out.chunks_mut(per * wd).enumerate().for_each(task);
    } else {
        out.par_chunks_mut(per * wd).enumerate().for_each(task);
    }
    out
}
