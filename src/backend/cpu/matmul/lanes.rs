//! The vector operations the matmul kernels are written in ([`Lanes`]), and the register
//! types of each instruction set that implement them: AVX-512F (16 lanes, masked loads),
//! AVX2 + FMA (8 lanes) and a portable array of 8 values. The row kernel (`row.rs`) and the
//! micro-kernels (`micro.rs`) are each one generic body over `Lanes`, compiled under each
//! instruction set's target features.

/// The vector operations of the matmul kernels.
///
/// # Safety
/// Every method may use instructions of its instruction set: call them only from a
/// function compiled with those features on a CPU that has them.
pub(super) trait Lanes: Copy {
    /// Values per register.
    const N: usize;
    /// Micro-kernel tiles of at most this many rows run even and odd depth steps on two
    /// sets of accumulators, added at the end (few rows leave the multiply-add latency
    /// exposed); 0 for none.
    const TWO_CHAIN_ROWS: usize = 0;
    /// Which lanes a load or store touches.
    type Mask: Copy;
    /// The first `n` lanes (all of them when `n >= N`).
    unsafe fn mask(n: usize) -> Self::Mask;
    /// All lanes 0.
    unsafe fn zero() -> Self;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self;
    /// The lanes `m` selects from `p`, the others 0 (their memory is not read).
    unsafe fn load(p: *const f32, m: Self::Mask) -> Self;
    /// Write the lanes `m` selects to `p` (the others' memory is not written).
    unsafe fn store(self, p: *mut f32, m: Self::Mask);
    /// `a * b + c` per lane.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    /// `a + b` per lane.
    unsafe fn add(a: Self, b: Self) -> Self;
    /// Ask for the cache line holding `p` (nothing where the instruction set has no hint).
    #[inline(always)]
    unsafe fn prefetch(_p: *const f32) {}
}

/// Eight values in an array: the portable [`Lanes`] (the compiler vectorises what the
/// target allows).
#[derive(Clone, Copy)]
pub(super) struct Portable([f32; 8]);

impl Lanes for Portable {
    const N: usize = 8;
    type Mask = usize;
    #[inline(always)]
    unsafe fn mask(n: usize) -> usize {
        n.min(8)
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable([0.0; 8])
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Portable([x; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32, m: usize) -> Self {
        let mut v = [0.0; 8];
        v[..m].copy_from_slice(std::slice::from_raw_parts(p, m));
        Portable(v)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, m: usize) {
        std::slice::from_raw_parts_mut(p, m).copy_from_slice(&self.0[..m]);
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] + b.0[i]))
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{Ymm, Zmm};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lanes;
    use std::arch::x86_64::*;

    /// Mask of the first `n` (at most 16) lanes.
    #[inline(always)]
    fn mask16(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// An AVX-512 register: 16 lanes, masked loads and stores.
    #[derive(Clone, Copy)]
    pub(in crate::backend::cpu::matmul) struct Zmm(__m512);

    impl Lanes for Zmm {
        const N: usize = 16;
        const TWO_CHAIN_ROWS: usize = 2;
        type Mask = __mmask16;
        #[inline(always)]
        unsafe fn mask(n: usize) -> __mmask16 {
            mask16(n)
        }
        #[inline(always)]
        unsafe fn zero() -> Self {
            Zmm(_mm512_setzero_ps())
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Zmm(_mm512_set1_ps(x))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32, m: __mmask16) -> Self {
            Zmm(_mm512_maskz_loadu_ps(m, p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, m: __mmask16) {
            _mm512_mask_storeu_ps(p, m, self.0)
        }
        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Zmm(_mm512_fmadd_ps(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Zmm(_mm512_add_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
    }

    /// An AVX2 register: 8 lanes; plain loads when all lanes are valid (`None`), masked
    /// ones at the right edge.
    #[derive(Clone, Copy)]
    pub(in crate::backend::cpu::matmul) struct Ymm(__m256);

    impl Lanes for Ymm {
        const N: usize = 8;
        type Mask = Option<__m256i>;
        #[inline(always)]
        unsafe fn mask(n: usize) -> Option<__m256i> {
            // Lane i is on where i < n (the high bit set, as masked moves take it).
            (n < 8).then(|| {
                _mm256_cmpgt_epi32(
                    _mm256_set1_epi32(n as i32),
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                )
            })
        }
        #[inline(always)]
        unsafe fn zero() -> Self {
            Ymm(_mm256_setzero_ps())
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Ymm(_mm256_set1_ps(x))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32, m: Option<__m256i>) -> Self {
            Ymm(match m {
                None => _mm256_loadu_ps(p),
                Some(m) => _mm256_maskload_ps(p, m),
            })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, m: Option<__m256i>) {
            match m {
                None => _mm256_storeu_ps(p, self.0),
                Some(m) => _mm256_maskstore_ps(p, m, self.0),
            }
        }
        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Ymm(_mm256_fmadd_ps(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Ymm(_mm256_add_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
    }
}
