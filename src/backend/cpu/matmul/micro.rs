//! The micro-kernels: [`Kernel`] names them (AVX-512F `12 x 32`, AVX2 + FMA `6 x 16`, a
//! portable `6 x 16` loop, detected at run time), each an `h x NR` tile accumulated in
//! registers over a depth block ([`Tile`]), one const-generic body per tile height.

use super::*;

/// A micro-kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512F, `12 x 32` tile (24 accumulator registers), masked edges.
    Avx512,
    /// AVX2 + FMA, `6 x 16` tile.
    Avx2,
    /// Plain Rust the compiler vectorises, `6 x 16` tile.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU supports, detected once per process.
    pub fn detect() -> Kernel {
        static K: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *K.get_or_init(|| {
            [Kernel::Avx512, Kernel::Avx2]
                .into_iter()
                .find(|k| k.is_available())
                .unwrap_or(Kernel::Portable)
        })
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            Kernel::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Rows of the output tile.
    #[inline]
    pub fn mr(self) -> usize {
        match self {
            Kernel::Avx512 => 12,
            Kernel::Avx2 | Kernel::Portable => 6,
        }
    }

    /// Columns of the output tile.
    #[inline]
    pub fn nr(self) -> usize {
        match self {
            Kernel::Avx512 => 32,
            Kernel::Avx2 | Kernel::Portable => 16,
        }
    }

    /// Name and tile, for diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512f 12x32",
            Kernel::Avx2 => "avx2+fma 6x16",
            Kernel::Portable => "portable 6x16",
        }
    }

    /// Output columns the row kernel holds in registers (8 vector registers' worth).
    pub fn row_width(self) -> usize {
        match self {
            Kernel::Avx512 => row::width(16),
            Kernel::Avx2 | Kernel::Portable => row::width(8),
        }
    }

    /// Name of the row kernel, for diagnostics.
    pub fn row_name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512f row 1x128",
            Kernel::Avx2 => "avx2+fma row 1x64",
            Kernel::Portable => "portable row 1x64",
        }
    }

    /// The row kernel (see [`RowTile`]).
    #[inline]
    pub(super) fn row(self) -> RowFn {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => row::avx512,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => row::avx2,
            _ => row::portable,
        }
    }

    /// The micro-kernel for a tile of `h` rows (1..=mr) and `w` columns (1..=nr), reading A
    /// from a packed panel or in place.
    #[inline]
    pub(super) fn micro(self, h: usize, w: usize, packed_a: bool) -> MicroFn {
        let pa = usize::from(!packed_a);
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => x86::AVX512[pa][h - 1],
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if w == self.nr() => x86::AVX2_FULL[pa][h - 1],
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::AVX2_EDGE[pa][h - 1],
            _ => {
                let _ = w;
                PORTABLE[pa][h - 1]
            }
        }
    }
}

/// Name of the micro-kernel in use (for diagnostics).
pub fn kernel_name() -> &'static str {
    Kernel::detect().name()
}

/// One micro-kernel call: `C[h x w] (+)= A[h x kc] B[kc x w]`.
pub(super) struct Tile {
    /// Depth.
    pub(super) kc: usize,
    /// A: row i of step p at `a[i * a_rs + p * a_cs]` (a packed panel: `a_rs` 1, `a_cs` mr).
    pub(super) a: *const f32,
    pub(super) a_rs: usize,
    pub(super) a_cs: usize,
    /// B: step p holds the tile's columns at `b[p * b_rs ..]` (`w` readable values).
    pub(super) b: *const f32,
    pub(super) b_rs: usize,
    /// Output tile, row stride `c_rs`.
    pub(super) c: *mut f32,
    pub(super) c_rs: usize,
    /// Valid columns (the rest of the tile is neither read from B nor written).
    pub(super) w: usize,
    /// Add to C (later depth blocks) instead of overwriting it (the first).
    pub(super) accumulate: bool,
    /// Prefetch B [`PREFETCH_ROWS`] rows ahead (B read in place; x86-64 kernels only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) prefetch: bool,
}

/// A micro-kernel for a fixed number of rows.
pub(super) type MicroFn = unsafe fn(&Tile);

pub(super) const PORTABLE_MR: usize = 6;
pub(super) const PORTABLE_NR: usize = 16;

