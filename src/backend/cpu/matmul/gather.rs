//! Packing B's panels from a gathered operand, where element `(p, j)` lies at
//! `rows[p] + cols[j]` (a convolution's window view read as im2col columns). The columns
//! of a panel fall into runs of consecutive positions (an output row of the window, or a
//! kernel row of the transposed window), so a panel row is a few short copies: with
//! AVX-512 (the AVX-512 kernel's panels), one masked load per run and one store per 16
//! columns, the lanes of each run read from one pointer; elsewhere a plain loop per run.

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

/// Pack the `cols.len()` columns and `rows.len()` rows of B into panels `nr` wide stored
/// one after the other, each row by row (`nr` values per row; for the AVX-512 kernel's
/// 32-wide panels, the values past the last column up to a multiple of 16 are zeros;
/// others are left as they are). The AVX2 and portable kernels' panels take the plain loop
/// (tests run both on one machine). The block is filled row by row, all its panels at
/// once, so each row of B is read once, front to back.
pub(super) fn pack_b(b: &[f32], rows: &[usize], cols: &[usize], nr: usize, block: &mut [f32]) {
    let (Some(&rmax), Some(&cmax)) = (rows.iter().max(), cols.iter().max()) else {
        return;
    };
    let kc = rows.len();
    // Every element read lies inside `b`, every panel inside `block` (the unchecked reads
    // and writes below rely on it).
    assert!(rmax + cmax < b.len(), "gathered operand inside its storage");
    assert!(block.len() >= cols.len().div_ceil(nr) * kc * nr);
    #[cfg(target_arch = "x86_64")]
    if nr == 32 && std::arch::is_x86_feature_detected!("avx512f") {
        // (where in a panel row the group's 16 values go, its pieces)
        let groups: Vec<(usize, avx512::Pieces)> = cols
            .chunks(16)
            .enumerate()
            .map(|(g, c)| ((g / 2) * kc * nr + 16 * (g % 2), avx512::pieces(c)))
            .collect();
        // SAFETY: AVX-512F is available; every lane loaded is an element of a run, inside
        // `b` (asserted above), the others masked off; each store writes 16 values of row
        // p of panel q, inside the block as `16 * halves <= nr` and it holds every panel.
        unsafe { avx512::pack_rows(b.as_ptr(), rows, &groups, nr, block.as_mut_ptr()) };
        return;
    }
    let panels: SmallVec<[_; 32]> = cols.chunks(nr).map(runs).collect();
    for (p, &r) in rows.iter().enumerate() {
        for (q, runs) in panels.iter().enumerate() {
            let dst = &mut block[q * kc * nr + p * nr..][..nr];
            for &(j, len, c) in runs {
                for (d, s) in dst[j..j + len].iter_mut().zip(&b[r + c..r + c + len]) {
                    *d = *s;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use smallvec::SmallVec;

    /// The runs within one 16-column group: a lane mask and the position lane 0 would
    /// read (`position of the run - its first lane`, which may lie before the row).
    pub(super) type Pieces = SmallVec<[(u16, isize); 4]>;

    /// The pieces of a group of up to 16 columns: a run of consecutive positions is one
    /// piece, lane `l` of it reading `position of lane 0 of the piece + l`.
    pub(super) fn pieces(cols: &[usize]) -> Pieces {
        let mut out = Pieces::new();
        let mut prev = usize::MAX;
        for (l, &c) in cols.iter().enumerate() {
            match out.last_mut() {
                Some((mask, _)) if prev.wrapping_add(1) == c => *mask |= 1 << l,
                _ => out.push((1 << l, c as isize - l as isize)),
            }
            prev = c;
        }
        out
    }

    /// Row `p` of every panel: for each 16-column group, the masked loads of its pieces
    /// from `b + rows[p]`, then one store at `block + at + p * nr`.
    ///
    /// # Safety
    /// AVX-512F available; for every row and piece, the unmasked lanes address elements
    /// of `b`; every group's 16 values of every row lie inside the block.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack_rows(
        b: *const f32,
        rows: &[usize],
        groups: &[(usize, Pieces)],
        nr: usize,
        block: *mut f32,
    ) {
        for (p, &r) in rows.iter().enumerate() {
            let src = b.wrapping_add(r);
            for (at, pieces) in groups {
                let mut v = _mm512_setzero_ps();
                for &(mask, off) in pieces {
                    v = _mm512_mask_loadu_ps(v, mask, src.wrapping_offset(off));
                }
                _mm512_storeu_ps(block.add(at + p * nr), v);
            }
        }
    }
}
