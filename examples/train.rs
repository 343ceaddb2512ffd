//! Train the course's network on one of the six datasets (MiniTorch's
//! `run_fast_tensor.py`, task 3.5).
//!
//! ```text
//! cargo run --release --example train                                  # CPU
//! cargo run --example train --features wgpu -- --backend wgpu           # WebGPU
//! cargo run --example train --features cuda                             # CUDA when there is a GPU
//! mpirun -n 2 target/release/examples/train --distributed mpi --backend cpu   # data-parallel (--features mpi)
//! ```

mod common;
#[path = "train/distributed.rs"]
mod distributed;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use common::{describe_choice, plot_svg, select_device, BackendChoice};
use indicatif::{ProgressBar, ProgressStyle};
use minitorch::datasets::DatasetKind;
use minitorch::nn::{load_safetensors, save_safetensors};
use minitorch::train::{self, LossKind, TrainConfig, Trainer};
use minitorch::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// Tensors with autodiff on the chosen backend (run_fast_tensor).
    Tensor,
    /// The module 1 Scalar autodiff, one number at a time (run_scalar), on the CPU.
    Scalar,
}

/// Train Linear(2,H)-relu-Linear(H,H)-relu-Linear(H,1)-sigmoid with SGD on a 2-D dataset.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Backend: auto takes cuda, then wgpu, then cpu (the best compiled in with a device).
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Dataset: simple, diag, split, xor, circle or spiral.
    #[arg(long, default_value = "simple")]
    dataset: String,
    /// Hidden units per hidden layer.
    #[arg(long, default_value_t = 100)]
    hidden: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// Number of epochs.
    #[arg(long, default_value_t = 500)]
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
    /// Print one line every this many epochs.
    #[arg(long, default_value_t = 10)]
    log_every: usize,
    /// Autodiff engine.
    #[arg(long, value_enum, default_value_t = Engine::Tensor)]
    engine: Engine,
    /// Use the course's exact loss -log(p) instead of -log(p + 1e-6) (NaN on wide networks).
    #[arg(long)]
    exact_loss: bool,
    /// Write the decision boundary and loss curve to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Save the trained parameters to this safetensors file.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Load parameters from this safetensors file before training.
    #[arg(long)]
    load: Option<PathBuf>,
    /// Train data-parallel over the processes `mpirun -n N` started: mpi (host buffers)
    /// or nccl (CUDA buffers). `--batch` stays the global batch.
    #[arg(long)]
    distributed: Option<String>,
    /// With --distributed: check after every step that every rank holds rank 0's
    /// parameters bit for bit (for tests).
    #[arg(long, hide = true)]
    check_replicas: bool,
    /// With --distributed: enter a barrier before each all-reduce so that its time
    /// excludes the wait for the slowest rank (printed apart).
    #[arg(long)]
    split_wait: bool,
    /// With --distributed: make rank R fail at global step S, as R:S, R:S:panic or R:S:hang (tests).
    #[arg(long, hide = true)]
    fail_at: Option<String>,
}

fn main() -> ExitCode {
    common::exit_code(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let dataset = DatasetKind::parse(&args.dataset)?;
    if let Some(engine) = &args.distributed {
        return distributed::run(&args, dataset, engine);
    }
    let mut config = TrainConfig {
        dataset,
        points: args.points,
        hidden: args.hidden,
        lr: args.lr,
        epochs: args.epochs,
        batch: args.batch,
        seed: args.seed,
        loss: if args.exact_loss {
            LossKind::Exact
        } else {
            LossKind::Guarded
        },
        device: minitorch::Device::Cpu,
    };
    // The settings first: an impossible one is the only line printed, before any device
    // is probed.
    config.validate()?;
    let (device, why) = match args.engine {
        Engine::Tensor => select_device(args.backend)?,
        Engine::Scalar => (minitorch::Device::Cpu, Vec::new()),
    };
    config.device = device;
    let engine = match args.engine {
        Engine::Tensor => "tensor",
        Engine::Scalar => "scalar",
    };
    // The first line says which backend runs and, in short, why (at most 300 characters);
    // the full reasons a backend was passed over follow, then the run's settings.
    println!(
        "{}",
        common::truncate(
            &format!("minitorch train: {}", describe_choice(device, &why)?),
            common::MAX_FIRST_LINE
        )
    );
    if let Some(details) = common::fallback_details(&why) {
        println!("why:\n{details}");
    }
    println!(
        "engine {engine} | dataset {dataset}, {} points, hidden {}, lr {}, batch {}, {} epochs, seed {}",
        config.points,
        config.hidden,
        config.lr,
        config.batch,
        config.epochs,
        config.seed
    );

    let bar = if std::io::stdout().is_terminal() && config.epochs > 0 {
        let b = ProgressBar::new(config.epochs as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} epochs [{elapsed_precise}] {msg}")
                .expect("valid template"),
        );
        Some(b)
    } else {
        None
    };
    let log = |l: &train::EpochLog| {
        let line = format!(
            "Epoch {} | loss {:.6} | correct {}/{} | time per epoch {}",
            l.epoch,
            l.loss,
            l.correct,
            l.total,
            common::fmt_ms(l.mean_epoch)
        );
        match &bar {
            Some(b) => {
                b.println(line);
                b.set_position(l.epoch as u64);
            }
            None => println!("{line}"),
        }
    };

    let summary = match args.engine {
        Engine::Tensor => {
            let mut trainer = Trainer::new(config.clone())?;
            if let Some(path) = &args.load {
                load_safetensors(&trainer.model, path)?;
                println!("loaded parameters from {}", path.display());
            }
            let summary = train::run(&mut trainer, args.log_every, log)?;
            if let Some(path) = &args.save {
                save_safetensors(&trainer.model, path)?;
                println!("saved parameters to {}", path.display());
            }
            if let Some(path) = &args.plot {
                let title = format!("{dataset}, hidden {} ({device})", config.hidden);
                plot_svg(
                    path,
                    &title,
                    &trainer.data,
                    |p| trainer.predict(p),
                    &summary.losses,
                )?;
                println!("wrote {}", path.display());
            }
            summary
        }
        Engine::Scalar => {
            if args.load.is_some() || args.save.is_some() {
                return Err(minitorch::Error::invalid(
                    "train",
                    "--load and --save work with the tensor engine only",
                ));
            }
            let mut trainer = minitorch::train::ScalarTrainer::new(config.clone())?;
            let summary = train::run(&mut trainer, args.log_every, log)?;
            if let Some(path) = &args.plot {
                let title = format!("{dataset}, hidden {} (scalar engine)", config.hidden);
                plot_svg(
                    path,
                    &title,
                    &trainer.data,
                    |p| Ok(trainer.predict(p)),
                    &summary.losses,
                )?;
                println!("wrote {}", path.display());
            }
            summary
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!(
        "Done: final loss {:.6} | correct {}/{} ({:.1}%) | median time per epoch {} (all but the first) | total {:.2} s",
        summary.final_loss,
        summary.correct,
        summary.total,
        100.0 * summary.correct as f64 / summary.total as f64,
        common::fmt_ms(summary.median_epoch()),
        summary.total_time.as_secs_f64()
    );
    Ok(())
}
