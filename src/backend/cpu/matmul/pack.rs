//! Packing: one operand's matrix per batch ([`Mat`]), and A and B copied into the panels
//! the micro-kernels read (A in row panels `MR` tall stored column by column, B in column
//! panels `NR` wide stored row by row, zero-padded).

use super::*;

/// One matmul operand as the CPU reads it: a batch of strided matrices (a [`Layout`]
/// `[..batch, rows, cols]`), or one matrix whose element `(r, c)` lies at
/// `rows[r] + cols[c]` (a [`MatrixView`](crate::backend::MatrixView) of any rank, such as
/// a convolution's window view: packed straight from the view, never copied whole).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Operand<'t> {
    /// `[..batch, rows, cols]` through a layout.
    Strided(&'t Layout),
    /// One matrix, by the position of every row and every column.
    Gathered {
        /// The position of each row.
        rows: &'t [usize],
        /// The position of each column, added to the row's.
        cols: &'t [usize],
    },
}

impl<'t> Operand<'t> {
    /// The matrix of batch `z` (no allocation: small products should not pay for their
    /// setup).
    #[inline]
    pub(super) fn mat(&self, z: usize) -> Mat<'t> {
        match *self {
            Operand::Strided(l) => mat(l, z),
            Operand::Gathered { rows, cols } => Mat {
                base: 0,
                rs: 0,
                cs: 0,
                gather: Some((rows, cols)),
            },
        }
    }

    /// Whether every batch reads the same matrix (pack it once).
    #[inline]
    pub(super) fn shared(&self) -> bool {
        match self {
            Operand::Strided(l) => shared(l),
            Operand::Gathered { .. } => true,
        }
    }
}

/// One operand's matrix: base position and row / column strides, or (gathered) the
/// positions of its rows and columns, where `base`, `rs` and `cs` are unused.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mat<'t> {
    pub(super) base: usize,
    pub(super) rs: usize,
    pub(super) cs: usize,
    pub(super) gather: Option<(&'t [usize], &'t [usize])>,
}

impl<'t> Mat<'t> {
    /// The same matrix from row `r` on.
    #[inline]
    pub(super) fn skip_rows(&self, r: usize) -> Mat<'t> {
        match self.gather {
            Some((rows, cols)) => Mat {
                gather: Some((&rows[r..], cols)),
                ..*self
            },
            None => Mat {
                base: self.base + r * self.rs,
                ..*self
            },
        }
    }
}

/// The matrix of batch `z` of a `[..batch, r, c]` layout.
#[inline]
pub(super) fn mat(l: &Layout, mut z: usize) -> Mat<'static> {
    let r = l.dims();
    let mut base = l.offset();
    // Batch dimensions from the last: the row-major ordinal's digits.
    for (&d, &st) in l.shape()[..r - 2].iter().zip(l.strides()).rev() {
        base += (z % d) * st;
        z /= d;
    }
    Mat {
        base,
        rs: l.strides()[r - 2],
        cs: l.strides()[r - 1],
        gather: None,
    }
}

/// Whether every batch of `l` reads the same matrix (a broadcast batch: pack it once).
#[inline]
pub(super) fn shared(l: &Layout) -> bool {
    let nb = l.dims() - 2;
    l.shape()[..nb]
        .iter()
        .zip(l.strides())
        .all(|(&d, &st)| d <= 1 || st == 0)
}

/// Pack `h` rows from `r0`, all `k` columns of A, into one panel stored column by column
/// (`mr` values per column, zero-padded past row `h`).
#[inline]
pub(super) fn pack_a(
    a: &[f32],
    ma: &Mat,
    r0: usize,
    h: usize,
    k: usize,
    mr: usize,
    panel: &mut [f32],
) {
    if let Some((rows, cols)) = ma.gather {
        for (ii, &row) in rows[r0..r0 + h].iter().enumerate() {
            for (p, &col) in cols[..k].iter().enumerate() {
                panel[p * mr + ii] = a[row + col];
            }
        }
        return;
    }
    let base = ma.base + r0 * ma.rs;
    if ma.cs <= ma.rs {
        // Rows contiguous (or nearly): read along rows.
        for ii in 0..h {
            let row = base + ii * ma.rs;
            for p in 0..k {
                panel[p * mr + ii] = a[row + p * ma.cs];
            }
        }
    } else {
        for p in 0..k {
            let col = base + p * ma.cs;
            for ii in 0..h {
                panel[p * mr + ii] = a[col + ii * ma.rs];
            }
        }
    }
}

