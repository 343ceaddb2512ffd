// map: out[i] = op(x[pos(i)]). Template: OPNAME is replaced by a UnaryOp name at pipeline
// build, so each op is its own pipeline and the inner loop has no branch on the op.
// Metadata: [size, rank, x_offset, shape[rank], x_strides[rank]].

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> md: array<u32>;

fn op_neg(v: f32) -> f32 { return -v; }
fn op_id(v: f32) -> f32 { return v; }
fn op_inv(v: f32) -> f32 { return 1.0 / v; }
fn op_relu(v: f32) -> f32 { return select(0.0, v, v > 0.0); }
fn op_sigmoid(v: f32) -> f32 { return sigmoid_f(v); }
fn op_log(v: f32) -> f32 { return log_f(v); }
fn op_exp(v: f32) -> f32 { return exp_f(v); }
fn op_sqrt(v: f32) -> f32 { return sqrt(v); }

// Any strides and offset.
@compute @workgroup_size(256)
fn map_OPNAME(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = global_linear(wg, nwg, lid);
    if (i >= md[0]) {
        return;
    }
    let rank = md[1];
    out[i] = op_OPNAME(x[strided_position(i, rank, 3u, 3u + rank, md[2])]);
}

// Fast path: x contiguous, so ordinal i lives at offset + i (no index arithmetic).
@compute @workgroup_size(256)
fn map_OPNAME_contiguous(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = global_linear(wg, nwg, lid);
    if (i >= md[0]) {
        return;
    }
    out[i] = op_OPNAME(x[md[2] + i]);
}
