//! Packing B's panels from a gathered operand, where element `(p, j)` lies at
//! `rows[p] + cols[j]` (a convolution's window view read as im2col columns). The columns
//! of a panel fall into runs of consecutive positions (an output row of the window, or a
//! kernel row of the transposed window), so a panel row is a few short copies: with
//! AVX-512 (the AVX-512 kernel's panels), one masked load per run and one store per 16
//! columns, the lanes of each run read from one pointer; elsewhere a plain loop per run.

use smallvec::SmallVec;

/// Below this mean run length along a panel row, packing reads down the columns instead.
#[cfg(target_arch = "x86_64")]
const SHORT_RUN: usize = 4;

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
        let pieces: usize = groups.iter().map(|(_, p)| p.len()).sum();
        if pieces * SHORT_RUN > cols.len() && rows.len() >= 16 {
            // Short runs along the columns (a transposed window: a kernel row's few
            // values): read 16 rows down each column instead, where runs are long, and
            // transpose 16 x 16 in registers.
            // SAFETY: AVX-512F is available; every lane loaded is an element of B inside
            // `b` (asserted above), the others masked off; the stores stay inside the
            // block's panels as above.
            unsafe { avx512::pack_transposed(b.as_ptr(), rows, cols, nr, block.as_mut_ptr()) };
            return;
        }
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

    /// The pack of [`super::pack_b`] read down the columns: for each 16 rows and 16
    /// columns, 16 loads (one per column, its 16 rows by the rows' pieces), a 16 x 16
    /// transpose, 16 stores (one per row, into its panel).
    ///
    /// # Safety
    /// AVX-512F available; every element `rows[p] + cols[j]` lies inside `b`; the block
    /// holds `cols.len().div_ceil(nr)` panels of `rows.len() * nr` values; `nr` is a
    /// multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack_transposed(
        b: *const f32,
        rows: &[usize],
        cols: &[usize],
        nr: usize,
        block: *mut f32,
    ) {
        let kc = rows.len();
        for p0 in (0..kc).step_by(16) {
            let n = (kc - p0).min(16);
            let down = pieces(&rows[p0..p0 + n]);
            for g0 in (0..cols.len()).step_by(16) {
                let mut v = [_mm512_setzero_ps(); 16];
                for (x, &c) in v.iter_mut().zip(&cols[g0..]) {
                    let base = b.wrapping_add(c);
                    for &(mask, off) in &down {
                        *x = _mm512_mask_loadu_ps(*x, mask, base.wrapping_offset(off));
                    }
                }
                transpose16(&mut v);
                let at = (g0 / nr) * kc * nr + g0 % nr;
                for (t, x) in v.iter().take(n).enumerate() {
                    _mm512_storeu_ps(block.add(at + (p0 + t) * nr), *x);
                }
            }
        }
    }

    /// Transpose the 16 x 16 matrix whose rows are `v` in place (lane `j` of `v[t]` becomes
    /// lane `t` of `v[j]`): unpack pairs, then shuffle within and across 128-bit lanes.
    #[target_feature(enable = "avx512f")]
    fn transpose16(v: &mut [__m512; 16]) {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
        }
        for i in 0..4 {
            let (a, b) = (t[4 * i], t[4 * i + 2]);
            let (c, d) = (t[4 * i + 1], t[4 * i + 3]);
            v[4 * i] = _mm512_shuffle_ps::<0x44>(a, b);
            v[4 * i + 1] = _mm512_shuffle_ps::<0xEE>(a, b);
            v[4 * i + 2] = _mm512_shuffle_ps::<0x44>(c, d);
            v[4 * i + 3] = _mm512_shuffle_ps::<0xEE>(c, d);
        }
        for i in 0..4 {
            t[i] = _mm512_shuffle_f32x4::<0x88>(v[i], v[i + 4]);
            t[i + 4] = _mm512_shuffle_f32x4::<0xDD>(v[i], v[i + 4]);
            t[i + 8] = _mm512_shuffle_f32x4::<0x88>(v[i + 8], v[i + 12]);
            t[i + 12] = _mm512_shuffle_f32x4::<0xDD>(v[i + 8], v[i + 12]);
        }
        for i in 0..8 {
            v[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[i + 8]);
            v[i + 8] = _mm512_shuffle_f32x4::<0xDD>(t[i], t[i + 8]);
        }
    }
}
