// Batched matrix product (twin of shaders/matmul.wgsl): out[z] = a[z] @ b[z] with
// a[z]: n x k, b[z]: k x m, any strides (transposed and broadcast inputs read in place).
//
// Each block of 256 threads (16 x 16) computes one 64 x 64 tile of the output; each thread
// owns a 4 x 4 patch of it in registers. The k dimension is walked in steps of BK = 16:
// the 64 x 16 slice of A and the 16 x 64 slice of B are staged in shared memory, so every
// input value is read from global memory once per tile, and each output is written once.
// Shared memory is double-buffered: the next slices are loaded into registers while the
// current ones are multiplied, with one barrier per step.
// Blocks loop over row tiles (grid y) and batches (grid z), so n and batch may exceed the
// 65535 limit of those grid axes; batch z reads its matrices at the batch strides (0 for
// a broadcast batch dimension). Edges are guarded: any n, k, m works (k = 0 gives zeros).
//
// matmul_fast: the same product for row-major operands whose sizes are whole tiles
// (n and m multiples of 128, k a multiple of 8) and whose offsets and batch strides are
// multiples of 4 floats, so every load is an aligned float4 with no bounds check. Each
// block of 256 threads computes a 128 x 128 tile; each thread owns 8 x 8 outputs (rows
// ty*4 .. +3 and 64 + ty*4 .. +3, likewise for columns, so its shared-memory reads are two
// float4 per operand and step). A is stored transposed in shared memory with rows padded
// by 4 floats, which keeps both the transposing stores and the float4 reads free of bank
// conflicts; the slices are double-buffered (the next is loaded into registers while the
// current one is multiplied, one barrier per step). The host picks it (kernels.rs,
// matmul_fast_applies); anything else takes `matmul`.
// Metadata (src/backend/gpu/meta.rs):
//   [batch, n, k, m, batch_rank, a_offset, b_offset, a_row_stride, a_col_stride,
//    b_row_stride, b_col_stride, batch_shape[batch_rank],
//    a_batch_strides[batch_rank], b_batch_strides[batch_rank]].
#include "indexing.cuh"

#define TILE 64          // output tile edge (rows of A and columns of B per block)
#define BK 16            // k step
#define THREADS 256      // 16 x 16 threads
#define RT 4             // outputs per thread along each axis (TILE = 16 * RT)
#define PAD 4            // shared-row padding: fewer bank conflicts, keeps float4 alignment
#define LOADS ((TILE * BK) / THREADS)  // elements of each slice one thread loads (4)

struct MatmulArgs {
    const float* __restrict__ a;
    const float* __restrict__ b;
    u32 n, k, m;
    u32 ars, acs, brs, bcs;
    // Load order of the slices, chosen once per launch from the strides so that
    // neighbouring threads read neighbouring addresses (coalesced) for row- and
    // column-major inputs alike.
    bool a_rows_fast;  // A is column-major: walk rows fastest
    bool b_k_fast;     // B is column-major: walk k fastest
};

// Element r of this thread's share of the A slice at k0: (row, kk) inside the tile.
__device__ __forceinline__ void a_slot(const MatmulArgs& p, u32 tid, u32 r, u32* row, u32* kk) {
    const u32 e = tid + THREADS * r;
    if (p.a_rows_fast) {
        *row = e % TILE;
        *kk = e / TILE;
    } else {
        *row = e / BK;
        *kk = e % BK;
    }
}

// Element r of this thread's share of the B slice at k0: (kk, col) inside the tile.
__device__ __forceinline__ void b_slot(const MatmulArgs& p, u32 tid, u32 r, u32* kk, u32* col) {
    const u32 e = tid + THREADS * r;
    if (p.b_k_fast) {
        *kk = e % BK;
        *col = e / BK;
    } else {
        *kk = e / TILE;
        *col = e % TILE;
    }
}

// Read this thread's share of the slices at k0 from global memory (0 outside the matrices).
__device__ __forceinline__ void load_slices(const MatmulArgs& p, u32 a_base, u32 b_base, u32 row0,
                                            u32 col0, u32 k0, u32 tid, float* ra, float* rb) {
#pragma unroll
    for (u32 r = 0; r < LOADS; ++r) {
        u32 row, kk;
        a_slot(p, tid, r, &row, &kk);
        // 64-bit: a tile may reach past 2^32 near the edge of a huge matrix.
        const u64 gr = (u64)row0 + row;
        const u64 gk = (u64)k0 + kk;
        ra[r] = (gr < p.n && gk < p.k) ? p.a[a_base + (u32)gr * p.ars + (u32)gk * p.acs] : 0.0f;
    }
#pragma unroll
    for (u32 r = 0; r < LOADS; ++r) {
        u32 kk, col;
        b_slot(p, tid, r, &kk, &col);
        const u64 gk = (u64)k0 + kk;
        const u64 gc = (u64)col0 + col;
        rb[r] = (gk < p.k && gc < p.m) ? p.b[b_base + (u32)gk * p.brs + (u32)gc * p.bcs] : 0.0f;
    }
}

