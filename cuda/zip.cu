// Elementwise zip kernels (twin of shaders/zip.wgsl): out[i] = f(a[pos_a(i)], b[pos_b(i)])
// for two layouts of one shape (broadcast inputs have stride 0 and are read in place).
// Entry points: zip_<op> (strided) and zip_<op>_contiguous (both inputs contiguous: positions
// are offset + i). The host picks one per launch: no per-element branch on the strides.
// Metadata: [size, rank, a_offset, b_offset, shape[rank], a_strides[rank], b_strides[rank]].
#include "indexing.cuh"
#include "math.cuh"

struct OpAdd { __device__ static float f(float a, float b) { return a + b; } };
struct OpMul { __device__ static float f(float a, float b) { return a * b; } };
struct OpLt { __device__ static float f(float a, float b) { return a < b ? 1.0f : 0.0f; } };
struct OpEq { __device__ static float f(float a, float b) { return a == b ? 1.0f : 0.0f; } };
struct OpIsClose {
    __device__ static float f(float a, float b) { return fabsf(a - b) < 1e-2f ? 1.0f : 0.0f; }
};
struct OpReluBack { __device__ static float f(float x, float d) { return x > 0.0f ? d : 0.0f; } };
struct OpLogBack { __device__ static float f(float x, float d) { return d / x; } };
struct OpInvBack { __device__ static float f(float x, float d) { return -(d / x) / x; } };
// s(x) (1 - s(x)) as s(x) s(-x): no cancellation when s(x) is near 1.
struct OpSigmoidBack {
    __device__ static float f(float x, float d) { return d * sigmoid_f(x) * sigmoid_f(-x); }
};

template <class Op>
__device__ __forceinline__ void zip_strided(float* __restrict__ out, const float* __restrict__ a,
                                            const float* __restrict__ b, const Meta& meta) {
    const u32 size = meta.w[0];
    const u32 rank = meta.w[1];
    const u32 a_offset = meta.w[2];
    const u32 b_offset = meta.w[3];
    const u32* shape = &meta.w[4];
    const u32* a_strides = &meta.w[4 + rank];
    const u32* b_strides = &meta.w[4 + 2 * rank];
    for (u64 i = grid_start(); i < size; i += grid_stride()) {
        u32 pa, pb;
        strided_position2((u32)i, shape, a_strides, b_strides, rank, a_offset, b_offset, &pa, &pb);
        out[i] = Op::f(a[pa], b[pb]);
    }
}

template <class Op>
__device__ __forceinline__ void zip_contiguous(float* __restrict__ out, const float* __restrict__ a,
                                           const float* __restrict__ b, const Meta& meta) {
    const u32 size = meta.w[0];
    const float* __restrict__ as = a + meta.w[2];
    const float* __restrict__ bs = b + meta.w[3];
    for (u64 i = grid_start(); i < size; i += grid_stride()) {
        out[i] = Op::f(as[i], bs[i]);
    }
}

#define ZIP_ENTRY(name, Op)                                                                        \
    extern "C" __global__ void __launch_bounds__(BLOCK)                                            \
        zip_##name(float* __restrict__ out, const float* __restrict__ a,                           \
                   const float* __restrict__ b, const GRID_CONSTANT Meta meta) {               \
        zip_strided<Op>(out, a, b, meta);                                                          \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(BLOCK)                                            \
        zip_##name##_contiguous(float* __restrict__ out, const float* __restrict__ a,              \
                            const float* __restrict__ b, const GRID_CONSTANT Meta meta) {      \
        zip_contiguous<Op>(out, a, b, meta);                                                       \
    }

ZIP_ENTRY(add, OpAdd)
ZIP_ENTRY(mul, OpMul)
ZIP_ENTRY(lt, OpLt)
ZIP_ENTRY(eq, OpEq)
ZIP_ENTRY(is_close, OpIsClose)
ZIP_ENTRY(relu_back, OpReluBack)
ZIP_ENTRY(log_back, OpLogBack)
ZIP_ENTRY(inv_back, OpInvBack)
ZIP_ENTRY(sigmoid_back, OpSigmoidBack)
