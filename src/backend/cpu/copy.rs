//! `copy` on the CPU: a gather row by row of the last dimension. The position of each row
//! comes from the odometer of `strided_runs` (stepped once per row, no division per
//! element), and the row itself is a slice copy when its stride is 1, else a strided loop. Convolution's
//! window view (`[B, C, KH, KW, OH, OW]` over the padded input: overlapping rows of OW)
//! is this copy, so it must not pay index arithmetic per element.

use rayon::prelude::*;

use super::pool::HostBuf;
use super::PARALLEL_MIN;
use crate::layout::Layout;

/// The elements `l` addresses in `x`, contiguous.
pub fn copy(x: &[f32], l: &Layout) -> HostBuf {
    let mut out = HostBuf::take(l.size());
    let r = l.dims();
    if out.is_empty() {
        return out;
    }
    if r == 0 {
        out[0] = x[l.offset()];
        return out;
    }
    let row = l.shape()[r - 1];
    let rows = out.len() / row;
    let threads = rayon::current_num_threads().max(1);
    if out.len() < PARALLEL_MIN || threads == 1 || rows < 2 {
        copy_rows(&mut out, x, l, 0);
        return out;
    }
    let per = rows.div_ceil(threads * 4);
    out.par_chunks_mut(per * row)
        .enumerate()
        .for_each(|(i, chunk)| copy_rows(chunk, x, l, i * per));
    out
}

/// Rows `first..` of the layout into `out` (whole rows): the shared run walker
/// ([`super::strided_runs`]) hands out each row, a slice copy when its stride is 1.
fn copy_rows(out: &mut [f32], x: &[f32], l: &Layout, first: usize) {
    let row = l.shape()[l.dims() - 1];
    super::strided_runs(l, first * row, out.len(), |i, p, s, n| {
        let dst = &mut out[i..i + n];
        if s == 1 {
            dst.copy_from_slice(&x[p..p + n]);
        } else {
            for (k, v) in dst.iter_mut().enumerate() {
                *v = x[p + k * s];
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the layout's own position function, on permuted, broadcast, overlapping
    /// (window) and offset layouts, serial and parallel.
    #[test]
    fn copy_matches_positions() {
        let x: Vec<f32> = (0..5000).map(|v| v as f32).collect();
        let layouts = [
            Layout::new(vec![3, 4, 5], vec![1, 3, 12], 7).unwrap(),
            Layout::new(vec![2, 3, 2, 2, 4, 4], vec![150, 25, 5, 1, 5, 1], 3).unwrap(),
            Layout::new(vec![4, 1, 6], vec![0, 9, 2], 1).unwrap(),
            Layout::new(vec![7], vec![3], 2).unwrap(),
            Layout::new(vec![40, 30, 3], vec![1, 40, 0], 0).unwrap(),
            Layout::new(vec![3, 0, 2], vec![1, 1, 1], 0).unwrap(),
        ];
        for l in layouts {
            let got = copy(&x, &l);
            let mut idx = vec![0; l.dims()];
            for (i, &g) in got.iter().enumerate() {
                crate::layout::to_index(i, l.shape(), &mut idx);
                assert_eq!(g, x[l.position(&idx)], "{l:?} at {i}");
            }
            assert_eq!(got.len(), l.size());
        }
    }
}
