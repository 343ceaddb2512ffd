//! Packing B's panels from a gathered operand, where element `(p, j)` lies at
//! `rows[p] + cols[j]` (a convolution's window view read as im2col columns): the columns
//! of a panel fall into runs of consecutive positions (an output row of the window), so a
//! panel row is a few short copies; where runs are short (the transposed window of a
//! weight gradient), the panel is filled column by column, down the rows' runs instead.

use smallvec::SmallVec;

/// Runs of consecutive positions among `cols`: `(first column, length, position)`.
fn runs(cols: &[usize]) -> SmallVec<[(usize, usize, usize); 8]> {
    let mut out: SmallVec<[(usize, usize, usize); 8]> = SmallVec::new();
    for (j, &c) in cols.iter().enumerate() {
        match out.last_mut() {
            Some((j0, len, c0)) if *c0 + *len == c && *j0 + *len == j => *len += 1,
            _ => out.push((j, 1, c)),
        }
    }
    out
}

/// Pack the `cols.len()` columns and `rows.len()` rows of B into one panel stored row by
/// row (`nr` values per row; values past the last column are left as they are).
pub(super) fn pack_b(b: &[f32], rows: &[usize], cols: &[usize], nr: usize, panel: &mut [f32]) {
    let runs = runs(cols);
    if runs.len() * 4 > cols.len() {
        // Short runs along a panel row: walk down each column instead.
        for (j, &c) in cols.iter().enumerate() {
            for (p, &r) in rows.iter().enumerate() {
                panel[p * nr + j] = b[r + c];
            }
        }
        return;
    }
    for (p, &r) in rows.iter().enumerate() {
        let dst = &mut panel[p * nr..p * nr + nr];
        for &(j, len, c) in &runs {
            dst[j..j + len].copy_from_slice(&b[r + c..r + c + len]);
        }
    }
}
