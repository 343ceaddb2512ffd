//! Time the course's training loop on the CPU backend, for `scripts/cpu_vs_torch.py`, which
//! interleaves it with the same loop in eager PyTorch (`scripts/torch_epoch.py`).
//!
//! Prints one line: `minitorch_epoch ms=<median ms per epoch, first epoch excluded>
//! loss=<last epoch's loss> threads=<rayon threads>`.
//!
//! ```text
//! cargo run --release --example epoch_time -- --hidden 1000 --batch 10 --lr 0.05 --epochs 30
//! ```

mod common;

use std::process::ExitCode;

use clap::Parser;
use minitorch::datasets::DatasetKind;
use minitorch::train::{TrainConfig, Trainer};
use minitorch::{Device, Result};

/// Median time per epoch of the course's loop on the CPU backend.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Dataset: simple, diag, split, xor, circle or spiral.
    #[arg(long, default_value = "split")]
    dataset: String,
    /// Hidden units per hidden layer.
    #[arg(long, default_value_t = 100)]
    hidden: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// Number of epochs (the first is not counted in the median).
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// Number of points.
    #[arg(long, default_value_t = 50)]
    points: usize,
    /// Points per batch.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Seed of data, weights and shuffles.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn main() -> ExitCode {
    common::exit_code(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let mut t = Trainer::new(TrainConfig {
        dataset: DatasetKind::parse(&args.dataset)?,
        points: args.points,
        hidden: args.hidden,
        lr: args.lr,
        epochs: args.epochs,
        batch: args.batch,
        seed: args.seed,
        device: Device::Cpu,
        ..TrainConfig::default()
    })?;
    let mut times = minitorch::memory::try_vec(
        "epoch_time",
        &format!("--epochs {}", args.epochs),
        "each epoch's time",
        args.epochs.max(1),
    )?;
    let mut loss = 0.0;
    for _ in 0..args.epochs.max(1) {
        let t0 = std::time::Instant::now();
        loss = t.epoch()?;
        times.push(t0.elapsed());
    }
    let mut rest: Vec<_> = times.iter().skip(1).copied().collect();
    if rest.is_empty() {
        rest = times;
    }
    rest.sort();
    println!(
        "minitorch_epoch ms={:.4} loss={loss:.4} threads={}",
        rest[rest.len() / 2].as_secs_f64() * 1e3,
        rayon::current_num_threads()
    );
    Ok(())
}
