// Batched tiled matmul (twin of cuda/matmul.cu): [..batch, n, k] @ [..batch, k, m] ->
// contiguous [..batch, n, m].
// One workgroup of 16x16 threads computes a 64x64 output tile; each thread owns a 4x4 block
// of it in registers (rows ty + 16*i, columns tx + 16*j, so neighbouring threads write
// neighbouring columns). K is walked in steps of BK = 16: a 64x16 tile of A and a 16x64
// tile of B are staged in workgroup memory, each value read from global memory once per
// tile. Edges are guarded (zeros are staged past n, k or m), so any size works. Batch
// strides (0 for a broadcast batch) locate each operand. Workgroups loop over column tiles
// (x), row tiles (y) and batches (z), so a grid capped at the device's 65,535 workgroups
// per dimension covers any size. Counters are u32: every extent is below 2^30 (wgpu's
// u32 binding sizes), so `+ BK` and `+ num_workgroups` cannot wrap.
//
// matmul_fast: the same product for row-major operands whose sizes are whole tiles (n and
// m multiples of 128, k a multiple of 8) and whose offsets and batch strides are multiples
// of 4 floats (src/backend/gpu/plan.rs, matmul_fast_applies), so every load is an aligned
// vec4 with no bounds check. 256 threads compute a 128 x 128 tile, 8 x 8 outputs each
// (rows ty*4 .. +3 and 64 + ty*4 .. +3, likewise for columns); A is stored transposed in
// workgroup memory, its row groups XOR-swizzled by the k step (conflict-free stores; the
// CUDA twin pads instead, which would exceed WebGPU's 16 KiB of workgroup memory), and the
// slices are double-buffered (the next is loaded into registers while the current one is
// multiplied). The
// vec4 views a4, b4, out4 alias bindings 0-2 and are used by matmul_fast only.
// Metadata (src/backend/gpu/meta.rs):
//   [batch, n, k, m, batch_rank, a_offset, b_offset, a_row_stride, a_col_stride,
//    b_row_stride, b_col_stride, batch_shape[batch_rank],
//    a_batch_strides[batch_rank], b_batch_strides[batch_rank]].

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
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) l: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let row_tiles = (md[1] + TILE - 1u) / TILE;
    let col_tiles = (md[3] + TILE - 1u) / TILE;
    // Bounds and steps are the same for the whole workgroup: barriers stay uniform.
    for (var z = wg.z; z < md[0]; z = z + nwg.z) {
        for (var ty = wg.y; ty < row_tiles; ty = ty + nwg.y) {
            for (var tx = wg.x; tx < col_tiles; tx = tx + nwg.x) {
                matmul_tile(z, ty * TILE, tx * TILE, l, lid);
            }
        }
    }
}