// Write the registers loaded by load_slices into one shared buffer.
__device__ __forceinline__ void store_slices(const MatmulArgs& p, u32 tid, const float* ra,
                                             const float* rb, float (*as)[TILE + PAD],
                                             float (*bs)[TILE + PAD]) {
#pragma unroll
    for (u32 r = 0; r < LOADS; ++r) {
        u32 row, kk;
        a_slot(p, tid, r, &row, &kk);
        as[kk][row] = ra[r];
    }
#pragma unroll
    for (u32 r = 0; r < LOADS; ++r) {
        u32 kk, col;
        b_slot(p, tid, r, &kk, &col);
        bs[kk][col] = rb[r];
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
    matmul(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,
           const GRID_CONSTANT Meta meta) {
    // As[buf][kk][row] and Bs[buf][kk][col]: a thread's 4 rows (or columns) are adjacent,
    // so it reads them with one 16-byte load.
    __shared__ __align__(16) float As[2][BK][TILE + PAD];
    __shared__ __align__(16) float Bs[2][BK][TILE + PAD];

    const u32 batch = meta.w[0];
    MatmulArgs p;
    p.a = a;
    p.b = b;
    p.n = meta.w[1];
    p.k = meta.w[2];
    p.m = meta.w[3];
    const u32 batch_rank = meta.w[4];
    const u32 a_offset = meta.w[5];
    const u32 b_offset = meta.w[6];
    p.ars = meta.w[7];
    p.acs = meta.w[8];
    p.brs = meta.w[9];
    p.bcs = meta.w[10];
    const u32* batch_shape = &meta.w[11];
    const u32* a_batch_strides = &meta.w[11 + batch_rank];
    const u32* b_batch_strides = &meta.w[11 + 2 * batch_rank];
    p.a_rows_fast = p.ars == 1 && p.acs != 1;
    p.b_k_fast = p.brs == 1 && p.bcs != 1;

    const u32 tid = threadIdx.x;
    const u32 tx = tid % 16;  // output columns col0 + tx * 4 .. + 3
    const u32 ty = tid / 16;  // output rows row0 + ty * 4 .. + 3
    const u32 row_tiles = (p.n + TILE - 1) / TILE;
    const u32 col0 = blockIdx.x * TILE;
    const bool vec_store = (p.m % 4) == 0;

    // 64-bit loop counters: `+= gridDim` and `+= BK` cannot wrap near 2^32.
    for (u64 z = blockIdx.z; z < batch; z += gridDim.z) {
        u32 a_base, b_base;
        strided_position2((u32)z, batch_shape, a_batch_strides, b_batch_strides, batch_rank,
                              a_offset, b_offset, &a_base, &b_base);
        float* __restrict__ c = out + z * p.n * p.m;

        for (u64 ty_tile = blockIdx.y; ty_tile < row_tiles; ty_tile += gridDim.y) {
            const u32 row0 = (u32)ty_tile * TILE;
            float acc[RT][RT];
#pragma unroll
            for (u32 i = 0; i < RT; ++i) {
#pragma unroll
                for (u32 j = 0; j < RT; ++j) {
                    acc[i][j] = 0.0f;
                }
            }

            float ra[LOADS];
            float rb[LOADS];
            u32 buf = 0;
            if (p.k > 0) {
                load_slices(p, a_base, b_base, row0, col0, 0, tid, ra, rb);
                store_slices(p, tid, ra, rb, As[0], Bs[0]);
            }
            __syncthreads();

            for (u64 k0 = 0; k0 < p.k; k0 += BK) {
                const bool has_next = k0 + BK < p.k;
                if (has_next) {
                    // Issued before the arithmetic so the loads overlap it.
                    load_slices(p, a_base, b_base, row0, col0, (u32)(k0 + BK), tid, ra, rb);
                }
#pragma unroll
                for (u32 kk = 0; kk < BK; ++kk) {
                    const float4 av = *reinterpret_cast<const float4*>(&As[buf][kk][ty * RT]);
                    const float4 bv = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * RT]);
                    const float a_reg[RT] = {av.x, av.y, av.z, av.w};
                    const float b_reg[RT] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
                    for (u32 i = 0; i < RT; ++i) {
#pragma unroll
                        for (u32 j = 0; j < RT; ++j) {
                            acc[i][j] = fmaf(a_reg[i], b_reg[j], acc[i][j]);
                        }
                    }
                }
                if (has_next) {
                    // The other buffer was last read before the previous barrier.
                    store_slices(p, tid, ra, rb, As[buf ^ 1], Bs[buf ^ 1]);
                }
                __syncthreads();
                buf ^= 1;
            }

#pragma unroll
            for (u32 i = 0; i < RT; ++i) {
                const u64 row = (u64)row0 + ty * RT + i;
                if (row >= p.n) {
                    break;
                }
                const u64 col = (u64)col0 + tx * RT;
                float* __restrict__ dst = c + row * p.m + col;
                if (vec_store && col + RT <= p.m) {
                    *reinterpret_cast<float4*>(dst) = make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
                } else {
#pragma unroll
                    for (u32 j = 0; j < RT; ++j) {
                        if (col + j < p.m) {
                            dst[j] = acc[i][j];
                        }
                    }
                }
            }
        }
    }
}

