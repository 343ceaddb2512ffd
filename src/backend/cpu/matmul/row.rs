//! The row kernel: one row of A times B (a vector times a matrix), written once over the
//! vector operations of [`Lanes`] that each instruction set implements (AVX-512F, AVX2 +
//! FMA, portable). Each kernel is the generic body compiled under its target features.
//!
//! Two modes: with the outputs held in [`ROW_REGS`] registers over the whole depth (when
//! they fit, or when the depth is short), or streaming B row by row, [`ROW_STEPS`] rows per
//! pass over the output, so that each of B's rows is read front to back (a wide matrix's
//! rows lie a page or more apart, where a register block's stripes defeat the prefetcher).

/// One row-kernel call: `c[j] = sum_p a[p * a_cs] * b[p * b_rs + j]` for `j < w`.
pub(super) struct RowTile {
    /// Depth.
    pub k: usize,
    /// A's row, step p at `a[p * a_cs]`.
    pub a: *const f32,
    pub a_cs: usize,
    /// B's rows: step p holds the columns at `b[p * b_rs ..]` (`w` readable values).
    pub b: *const f32,
    pub b_rs: usize,
    /// The `w` outputs (overwritten).
    pub c: *mut f32,
    pub w: usize,
}

/// A row kernel.
pub(super) type RowFn = unsafe fn(&RowTile);

/// Vector registers of output a row kernel holds.
const ROW_REGS: usize = 8;
/// Rows of B one streaming pass adds into the output.
const ROW_STEPS: usize = 8;
/// Deepest product run with its outputs in registers when they do not fit in them.
const ROW_REGISTER_MAX_DEPTH: usize = 16;

use super::lanes::{Lanes, Portable};

/// Output columns a row kernel with registers of `lanes` values holds.
pub(super) const fn width(lanes: usize) -> usize {
    lanes * ROW_REGS
}

/// The row kernel over `V`; inlined into each instruction set's entry point.
///
/// # Safety
/// As [`Lanes`] says for `V`; the pointers in `t` must be valid as [`RowTile`] describes.
#[inline(always)]
unsafe fn run<V: Lanes>(t: &RowTile) {
    let n = V::N;
    if t.w <= width(n) || t.k <= ROW_REGISTER_MAX_DEPTH {
        for j in (0..t.w).step_by(width(n)) {
            let rem = t.w - j;
            let masks: [V::Mask; ROW_REGS] =
                std::array::from_fn(|r| unsafe { V::mask(rem.saturating_sub(n * r)) });
            let mut acc = [V::zero(); ROW_REGS];
            let (mut a, mut b) = (t.a, t.b.wrapping_add(j));
            for _ in 0..t.k {
                let av = V::splat(*a);
                for (r, c) in acc.iter_mut().enumerate() {
                    *c = V::mul_add(av, V::load(b.wrapping_add(n * r), masks[r]), *c);
                }
                a = a.wrapping_add(t.a_cs);
                b = b.wrapping_add(t.b_rs);
            }
            for (r, c) in acc.iter().enumerate() {
                c.store(t.c.wrapping_add(j + n * r), masks[r]);
            }
        }
        return;
    }
    let mut p = 0;
    while p < t.k {
        let steps = (t.k - p).min(ROW_STEPS);
        let av: [V; ROW_STEPS] = std::array::from_fn(|i| unsafe {
            V::splat(if i < steps {
                *t.a.add((p + i) * t.a_cs)
            } else {
                0.0
            })
        });
        let rows: [*const f32; ROW_STEPS] =
            std::array::from_fn(|i| t.b.wrapping_add((p + i) * t.b_rs));
        for j in (0..t.w).step_by(n) {
            let m = V::mask(t.w - j);
            let o = t.c.wrapping_add(j);
            // From +0 on the first pass, so every kernel sums -0 products alike.
            let mut c = if p == 0 { V::zero() } else { V::load(o, m) };
            for i in 0..steps {
                c = V::mul_add(av[i], V::load(rows[i].wrapping_add(j), m), c);
            }
            c.store(o, m);
        }
        p += steps;
    }
}

/// The portable row kernel (64 columns in registers).
///
/// # Safety
/// The pointers in `t` must be valid as [`RowTile`] describes.
pub(super) unsafe fn portable(t: &RowTile) {
    run::<Portable>(t)
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{avx2, avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::lanes::{Ymm, Zmm};
    use super::{run, RowTile};

    /// The AVX-512F row kernel (128 columns in registers).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the pointers in `t` must be valid as [`RowTile`]
    /// describes.
    #[target_feature(enable = "avx512f")]
    pub(in crate::backend::cpu::matmul) unsafe fn avx512(t: &RowTile) {
        run::<Zmm>(t)
    }

    /// The AVX2 + FMA row kernel (64 columns in registers).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the pointers in `t` must be valid as [`RowTile`]
    /// describes.
    #[target_feature(enable = "avx2,fma")]
    pub(in crate::backend::cpu::matmul) unsafe fn avx2(t: &RowTile) {
        run::<Ymm>(t)
    }
}
