//! Time CPU conv2d forward + backward, for `scripts/conv_vs_torch.py`, which interleaves
//! it with the same computation in eager PyTorch.
//!
//! `--shape course`: the course's MNIST layers, batch 16, 28x28: conv 1->4 3x3 (padding 1,
//! bias, relu), then conv 4->8 3x3 (padding 1, bias, relu), backward of the sum to both
//! layers' weights and biases. `--shape large`: one layer, batch 64, 32->64 channels, 3x3,
//! padding 1, bias, 28x28, backward to input, weight and bias.
//!
//! Prints one line: `conv_time ms=<median ms per iteration, warm-up excluded> sum=<output
//! sum> threads=<rayon threads>`.
//!
//! ```text
//! cargo run --release --example conv_time -- --shape course --iters 50
//! ```

mod common;

use std::process::ExitCode;

use clap::Parser;
use minitorch::{Activation, Device, Result, Tensor};

/// Median time of a conv2d forward + backward on the CPU backend.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// `course` (batch 16, 1->4->8 channels) or `large` (batch 64, 32->64 channels).
    #[arg(long, default_value = "course")]
    shape: String,
    /// Timed iterations (after 3 warm-up ones).
    #[arg(long, default_value_t = 30)]
    iters: usize,
}

fn main() -> ExitCode {
    common::exit_code(run(Args::parse()))
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = minitorch::backend::random::uniform(
                minitorch::backend::random::key(seed, 0),
                i as u64,
            );
            h * 2.0 - 1.0
        })
        .collect()
}

fn t(shape: &[usize], seed: u64, grad: bool) -> Result<Tensor> {
    let n = shape.iter().product();
    Ok(Tensor::from_vec(values(n, seed), shape, Device::Cpu)?.requires_grad_(grad))
}

fn run(args: Args) -> Result<()> {
    let same = [(1, 1), (1, 1)];
    // (input, input needs a gradient, layers as (cin, cout))
    let (x, layers): (Tensor, Vec<(usize, usize)>) = match args.shape.as_str() {
        "course" => (t(&[16, 1, 28, 28], 1, false)?, vec![(1, 4), (4, 8)]),
        "large" => (t(&[64, 32, 28, 28], 1, true)?, vec![(32, 64)]),
        other => {
            return Err(minitorch::Error::invalid(
                "conv_time",
                format!("unknown shape {other}: use course or large"),
            ))
        }
    };
    let params: Vec<(Tensor, Tensor)> = layers
        .iter()
        .enumerate()
        .map(|(i, &(ci, co))| {
            Ok((
                t(&[co, ci, 3, 3], 10 + i as u64, true)?,
                t(&[co], 20 + i as u64, true)?,
            ))
        })
        .collect::<Result<_>>()?;
    let mut times = Vec::new();
    let mut sum = 0.0;
    for it in 0..args.iters + 3 {
        let start = web_time::Instant::now();
        let mut h = x.clone();
        for (w, b) in &params {
            h = h.conv2d_act(w, Some(b), [1, 1], same, Activation::Relu)?;
        }
        let s = h.sum_all()?;
        s.backward()?;
        sum = s.item()?;
        if it >= 3 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        for (w, b) in &params {
            w.zero_grad();
            b.zero_grad();
        }
        x.zero_grad();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "conv_time ms={:.4} sum={sum} threads={}",
        times[times.len() / 2],
        rayon::current_num_threads()
    );
    Ok(())
}
