//! `copy` on the CPU: a gather row by row of the last dimension. Contiguous rows go plane
//! by plane (the two innermost dimensions: an odometer step per plane, an inline copy per
//! row); other rows take their position from the odometer of `strided_runs` (stepped once
//! per row, no division per element) and are read by a strided loop. Convolution's
//! window view (`[C, KH, KW, B, OH, OW]` over the padded input: overlapping rows of OW)
//! is this copy, so it must not pay index arithmetic per element.

use rayon::prelude::*;

use super::pool::HostBuf;
use super::PARALLEL_MIN;
use crate::layout::{Layout, StridedCursor};

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

/// Rows `first..` of the layout into `out` (whole rows). With contiguous rows (a window
/// view, a permuted or padded tensor) it walks planes of the two innermost dimensions: the
/// odometer steps once per plane and each row is a short inline copy. Otherwise the
/// shared run walker ([`super::strided_runs`]) hands out each row.
fn copy_rows(out: &mut [f32], x: &[f32], l: &Layout, first: usize) {
    let (shape, strides, r) = (l.shape(), l.strides(), l.dims());
    let row = shape[r - 1];
    if r >= 2 && strides[r - 1] == 1 {
        let (rows, rs) = (shape[r - 2], strides[r - 2]);
        let planes = Layout::new(&shape[..r - 2], &strides[..r - 2], l.offset())
            .expect("a prefix of a valid layout");
        let mut cur = StridedCursor::new(&planes, first / rows);
        let (mut i, mut rr) = (0, first % rows);
        while i < out.len() {
            let base = cur.pos();
            while rr < rows && i < out.len() {
                let p = base + rr * rs;
                copy_short(&mut out[i..i + row], &x[p..p + row]);
                i += row;
                rr += 1;
            }
            rr = 0;
            cur.advance();
        }
        return;
    }
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

/// `dst.copy_from_slice(src)` in fixed-size pieces the compiler inlines as vector moves,
/// so short rows (a 28-wide image row) do not pay for a call to `memcpy`.
#[inline]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    if dst.len() > 256 {
        dst.copy_from_slice(src);
        return;
    }
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (a, b) in (&mut d).zip(&mut s) {
        a.copy_from_slice(b);
    }
    for (a, b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a = *b;
    }
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

    /// The plane walk (contiguous rows) from any starting row, as the parallel split
    /// starts chunks mid-plane: window views with an offset, odd sizes, rows of one value
    /// and rows longer than the inline copy, broadcast planes, a rank-2 layout.
    #[test]
    fn plane_walk_from_every_row() {
        let x: Vec<f32> = (0..20000).map(|v| v as f32).collect();
        let layouts = [
            // [C, KH, KW, B, OH, OW] over a padded [C, B, 9, 11] input, stride 2 rows.
            Layout::new(vec![3, 3, 2, 2, 4, 5], vec![198, 11, 1, 99, 22, 1], 5).unwrap(),
            Layout::new(vec![5, 7, 1], vec![7, 1, 1], 3).unwrap(),
            Layout::new(vec![3, 300], vec![301, 1], 11).unwrap(),
            Layout::new(vec![2, 3, 4, 17], vec![0, 40, 0, 1], 2).unwrap(),
            Layout::new(vec![6, 33], vec![40, 1], 0).unwrap(),
        ];
        for l in layouts {
            let row = l.shape()[l.dims() - 1];
            let rows = l.size() / row;
            let mut idx = vec![0; l.dims()];
            for first in 0..rows {
                let mut out = vec![f32::NAN; (rows - first) * row];
                copy_rows(&mut out, &x, &l, first);
                for (i, &g) in out.iter().enumerate() {
                    crate::layout::to_index(first * row + i, l.shape(), &mut idx);
                    assert_eq!(g, x[l.position(&idx)], "{l:?} from row {first} at {i}");
                }
            }
        }
    }
}
