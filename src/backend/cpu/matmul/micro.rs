//! The micro-kernels: [`Kernel`] names them (AVX-512F `12 x 32`, AVX2 + FMA `6 x 16`, a
//! portable `6 x 16` loop, detected at run time), each an `h x NR` tile accumulated in
//! registers over a depth block ([`Tile`]): one body over the vector operations of
//! [`Lanes`], instantiated per instruction set and tile height.

use super::lanes::{Lanes, Portable};
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

    /// The kernel for a tile of `h` rows (1..=mr) whose A is read in place through its
    /// rows' positions ([`RowsTile`]), where this family has one (AVX-512F).
    #[inline]
    pub(super) fn rows_kernel(self, h: usize) -> Option<RowsFn> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => Some(x86::AVX512_ROWS[h - 1]),
            _ => {
                let _ = h;
                None
            }
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

/// What every micro-kernel call shares: the B panel it reads and the C tile it writes.
pub(super) struct BandC {
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
}

/// One micro-kernel call: `C[h x w] (+)= A[h x kc] B[kc x w]`.
pub(super) struct Tile {
    /// Depth.
    pub(super) kc: usize,
    /// A: row i of step p at `a[i * a_rs + p * a_cs]` (a packed panel: `a_rs` 1, `a_cs` mr).
    pub(super) a: *const f32,
    pub(super) a_rs: usize,
    pub(super) a_cs: usize,
    pub(super) bc: BandC,
    /// Prefetch B [`PREFETCH_ROWS`] rows ahead (B read in place; x86-64 kernels only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) prefetch: bool,
}

/// A micro-kernel for a fixed number of rows.
pub(super) type MicroFn = unsafe fn(&Tile);

/// The micro-kernel over `V`: an `H x 2N` tile in `2H` registers, one rank-1 update per
/// depth step; `FULL` when all `2N` columns are valid (every lane loaded and stored), else
/// masked at the right edge, so B need not be padded. A packed A (`PA`) is a panel of `MR`
/// rows. Inlined into each instruction set's entry point.
///
/// # Safety
/// As [`Lanes`] says for `V`; the pointers in `t` must be valid as [`Tile`] describes.
#[inline(always)]
unsafe fn body<V: Lanes, const H: usize, const MR: usize, const FULL: bool, const PA: bool>(
    t: &Tile,
) {
    let n = V::N;
    let (m0, m1) = if FULL {
        (V::mask(n), V::mask(n))
    } else {
        (V::mask(t.bc.w), V::mask(t.bc.w.saturating_sub(n)))
    };
    let mut acc = [[V::zero(); 2]; H];
    let (a_rs, a_cs) = if PA { (1, MR) } else { (t.a_rs, t.a_cs) };
    let (mut a, mut b) = (t.a, t.bc.b);
    let b_rs = t.bc.b_rs;
    let mut steps = t.kc;
    if H <= V::TWO_CHAIN_ROWS {
        let mut odd = [[V::zero(); 2]; H];
        while steps >= 2 {
            if t.prefetch {
                prefetch_row::<V>(b.wrapping_add(PREFETCH_ROWS * b_rs));
                prefetch_row::<V>(b.wrapping_add((PREFETCH_ROWS + 1) * b_rs));
            }
            let b0 = V::load(b, m0);
            let b1 = V::load(b.wrapping_add(n), m1);
            let bn = b.wrapping_add(b_rs);
            let b2 = V::load(bn, m0);
            let b3 = V::load(bn.wrapping_add(n), m1);
            for (i, (c, d)) in acc.iter_mut().zip(odd.iter_mut()).enumerate() {
                let av = V::splat(*a.add(i * a_rs));
                let an = V::splat(*a.wrapping_add(a_cs).add(i * a_rs));
                c[0] = V::mul_add(av, b0, c[0]);
                c[1] = V::mul_add(av, b1, c[1]);
                d[0] = V::mul_add(an, b2, d[0]);
                d[1] = V::mul_add(an, b3, d[1]);
            }
            a = a.wrapping_add(2 * a_cs);
            b = b.wrapping_add(2 * b_rs);
            steps -= 2;
        }
        for (c, d) in acc.iter_mut().zip(&odd) {
            c[0] = V::add(c[0], d[0]);
            c[1] = V::add(c[1], d[1]);
        }
    }
    for _ in 0..steps {
        if t.prefetch {
            prefetch_row::<V>(b.wrapping_add(PREFETCH_ROWS * b_rs));
        }
        let b0 = V::load(b, m0);
        let b1 = V::load(b.wrapping_add(n), m1);
        for (i, c) in acc.iter_mut().enumerate() {
            let av = V::splat(*a.add(i * a_rs));
            c[0] = V::mul_add(av, b0, c[0]);
            c[1] = V::mul_add(av, b1, c[1]);
        }
        a = a.wrapping_add(a_cs);
        b = b.wrapping_add(b_rs);
    }
    store_tile(&acc, t.bc.c, t.bc.c_rs, (m0, m1), t.bc.accumulate);
}

