//! The course's training results table (task 3.5) as a command: trains the six datasets on
//! every backend present, at hidden 100 and a bigger size (and optionally a large run where
//! a GPU should win), and writes `docs/results.md` (median time per epoch, excluding the
//! first; final loss; accuracy; the machine and the date) plus each run's decision-boundary
//! picture in `docs/img/<dataset>-<backend>-h<hidden>.svg`.
//!
//! GPU columns are filled only by runs on a GPU; a backend that is not compiled in, has no
//! device, or only a software adapter (lavapipe) says "not yet measured on a GPU".
//!
//! ```text
//! cargo run --release --example report                              # CPU
//! cargo run --release --example report --features wgpu,cuda -- --large
//! cargo run --release --example report -- --epochs 5 --datasets simple,xor --out /tmp/r.md --img-dir /tmp/img
//! ```

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use common::plot_svg;
use indicatif::{ProgressBar, ProgressStyle};
use minitorch::datasets::DatasetKind;
use minitorch::train::{self, LossKind, TrainConfig, Trainer};
use minitorch::{Device, Error, Result};

/// Train the six datasets on every backend present and write the results table.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Epochs per run (hidden 100 and the bigger size).
    #[arg(long, default_value_t = 500)]
    epochs: usize,
    /// Datasets (comma-separated): simple, split, xor, diag, circle, spiral.
    #[arg(long, value_delimiter = ',', default_values_t = DatasetKind::ALL.map(|d| d.name().to_string()).to_vec())]
    datasets: Vec<String>,
    /// Backends to run (comma-separated); default every backend compiled in with a device.
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
    /// Hidden units of the course's model.
    #[arg(long, default_value_t = 100)]
    hidden: usize,
    /// Hidden units of the bigger model.
    #[arg(long, default_value_t = 200)]
    big_hidden: usize,
    /// Points per dataset.
    #[arg(long, default_value_t = 50)]
    points: usize,
    /// Points per batch.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// Seed of data, weights and shuffles.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Add a large run where a GPU should win (see the --large-* options).
    #[arg(long)]
    large: bool,
    /// Hidden units of the large run.
    #[arg(long, default_value_t = 1024)]
    large_hidden: usize,
    /// Points of the large run.
    #[arg(long, default_value_t = 5000)]
    large_points: usize,
    /// Batch of the large run.
    #[arg(long, default_value_t = 500)]
    large_batch: usize,
    /// Epochs of the large run.
    #[arg(long, default_value_t = 20)]
    large_epochs: usize,
    /// Dataset of the large run.
    #[arg(long, default_value = "split")]
    large_dataset: String,
    /// The Markdown file to write.
    #[arg(long, default_value = "docs/results.md")]
    out: PathBuf,
    /// Where the decision-boundary pictures go.
    #[arg(long, default_value = "docs/img")]
    img_dir: PathBuf,
    /// Draw pictures only for these backends (comma-separated); default every backend run.
    #[arg(long, value_delimiter = ',')]
    image_backends: Vec<String>,
    /// Rounds of the CPU matmul comparison with the gemm crate (the `matmul_vs_gemm`
    /// example, run by cargo in the same build profile); 0 leaves that section out.
    #[arg(long, default_value_t = 5)]
    matmul_rounds: usize,
}

/// One model size of the table.
struct Size {
    title: String,
    hidden: usize,
    points: usize,
    batch: usize,
    epochs: usize,
    datasets: Vec<DatasetKind>,
    /// The large run: skipped on software adapters (they would take hours).
    large: bool,
}

/// What one backend is in this process.
struct BackendInfo {
    device: Device,
    /// Run it (present, and asked for).
    run: bool,
    /// Its hardware, or why it is absent.
    text: String,
    /// A software emulation of a GPU (lavapipe): measured, but not a GPU.
    emulated: bool,
}