/// Portable micro-kernel: one rank-1 update of the `H x 16` tile per step.
///
/// # Safety
/// The pointers in `t` must be valid as [`Tile`] describes.
pub(super) unsafe fn portable<const H: usize, const PA: bool>(t: &Tile) {
    let mut acc = [[0.0f32; PORTABLE_NR]; H];
    let mut bv = [0.0f32; PORTABLE_NR];
    let (a_rs, a_cs) = if PA {
        (1, PORTABLE_MR)
    } else {
        (t.a_rs, t.a_cs)
    };
    for p in 0..t.kc {
        let b = std::slice::from_raw_parts(t.b.wrapping_add(p * t.b_rs), t.w);
        bv[..t.w].copy_from_slice(b);
        for (i, row) in acc.iter_mut().enumerate() {
            let av = *t.a.add(i * a_rs + p * a_cs);
            for (c, &x) in row.iter_mut().zip(&bv) {
                *c += av * x;
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let c = std::slice::from_raw_parts_mut(t.c.add(i * t.c_rs), t.w);
        for (o, &v) in c.iter_mut().zip(row) {
            *o = if t.accumulate { *o + v } else { v };
        }
    }
}

/// Kernels for every tile height, with A packed (`[0]`) and in place (`[1]`).
macro_rules! table {
    ($f:ident; $($h:literal),*) => {
        [[$($f::<$h, true> as MicroFn),*], [$($f::<$h, false> as MicroFn),*]]
    };
}

pub(super) const PORTABLE: [[MicroFn; PORTABLE_MR]; 2] = table!(portable; 1, 2, 3, 4, 5, 6);

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::{MicroFn, Tile};
    use std::arch::x86_64::*;

    const MR512: usize = 12;
    const MR2: usize = 6;

    pub(super) const AVX512: [[MicroFn; MR512]; 2] =
        table!(avx512; 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);

    macro_rules! table2 {
        ($full:literal; $($h:literal),*) => {
            [
                [$(avx2::<$h, $full, true> as MicroFn),*],
                [$(avx2::<$h, $full, false> as MicroFn),*],
            ]
        };
    }
    pub(super) const AVX2_FULL: [[MicroFn; MR2]; 2] = table2!(true; 1, 2, 3, 4, 5, 6);
    pub(super) const AVX2_EDGE: [[MicroFn; MR2]; 2] = table2!(false; 1, 2, 3, 4, 5, 6);

    /// Mask of the first `n` (at most 16) lanes.
    #[inline]
    pub(in crate::backend::cpu::matmul) fn mask16(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// AVX-512F micro-kernel: `H x 32` tile in `2H` registers; masked loads and stores at
    /// the right edge, so B need not be padded.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the pointers in `t` must be valid as [`Tile`] describes.
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512<const H: usize, const PA: bool>(t: &Tile) {
        let (m0, m1) = (mask16(t.w), mask16(t.w.saturating_sub(16)));
        let mut acc = [[_mm512_setzero_ps(); 2]; H];
        let (a_rs, a_cs) = if PA { (1, MR512) } else { (t.a_rs, t.a_cs) };
        let (mut a, mut b) = (t.a, t.b);
        let mut steps = t.kc;
        if H <= 2 {
            // Few rows leave the FMA latency exposed: run even and odd steps on two sets of
            // accumulators, added at the end.
            let mut odd = [[_mm512_setzero_ps(); 2]; H];
            while steps >= 2 {
                if t.prefetch {
                    let ahead = b.wrapping_add(super::PREFETCH_ROWS * t.b_rs) as *const i8;
                    let next = ahead.wrapping_add(4 * t.b_rs);
                    _mm_prefetch::<_MM_HINT_T0>(ahead);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                    _mm_prefetch::<_MM_HINT_T0>(next);
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64));
                }
                let b0 = _mm512_maskz_loadu_ps(m0, b);
                let b1 = _mm512_maskz_loadu_ps(m1, b.wrapping_add(16));
                let bn = b.wrapping_add(t.b_rs);
                let b2 = _mm512_maskz_loadu_ps(m0, bn);
                let b3 = _mm512_maskz_loadu_ps(m1, bn.wrapping_add(16));
                for (i, (c, d)) in acc.iter_mut().zip(odd.iter_mut()).enumerate() {
                    let av = _mm512_set1_ps(*a.add(i * a_rs));
                    let an = _mm512_set1_ps(*a.wrapping_add(a_cs).add(i * a_rs));
                    c[0] = _mm512_fmadd_ps(av, b0, c[0]);
                    c[1] = _mm512_fmadd_ps(av, b1, c[1]);
                    d[0] = _mm512_fmadd_ps(an, b2, d[0]);
                    d[1] = _mm512_fmadd_ps(an, b3, d[1]);
                }
                a = a.wrapping_add(2 * a_cs);
                b = b.wrapping_add(2 * t.b_rs);
                steps -= 2;
            }
            for (c, d) in acc.iter_mut().zip(&odd) {
                c[0] = _mm512_add_ps(c[0], d[0]);
                c[1] = _mm512_add_ps(c[1], d[1]);
            }
        }
        for _ in 0..steps {
            if t.prefetch {
                let ahead = b.wrapping_add(super::PREFETCH_ROWS * t.b_rs) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            }
            let b0 = _mm512_maskz_loadu_ps(m0, b);
            let b1 = _mm512_maskz_loadu_ps(m1, b.wrapping_add(16));
            for (i, c) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i * a_rs));
                c[0] = _mm512_fmadd_ps(av, b0, c[0]);
                c[1] = _mm512_fmadd_ps(av, b1, c[1]);
            }
            a = a.wrapping_add(a_cs);
            b = b.wrapping_add(t.b_rs);
        }
        for (i, c) in acc.iter().enumerate() {
            let o = t.c.add(i * t.c_rs);
            let o1 = o.wrapping_add(16);
            let (mut v0, mut v1) = (c[0], c[1]);
            if t.accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, o));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, o1));
            }
            _mm512_mask_storeu_ps(o, m0, v0);
            _mm512_mask_storeu_ps(o1, m1, v1);
        }
    }

    /// Lane mask (high bit set) of the first `n` lanes of 8, as AVX2 masked moves take it.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in crate::backend::cpu::matmul) fn mask8(n: usize) -> __m256i {
        let n = n.min(8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// AVX2 + FMA micro-kernel: `H x 16` tile in `2H` registers; `FULL` when all 16
    /// columns are valid (plain loads), else masked loads and stores.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the pointers in `t` must be valid as [`Tile`]
    /// describes.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<const H: usize, const FULL: bool, const PA: bool>(t: &Tile) {
        let (m0, m1) = (mask8(t.w), mask8(t.w.saturating_sub(8)));
        let mut acc = [[_mm256_setzero_ps(); 2]; H];
        let (a_rs, a_cs) = if PA { (1, MR2) } else { (t.a_rs, t.a_cs) };
        let (mut a, mut b) = (t.a, t.b);
        for _ in 0..t.kc {
            if t.prefetch {
                let ahead = b.wrapping_add(super::PREFETCH_ROWS * t.b_rs) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
            }
            let (b0, b1) = if FULL {
                (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)))
            } else {
                (
                    _mm256_maskload_ps(b, m0),
                    _mm256_maskload_ps(b.wrapping_add(8), m1),
                )
            };
            for (i, c) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(i * a_rs));
                c[0] = _mm256_fmadd_ps(av, b0, c[0]);
                c[1] = _mm256_fmadd_ps(av, b1, c[1]);
            }
            a = a.wrapping_add(a_cs);
            b = b.wrapping_add(t.b_rs);
        }
        for (i, c) in acc.iter().enumerate() {
            let o = t.c.add(i * t.c_rs);
            let o1 = o.wrapping_add(8);
            let (mut v0, mut v1) = (c[0], c[1]);
            if FULL {
                if t.accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(o));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(o1));
                }
                _mm256_storeu_ps(o, v0);
                _mm256_storeu_ps(o1, v1);
            } else {
                if t.accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_maskload_ps(o, m0));
                    v1 = _mm256_add_ps(v1, _mm256_maskload_ps(o1, m1));
                }
                _mm256_maskstore_ps(o, m0, v0);
                _mm256_maskstore_ps(o1, m1, v1);
            }
        }
    }
}
