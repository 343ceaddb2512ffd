// random (twin of shaders/random.wgsl): the library's counter-based generator
// (src/backend/random.rs). Element i of the draw with key (k0, k1) is
// hash(hash(i_lo ^ k0) ^ i_hi ^ k1) with Chris Wellons' lowbias32 mixer, its top 24 bits
// scaled to [0, 1). Grid-stride loop over the output.
// Metadata (src/backend/gpu/meta.rs): [size_lo, size_hi, k0, k1].
#include "indexing.cuh"

__device__ __forceinline__ u32 hash32(u32 x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

extern "C" __global__ void __launch_bounds__(BLOCK)
    random_uniform(float* __restrict__ out, const GRID_CONSTANT Meta meta) {
    const u64 size = (u64)meta.w[0] | ((u64)meta.w[1] << 32);
    for (u64 i = grid_start(); i < size; i += grid_stride()) {
        const u32 h = hash32(hash32((u32)i ^ meta.w[2]) ^ (u32)(i >> 32) ^ meta.w[3]);
        out[i] = (float)(h >> 8) * (1.0f / 16777216.0f);
    }
}