/// One run's outcome.
enum Outcome {
    Done {
        median: Duration,
        loss: f32,
        correct: usize,
        total: usize,
        image: Option<PathBuf>,
    },
    Failed(String),
}

const NOT_ON_GPU: &str = "not yet measured on a GPU";

/// The line after which `docs/results.md` holds sections the report does not write.
const KEEP_MARKER: &str =
    "<!-- Sections below are written by hand or other tools; the report example keeps them. -->";
fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: some runs failed (see the table)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn backends(asked: &[String]) -> Result<Vec<BackendInfo>> {
    let asked: Vec<Device> = asked
        .iter()
        .map(|s| Device::parse(s))
        .collect::<Result<_>>()?;
    for d in &asked {
        // An explicit request for a backend that cannot run is an error, with the reason.
        d.backend()?;
    }
    Ok(Device::ALL
        .into_iter()
        .map(|d| {
            // The emulated CUDA device is for correctness, far too slow to time: asked only.
            let wanted = asked.contains(&d) || (asked.is_empty() && d != Device::CudaEmu);
            match d.backend() {
                Ok(b) => BackendInfo {
                    device: d,
                    run: wanted,
                    emulated: b.is_emulated(),
                    text: if b.is_emulated() {
                        format!("{} (a software emulation, not a GPU)", b.describe())
                    } else {
                        b.describe()
                    },
                },
                Err(e) => BackendInfo {
                    device: d,
                    run: false,
                    emulated: false,
                    text: if d.is_compiled() {
                        format!("compiled in, no device: {e}")
                    } else {
                        format!("not compiled in (build with --features {d})")
                    },
                },
            }
        })
        .collect())
}

