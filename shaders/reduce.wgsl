// reduce (twin of cuda/reduce.cu). Two shapes of kernel, chosen by the host from the shape
// (src/backend/gpu/plan.rs):
// - tree (reduce_OPNAME, reduce_OPNAME_contiguous): one workgroup of 256 threads per output
//   position. Each thread folds a strided share of the reduced dimension (j = lid,
//   lid + 256, ...), then a shared-memory tree combines the 256 partial results. For long
//   reduced dimensions.
// - serial (reduce_serial_OPNAME, reduce_serial_OPNAME_contiguous): one thread per output
//   folds the whole reduced dimension in order. For short reduced dimensions, or many
//   outputs whose reduced dimension is not the innermost one (coalesced reads).
// Correct for any length; length 0 gives the identity. WGSL has no 64-bit integers: the
// host rejects a reduced length within 256 of 2^32, so `j = j + WG` cannot wrap.
// Template: OPNAME is replaced by a ReduceOp name (sum, prod, max). The ops' identity_<op>
// and combine_<op> are the block at the end, generated from the reduce table.
// Metadata (src/backend/gpu/meta.rs):
//   [out_size, rank, x_offset, reduce_dim, reduce_len, reduce_stride,
//    out_shape[rank] (reduce_dim set to 1), x_strides[rank]].

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> md: array<u32>;

var<workgroup> part: array<f32, 256>;

// -inf made at run time (the max row's identity): a constant expression may not be
// infinite (Chromium's Tint rejects it; naga accepts it).
fn neg_inf() -> f32 {
    var bits = 0xff800000u;
    return bitcast<f32>(bits);
}

// Fold this thread's share starting at storage position `base`, then the tree; thread 0
// writes output `o`. Barriers stay in uniform control flow: `o` is per workgroup.
fn reduce_body(o: u32, base: u32, lid: u32) {
    let in_range = o < md[0];
    let len = md[4];
    let stride = md[5];
    var acc = identity_OPNAME();
    if (in_range) {
        for (var j = lid; j < len; j = j + WG) {
            acc = combine_OPNAME(acc, x[base + j * stride]);
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            part[lid] = combine_OPNAME(part[lid], part[lid + s]);
        }
        workgroupBarrier();
    }
    if (in_range && lid == 0u) {
        out[o] = part[0];
    }
}

// Any strides and offset: the base of output o is the input position of o's index with
// the reduced dimension at 0.
@compute @workgroup_size(256)
fn reduce_OPNAME(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let o = workgroup_linear(wg, nwg);
    let rank = md[1];
    var base = 0u;
    if (o < md[0]) {
        base = strided_position(o, rank, 6u, 6u + rank, md[2]);
    }
    reduce_body(o, base, lid);
}

// Fast path: x contiguous, so reduce_stride is the product of the dimensions after the
// reduced one and output o = (outer, inner) starts at offset + outer * len * stride + inner.
@compute @workgroup_size(256)
fn reduce_OPNAME_contiguous(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let o = workgroup_linear(wg, nwg);
    let len = md[4];
    let stride = max(md[5], 1u);
    let base = md[2] + (o / stride) * len * stride + (o % stride);
    reduce_body(o, base, lid);
}

// Fold the reduced run that starts at storage position `base`, in order.
fn serial_fold(base: u32) -> f32 {
    let len = md[4];
    let stride = md[5];
    var acc = identity_OPNAME();
    for (var j = 0u; j < len; j = j + 1u) {
        acc = combine_OPNAME(acc, x[base + j * stride]);
    }
    return acc;
}

// One thread per output, any strides and offset.
@compute @workgroup_size(256)
fn reduce_serial_OPNAME(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let o = global_linear(wg, nwg, lid);
    if (o >= md[0]) {
        return;
    }
    let rank = md[1];
    out[o] = serial_fold(strided_position(o, rank, 6u, 6u + rank, md[2]));
}

// One thread per output, x contiguous (reduce_stride is the inner block size).
@compute @workgroup_size(256)
fn reduce_serial_OPNAME_contiguous(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                   @builtin(local_invocation_index) lid: u32) {
    let o = global_linear(wg, nwg, lid);
    if (o >= md[0]) {
        return;
    }
    let stride = max(md[5], 1u);
    out[o] = serial_fold(md[2] + (o / stride) * md[4] * stride + (o % stride));
}

// BEGIN reduce table: one entry per row of src/backend/op_table.rs, written by
// src/backend/gpu/sources.rs (MINITORCH_UPDATE_SOURCES=1 cargo test --lib gpu::sources).
fn identity_sum() -> f32 {
    return 0.0;
}
fn combine_sum(acc: f32, v: f32) -> f32 {
    return acc + v;
}
fn identity_prod() -> f32 {
    return 1.0;
}
fn combine_prod(acc: f32, v: f32) -> f32 {
    return acc * v;
}
fn identity_max() -> f32 {
    return neg_inf();
}
fn combine_max(acc: f32, v: f32) -> f32 {
    return select(v, acc, acc > v || (bitcast<u32>(acc) & 0x7fffffffu) > 0x7f800000u);
}
// END reduce table
