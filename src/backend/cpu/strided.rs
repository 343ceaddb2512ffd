//! The CPU's strided walk: the runs of a layout's innermost dimension, shared by map,
//! zip, copy and the fused interpreter's gathers.

use crate::layout::{Layout, StridedCursor};

/// Calls `f(i, p, s, n)` for each run of `l`'s innermost dimension among its row-major
/// elements `start..start + len`: `n` elements from output offset `i`, read from storage
/// positions `p, p + s, ...`. Strided loops index plainly within a run and step the
/// odometer once per run, not once per element.
///
/// Where the innermost rows are short (a pooling window's 2 or 3 values), the two or three
/// innermost dimensions are walked by plain loops and the odometer steps once per block
/// of them, not once per short row.
pub(crate) fn strided_runs(
    l: &Layout,
    start: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let (shape, strides) = (l.shape(), l.strides());
    let r = shape.len();
    if r < 2 || shape[r - 1] >= SHORT_ROW {
        return runs_by_row(l, start, len, f);
    }
    let q = if r >= 3 && shape[r - 1] * shape[r - 2] < 4 * SHORT_ROW {
        3
    } else {
        2
    };
    let (inner, ist) = (&shape[r - q..], &strides[r - q..]);
    let block: usize = inner.iter().product();
    if block == 0 || len == 0 {
        return;
    }
    // The partial block at the start, whole blocks, then the partial block at the end.
    let head = ((block - start % block) % block).min(len);
    runs_by_row(l, start, head, &mut f);
    let mut i = head;
    let full = (len - i) / block;
    if full > 0 {
        let outer = Layout::new(&shape[..r - q], &strides[..r - q], l.offset())
            .expect("a layout's outer dimensions are a layout");
        let mut cur = StridedCursor::new(&outer, (start + i) / block);
        let n0 = inner[q - 1];
        for _ in 0..full {
            let p = cur.pos();
            if q == 2 {
                for a in 0..inner[0] {
                    f(i, p + a * ist[0], ist[1], n0);
                    i += n0;
                }
            } else {
                for a in 0..inner[0] {
                    for b in 0..inner[1] {
                        f(i, p + a * ist[0] + b * ist[1], ist[2], n0);
                        i += n0;
                    }
                }
            }
            cur.advance();
        }
    }
    runs_by_row(l, start + i, len - i, |j, p, s, n| f(i + j, p, s, n));
}

/// Rows shorter than this take [`strided_runs`]' block walk.
const SHORT_ROW: usize = 16;

/// [`strided_runs`] one innermost row at a time.
fn runs_by_row(
    l: &Layout,
    start: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    if len == 0 {
        return;
    }
    let mut cur = StridedCursor::new(l, start);
    let mut i = 0;
    while i < len {
        let n = cur.row_left().min(len - i);
        f(i, cur.pos(), cur.inner_stride(), n);
        cur.advance_in_row(n);
        i += n;
    }
}
