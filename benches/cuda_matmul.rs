//! Matmul on the cuda backend against cuBLAS SGEMM (cudarc's cublas) on the same inputs,
//! in the same run, N = 256 .. 4096 (square, f32), plus the cost of one small op in a
//! chain of 1,000 (launch overhead).
//!
//! `cargo bench --features cuda --bench cuda_matmul [-- N ...]`. With no GPU, driver or
//! NVRTC it prints why it skipped and exits 0. Without libcublas it times our kernel only.

#[cfg(not(feature = "cuda"))]
fn main() {
    println!("SKIPPED: cuda_matmul bench: built without the `cuda` feature (run `cargo bench --features cuda --bench cuda_matmul`)");
}

#[cfg(feature = "cuda")]
fn main() {
    if let Err(e) = gpu::run() {
        eprintln!("cuda_matmul bench failed: {e}");
        std::process::exit(1);
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Instant;

    use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
    use minitorch::backend::cuda::CudaBackend;
    use minitorch::{Backend, Layout, Result, UnaryOp};

    /// Deterministic inputs in [-1, 1).
    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Repetitions that take about `budget_s` at an assumed rate, at least 3.
    fn reps(flops: f64, budget_s: f64) -> usize {
        ((budget_s * 20e12 / flops) as usize).clamp(3, 200)
    }

    fn cublas(be: &CudaBackend) -> std::result::Result<CudaBlas, String> {
        // SAFETY: only tries to dlopen libcublas by its candidate names.
        let present =
            catch_unwind(|| unsafe { cudarc::cublas::sys::is_culib_present() }).unwrap_or(false);
        if !present {
            return Err(format!(
                "libcublas not found (looked for {:?}; install nvidia-cublas with pip or add the CUDA toolkit's lib64 to LD_LIBRARY_PATH)",
                cudarc::get_lib_name_candidates("cublas")
            ));
        }
        let stream = be.runtime().map_err(|e| e.to_string())?.stream.clone();
        catch_unwind(AssertUnwindSafe(|| CudaBlas::new(stream)))
            .map_err(|_| "cudarc panicked creating the cuBLAS handle".to_string())?
            .map_err(|e| format!("cublasCreate failed: {e:?}"))
    }

    pub fn run() -> Result<()> {
        let be = match CudaBackend::global() {
            Ok(b) => b,
            Err(e) => {
                println!("SKIPPED: cuda_matmul bench: {e}");
                return Ok(());
            }
        };
        let mut sizes: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if sizes.is_empty() {
            sizes = vec![256, 512, 1024, 2048, 4096];
        }
        println!("device: {}", be.describe());
        let t = Instant::now();
        be.warm_up()?;
        println!(
            "NVRTC compile + load of all kernels: {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let blas = cublas(&be);
        if let Err(e) = &blas {
            println!("cuBLAS: skipped: {e}");
        }
        let stream = be.runtime()?.stream.clone();

        println!();
        println!(
            "{:>6} {:>11} {:>9} {:>11} {:>9} {:>8} {:>10}",
            "N", "ours ms", "TFLOP/s", "cuBLAS ms", "TFLOP/s", "ratio", "max |diff|"
        );
        for &n in &sizes {
            let (a, b) = (data(n * n, 1), data(n * n, 2));
            let l = Layout::contiguous(&[n, n]);
            let (ga, gb) = (be.upload(&a)?, be.upload(&b)?);
            let flops = 2.0 * (n as f64).powi(3);
            let iters = reps(flops, 0.5);

            let ours_c = be.matmul(&ga, &l, &gb, &l)?;
            be.synchronize()?;
            let t = Instant::now();
            for _ in 0..iters {
                drop(be.matmul(&ga, &l, &gb, &l)?);
            }
            be.synchronize()?;
            let ours_s = t.elapsed().as_secs_f64() / iters as f64;
            let ours = be.download(&ours_c)?;

            let (blas_cols, diff) = match &blas {
                Ok(blas) => {
                    let run = || -> std::result::Result<(f64, Vec<f32>), String> {
                        let err = |e: cudarc::driver::DriverError| e.to_string();
                        let da = stream.clone_htod(&a).map_err(err)?;
                        let db = stream.clone_htod(&b).map_err(err)?;
                        let mut dc = stream.alloc_zeros::<f32>(n * n).map_err(err)?;
                        let ni = n as i32;
                        // Row-major C = A B is column-major C^T = B^T A^T: pass B first.
                        let cfg = GemmConfig {
                            transa: cublasOperation_t::CUBLAS_OP_N,
                            transb: cublasOperation_t::CUBLAS_OP_N,
                            m: ni,
                            n: ni,
                            k: ni,
                            alpha: 1.0f32,
                            lda: ni,
                            ldb: ni,
                            beta: 0.0f32,
                            ldc: ni,
                        };
                        let gemm = |dc: &mut cudarc::driver::CudaSlice<f32>| {
                            // SAFETY: all three buffers hold n*n f32 values.
                            unsafe { blas.gemm(cfg, &db, &da, dc) }.map_err(|e| format!("{e:?}"))
                        };
                        gemm(&mut dc)?;
                        stream.synchronize().map_err(err)?;
                        let t = Instant::now();
                        for _ in 0..iters {
                            gemm(&mut dc)?;
                        }
                        stream.synchronize().map_err(err)?;
                        let s = t.elapsed().as_secs_f64() / iters as f64;
                        Ok((s, stream.clone_dtoh(&dc).map_err(err)?))
                    };
                    match run() {
                        Ok((s, c)) => {
                            let d = c
                                .iter()
                                .zip(&ours)
                                .map(|(x, y)| (x - y).abs())
                                .fold(0.0f32, f32::max);
                            (
                                format!(
                                    "{:>11.3} {:>9.2} {:>8.2}",
                                    s * 1e3,
                                    flops / s / 1e12,
                                    s / ours_s
                                ),
                                format!("{d:>10.2e}"),
                            )
                        }
                        Err(e) => (format!("cuBLAS failed: {e}"), String::new()),
                    }
                }
                Err(_) => (format!("{:>11} {:>9} {:>8}", "-", "-", "-"), String::new()),
            };
            println!(
                "{n:>6} {:>11.3} {:>9.2} {blas_cols} {diff}",
                ours_s * 1e3,
                flops / ours_s / 1e12
            );
        }
        println!("(ratio = ours / cuBLAS throughput; target at N = 4096: >= 0.5)");

        // Launch overhead: 1,000 dependent small ops, one sync at the end.
        println!();
        for len in [1usize << 10, 1 << 16] {
            let x = be.upload(&data(len, 3))?;
            let l = Layout::contiguous(&[len]);
            let mut y = be.map(UnaryOp::Neg, &x, &l)?;
            be.synchronize()?;
            let t = Instant::now();
            for _ in 0..1000 {
                y = be.map(UnaryOp::Neg, &y, &l)?;
            }
            be.synchronize()?;
            let per = t.elapsed().as_secs_f64() / 1000.0;
            println!(
                "chain of 1000 map_neg on {len} elements: {:.2} us per op (target <= ~5 us)",
                per * 1e6
            );
        }
        Ok(())
    }
}
