//! WebGPU backend benchmarks (feature `wgpu`): every op on 1M elements, the cost of one
//! small op in a chain of 1,000 (recorded into the shared batch vs submitted and waited for
//! one by one), and matmul at N = 64 to 1024 (throughput in FLOP/s as "elements").
//!
//! `cargo bench --features wgpu --bench wgpu_ops`; filter with e.g. `-- matmul`. Every
//! timed iteration ends with `synchronize`, so device time is included. On lavapipe (the
//! software Vulkan driver) the numbers are CPU-bound and mostly show overheads.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use minitorch::backend::wgpu::WgpuBackend;
use minitorch::{Backend, BinaryOp, Layout, ReduceOp, Storage, UnaryOp};

fn backend() -> Arc<WgpuBackend> {
    let b = WgpuBackend::global().expect("wgpu adapter (install mesa-vulkan-drivers)");
    eprintln!("wgpu benches on: {}", b.describe());
    b
}

fn rand(b: &WgpuBackend, n: usize, seed: u32) -> Storage {
    // A cheap deterministic fill in (-1, 1) keeps log/inv inputs meaningful after abs.
    let data: Vec<f32> = (0..n as u32)
        .map(|i| {
            let h = (i ^ seed).wrapping_mul(2654435761) >> 8;
            (h as f32 / (1u32 << 24) as f32) * 1.9 - 0.95
        })
        .collect();
    b.upload(&data).unwrap()
}

fn ops_1m(c: &mut Criterion) {
    let b = backend();
    let n = 1 << 20;
    let l = Layout::contiguous(&[1024, 1024]);
    let lt = l.permute(&[1, 0]).unwrap();
    let x = rand(&b, n, 1);
    let y = rand(&b, n, 2);
    let mut g = c.benchmark_group("wgpu_ops_1M");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(n as u64));
    for op in UnaryOp::ALL {
        g.bench_function(format!("map_{}", op.name()), |bn| {
            bn.iter(|| {
                let r = b.map(op, &x, &l).unwrap();
                b.synchronize().unwrap();
                black_box(r)
            })
        });
    }
    g.bench_function("map_neg_transposed", |bn| {
        bn.iter(|| {
            let r = b.map(UnaryOp::Neg, &x, &lt).unwrap();
            b.synchronize().unwrap();
            black_box(r)
        })
    });
    for op in BinaryOp::ALL {
        g.bench_function(format!("zip_{}", op.name()), |bn| {
            bn.iter(|| {
                let r = b.zip(op, &x, &l, &y, &l).unwrap();
                b.synchronize().unwrap();
                black_box(r)
            })
        });
    }
    for op in ReduceOp::ALL {
        for dim in [0, 1] {
            g.bench_function(format!("reduce_{}_dim{dim}", op.name()), |bn| {
                bn.iter(|| {
                    let r = b.reduce(op, &x, &l, dim).unwrap();
                    b.synchronize().unwrap();
                    black_box(r)
                })
            });
        }
    }
    g.bench_function("copy_transposed", |bn| {
        bn.iter(|| {
            let r = b.copy(&x, &lt).unwrap();
            b.synchronize().unwrap();
            black_box(r)
        })
    });
    g.finish();
}

/// 1,000 dependent small ops (neg on 1,024 elements): the per-op cost is the time / 1000.
fn dispatch_overhead(c: &mut Criterion) {
    let b = backend();
    let l = Layout::contiguous(&[1024]);
    let x0 = rand(&b, 1024, 3);
    let mut g = c.benchmark_group("wgpu_chain_1000_small_ops");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1000));
    g.bench_function("recorded_one_sync", |bn| {
        bn.iter(|| {
            let mut x = x0.clone();
            for _ in 0..1000 {
                x = b.map(UnaryOp::Neg, &x, &l).unwrap();
            }
            b.synchronize().unwrap();
            black_box(x)
        })
    });
    g.bench_function("sync_after_each_op", |bn| {
        bn.iter(|| {
            let mut x = x0.clone();
            for _ in 0..1000 {
                x = b.map(UnaryOp::Neg, &x, &l).unwrap();
                b.synchronize().unwrap();
            }
            black_box(x)
        })
    });
    g.finish();
    let s = b.runtime().stats();
    let p = b.runtime().pool.stats();
    eprintln!(
        "wgpu runtime: {} dispatches, {} submits, {} pipelines; pool: {} buffers reused, {} created",
        s.dispatches, s.submits, s.pipelines, p.reused, p.created
    );
}

fn matmul(c: &mut Criterion) {
    let b = backend();
    let mut g = c.benchmark_group("wgpu_matmul");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in [64usize, 128, 256, 512, 1024] {
        let l = Layout::contiguous(&[n, n]);
        let a = rand(&b, n * n, 4);
        let bb = rand(&b, n * n, 5);
        g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bn, _| {
            bn.iter(|| {
                let r = b.matmul(&a, &l, &bb, &l).unwrap();
                b.synchronize().unwrap();
                black_box(r)
            })
        });
    }
    g.finish();
}

/// Reduce by shape against a map over the same 2M-element input: the reduce kernel is
/// chosen by shape (one thread per output, or a workgroup tree), and every reduce should
/// take at most 3x the map. `-- reduce_vs_map`.
fn reduce_vs_map(c: &mut Criterion) {
    let b = backend();
    let n = 1 << 21;
    let x = rand(&b, n, 6);
    let mut g = c.benchmark_group("wgpu_reduce_vs_map_2M");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(n as u64));
    let flat = Layout::contiguous(&[n]);
    g.bench_function("map_neg", |bn| {
        bn.iter(|| {
            let r = b.map(UnaryOp::Neg, &x, &flat).unwrap();
            b.synchronize().unwrap();
            black_box(r)
        })
    });
    for shape in [[2, 1 << 20], [1 << 20, 2], [1024, 2048], [64, 32768]] {
        let l = Layout::contiguous(&shape);
        for dim in [0, 1] {
            g.bench_function(format!("sum_{}x{}_dim{dim}", shape[0], shape[1]), |bn| {
                bn.iter(|| {
                    let r = b.reduce(ReduceOp::Sum, &x, &l, dim).unwrap();
                    b.synchronize().unwrap();
                    black_box(r)
                })
            });
        }
    }
    g.finish();
}

/// The whole-tile vec4 matmul against the general kernel in the same run: the same
/// product with B at an aligned offset (4: matmul_fast) and a misaligned one (1: matmul).
/// `-- matmul_fast_vs_general`.
fn matmul_fast_vs_general(c: &mut Criterion) {
    let b = backend();
    let mut g = c.benchmark_group("wgpu_matmul_fast_vs_general");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in [256usize, 512] {
        let al = Layout::contiguous(&[n, n]);
        let a = rand(&b, n * n, 7);
        let bb = rand(&b, n * n + 4, 8);
        g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        for (name, offset) in [("fast", 4), ("general", 1)] {
            let bl = Layout::new(vec![n, n], vec![n, 1], offset).unwrap();
            g.bench_with_input(BenchmarkId::new(name, n), &n, |bn, _| {
                bn.iter(|| {
                    let r = b.matmul(&a, &al, &bb, &bl).unwrap();
                    b.synchronize().unwrap();
                    black_box(r)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    ops_1m,
    dispatch_overhead,
    matmul,
    reduce_vs_map,
    matmul_fast_vs_general
);
criterion_main!(benches);