#define FT 128       // matmul_fast: output tile edge
#define FBK 8        // matmul_fast: k step
#define FPAD 4       // matmul_fast: padding of the transposed A rows (conflict-free)

// At most 128 registers a thread, so two blocks share a multiprocessor (16 warps).
extern "C" __global__ void __launch_bounds__(THREADS, 2)
    matmul_fast(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,
                const GRID_CONSTANT Meta meta) {
    // As[buf][kk][row] (A transposed, rows padded); Bs[buf][kk][col].
    __shared__ __align__(16) float As[2][FBK][FT + FPAD];
    __shared__ __align__(16) float Bs[2][FBK][FT];

    const u32 batch = meta.w[0];
    const u32 n = meta.w[1];
    const u32 k = meta.w[2];
    const u32 m = meta.w[3];
    const u32 batch_rank = meta.w[4];
    const u32* batch_shape = &meta.w[11];
    const u32* a_batch_strides = &meta.w[11 + batch_rank];
    const u32* b_batch_strides = &meta.w[11 + 2 * batch_rank];

    const u32 tid = threadIdx.x;
    const u32 tx = tid % 16;
    const u32 ty = tid / 16;
    // This thread's float4 of each slice: A row a_r, k a_k .. +3; B k b_k, columns b_c .. +3.
    const u32 a_r = tid / 2;
    const u32 a_k = (tid % 2) * 4;
    const u32 b_k = tid / 32;
    const u32 b_c = (tid % 32) * 4;
    const u32 row_tiles = n / FT;
    const u32 col0 = blockIdx.x * FT;

    for (u64 z = blockIdx.z; z < batch; z += gridDim.z) {
        u32 a_base, b_base;
        strided_position2((u32)z, batch_shape, a_batch_strides, b_batch_strides, batch_rank,
                          meta.w[5], meta.w[6], &a_base, &b_base);
        for (u64 ty_tile = blockIdx.y; ty_tile < row_tiles; ty_tile += gridDim.y) {
            const u32 row0 = (u32)ty_tile * FT;
            const float* __restrict__ a_ptr = a + a_base + (row0 + a_r) * k + a_k;
            const float* __restrict__ b_ptr = b + b_base + b_k * m + col0 + b_c;
            float acc[8][8];
#pragma unroll
            for (u32 i = 0; i < 8; ++i) {
#pragma unroll
                for (u32 j = 0; j < 8; ++j) {
                    acc[i][j] = 0.0f;
                }
            }
            float4 ra = *reinterpret_cast<const float4*>(a_ptr);
            float4 rb = *reinterpret_cast<const float4*>(b_ptr);
            u32 buf = 0;
            As[0][a_k + 0][a_r] = ra.x;
            As[0][a_k + 1][a_r] = ra.y;
            As[0][a_k + 2][a_r] = ra.z;
            As[0][a_k + 3][a_r] = ra.w;
            *reinterpret_cast<float4*>(&Bs[0][b_k][b_c]) = rb;
            __syncthreads();
            for (u64 k0 = 0; k0 < k; k0 += FBK) {
                const bool has_next = k0 + FBK < k;
                if (has_next) {
                    ra = *reinterpret_cast<const float4*>(a_ptr + k0 + FBK);
                    rb = *reinterpret_cast<const float4*>(b_ptr + (k0 + FBK) * m);
                }
#pragma unroll
                for (u32 kk = 0; kk < FBK; ++kk) {
                    const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][kk][ty * 4]);
                    const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][kk][64 + ty * 4]);
                    const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]);
                    const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][kk][64 + tx * 4]);
                    const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
                    const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
                    for (u32 i = 0; i < 8; ++i) {
#pragma unroll
                        for (u32 j = 0; j < 8; ++j) {
                            acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
                        }
                    }
                }
                if (has_next) {
                    // The other buffer was last read before the previous barrier.
                    const u32 nb = buf ^ 1;
                    As[nb][a_k + 0][a_r] = ra.x;
                    As[nb][a_k + 1][a_r] = ra.y;
                    As[nb][a_k + 2][a_r] = ra.z;
                    As[nb][a_k + 3][a_r] = ra.w;
                    *reinterpret_cast<float4*>(&Bs[nb][b_k][b_c]) = rb;
                }
                __syncthreads();
                buf ^= 1;
            }
            float* __restrict__ c = out + z * n * m;
#pragma unroll
            for (u32 i = 0; i < 8; ++i) {
                const u64 row = (u64)row0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
                float* __restrict__ dst = c + row * m + col0;
                *reinterpret_cast<float4*>(dst + tx * 4) =
                    make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
                *reinterpret_cast<float4*>(dst + 64 + tx * 4) =
                    make_float4(acc[i][4], acc[i][5], acc[i][6], acc[i][7]);
            }
        }
    }
}
