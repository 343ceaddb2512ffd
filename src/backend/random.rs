//! The one random generator of the library: counter based, so element `i` of a draw is a
//! pure function of `(seed, counter, i)` and every backend computes the same values in any
//! order ([`Backend::uniform`](super::Backend::uniform): the CPU, `shaders/random.wgsl`,
//! `cuda/random.cu`). `Tensor::rand` and dropout's masks come from it, so the same seed
//! gives the same mask on every backend.
//!
//! The mixer is Chris Wellons' `lowbias32` integer hash (32-bit xor-shifts and wrapping
//! multiplies, which WGSL and CUDA have). A draw's key is the hash chain of the seed's and
//! the counter's words; element `i` is `hash(hash(i_lo ^ k0) ^ i_hi ^ k1)`, and its top 24
//! bits give a uniform `f32` in `[0, 1)` (every value a multiple of 2^-24).

/// `lowbias32`: a bijective 32-bit mixer.
#[inline]
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The two key words of the draw number `counter` of generator `seed`.
pub fn key(seed: u64, counter: u64) -> [u32; 2] {
    let mut h = hash32(seed as u32 ^ 0x9e37_79b9);
    h = hash32(h ^ (seed >> 32) as u32);
    h = hash32(h ^ counter as u32);
    let k0 = hash32(h ^ (counter >> 32) as u32);
    [k0, hash32(k0 ^ 0x85eb_ca6b)]
}

/// Element `i` of the draw with `key`: uniform in `[0, 1)`. The reference every kernel
/// matches bit for bit.
#[inline]
pub fn uniform(key: [u32; 2], i: u64) -> f32 {
    let h = hash32(hash32(i as u32 ^ key[0]) ^ (i >> 32) as u32 ^ key[1]);
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// `len` values of the draw with `key` on the host.
pub fn uniform_host(key: [u32; 2], out: &mut [f32]) {
    for (i, v) in out.iter_mut().enumerate() {
        *v = uniform(key, i as u64);
    }
}
