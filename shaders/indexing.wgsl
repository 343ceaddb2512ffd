// Shared indexing helpers, concatenated in front of every kernel (WGSL has no #include).
//
// Every kernel declares its metadata as `md: array<u32>` (layouts in src/backend/gpu/meta.rs);
// these helpers read shapes and strides straight out of it, so the index arithmetic is
// written once. Layouts are never broadcast here: the caller hands over stride-0 layouts.

// Threads per workgroup of the elementwise and reduce kernels.
const WG: u32 = 256u;

// Linear workgroup number of a launch folded into two dimensions (past the 65,535
// workgroups per dimension limit the host launches (x, y) with x * y >= groups).
fn workgroup_linear(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

// Global thread number of a folded one-dimensional launch.
fn global_linear(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return workgroup_linear(wg, nwg) * WG + lid;
}

// Storage position of row-major ordinal `i` of a layout of `rank` dimensions: its shape at
// md[shape_at..], its strides at md[strides_at..] (to_index and index_to_position fused,
// walking from the last dimension, which moves fastest).
fn strided_position(i: u32, rank: u32, shape_at: u32, strides_at: u32, offset: u32) -> u32 {
    var rem = i;
    var pos = offset;
    var d = rank;
    while (d > 0u) {
        d = d - 1u;
        let dim = md[shape_at + d];
        pos = pos + (rem % dim) * md[strides_at + d];
        rem = rem / dim;
    }
    return pos;
}

// The same walk for two layouts of one shape at once (zip's two inputs).
fn strided_position2(i: u32, rank: u32, shape_at: u32, a_strides_at: u32, b_strides_at: u32,
                     a_offset: u32, b_offset: u32) -> vec2<u32> {
    var rem = i;
    var pa = a_offset;
    var pb = b_offset;
    var d = rank;
    while (d > 0u) {
        d = d - 1u;
        let dim = md[shape_at + d];
        let idx = rem % dim;
        pa = pa + idx * md[a_strides_at + d];
        pb = pb + idx * md[b_strides_at + d];
        rem = rem / dim;
    }
    return vec2<u32>(pa, pb);
}