/// Write (or, for later depth blocks, add) a tile's accumulators to C: row `i` at
/// `c + i * c_rs`, the lanes of `masks`.
///
/// # Safety
/// As [`Lanes`] says for `V`; every row's masked lanes lie inside C.
#[inline(always)]
unsafe fn store_tile<V: Lanes, const H: usize>(
    acc: &[[V; 2]; H],
    c: *mut f32,
    c_rs: usize,
    (m0, m1): (V::Mask, V::Mask),
    accumulate: bool,
) {
    for (i, r) in acc.iter().enumerate() {
        let o = c.add(i * c_rs);
        let o1 = o.wrapping_add(V::N);
        let (mut v0, mut v1) = (r[0], r[1]);
        if accumulate {
            v0 = V::add(v0, V::load(o, m0));
            v1 = V::add(v1, V::load(o1, m1));
        }
        v0.store(o, m0);
        v1.store(o1, m1);
    }
}

/// One micro-kernel call whose A is gathered and read in place (no packing): row `i` of
/// step `p` lies at `a[rows[i] + pos(p)]`, where the depth's positions come in `runs` of
/// consecutive ones, `(first position, length)`. B (packed) and C as in [`Tile`].
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct RowsTile<'r> {
    pub(super) a: *const f32,
    /// The tile's rows' positions (`h` of them).
    pub(super) rows: &'r [usize],
    pub(super) runs: &'r [(usize, usize)],
    pub(super) bc: BandC,
}

/// A [`RowsTile`] kernel for a fixed number of rows.
pub(super) type RowsFn = unsafe fn(&RowsTile);

/// [`body`] with A read through [`RowsTile`]'s row positions and runs: one pointer per
/// row, stepping along each run.
///
/// # Safety
/// As [`Lanes`] says for `V`; every position `rows[i] + pos` of each run inside `a`, and B
/// and C as [`Tile`] describes.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
unsafe fn body_rows<V: Lanes, const H: usize>(t: &RowsTile) {
    let n = V::N;
    let (m0, m1) = (V::mask(t.bc.w), V::mask(t.bc.w.saturating_sub(n)));
    let mut acc = [[V::zero(); 2]; H];
    let mut b = t.bc.b;
    for &(pos, len) in t.runs {
        let a: [*const f32; H] = std::array::from_fn(|i| t.a.add(t.rows[i] + pos));
        for p in 0..len {
            let b0 = V::load(b, m0);
            let b1 = V::load(b.wrapping_add(n), m1);
            for (c, &ai) in acc.iter_mut().zip(&a) {
                let av = V::splat(*ai.add(p));
                c[0] = V::mul_add(av, b0, c[0]);
                c[1] = V::mul_add(av, b1, c[1]);
            }
            b = b.wrapping_add(t.bc.b_rs);
        }
    }
    store_tile(&acc, t.bc.c, t.bc.c_rs, (m0, m1), t.bc.accumulate);
}

/// Prefetch the tile's `2N` columns of the B row at `row`.
#[inline(always)]
unsafe fn prefetch_row<V: Lanes>(row: *const f32) {
    // 16 floats to a 64-byte cache line.
    for line in 0..(2 * V::N).div_ceil(16) {
        V::prefetch(row.wrapping_add(16 * line));
    }
}

pub(super) const PORTABLE_MR: usize = 6;

/// Portable micro-kernel: `H x 16`, two [`Portable`] registers a row.
///
/// # Safety
/// The pointers in `t` must be valid as [`Tile`] describes.
pub(super) unsafe fn portable<const H: usize, const PA: bool>(t: &Tile) {
    body::<Portable, H, PORTABLE_MR, false, PA>(t)
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
    use super::super::lanes::{Ymm, Zmm};
    use super::{body, MicroFn, Tile};

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

    pub(in super::super) const AVX512_ROWS: [super::RowsFn; MR512] = [
        avx512_rows::<1>,
        avx512_rows::<2>,
        avx512_rows::<3>,
        avx512_rows::<4>,
        avx512_rows::<5>,
        avx512_rows::<6>,
        avx512_rows::<7>,
        avx512_rows::<8>,
        avx512_rows::<9>,
        avx512_rows::<10>,
        avx512_rows::<11>,
        avx512_rows::<12>,
    ];

    /// AVX-512F [`RowsTile`](super::RowsTile) kernel: `H x 32`, A through row positions.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the pointers in `t` must be valid as
    /// [`RowsTile`](super::RowsTile) describes.
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_rows<const H: usize>(t: &super::RowsTile) {
        super::body_rows::<Zmm, H>(t)
    }

    /// AVX-512F micro-kernel: `H x 32`, masked loads and stores at the right edge.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the pointers in `t` must be valid as [`Tile`] describes.
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512<const H: usize, const PA: bool>(t: &Tile) {
        body::<Zmm, H, MR512, false, PA>(t)
    }

    /// AVX2 + FMA micro-kernel: `H x 16`; `FULL` when all 16 columns are valid (plain
    /// loads), else masked loads and stores.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the pointers in `t` must be valid as [`Tile`]
    /// describes.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<const H: usize, const FULL: bool, const PA: bool>(t: &Tile) {
        body::<Ymm, H, MR2, FULL, PA>(t)
    }
}
