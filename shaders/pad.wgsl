// pad (twin of cuda/pad.cu): zero padding with dilation, the convolution family. Along
// every dimension input element i lands at output position lo + i * step (lo negative
// crops); every other output element is 0. One thread per output element.
// Metadata (src/backend/gpu/meta.rs):
//   [size, rank, x_offset, out_shape[rank], in_shape[rank], x_strides[rank],
//    lo[rank] (i32 bits), step[rank]].

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> md: array<u32>;

@compute @workgroup_size(256)
fn pad_OPNAME(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = global_linear(wg, nwg, lid);
    if (i >= md[0]) {
        return;
    }
    let rank = md[1];
    var rem = i;
    var pos = md[2];
    var inside = true;
    var d = rank;
    while (d > 0u) {
        d = d - 1u;
        let o = rem % md[3u + d];
        rem = rem / md[3u + d];
        // Output position relative to input element 0; every value is below 2^31.
        let rel = i32(o) - bitcast<i32>(md[3u + 3u * rank + d]);
        let step = i32(md[3u + 4u * rank + d]);
        let src = rel / max(step, 1);
        if (rel < 0 || rel % step != 0 || src >= i32(md[3u + rank + d])) {
            inside = false;
        } else {
            pos = pos + u32(src) * md[3u + 2u * rank + d];
        }
    }
    if (inside) {
        out[i] = x[pos];
    } else {
        out[i] = 0.0;
    }
}
