// Reduce kernels (twin of shaders/reduce.wgsl): one block of BLOCK (256) threads per output
// position. Each thread folds a strided share of the reduced dimension (j = t, t + 256, ...)
// into a private accumulator, then the block combines the 256 partial results with a
// shared-memory tree. Correct for any length: an empty dimension gives the identity.
// Entry points: reduce_<op> (strided input) and reduce_<op>_contiguous (input contiguous:
// the first element of output o is x_offset + (o / inner) * inner * reduce_len + o % inner,
// with inner = reduce_stride). Blocks loop over output positions (grid-stride), so any
// number of outputs works with a bounded grid.
// Metadata: [out_size, rank, x_offset, reduce_dim, reduce_len, reduce_stride,
//            out_shape[rank] (reduce_dim set to 1), x_strides[rank]].
#include "indexing.cuh"

struct OpSum {
    __device__ static float identity() { return 0.0f; }
    __device__ static float combine(float acc, float x) { return acc + x; }
};
struct OpProd {
    __device__ static float identity() { return 1.0f; }
    __device__ static float combine(float acc, float x) { return acc * x; }
};
struct OpMax {
    __device__ static float identity() { return -__int_as_float(0x7f800000); }
    // NaN wins, as in operators::max.
    __device__ static float combine(float acc, float x) { return acc > x || acc != acc ? acc : x; }
};

// Fold the reduced dimension starting at `base` and write the block's result to out[o].
template <class Op>
__device__ __forceinline__ void reduce_block(float* __restrict__ out, const float* __restrict__ x,
                                             u32 o, u32 base, u32 len, u32 stride, float* partial) {
    const u32 t = threadIdx.x;
    float acc = Op::identity();
    for (u32 j = t; j < len; j += BLOCK) {
        acc = Op::combine(acc, x[base + j * stride]);
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
    const u32 rank = meta.w[1];
    const u32 x_offset = meta.w[2];
    const u32 reduce_len = meta.w[4];
    const u32 reduce_stride = meta.w[5];
    const u32* out_shape = &meta.w[6];
    const u32* x_strides = &meta.w[6 + rank];
    for (u32 o = blockIdx.x; o < out_size; o += gridDim.x) {
        u32 base;
        if (CONTIG) {
            const u32 inner = reduce_stride;
            base = x_offset + (o / inner) * inner * reduce_len + o % inner;
        } else {
            // The index of output o has 0 in the reduced dimension: its position under the
            // input's strides is the first element of the reduced run.
            base = strided_position(o, out_shape, x_strides, rank, x_offset);
        }
        reduce_block<Op>(out, x, o, base, reduce_len, reduce_stride, partial);
    }
}

#define REDUCE_ENTRY(name, Op)                                                                     \
    extern "C" __global__ void __launch_bounds__(BLOCK)                                            \
        reduce_##name(float* __restrict__ out, const float* __restrict__ x,                        \
                      const __grid_constant__ Meta meta) {                                         \
        reduce_kernel<Op, false>(out, x, meta);                                                    \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(BLOCK)                                            \
        reduce_##name##_contiguous(float* __restrict__ out, const float* __restrict__ x,           \
                               const __grid_constant__ Meta meta) {                                \
        reduce_kernel<Op, true>(out, x, meta);                                                     \
    }

REDUCE_ENTRY(sum, OpSum)
REDUCE_ENTRY(prod, OpProd)
REDUCE_ENTRY(max, OpMax)
