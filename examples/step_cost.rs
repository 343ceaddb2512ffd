//! What one training step of the course loop costs on each present backend: kernel launches
//! per step (counted by the backend: wgpu's dispatch counter, CUDA's launch counter) and the
//! median time per epoch, plus the epoch losses of the six datasets (for comparing two
//! builds of the library: their losses must agree).
//!
//! ```text
//! cargo run --release --features wgpu --example step_cost
//! cargo run --release --features wgpu --example step_cost -- --hidden 200 --epochs 30
//! ```

use std::process::ExitCode;

use clap::Parser;
use minitorch::datasets::DatasetKind;
use minitorch::train::{TrainConfig, Trainer};
use minitorch::{Device, Result};

/// Launches per training step and time per epoch, per backend.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Hidden units per hidden layer.
    #[arg(long, default_value_t = 100)]
    hidden: usize,
    /// Timed epochs per backend (after two warm-up epochs).
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Epochs of each dataset whose losses are printed (0: skip the losses).
    #[arg(long, default_value_t = 10)]
    loss_epochs: usize,
}

/// Kernel launches the backend of `device` has counted so far (None: it counts none).
fn launches(device: Device) -> Option<u64> {
    match device {
        #[cfg(feature = "wgpu")]
        Device::Wgpu => minitorch::backend::wgpu::WgpuBackend::global()
            .ok()
            .map(|b| b.runtime().stats().dispatches),
        #[cfg(feature = "cuda")]
        Device::Cuda => minitorch::backend::cuda::CudaBackend::global()
            .ok()
            .map(|b| b.launches()),
        #[cfg(feature = "cuda")]
        Device::CudaEmu => minitorch::backend::cuda::CudaBackend::emulated()
            .ok()
            .map(|b| b.launches()),
        _ => None,
    }
}

fn run(args: &Args) -> Result<()> {
    // Every setting checked before any device is probed.
    for epochs in [args.epochs, args.loss_epochs] {
        TrainConfig {
            hidden: args.hidden,
            epochs,
            ..TrainConfig::default()
        }
        .validate()?;
    }
    println!(
        "course loop: hidden {}, batch 10, 50 points (5 steps per epoch)",
        args.hidden
    );
    for device in Device::ALL {
        let backend = match device.backend() {
            Ok(b) => b,
            Err(e) => {
                println!("{device}: SKIPPED ({e})");
                continue;
            }
        };
        let config = TrainConfig {
            hidden: args.hidden,
            epochs: args.epochs,
            device,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(config)?;
        t.epoch()?;
        t.epoch()?;
        let before = launches(device);
        t.epoch()?;
        let steps = 5u64;
        let per_step = match (before, launches(device)) {
            (Some(a), Some(b)) => format!("{:.1}", (b - a) as f64 / steps as f64),
            _ => "not counted".to_string(),
        };
        let mut times = minitorch::memory::try_vec(
            "step_cost",
            &format!("--epochs {}", args.epochs),
            "each epoch's time",
            args.epochs,
        )?;
        for _ in 0..args.epochs {
            let t0 = std::time::Instant::now();
            t.epoch()?;
            times.push(t0.elapsed());
        }
        times.sort();
        let median = times.get(times.len() / 2).copied().unwrap_or_default();
        println!(
            "{device}: launches per step {per_step}; median epoch {:.3} ms ({})",
            median.as_secs_f64() * 1e3,
            backend.describe()
        );
    }
    if args.loss_epochs > 0 {
        for dataset in DatasetKind::ALL {
            let mut t = Trainer::new(TrainConfig {
                dataset,
                epochs: args.loss_epochs,
                ..TrainConfig::default()
            })?;
            let losses = (0..args.loss_epochs)
                .map(|_| t.epoch())
                .collect::<Result<Vec<f32>>>()?;
            let text: Vec<String> = losses.iter().map(|l| format!("{l:.7e}")).collect();
            println!("losses {dataset:?}: {}", text.join(" "));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
