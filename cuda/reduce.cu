// Reduce kernels (twin of shaders/reduce.wgsl). Two shapes of kernel, chosen by the host
// from the shape (src/backend/gpu/plan.rs):
// - tree (reduce_<op>, reduce_<op>_contiguous): one block of BLOCK (256) threads per
//   output position. Each thread folds a strided share of the reduced dimension
//   (j = t, t + 256, ...) into a private accumulator, then the block combines the 256
//   partial results with a shared-memory tree. For long reduced dimensions. Blocks loop
//   over output positions (grid-stride), so any number of outputs works with a bounded grid.
// - serial (reduce_serial_<op>, reduce_serial_<op>_contiguous): one thread per output
//   position folds the whole reduced dimension in order. For short reduced dimensions or
//   many outputs: neighbouring threads read neighbouring addresses whenever the reduced
//   dimension is not the innermost one, and no block waits on a barrier.
// Both are correct for any length: an empty dimension gives the identity. Each op is a
// struct with identity() and combine(acc, v) and a REDUCE_ENTRY line, in the block at the
// end generated from the reduce table.
// The _contiguous entry points take an input that is contiguous: the first element of
// output o is x_offset + (o / inner) * inner * reduce_len + o % inner, with
// inner = reduce_stride. Loop counters are 64-bit so that no `+=` can wrap.
// Metadata (src/backend/gpu/meta.rs):
//   [out_size, rank, x_offset, reduce_dim, reduce_len, reduce_stride,
//    out_shape[rank] (reduce_dim set to 1), x_strides[rank]].
#include "indexing.cuh"

// -inf, the max row's identity.
__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

// Storage position of the first element of output o's reduced run.
template <bool CONTIG>
__device__ __forceinline__ u32 reduce_base(u64 o, const Meta& meta) {
    const u32 rank = meta.w[1];
    const u32 x_offset = meta.w[2];
    if (CONTIG) {
        const u64 inner = meta.w[5];
        const u64 len = meta.w[4];
        return (u32)(x_offset + (o / inner) * inner * len + o % inner);
    }
    // The index of output o has 0 in the reduced dimension: its position under the
    // input's strides is the first element of the reduced run.
    return strided_position((u32)o, &meta.w[6], &meta.w[6 + rank], rank, x_offset);
}

// Fold the reduced dimension starting at `base` and write the block's result to out[o].
template <class Op>
__device__ __forceinline__ void reduce_block(float* __restrict__ out, const float* __restrict__ x,
                                             u64 o, u32 base, u32 len, u32 stride, float* partial) {
    const u32 t = threadIdx.x;
    float acc = Op::identity();
    for (u64 j = t; j < len; j += BLOCK) {
        acc = Op::combine(acc, x[base + (u32)j * stride]);
    }
    partial[t] = acc;
    __syncthreads();
    for (u32 s = BLOCK / 2; s > 0; s >>= 1) {
        if (t < s) {
            partial[t] = Op::combine(partial[t], partial[t + s]);
        }
        __syncthreads();
    }
    if (t == 0) {
        out[o] = partial[0];
    }
    // The next output position overwrites `partial`: wait until thread 0 has read it.
    __syncthreads();
}

template <class Op, bool CONTIG>
__device__ __forceinline__ void reduce_kernel(float* __restrict__ out, const float* __restrict__ x,
                                              const Meta& meta) {
    __shared__ float partial[BLOCK];
    const u32 out_size = meta.w[0];
    const u32 reduce_len = meta.w[4];
    const u32 reduce_stride = meta.w[5];
    for (u64 o = blockIdx.x; o < out_size; o += gridDim.x) {
        reduce_block<Op>(out, x, o, reduce_base<CONTIG>(o, meta), reduce_len, reduce_stride,
                         partial);
    }
}

template <class Op, bool CONTIG>
__device__ __forceinline__ void reduce_serial_kernel(float* __restrict__ out,
                                                     const float* __restrict__ x,
                                                     const Meta& meta) {
    const u32 out_size = meta.w[0];
    const u32 len = meta.w[4];
    const u32 stride = meta.w[5];
    for (u64 o = grid_start(); o < out_size; o += grid_stride()) {
        const u32 base = reduce_base<CONTIG>(o, meta);
        float acc = Op::identity();
        for (u64 j = 0; j < len; ++j) {
            acc = Op::combine(acc, x[base + (u32)j * stride]);
        }
        out[o] = acc;
    }
}

#define REDUCE_ENTRY(name, Op)                                                                     \
    extern "C" __global__ void __launch_bounds__(BLOCK)                                            \
        reduce_##name(float* __restrict__ out, const float* __restrict__ x,                        \
                      const GRID_CONSTANT Meta meta) {                                             \
        reduce_kernel<Op, false>(out, x, meta);                                                    \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(BLOCK)                                            \
        reduce_##name##_contiguous(float* __restrict__ out, const float* __restrict__ x,           \
                                   const GRID_CONSTANT Meta meta) {                                \
        reduce_kernel<Op, true>(out, x, meta);                                                     \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(BLOCK)                                            \
        reduce_serial_##name(float* __restrict__ out, const float* __restrict__ x,                 \
                             const GRID_CONSTANT Meta meta) {                                      \
        reduce_serial_kernel<Op, false>(out, x, meta);                                             \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(BLOCK)                                            \
        reduce_serial_##name##_contiguous(float* __restrict__ out, const float* __restrict__ x,    \
                                          const GRID_CONSTANT Meta meta) {                         \
        reduce_serial_kernel<Op, true>(out, x, meta);                                              \
    }

// BEGIN reduce table: one entry per row of src/backend/op_table.rs, written by
// src/backend/gpu/sources.rs (MINITORCH_UPDATE_SOURCES=1 cargo test --lib gpu::sources).
struct OpSum {
    __device__ static float identity() { return 0.0f; }
    __device__ static float combine(float acc, float v) { return acc + v; }
};
REDUCE_ENTRY(sum, OpSum)
struct OpProd {
    __device__ static float identity() { return 1.0f; }
    __device__ static float combine(float acc, float v) { return acc * v; }
};
REDUCE_ENTRY(prod, OpProd)
struct OpMax {
    __device__ static float identity() { return neg_inf(); }
    __device__ static float combine(float acc, float v) { return (acc > v || acc != acc ? acc : v); }
};
REDUCE_ENTRY(max, OpMax)
// END reduce table
