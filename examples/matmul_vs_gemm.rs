//! The CPU matmul against the `gemm` crate over issue 13's shape table, interleaved: each
//! round times one of ours and then one of gemm's (both on the same rayon pool), so a
//! shared, noisy machine loads both alike. Prints a markdown table of the best time of
//! each over the rounds (the least disturbed by other processes) and the throughput ratio
//! of those (gemm's time / ours: >= 1 means at least as fast), with the median per-round
//! ratio next to it.
//!
//! ```text
//! cargo run --release --example matmul_vs_gemm
//! cargo run --release --example matmul_vs_gemm -- --filter 1000 --rounds 30
//! ```

#[path = "../benches/common/shapes.rs"]
mod shapes;

use std::time::{Duration, Instant};

use clap::Parser;
use minitorch::backend::cpu::{cpu_model, matmul};
use shapes::{gemm_shape, shape_table};

/// Interleaved matmul timing against the gemm crate.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Rounds per shape (each times ours once and gemm once).
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    /// Only shapes whose name contains this.
    #[arg(long, default_value = "")]
    filter: String,
}

/// Median of a non-empty list.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Time `f`, repeated until at least 1 ms has passed; seconds per call.
fn time(mut f: impl FnMut()) -> f64 {
    let (t0, mut calls) = (Instant::now(), 0u32);
    while calls == 0 || t0.elapsed() < Duration::from_millis(1) {
        f();
        calls += 1;
    }
    t0.elapsed().as_secs_f64() / calls as f64
}

fn fmt(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} us", s * 1e6)
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.rounds == 0 {
        eprintln!("error: matmul_vs_gemm: --rounds must be at least 1, got 0");
        return std::process::ExitCode::FAILURE;
    }
    println!(
        "CPU: {}, {} rayon threads, kernel `{}`; gemm crate with Parallelism::Rayon(2); best of {} interleaved rounds\n",
        cpu_model(),
        rayon::current_num_threads(),
        matmul::kernel_name(),
        args.rounds
    );
    println!(
        "| shape (T = stored transposed) | minitorch (best) | gemm crate (best) | throughput vs gemm |"
    );
    println!("|---|---|---|---|");
    let mut worst = f64::INFINITY;
    for sh in shape_table() {
        if !sh.id().contains(&args.filter) {
            continue;
        }
        let (al, bl) = (sh.a_layout(), sh.b_layout());
        let a: Vec<f32> = (0..sh.batch * sh.n * sh.k)
            .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..sh.batch * sh.k * sh.m)
            .map(|i| ((i * 5) % 11) as f32 / 11.0 - 0.5)
            .collect();
        let dims = (sh.batch, sh.n, sh.k, sh.m);
        let mut out = vec![0.0f32; sh.batch * sh.n * sh.m];
        let mut ours = || matmul::batched_into(&mut out, &a, &al, &b, &bl, dims);
        let mut gold = vec![0.0f32; sh.batch * sh.n * sh.m];
        let mut theirs = || gemm_shape(&sh, &a, &b, &mut gold);
        ours();
        theirs();
        let (mut to, mut tg, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            let o = time(&mut ours);
            let g = time(&mut theirs);
            to.push(o);
            tg.push(g);
            ratio.push(g / o);
        }
        let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let (bo, bg) = (best(&to), best(&tg));
        worst = worst.min(bg / bo);
        println!(
            "| {} | {} | {} | {:.2}x (median of rounds {:.2}x) |",
            sh.id(),
            fmt(bo),
            fmt(bg),
            bg / bo,
            median(&mut ratio)
        );
    }
    println!("\nworst shape: {worst:.2}x the gemm crate's throughput");
    std::process::ExitCode::SUCCESS
}
