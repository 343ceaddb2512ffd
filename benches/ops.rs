//! CPU backend benchmarks: map / zip / reduce on 1M elements (contiguous and permuted),
//! batched (2, N, N) matmul naive vs the parallel backend vs the `gemm` crate (reference,
//! two threads) in the same run, and one training epoch of the course network.
//!
//! `matmul_shapes` is the shape table of issue 13: rows 1, 10, 50, 500 x inner 10, 100,
//! 1000 x columns 100, 1000, squares 256-2048, transposed operands and batches, each as the
//! backend's matmul (into a preallocated output) and the `gemm` crate (two threads) one
//! after the other in the same run; `scripts/matmul_table.py` turns the criterion results
//! into the ratio table.
//!
//! `cargo bench --bench ops`; filter with e.g. `cargo bench --bench ops -- matmul`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use minitorch::backend::cpu::matmul;
use minitorch::datasets::DatasetKind;
use minitorch::train::{TrainConfig, Trainer};
use minitorch::{Device, Tensor};
use shapes::{gemm_shape, shape_table};

/// The shape table and the gemm reference, shared with `examples/matmul_vs_gemm.rs`.
#[path = "common/shapes.rs"]
mod shapes;

fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_elementwise_1M");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(1 << 20));
    let a = Tensor::rand(&[1024, 1024], 1, Device::Cpu).unwrap();
    let b = Tensor::rand(&[1024, 1024], 2, Device::Cpu).unwrap();
    let at = a.permute(&[1, 0]).unwrap();
    g.bench_function("map_exp_contiguous", |bn| bn.iter(|| a.exp().unwrap()));
    g.bench_function("map_exp_permuted", |bn| bn.iter(|| at.exp().unwrap()));
    g.bench_function("zip_add_contiguous", |bn| bn.iter(|| a.add(&b).unwrap()));
    g.bench_function("zip_add_permuted", |bn| bn.iter(|| at.add(&b).unwrap()));
    g.bench_function("reduce_sum_dim1_contiguous", |bn| {
        bn.iter(|| a.sum(1).unwrap())
    });
    g.bench_function("reduce_sum_dim1_permuted", |bn| {
        bn.iter(|| at.sum(1).unwrap())
    });
    g.bench_function("reduce_sum_dim0_contiguous", |bn| {
        bn.iter(|| a.sum(0).unwrap())
    });
    g.finish();
}

fn gemm_reference(a: &[f32], b: &[f32], out: &mut [f32], n: usize) {
    for z in 0..2 {
        let (a, b) = (&a[z * n * n..], &b[z * n * n..]);
        let o = &mut out[z * n * n..];
        // SAFETY: all three buffers hold n*n row-major values for this batch.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                o.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(2),
            );
        }
    }
}

fn matmul_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_matmul_2xNxN");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in [64usize, 128, 256, 512, 1024] {
        g.throughput(Throughput::Elements((2 * n * n * n) as u64)); // multiply-adds
        let a = Tensor::rand(&[2, n, n], 1, Device::Cpu).unwrap();
        let b = Tensor::rand(&[2, n, n], 2, Device::Cpu).unwrap();
        let (av, bv) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        g.bench_with_input(BenchmarkId::new("parallel", n), &n, |bn, _| {
            bn.iter(|| a.matmul(&b).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("gemm_crate_2_threads", n), &n, |bn, &n| {
            let mut out = vec![0.0f32; 2 * n * n];
            bn.iter(|| gemm_reference(&av, &bv, &mut out, n))
        });
        // The naive triple loop takes seconds at 1024; the matmul_speedup example covers it.
        if n <= 512 {
            g.bench_with_input(BenchmarkId::new("naive", n), &n, |bn, &n| {
                bn.iter(|| matmul::naive(&av, &bv, 2, n, n, n))
            });
        }
    }
    g.finish();
}

fn matmul_shapes(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul_shapes");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for sh in shape_table() {
        let (al, bl) = (sh.a_layout(), sh.b_layout());
        let a = Tensor::rand(&[sh.batch * sh.n * sh.k], 1, Device::Cpu).unwrap();
        let b = Tensor::rand(&[sh.batch * sh.k * sh.m], 2, Device::Cpu).unwrap();
        let (av, bv) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        let dims = (sh.batch, sh.n, sh.k, sh.m);
        let mut out = vec![0.0f32; sh.batch * sh.n * sh.m];
        g.throughput(Throughput::Elements((sh.batch * sh.n * sh.k * sh.m) as u64));
        g.bench_function(BenchmarkId::new("minitorch", sh.id()), |bn| {
            bn.iter(|| matmul::batched_into(&mut out, &av, &al, &bv, &bl, dims))
        });
        g.bench_function(BenchmarkId::new("gemm_crate_2_threads", sh.id()), |bn| {
            bn.iter(|| gemm_shape(&sh, &av, &bv, &mut out))
        });
    }
    g.finish();
}

fn epoch_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("train_epoch_cpu");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for hidden in [100usize, 200] {
        let mut t = Trainer::new(TrainConfig {
            dataset: DatasetKind::Xor,
            hidden,
            ..TrainConfig::default()
        })
        .unwrap();
        g.bench_with_input(BenchmarkId::new("hidden", hidden), &hidden, |bn, _| {
            bn.iter(|| t.epoch().unwrap())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    elementwise,
    matmul_bench,
    matmul_shapes,
    epoch_bench
);
criterion_main!(benches);
