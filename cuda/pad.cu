// pad (twin of shaders/pad.wgsl): zero padding with dilation, the convolution family.
// Along every dimension input element i lands at output position lo + i * step (lo
// negative crops); every other output element is 0. Grid-stride loop over the output.
// Metadata (src/backend/gpu/meta.rs):
//   [size, rank, x_offset, out_shape[rank], in_shape[rank], x_strides[rank],
//    lo[rank] (i32 bits), step[rank]].
#include "indexing.cuh"

extern "C" __global__ void __launch_bounds__(BLOCK)
    pad_any(float* __restrict__ out, const float* __restrict__ x, const GRID_CONSTANT Meta meta) {
    const u32 size = meta.w[0];
    const u32 rank = meta.w[1];
    for (u64 i = grid_start(); i < size; i += grid_stride()) {
        u32 rem = (u32)i;
        u32 pos = meta.w[2];
        bool inside = true;
        for (u32 d = rank; d > 0;) {
            d--;
            const u32 o = rem % meta.w[3 + d];
            rem /= meta.w[3 + d];
            // Output position relative to input element 0; every value is below 2^31.
            const int rel = (int)o - (int)meta.w[3 + 3 * rank + d];
            const int step = (int)meta.w[3 + 4 * rank + d];
            const int src = rel / step;
            if (rel < 0 || rel % step != 0 || src >= (int)meta.w[3 + rank + d]) {
                inside = false;
            } else {
                pos += (u32)src * meta.w[3 + 2 * rank + d];
            }
        }
        out[i] = inside ? x[pos] : 0.0f;
    }
}
