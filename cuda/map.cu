// Elementwise map kernels (twin of shaders/map.wgsl): out[i] = f(x[position of i]).
// Entry points: map_<op> (strided input, read in place) and map_<op>_contiguous (input
// contiguous: position = x_offset + i, no index arithmetic). The host picks the entry
// point once per launch, so there is no per-element branch on the strides.
// Metadata: [size, rank, x_offset, shape[rank], x_strides[rank]].
#include "indexing.cuh"
#include "math.cuh"

struct OpNeg { __device__ static float f(float x) { return -x; } };
struct OpId { __device__ static float f(float x) { return x; } };
struct OpInv { __device__ static float f(float x) { return 1.0f / x; } };
struct OpRelu { __device__ static float f(float x) { return x > 0.0f ? x : 0.0f; } };
struct OpSigmoid { __device__ static float f(float x) { return sigmoid_f(x); } };
struct OpLog { __device__ static float f(float x) { return log_f(x); } };
struct OpExp { __device__ static float f(float x) { return exp_f(x); } };
struct OpSqrt { __device__ static float f(float x) { return __fsqrt_rn(x); } };

template <class Op>
__device__ __forceinline__ void map_strided(float* __restrict__ out, const float* __restrict__ x,
                                            const Meta& meta) {
    const u32 size = meta.w[0];
    const u32 rank = meta.w[1];
    const u32 x_offset = meta.w[2];
    const u32* shape = &meta.w[3];
    const u32* x_strides = &meta.w[3 + rank];
    for (u64 i = grid_start(); i < size; i += grid_stride()) {
        const u32 pos = strided_position((u32)i, shape, x_strides, rank, x_offset);
        out[i] = Op::f(x[pos]);
    }
}

template <class Op>
__device__ __forceinline__ void map_contiguous(float* __restrict__ out, const float* __restrict__ x,
                                           const Meta& meta) {
    const u32 size = meta.w[0];
    const float* __restrict__ xs = x + meta.w[2];
    for (u64 i = grid_start(); i < size; i += grid_stride()) {
        out[i] = Op::f(xs[i]);
    }
}

#define MAP_ENTRY(name, Op)                                                                        \
    extern "C" __global__ void __launch_bounds__(BLOCK)                                            \
        map_##name(float* __restrict__ out, const float* __restrict__ x,                           \
                   const GRID_CONSTANT Meta meta) {                                            \
        map_strided<Op>(out, x, meta);                                                             \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(BLOCK)                                            \
        map_##name##_contiguous(float* __restrict__ out, const float* __restrict__ x,              \
                            const GRID_CONSTANT Meta meta) {                                   \
        map_contiguous<Op>(out, x, meta);                                                          \
    }

MAP_ENTRY(neg, OpNeg)
MAP_ENTRY(id, OpId)
MAP_ENTRY(inv, OpInv)
MAP_ENTRY(relu, OpRelu)
MAP_ENTRY(sigmoid, OpSigmoid)
MAP_ENTRY(log, OpLog)
MAP_ENTRY(exp, OpExp)
MAP_ENTRY(sqrt, OpSqrt)