fn run(args: Args) -> Result<bool> {
    let datasets: Vec<DatasetKind> = args
        .datasets
        .iter()
        .map(|s| DatasetKind::parse(s))
        .collect::<Result<_>>()?;
    if datasets.is_empty() {
        return Err(Error::invalid("report", "--datasets is empty"));
    }
    let imaged: Vec<Device> = args
        .image_backends
        .iter()
        .map(|s| Device::parse(s))
        .collect::<Result<_>>()?;
    let mut sizes = vec![
        Size {
            title: format!("Hidden {}", args.hidden),
            hidden: args.hidden,
            points: args.points,
            batch: args.batch,
            epochs: args.epochs,
            datasets: datasets.clone(),
            large: false,
        },
        Size {
            title: format!("Bigger model: hidden {}", args.big_hidden),
            hidden: args.big_hidden,
            points: args.points,
            batch: args.batch,
            epochs: args.epochs,
            datasets: datasets.clone(),
            large: false,
        },
    ];
    if args.large {
        sizes.push(Size {
            title: format!("Large run: hidden {}", args.large_hidden),
            hidden: args.large_hidden,
            points: args.large_points,
            batch: args.large_batch,
            epochs: args.large_epochs,
            datasets: vec![DatasetKind::parse(&args.large_dataset)?],
            large: true,
        });
    }
    // Validate every configuration before the first (long) run and before any device is
    // probed, so an impossible setting is the only line printed.
    for s in &sizes {
        config(&args, s, s.datasets[0], Device::Cpu).validate()?;
    }
    let infos = backends(&args.backends)?;
    std::fs::create_dir_all(&args.img_dir)
        .map_err(|e| common::io_err("report", &args.img_dir, e))?;

    println!(
        "minitorch report: training {} dataset(s) on:",
        datasets.len()
    );
    for b in &infos {
        let state = if b.run { "" } else { " [not run]" };
        println!("  {:<5} {}{state}", b.device.name(), b.text);
    }
    let jobs: Vec<(usize, DatasetKind, Device)> = sizes
        .iter()
        .enumerate()
        .flat_map(|(si, s)| {
            let infos = &infos;
            s.datasets.iter().flat_map(move |&d| {
                infos
                    .iter()
                    .filter(|b| b.run && !(s.large && b.emulated))
                    .map(move |b| (si, d, b.device))
            })
        })
        .collect();
    let total_epochs: usize = jobs.iter().map(|&(si, _, _)| sizes[si].epochs).sum();
    let bar = if std::io::stdout().is_terminal() {
        let b = ProgressBar::new(total_epochs as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} epochs [{elapsed_precise} / ~{duration_precise}] {msg}",
            )
            .expect("valid template"),
        );
        Some(b)
    } else {
        None
    };
    let say = |line: String| match &bar {
        Some(b) => b.println(line),
        None => println!("{line}"),
    };

    let mut results: HashMap<(usize, DatasetKind, Device), Outcome> = HashMap::new();
    let mut all_ok = true;
    for (ji, &(si, dataset, device)) in jobs.iter().enumerate() {
        let size = &sizes[si];
        let name = format!("{dataset} on {device}, hidden {}", size.hidden);
        if let Some(b) = &bar {
            b.set_message(name.clone());
        }
        let image = (imaged.is_empty() || imaged.contains(&device)).then(|| {
            args.img_dir
                .join(format!("{dataset}-{device}-h{}.svg", size.hidden))
        });
        let outcome = match train_one(&args, size, dataset, device, image.as_deref(), bar.as_ref())
        {
            Ok(o) => o,
            Err(e) => {
                all_ok = false;
                Outcome::Failed(e.to_string())
            }
        };
        let line = match &outcome {
            Outcome::Done {
                median,
                loss,
                correct,
                total,
                ..
            } => format!(
                "[{}/{}] {name}: {} per epoch | loss {loss:.4} | correct {correct}/{total}",
                ji + 1,
                jobs.len(),
                common::fmt_ms(*median)
            ),
            Outcome::Failed(e) => format!("[{}/{}] {name}: FAILED: {e}", ji + 1, jobs.len()),
        };
        say(line);
        results.insert((si, dataset, device), outcome);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    let mut md = render(&args, &sizes, &infos, &results)?;
    if args.matmul_rounds > 0 {
        println!(
            "running the matmul comparison with the gemm crate ({} rounds)",
            args.matmul_rounds
        );
        md.push_str(&matmul_section(args.matmul_rounds)?);
    }
    // Sections written by hand or by other tools (CPU at scale, the browser) follow this
    // marker in the existing file and are kept.
    if let Ok(old) = std::fs::read_to_string(&args.out) {
        if let Some(at) = old.find(KEEP_MARKER) {
            if !md.ends_with('\n') {
                md.push('\n');
            }
            md.push('\n');
            md.push_str(&old[at..]);
        }
    }
    if let Some(dir) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| common::io_err("report", dir, e))?;
    }
    std::fs::write(&args.out, md).map_err(|e| common::io_err("report", &args.out, e))?;
    println!(
        "wrote {} and {} picture(s) in {}",
        args.out.display(),
        results
            .values()
            .filter(|o| matches!(o, Outcome::Done { image: Some(_), .. }))
            .count(),
        args.img_dir.display()
    );
    Ok(all_ok)
}

fn config(args: &Args, size: &Size, dataset: DatasetKind, device: Device) -> TrainConfig {
    TrainConfig {
        dataset,
        points: size.points,
        hidden: size.hidden,
        lr: args.lr,
        epochs: size.epochs,
        batch: size.batch,
        seed: args.seed,
        loss: LossKind::Guarded,
        device,
    }
}

