// Shared index arithmetic of the CUDA kernels (twin of shaders/indexing.wgsl).
//
// Kernel metadata: all u32, the same words as the WGSL kernels, written for both by
// src/backend/gpu/meta.rs (where every kernel's layout is documented). It travels by
// value as a kernel parameter (`__grid_constant__`, so it stays in the constant bank: no
// upload and no copy per launch).
#pragma once

// `__grid_constant__` exists from compute capability 7.0 on; below it (Pascal: P100,
// GTX 10xx) the parameter is an ordinary by-value one (NVRTC rejects the annotation there).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 700
#define GRID_CONSTANT
#else
#define GRID_CONSTANT __grid_constant__
#endif

typedef unsigned int u32;
typedef unsigned long long u64;

// Words of metadata per launch (the host rejects a launch whose words do not fit).
#define META_WORDS 64

struct Meta {
    u32 w[META_WORDS];
};

// Threads per block of the elementwise and reduce kernels.
#define BLOCK 256

// Multi-index of `ordinal` in a row-major enumeration of `shape` (the last dimension moves
// fastest); dimensions of size 0 give index 0.
__device__ __forceinline__ void to_index(u32 ordinal, const u32* shape, u32 rank, u32* out_index) {
    for (int d = (int)rank - 1; d >= 0; --d) {
        const u32 n = shape[d];
        if (n == 0) {
            out_index[d] = 0;
            continue;
        }
        out_index[d] = ordinal % n;
        ordinal /= n;
    }
}

// Storage position of `index` under `strides` (without offset).
__device__ __forceinline__ u32 index_to_position(const u32* index, const u32* strides, u32 rank) {
    u32 pos = 0;
    for (u32 d = 0; d < rank; ++d) {
        pos += index[d] * strides[d];
    }
    return pos;
}

// Index into the smaller `shape` that `big_index` of `big_shape` was broadcast from:
// dimensions of size 1 read index 0, missing leading dimensions are dropped.
__device__ __forceinline__ void broadcast_index(const u32* big_index, u32 big_rank, const u32* shape,
                                                u32 rank, u32* out_index) {
    const u32 extra = big_rank - rank;
    for (u32 d = 0; d < rank; ++d) {
        out_index[d] = shape[d] == 1 ? 0 : big_index[extra + d];
    }
}

// to_index followed by index_to_position, without an index array (which would live in
// local memory): position of `ordinal` of `shape` under `strides`, plus `offset`.
__device__ __forceinline__ u32 strided_position(u32 ordinal, const u32* shape, const u32* strides,
                                                   u32 rank, u32 offset) {
    u32 pos = offset;
    for (int d = (int)rank - 1; d >= 0; --d) {
        const u32 n = shape[d];
        const u32 i = ordinal % n;
        ordinal /= n;
        pos += i * strides[d];
    }
    return pos;
}

// The same walk for two layouts of one shape (zip): one division per dimension.
__device__ __forceinline__ void strided_position2(u32 ordinal, const u32* shape,
                                                      const u32* a_strides, const u32* b_strides,
                                                      u32 rank, u32 a_offset, u32 b_offset,
                                                      u32* a_pos, u32* b_pos) {
    u32 pa = a_offset;
    u32 pb = b_offset;
    for (int d = (int)rank - 1; d >= 0; --d) {
        const u32 n = shape[d];
        const u32 i = ordinal % n;
        ordinal /= n;
        pa += i * a_strides[d];
        pb += i * b_strides[d];
    }
    *a_pos = pa;
    *b_pos = pb;
}

// First element and stride of a grid-stride loop over a 1-d grid. The loop counter is 64-bit
// so that `i += stride` cannot wrap around for sizes close to 2^32.
__device__ __forceinline__ u64 grid_start() {
    return (u64)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ u64 grid_stride() {
    return (u64)gridDim.x * blockDim.x;
}