// Output tile (row0, col0) of batch z.
fn matmul_tile(z: u32, row0: u32, col0: u32, l: vec3<u32>, lid: u32) {
    let n = md[1];
    let k = md[2];
    let m = md[3];
    let br = md[4];
    let a_rs = md[7];
    let a_cs = md[8];
    let b_rs = md[9];
    let b_cs = md[10];
    let a_base = strided_position(z, br, 11u, 11u + br, md[5]);
    let b_base = strided_position(z, br, 11u, 11u + 2u * br, md[6]);

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

@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<f32>>;

const FT: u32 = 128u;
const FBK: u32 = 8u;
// vec4 per row of the transposed A slice (128 rows / 4).
const FA_ROW: u32 = 32u;

// Af[buf * 256 + kk * 32 + (r / 4 ^ swz(kk))][r % 4] = A[row0 + r, k0 + kk];
// Bf[buf * 256 + kk * 32 + c / 4] = B[k0 + kk, col0 + c .. + 3].
var<workgroup> Af: array<vec4<f32>, 512>;
var<workgroup> Bf: array<vec4<f32>, 512>;

@compute @workgroup_size(256)
fn matmul_fast(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row_tiles = md[1] / FT;
    let col_tiles = md[3] / FT;
    for (var z = wg.z; z < md[0]; z = z + nwg.z) {
        for (var ty = wg.y; ty < row_tiles; ty = ty + nwg.y) {
            for (var tx = wg.x; tx < col_tiles; tx = tx + nwg.x) {
                matmul_fast_tile(z, ty * FT, tx * FT, lid);
            }
        }
    }
}

// Store this thread's A vec4 (row a_r, k a_k .. +3) transposed, and its B vec4, into `buf`.
// The swizzle of k step kk: row groups of kk >= 4 are XOR-ed with 4, so the two halves of
// a warp's transposing stores fall in different banks.
fn swz(kk: u32) -> u32 {
    return (kk / 4u) * 4u;
}

fn fast_store(buf: u32, lid: u32, ra: vec4<f32>, rb: vec4<f32>) {
    let a_r = lid / 2u;
    let a_k = (lid % 2u) * 4u;
    let at = buf * FBK * FA_ROW + a_k * FA_ROW + ((a_r / 4u) ^ swz(a_k));
    let c = a_r % 4u;
    Af[at][c] = ra.x;
    Af[at + FA_ROW][c] = ra.y;
    Af[at + 2u * FA_ROW][c] = ra.z;
    Af[at + 3u * FA_ROW][c] = ra.w;
    Bf[buf * 256u + (lid / 32u) * 32u + lid % 32u] = rb;
}

fn matmul_fast_tile(z: u32, row0: u32, col0: u32, lid: u32) {
    let k = md[2];
    let m = md[3];
    let br = md[4];
    let a_base = strided_position(z, br, 11u, 11u + br, md[5]);
    let b_base = strided_position(z, br, 11u, 11u + 2u * br, md[6]);
    let tx = lid % 16u;
    let ty = lid / 16u;
    // This thread's vec4 of each slice, in vec4 units at k0 = 0, and the steps per slice.
    let a_at = (a_base + (row0 + lid / 2u) * k + (lid % 2u) * 4u) / 4u;
    let b_at = (b_base + (lid / 32u) * m + col0 + (lid % 32u) * 4u) / 4u;
    let b_step = FBK * m / 4u;

    var acc: array<vec4<f32>, 16>;
    for (var q = 0u; q < 16u; q = q + 1u) {
        acc[q] = vec4<f32>(0.0);
    }
    var ra = a4[a_at];
    var rb = b4[b_at];
    fast_store(0u, lid, ra, rb);
    workgroupBarrier();
    var buf = 0u;
    var step = 0u;
    for (var k0 = 0u; k0 < k; k0 = k0 + FBK) {
        let has_next = k0 + FBK < k;
        if (has_next) {
            step = step + 1u;
            ra = a4[a_at + step * 2u];
            rb = b4[b_at + step * b_step];
        }
        for (var kk = 0u; kk < FBK; kk = kk + 1u) {
            let ab = buf * FBK * FA_ROW + kk * FA_ROW;
            let a0 = Af[ab + (ty ^ swz(kk))];
            let a1 = Af[ab + ((16u + ty) ^ swz(kk))];
            let bb = buf * 256u + kk * 32u;
            let b0 = Bf[bb + tx];
            let b1 = Bf[bb + 16u + tx];
            for (var i = 0u; i < 4u; i = i + 1u) {
                acc[2u * i] = fma(vec4<f32>(a0[i]), b0, acc[2u * i]);
                acc[2u * i + 1u] = fma(vec4<f32>(a0[i]), b1, acc[2u * i + 1u]);
                acc[8u + 2u * i] = fma(vec4<f32>(a1[i]), b0, acc[8u + 2u * i]);
                acc[9u + 2u * i] = fma(vec4<f32>(a1[i]), b1, acc[9u + 2u * i]);
            }
        }
        if (has_next) {
            // The other buffer was last read before the previous barrier.
            fast_store(buf ^ 1u, lid, ra, rb);
        }
        workgroupBarrier();
        buf = buf ^ 1u;
    }

    let out_base = z * md[1] * m;
    for (var i = 0u; i < 8u; i = i + 1u) {
        var row = row0 + ty * 4u + i;
        if (i >= 4u) {
            row = row0 + 64u + ty * 4u + (i - 4u);
        }
        let at = (out_base + row * m + col0) / 4u;
        out4[at + tx] = acc[2u * i];
        out4[at + 16u + tx] = acc[2u * i + 1u];
    }
}
