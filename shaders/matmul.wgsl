// Batched tiled matmul: [..batch, n, k] @ [..batch, k, m] -> contiguous [..batch, n, m].
// One workgroup of 16x16 threads computes a 64x64 output tile; each thread owns a 4x4 block
// of it in registers (rows ty + 16*i, columns tx + 16*j, so neighbouring threads write
// neighbouring columns). K is walked in steps of BK = 16: a 64x16 tile of A and a 16x64
// tile of B are staged in workgroup memory, each value read from global memory once per
// tile. Edges are guarded (zeros are staged past n, k or m), so any size works. The batch
// is the z axis of the grid; batch strides (0 for a broadcast batch) locate each operand.
// Metadata: [batch, n, k, m, batch_rank, a_offset, b_offset, a_row_stride, a_col_stride,
//            b_row_stride, b_col_stride, batch_shape[batch_rank],
//            a_batch_strides[batch_rank], b_batch_strides[batch_rank]].

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> md: array<u32>;

const TILE: u32 = 64u;
const BK: u32 = 16u;

// As[kk * TILE + r] = A[row0 + r, t + kk]; Bs[kk * TILE + c] = B[t + kk, col0 + c].
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

@compute @workgroup_size(16, 16, 1)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let n = md[1];
    let k = md[2];
    let m = md[3];
    let br = md[4];
    let a_rs = md[7];
    let a_cs = md[8];
    let b_rs = md[9];
    let b_cs = md[10];
    let z = wg.z;
    let a_base = strided_position(z, br, 11u, 11u + br, md[5]);
    let b_base = strided_position(z, br, 11u, 11u + 2u * br, md[6]);
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;

    var acc: array<f32, 16>;
    for (var q = 0u; q < 16u; q = q + 1u) {
        acc[q] = 0.0;
    }

    for (var t = 0u; t < k; t = t + BK) {
        // 1024 values of each tile, 4 per thread.
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = lid + 256u * q;
            // A: consecutive threads take consecutive k of one row.
            let ar = e / BK;
            let ak = e % BK;
            var va = 0.0;
            if (row0 + ar < n && t + ak < k) {
                va = a[a_base + (row0 + ar) * a_rs + (t + ak) * a_cs];
            }
            As[ak * TILE + ar] = va;
            // B: consecutive threads take consecutive columns of one k.
            let bk = e / TILE;
            let bc = e % TILE;
            var vb = 0.0;
            if (t + bk < k && col0 + bc < m) {
                vb = b[b_base + (t + bk) * b_rs + (col0 + bc) * b_cs];
            }
            Bs[bk * TILE + bc] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var ra: array<f32, 4>;
            var rb: array<f32, 4>;
            for (var q = 0u; q < 4u; q = q + 1u) {
                ra[q] = As[kk * TILE + l.y + 16u * q];
                rb[q] = Bs[kk * TILE + l.x + 16u * q];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i * 4u + j] = acc[i * 4u + j] + ra[i] * rb[j];
                }
            }
        }
        workgroupBarrier();
    }

    let out_base = z * n * m;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = row0 + l.y + 16u * i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let c = col0 + l.x + 16u * j;
            if (r < n && c < m) {
                out[out_base + r * m + c] = acc[i * 4u + j];
            }
        }
    }
}
