// zip: out[i] = op(a[pos_a(i)], b[pos_b(i)]) for two layouts of one shape (broadcast
// inputs arrive with stride 0). Template: OPNAME is replaced by a BinaryOp name.
// Metadata: [size, rank, a_offset, b_offset, shape[rank], a_strides[rank], b_strides[rank]].

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> md: array<u32>;

fn op_add(x: f32, y: f32) -> f32 { return x + y; }
fn op_mul(x: f32, y: f32) -> f32 { return x * y; }
fn op_lt(x: f32, y: f32) -> f32 { return select(0.0, 1.0, x < y); }
fn op_eq(x: f32, y: f32) -> f32 { return select(0.0, 1.0, x == y); }
fn op_is_close(x: f32, y: f32) -> f32 { return select(0.0, 1.0, abs(x - y) < 0.01); }
fn op_relu_back(x: f32, d: f32) -> f32 { return select(0.0, d, x > 0.0); }
fn op_log_back(x: f32, d: f32) -> f32 { return d / x; }
fn op_inv_back(x: f32, d: f32) -> f32 { return -(d / x) / x; }
// s(x) (1 - s(x)) as s(x) s(-x): no cancellation when s(x) is near 1.
fn op_sigmoid_back(x: f32, d: f32) -> f32 { return d * sigmoid_f(x) * sigmoid_f(-x); }

// Any strides and offsets.
@compute @workgroup_size(256)
fn zip_OPNAME(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = global_linear(wg, nwg, lid);
    if (i >= md[0]) {
        return;
    }
    let rank = md[1];
    let p = strided_position2(i, rank, 4u, 4u + rank, 4u + 2u * rank, md[2], md[3]);
    out[i] = op_OPNAME(a[p.x], b[p.y]);
}

// Fast path: both inputs contiguous, ordinal i at offset + i.
@compute @workgroup_size(256)
fn zip_OPNAME_contiguous(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = global_linear(wg, nwg, lid);
    if (i >= md[0]) {
        return;
    }
    out[i] = op_OPNAME(a[md[2] + i], b[md[3] + i]);
}