/// Pack `w` columns from `c0`, all `k` rows of B, into one panel stored row by row (`nr`
/// values per row, zero-padded past column `w`).
#[inline]
pub(super) fn pack_b(
    b: &[f32],
    mb: &Mat,
    c0: usize,
    w: usize,
    k: usize,
    nr: usize,
    panel: &mut [f32],
) {
    if let Some((rows, cols)) = mb.gather {
        gather::pack_b(b, &rows[..k], &cols[c0..c0 + w], nr, panel);
        return;
    }
    let base = mb.base + c0 * mb.cs;
    if mb.cs == 1 {
        for p in 0..k {
            let s = base + p * mb.rs;
            panel[p * nr..p * nr + w].copy_from_slice(&b[s..s + w]);
        }
    } else if transposed_by_gather(mb, nr, k) {
        let (rows, cols) = positions(mb, c0, w, k);
        gather::pack_b(b, &rows, &cols, nr, panel);
    } else if mb.rs < mb.cs {
        // Transposed B: read down its columns, which are contiguous, in blocks of rows
        // so the panel rows written stay in L1.
        for p0 in (0..k).step_by(64) {
            let p1 = (p0 + 64).min(k);
            for jj in 0..w {
                let col = base + jj * mb.cs;
                for p in p0..p1 {
                    panel[p * nr + jj] = b[col + p * mb.rs];
                }
            }
        }
    } else {
        for p in 0..k {
            let row = base + p * mb.rs;
            for jj in 0..w {
                panel[p * nr + jj] = b[row + jj * mb.cs];
            }
        }
    }
}

/// Whether a transposed B (columns contiguous) with `k` rows packs as a gathered operand:
/// the AVX-512 kernel's panels, 16 rows down each column at a time with a register
/// transpose, where the rows are enough to pay for listing the positions.
fn transposed_by_gather(mb: &Mat, nr: usize, k: usize) -> bool {
    mb.gather.is_none()
        && mb.cs != 1
        && mb.rs < mb.cs
        && nr == 32
        && k >= 64
        && Kernel::Avx512.is_available()
}

/// The positions of rows `0..k` and columns `c0..c0 + w` of a strided B.
fn positions(mb: &Mat, c0: usize, w: usize, k: usize) -> (Vec<usize>, Vec<usize>) {
    let base = mb.base + c0 * mb.cs;
    (
        (0..k).map(|p| base + p * mb.rs).collect(),
        (0..w).map(|j| j * mb.cs).collect(),
    )
}

/// Pack rows `0..kc` of the column panels `c0 / nr ..` covering columns `c0..c1` of B
/// into `block`, panel after panel (each `kc x nr`, stored row by row like [`pack_b`]).
/// Rows of B contiguous: each row is read once, front to back, so the hardware
/// prefetcher follows it however far apart the rows are; otherwise panel by panel.
#[inline]
pub(super) fn pack_b_block(
    b: &[f32],
    mb: &Mat,
    (c0, c1): (usize, usize),
    kc: usize,
    nr: usize,
    block: &mut [f32],
) {
    if let Some((rows, cols)) = mb.gather {
        gather::pack_b(b, &rows[..kc], &cols[c0..c1], nr, block);
        return;
    }
    if transposed_by_gather(mb, nr, kc) {
        // The whole block at once (one set of positions for all its panels).
        let (rows, cols) = positions(mb, c0, c1 - c0, kc);
        gather::pack_b(b, &rows, &cols, nr, block);
        return;
    }
    if mb.cs != 1 {
        for (j, panel) in (c0..c1).step_by(nr).zip(block.chunks_mut(kc * nr)) {
            pack_b(b, mb, j, nr.min(c1 - j), kc, nr, panel);
        }
        return;
    }
    for p in 0..kc {
        let row = &b[mb.base + p * mb.rs + c0..mb.base + p * mb.rs + c1];
        for (q, src) in row.chunks(nr).enumerate() {
            let at = q * kc * nr + p * nr;
            block[at..at + src.len()].copy_from_slice(src);
        }
    }
}