fn train_one(
    args: &Args,
    size: &Size,
    dataset: DatasetKind,
    device: Device,
    image: Option<&Path>,
    bar: Option<&ProgressBar>,
) -> Result<Outcome> {
    let mut trainer = Trainer::new(config(args, size, dataset, device))?;
    // Log (and so count correct points) about 50 times a run: enough for a smooth bar.
    let every = (size.epochs / 50).max(1);
    let start = bar.map(|b| b.position()).unwrap_or(0);
    let summary = train::run(&mut trainer, every, |l| {
        if let Some(b) = bar {
            b.set_position(start + l.epoch as u64);
        }
    })?;
    if let Some(image) = image {
        let title = format!("{dataset}, hidden {} ({device})", size.hidden);
        plot_svg(
            image,
            &title,
            &trainer.data,
            |p| trainer.predict(p),
            &summary.losses,
        )?;
    }
    Ok(Outcome::Done {
        median: summary.median_epoch(),
        loss: summary.final_loss,
        correct: summary.correct,
        total: summary.total,
        image: image.map(Path::to_path_buf),
    })
}

/// Today's date (UTC) as YYYY-MM-DD, from the days since 1970-01-01.
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // Civil-from-days: shift to eras of 400 years starting on March 1st.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `to` relative to the directory `from` (both made absolute first), for links in Markdown.
fn relative(to: &Path, from: &Path) -> PathBuf {
    let abs = |p: &Path| {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        // Lexical clean-up of `.` and `..`, so the two paths compare component by component.
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir => {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        out
    };
    let (to, from) = (abs(to), abs(from));
    let common = to
        .components()
        .zip(from.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    for c in to.components().skip(common) {
        rel.push(c);
    }
    rel
}

fn cell(outcome: Option<&Outcome>, info: &BackendInfo, large: bool) -> String {
    let gpu = info.device != Device::Cpu;
    match outcome {
        Some(Outcome::Done {
            median,
            loss,
            correct,
            total,
            ..
        }) => {
            let numbers = format!(
                "{} · loss {loss:.3} · {correct}/{total}",
                common::fmt_ms(*median)
            );
            if gpu && info.emulated {
                format!("{NOT_ON_GPU} (software adapter: {numbers})")
            } else {
                numbers
            }
        }
        Some(Outcome::Failed(e)) => format!("failed: {}", e.replace('|', "/")),
        None if gpu && info.run && info.emulated && large => {
            format!("{NOT_ON_GPU} (software adapter skipped: too slow for the large run)")
        }
        None if gpu => NOT_ON_GPU.to_string(),
        None => "not run".to_string(),
    }
}

fn render(
    args: &Args,
    sizes: &[Size],
    infos: &[BackendInfo],
    results: &HashMap<(usize, DatasetKind, Device), Outcome>,
) -> Result<String> {
    let md_dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let cmd: Vec<String> = std::env::args().skip(1).collect();
    let mut s = String::new();
    let _ = writeln!(s, "# Training results\n");
    let _ = writeln!(
        s,
        "Generated on {} on {} by `cargo run{} --example report{}{}` ({} build{}). Every table above the \
         marker at the end comes from this run on this machine; a GPU column that ran on no GPU says \
         \"not yet measured on a GPU\".\n",
        today(),
        cpu_model(),
        if cfg!(debug_assertions) { "" } else { " --release" },
        feature_flags(),
        if cmd.is_empty() { String::new() } else { format!(" -- {}", cmd.join(" ")) },
        if cfg!(debug_assertions) { "debug" } else { "release" },
        if cfg!(debug_assertions) { ": timings are not representative" } else { "" }
    );
    let _ = writeln!(s, "Machine and backends:\n");
    for b in infos {
        let _ = writeln!(s, "- **{}**: {}", b.device.name(), b.text.replace('|', "/"));
    }
    let _ = writeln!(
        s,
        "\nModel: Linear(2, H) → ReLU → Linear(H, H) → ReLU → Linear(H, 1) → sigmoid, SGD with lr {}, seed {}; \
         loss -log(p + 1e-6) summed over the last epoch's batches. Each cell: median time per epoch (all epochs \
         but the first) · final loss · points classified correctly after the last epoch.\n",
        args.lr, args.seed
    );
    let backend_name = |d: Device| match d {
        Device::Cpu => "CPU",
        Device::Wgpu => "GPU (wgpu)",
        Device::Cuda => "GPU (CUDA)",
        Device::CudaEmu => "CUDA, emulated on the CPU",
    };
    for (si, size) in sizes.iter().enumerate() {
        let _ = writeln!(
            s,
            "## {} ({} points, batch {}, {} epochs)\n",
            size.title, size.points, size.batch, size.epochs
        );
        let mut header = "| dataset |".to_string();
        let mut rule = "|---|".to_string();
        for b in infos {
            let _ = write!(header, " {} |", backend_name(b.device));
            rule.push_str("---|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        for &d in &size.datasets {
            let _ = write!(s, "| {d} |");
            for b in infos {
                let _ = write!(
                    s,
                    " {} |",
                    cell(results.get(&(si, d, b.device)), b, size.large)
                );
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
    }
    if !args.large {
        let _ = writeln!(
            s,
            "The large run (hidden {}, {} points, batch {}) was not part of this report (pass `--large`).\n",
            args.large_hidden, args.large_points, args.large_batch
        );
    }

    let _ = writeln!(s, "## Decision boundaries\n");
    let _ = writeln!(
        s,
        "Class-1 probability (red 1, blue 0) with the training points, and the loss per epoch.\n"
    );
    for (si, size) in sizes.iter().enumerate() {
        for &d in &size.datasets {
            for b in infos {
                if let Some(Outcome::Done {
                    image: Some(img), ..
                }) = results.get(&(si, d, b.device))
                {
                    let rel = relative(img, &md_dir);
                    let rel = rel.to_string_lossy().replace('\\', "/");
                    let soft = if b.emulated { ", software adapter" } else { "" };
                    let _ = writeln!(
                        s,
                        "**{d}, {}, hidden {}{soft}**\n",
                        backend_name(b.device),
                        size.hidden
                    );
                    let _ = writeln!(s, "<img src=\"{rel}\" width=\"70%\">\n");
                }
            }
        }
    }
    Ok(s)
}

/// The `--features` this binary was built with, as a cargo flag.
fn feature_flags() -> String {
    let mut f = Vec::new();
    if cfg!(feature = "wgpu") {
        f.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        f.push("cuda");
    }
    if f.is_empty() {
        String::new()
    } else {
        format!(" --features {}", f.join(","))
    }
}

/// The CPU's model name (Linux: /proc/cpuinfo), with the thread count rayon uses.
fn cpu_model() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "an unnamed CPU".to_string());
    format!("{model}, {} threads", rayon::current_num_threads())
}

/// The `matmul_vs_gemm` example's table, run now through cargo in this build's profile
/// and features.
fn matmul_section(rounds: usize) -> Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = std::process::Command::new(&cargo);
    cmd.args(["run", "--quiet", "--example", "matmul_vs_gemm"]);
    // The same features as this binary, so cargo reuses the build.
    cmd.args(feature_flags().split_whitespace());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd.args(["--", "--rounds", &rounds.to_string()]);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    let out = cmd.output().map_err(|e| {
        Error::invalid(
            "report",
            format!("cannot run {cargo} for the matmul table: {e}"),
        )
    })?;
    if !out.status.success() {
        return Err(Error::invalid(
            "report",
            format!(
                "the matmul comparison failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    let table = String::from_utf8_lossy(&out.stdout);
    let mut s = String::new();
    let _ = writeln!(s, "## CPU matmul against the gemm crate\n");
    let _ = writeln!(
        s,
        "`cargo run{} --example matmul_vs_gemm -- --rounds {rounds}`, run by this report: each shape \
         multiplied by minitorch's CPU backend and by the gemm crate, interleaved round by round; \
         the best time of each, and their throughput ratio (above 1: minitorch is faster).\n",
        if cfg!(debug_assertions) { "" } else { " --release" },
    );
    s.push_str(table.trim_end());
    s.push_str("\n\n");
    Ok(s)
}
