//! The emulated CUDA device (`cuda-emu`) runs every kernel the CUDA backend can launch, through
//! the backend's own host code: each entry point of each kernel file (every reduce op, tree
//! and one-thread-per-output, contiguous and strided; the general and the float4 matmul; pad;
//! the generator) and every generated variant, each checked against the CPU backend. Alone in
//! its test binary, so the backend's record of which entry points ran is this test's.
//! Without a C++ compiler it prints SKIPPED (a failure when `MINITORCH_REQUIRE_BACKENDS`
//! lists cuda-emu).

#![cfg(feature = "cuda")]

mod common;

use std::sync::Arc;

use minitorch::backend::cuda::runtime::NvrtcSource;
use minitorch::backend::cuda::CudaBackend;
use minitorch::backend::fused::ProgramBuilder;
use minitorch::{Backend, BinaryOp, Device, Layout, ReduceOp, UnaryOp};

fn backend() -> Option<Arc<CudaBackend>> {
    match CudaBackend::emulated() {
        Ok(b) => Some(b),
        Err(e) => {
            common::skip_or_fail(Device::CudaEmu, "cuda-emu kernel coverage", &e.to_string());
            None
        }
    }
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| 0.5 + ((i as u64 * 7919 + seed * 104_729) % 1009) as f32 / 1009.0)
        .collect()
}

fn close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w || (g - w).abs() <= rel * w.abs().max(1.0),
            "{what}: element {i}: cuda-emu {g}, cpu {w}"
        );
    }
}

/// Run `f` on the emulated device and on the CPU with the same uploads; compare.
fn agree(
    emu: &dyn Backend,
    inputs: &[Vec<f32>],
    rel: f32,
    what: &str,
    f: impl Fn(&dyn Backend, &[minitorch::backend::Storage]) -> minitorch::backend::Storage,
) {
    let cpu = common::cpu();
    let run = |b: &dyn Backend| {
        let ins: Vec<_> = inputs.iter().map(|x| b.upload(x).unwrap()).collect();
        b.download(&f(b, &ins)).unwrap()
    };
    close(&run(emu), &run(cpu.as_ref()), rel, what);
}

#[test]
fn every_entry_point_runs_and_agrees_with_the_cpu() {
    let Some(be) = backend() else { return };
    let b: &dyn Backend = be.as_ref();
    // Reduce: [rows, len] reduced along len; many short rows take one thread per output,
    // few long ones the block tree; the transposed layout takes the strided entries.
    for (rows, len) in [(600, 3), (3, 700)] {
        let x = data(rows * len, 1);
        for transposed in [false, true] {
            let l = if transposed {
                Layout::new(vec![rows, len], vec![1, rows], 0).unwrap()
            } else {
                Layout::contiguous(&[rows, len])
            };
            for op in ReduceOp::ALL {
                agree(
                    b,
                    std::slice::from_ref(&x),
                    1e-4,
                    &format!("reduce {op:?} [{rows}, {len}] transposed {transposed}"),
                    |b, s| b.reduce(op, &s[0], &l, 1).unwrap(),
                );
            }
        }
    }
    // Matmul: 128-aligned packed operands take matmul_fast, the rest the general kernel.
    for (n, k, m) in [(128, 8, 128), (33, 17, 65)] {
        let (al, bl) = (Layout::contiguous(&[n, k]), Layout::contiguous(&[k, m]));
        agree(
            b,
            &[data(n * k, 2), data(k * m, 3)],
            1e-5 * k as f32,
            &format!("matmul {n}x{k}x{m}"),
            |b, s| b.matmul(&s[0], &al, &s[1], &bl).unwrap(),
        );
    }
    // Pad (with dilation and a crop), the generator, and the generated kernels: map
    // (contiguous and strided), zip with broadcasting, a matmul with an epilogue.
    let spec = minitorch::backend::pad::PadSpec {
        out_shape: [3, 9][..].into(),
        lo: [0, -1][..].into(),
        step: [1, 2][..].into(),
    };
    let pl = Layout::contiguous(&[3, 5]);
    agree(b, &[data(15, 4)], 0.0, "pad", |b, s| {
        b.pad(&s[0], &pl, &spec).unwrap()
    });
    agree(b, &[], 0.0, "uniform", |b, _| {
        b.uniform(1000, [7, 9]).unwrap()
    });
    let t = Layout::new(vec![40, 30], vec![1, 40], 0).unwrap();
    let c = Layout::contiguous(&[40, 30]);
    agree(b, &[data(1200, 5)], 1e-6, "map exp strided", |b, s| {
        b.map(UnaryOp::Exp, &s[0], &t).unwrap()
    });
    agree(b, &[data(1200, 5)], 1e-6, "map log contiguous", |b, s| {
        b.map(UnaryOp::Log, &s[0], &c).unwrap()
    });
    let row = Layout::new(vec![40, 30], vec![0, 1], 0).unwrap();
    agree(
        b,
        &[data(1200, 6), data(30, 7)],
        0.0,
        "zip mul broadcast",
        |b, s| b.zip(BinaryOp::Mul, &s[0], &c, &s[1], &row).unwrap(),
    );
    let epilogue = {
        let mut p = ProgramBuilder::new();
        let (acc, bias) = (p.input(0), p.input(1));
        let z = p.add(acc, bias);
        let r = p.unary(UnaryOp::Sigmoid, z);
        p.build(&[r])
    };
    let (al, bl) = (Layout::contiguous(&[7, 5]), Layout::contiguous(&[5, 3]));
    let bias = Layout::new(vec![7, 3], vec![0, 1], 0).unwrap();
    agree(
        b,
        &[data(35, 8), data(15, 9), data(3, 10)],
        1e-5,
        "matmul_fused",
        |b, s| {
            b.matmul_fused(&s[0], &al, &s[1], &bl, &epilogue, &[(&s[2], &bias)], &[])
                .unwrap()
        },
    );
    let missing: Vec<String> = be
        .entry_points_run()
        .into_iter()
        .filter(|(_, ran)| !ran)
        .map(|(name, _)| name)
        .collect();
    assert!(missing.is_empty(), "never launched: {missing:?}");
}

