//! The exhaustive accuracy sweep: the transcendental ops (`accuracy::OPS`: log, exp,
//! sigmoid, tanh) on every one of the 2^32 f32 inputs (or every `--step`-th bit pattern,
//! for a shorter run), on each chosen backend, compared with the correctly rounded result
//! (f64 rounded to f32) in ULPs. Writes a markdown table
//! (max ULP per op per backend, with the machine) to `--out` (docs/accuracy.md).
//!
//! ```text
//! cargo run --release --example accuracy                          # cpu, all 2^32 inputs
//! cargo run --release --features wgpu --example accuracy -- --device wgpu --step 16
//! ```

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use minitorch::accuracy::{compare, reference, Sweep, OPS};
use minitorch::layout::Layout;
use minitorch::{Device, Result};
use rayon::prelude::*;

/// Sweep the transcendental ops over all f32 inputs and write the worst ULP errors.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Backends to sweep (cpu, wgpu, cuda), comma-separated.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Check every step-th bit pattern (1 = all 2^32; a power of two keeps the strata even).
    #[arg(long, default_value_t = 1)]
    step: u64,
    /// Inputs per backend launch.
    #[arg(long, default_value_t = 1 << 22)]
    chunk: usize,
    /// Markdown file to write (rows of earlier runs for other backends are kept).
    #[arg(long, default_value = "docs/accuracy.md")]
    out: PathBuf,
}

fn main() -> ExitCode {
    common::exit_code(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    if args.step == 0 {
        return Err(minitorch::Error::invalid(
            "accuracy",
            "--step must be at least 1 (1 checks all 2^32 inputs)",
        ));
    }
    common::at_least_one("accuracy", "chunk", args.chunk)?;
    let step = args.step;
    let chunk = (args.chunk as u64).min((1u64 << 32).div_ceil(step));
    // The inputs and the results of one launch, on the host.
    minitorch::memory::need(
        "accuracy",
        &format!("--chunk {}", args.chunk),
        "one launch's inputs and results",
        chunk as u128 * 8,
    )?;
    let mut rows = Vec::new();
    for name in args.device.split(',') {
        let device = Device::parse(name.trim())?;
        let backend = device.backend()?;
        let started = Instant::now();
        let mut results = [Sweep::default(); OPS.len()];
        let total = (1u64 << 32).div_ceil(step);
        let mut next = 0u64;
        while next < total {
            let n = chunk.min(total - next);
            let xs: Vec<f32> = (next..next + n)
                .into_par_iter()
                .map(|i| f32::from_bits((i * step) as u32))
                .collect();
            let input = backend.upload(&xs)?;
            for (k, op) in OPS.into_iter().enumerate() {
                let out = backend.map(op, &input, &Layout::contiguous(&[xs.len()]))?;
                let got = backend.download(&out)?;
                let s = xs
                    .par_chunks(1 << 16)
                    .zip(got.par_chunks(1 << 16))
                    .map(|(x, g)| compare(op, x, g))
                    .reduce(Sweep::default, |mut a, b| {
                        a.merge(&b);
                        a
                    });
                results[k].merge(&s);
            }
            next += n;
            if (next / n).is_multiple_of(64) || next == total {
                eprintln!(
                    "{device}: {next} of {total} inputs, {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        for (k, op) in OPS.into_iter().enumerate() {
            let s = results[k];
            println!(
                "{device} {}: max {} ULP over {} inputs ({} over 2 ULP), worst at {:e}",
                op.name(),
                s.max_ulps,
                s.count,
                s.over_2,
                s.worst_input
            );
            rows.push(format!(
                "| {} | {device} | {} | {} | {} | {:e} (`{:#010x}`, reference {:e}) | {} |",
                op.name(),
                if step == 1 {
                    "all 2^32".to_string()
                } else {
                    format!("{} (every {step}th bit pattern)", s.count)
                },
                s.max_ulps,
                s.over_2,
                s.worst_input,
                s.worst_input.to_bits(),
                reference(op, s.worst_input),
                backend.describe()
            ));
        }
    }
    write_table(&args.out, &rows)
}

const HEADER: &str = "| op | backend | inputs | max ULP | inputs over 2 ULP | worst input | machine |\n|---|---|---|---|---|---|---|\n";

/// Write the table: rows of this run replace earlier rows for the same op and backend.
fn write_table(path: &PathBuf, rows: &[String]) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let key = |row: &str| {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        (
            cells.get(1).map(|s| s.to_string()),
            cells.get(2).map(|s| s.to_string()),
        )
    };
    let mut kept: Vec<String> = old
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| op "))
        .filter(|l| rows.iter().all(|r| key(r) != key(l)))
        .map(str::to_string)
        .collect();
    kept.extend(rows.iter().cloned());
    kept.sort();
    let text = format!(
        "# Accuracy of log, exp, sigmoid and tanh\n\n\
         Written by `cargo run --release --example accuracy` (see the example for the flags).\n\
         Each op is compared with the correctly rounded result (computed in f64, rounded to\n\
         f32) in units in the last place, on the f32 ordered-integer line; NaN must match NaN.\n\
         The GPU kernels use our own range reduction and polynomials (shaders/math.wgsl,\n\
         cuda/math.cuh); the CPU uses Rust's f32 `ln` and `exp`.\n\n{HEADER}{}\n",
        kept.join("\n")
    );
    std::fs::write(path, text).map_err(|e| common::io_err("accuracy", path, e))
}