#[test]
fn a_kernel_that_does_not_compile_is_an_error_with_the_compiler_log() {
    let Some(be) = backend() else { return };
    let program = NvrtcSource {
        name: "broken.cu",
        source: "#include \"indexing.cuh\"\nextern \"C\" __global__ void k(float* out, const GRID_CONSTANT Meta meta) {\n    out[0] = undefined_name;\n}\n",
        headers: &minitorch::backend::cuda::kernels::HEADERS,
        include_dirs: &[],
    };
    let e = be
        .gpu()
        .load(&program, &["k".to_string()])
        .err()
        .expect("a broken kernel must not load");
    let text = e.to_string();
    assert!(
        text.contains("cuda-emu") && text.contains("broken.cu") && text.contains("undefined_name"),
        "{text}"
    );
}

#[test]
fn threads_meet_at_barriers_and_share_block_memory() {
    let Some(be) = backend() else { return };
    // Each thread writes its index to shared memory, waits, then reads its neighbour's:
    // correct only if every thread of the block has written before any reads.
    let program = NvrtcSource {
        name: "barrier.cu",
        source: "#include \"indexing.cuh\"\nextern \"C\" __global__ void __launch_bounds__(BLOCK) k(float* out, const GRID_CONSTANT Meta meta) {\n    __shared__ float s[BLOCK];\n    const u32 t = threadIdx.x;\n    s[t] = (float)(blockIdx.x * 1000 + t);\n    __syncthreads();\n    out[blockIdx.x * blockDim.x + t] = s[(t + 1) % blockDim.x];\n}\n",
        headers: &minitorch::backend::cuda::kernels::HEADERS,
        include_dirs: &[],
    };
    let module = be.gpu().load(&program, &["k".to_string()]).unwrap();
    let out = be.upload(&vec![-1.0; 3 * 256]).unwrap();
    let meta = minitorch::backend::cuda::kernels::Meta([0; 64]);
    let ptr = be.buffer(&out).unwrap().ptr();
    let launch = minitorch::backend::cuda::device::Launch {
        grid: (3, 1, 1),
        block: (256, 1, 1),
        shared_bytes: 0,
        ptrs: &[ptr],
        meta: &meta,
    };
    // SAFETY: `k` takes one float pointer and Meta; `out` holds 3 * 256 floats.
    unsafe { be.gpu().launch("test", &module.funcs[0], &launch) }.unwrap();
    let got = be.download(&out).unwrap();
    for blk in 0..3 {
        for t in 0..256 {
            let want = (blk * 1000 + (t + 1) % 256) as f32;
            assert_eq!(got[blk * 256 + t], want, "block {blk} thread {t}");
        }
    }
}
