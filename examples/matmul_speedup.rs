//! Matmul speed-up graph (course tasks 3.2 and 3.4): batched `(2, N, N) @ (2, N, N)` on
//! naive operations (a single-threaded triple loop), the parallel CPU backend and every
//! GPU backend present, median of several runs after a warm-up. GPU times include waiting
//! for the device (`synchronize`). Writes `matmul_speedup.csv` and `matmul_speedup.svg`
//! (log-log, time against N, one line per backend) and prints the table.
//!
//! ```text
//! cargo run --release --example matmul_speedup                        # N = 64 .. 1024
//! cargo run --release --example matmul_speedup --features wgpu -- --large
//! cargo run --release --example matmul_speedup -- --sizes 64,128 --runs 3 --out-dir /tmp/x
//! ```

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use minitorch::backend::cpu::matmul;
use minitorch::{Backend, Device, Error, Layout, Result};
use plotters::prelude::*;

/// Time batched (2,N,N) @ (2,N,N) on naive loops, the CPU backend and each GPU backend.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Matrix sizes N (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![64usize, 128, 256, 512, 1024])]
    sizes: Vec<usize>,
    /// Add N = 2048.
    #[arg(long)]
    large: bool,
    /// Timed runs per cell (the median is reported), after one warm-up run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Fewer runs where a cell would take longer than this many seconds (at least one run).
    #[arg(long, default_value_t = 20.0)]
    max_seconds: f64,
    /// Skip the naive triple loop above this N (it is slow: about N^3 multiply-adds per batch).
    #[arg(long, default_value_t = 1024)]
    naive_max: usize,
    /// Where to write matmul_speedup.csv and matmul_speedup.svg.
    #[arg(long, default_value = "docs")]
    out_dir: PathBuf,
}

/// Number of matrices in the batch.
const BATCH: usize = 2;

/// Who multiplies.
enum Contender {
    /// `matmul::naive`, one thread.
    Naive,
    /// A backend through the Backend trait.
    Backend(Arc<dyn Backend>),
}

struct Column {
    name: String,
    detail: String,
    who: Contender,
}

/// One measured (or skipped) cell.
struct Cell {
    median: Option<Duration>,
    runs: usize,
    note: String,
}

/// Deterministic inputs in [-1, 1).
fn input(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i.wrapping_mul(2654435761).wrapping_add(salt * 97)) % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Warm up once, then time up to `runs` calls (fewer if they would pass `max_s`).
fn measure(
    runs: usize,
    max_s: f64,
    mut f: impl FnMut() -> Result<Vec<f32>>,
) -> Result<(Duration, usize, Vec<f32>)> {
    let t0 = Instant::now();
    let out = f()?;
    let warm = t0.elapsed().as_secs_f64();
    let runs = runs.max(1).min(((max_s / warm.max(1e-9)) as usize).max(1));
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], runs, out))
}

fn main() -> ExitCode {
    common::exit_code(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let mut sizes = args.sizes.clone();
    if args.large && !sizes.contains(&2048) {
        sizes.push(2048);
    }
    if sizes.is_empty() || sizes.contains(&0) {
        return Err(Error::invalid(
            "matmul_speedup",
            "--sizes must list sizes of at least 1",
        ));
    }
    common::at_least_one("matmul_speedup", "runs", args.runs)?;
    common::positive("matmul_speedup", "max-seconds", args.max_seconds)?;
    for &n in &sizes {
        // Two operands and the product, each (BATCH, N, N) f32, on the host.
        let elems = minitorch::layout::checked_shape_size("matmul_speedup", &[BATCH, n, n])?;
        minitorch::memory::need(
            "matmul_speedup",
            &format!("--sizes {n}"),
            "two operands and their product",
            elems as u128 * 4 * 3,
        )?;
    }
    let cpu = Device::Cpu.backend()?;
    let mut cols = vec![
        Column {
            name: "naive".into(),
            detail: "triple loop, 1 thread".into(),
            who: Contender::Naive,
        },
        Column {
            name: "cpu".into(),
            detail: cpu.describe(),
            who: Contender::Backend(cpu.clone()),
        },
    ];
    let mut absent = Vec::new();
    for d in Device::ALL.into_iter().filter(|&d| d != Device::Cpu) {
        if !d.is_compiled() {
            absent.push(format!("{d}: not compiled in (build with --features {d})"));
            continue;
        }
        match d.backend() {
            Ok(b) => {
                let soft = if b.is_emulated() {
                    ", software emulation, not a GPU"
                } else {
                    ""
                };
                cols.push(Column {
                    name: d.name().into(),
                    detail: format!("{}{soft}", b.describe()),
                    who: Contender::Backend(b),
                });
            }
            Err(e) => absent.push(format!("{d}: compiled in but no device ({e}); skipped")),
        }
    }
    println!(
        "minitorch matmul_speedup: ({BATCH}, N, N) @ ({BATCH}, N, N), median of up to {} runs after a warm-up (at most ~{} s per cell); GPU times include synchronisation",
        args.runs.max(1),
        args.max_seconds
    );
    for c in &cols {
        println!("  {:<6} {}", c.name, c.detail);
    }
    for a in &absent {
        println!("  {a}");
    }

    // cells[col][size]
    let mut cells: Vec<Vec<Cell>> = cols.iter().map(|_| Vec::new()).collect();
    for &n in &sizes {
        let a = input(BATCH * n * n, 1);
        let b = input(BATCH * n * n, 2);
        let layout = Layout::contiguous(&[BATCH, n, n]);
        let mut reference: Option<Vec<f32>> = None;
        for (ci, col) in cols.iter().enumerate() {
            let result = match &col.who {
                Contender::Naive if n > args.naive_max => {
                    cells[ci].push(Cell {
                        median: None,
                        runs: 0,
                        note: format!("skipped: N > --naive-max {}", args.naive_max),
                    });
                    continue;
                }
                Contender::Naive => measure(args.runs, args.max_seconds, || {
                    Ok(matmul::naive(&a, &b, BATCH, n, n, n))
                })?,
                Contender::Backend(be) => {
                    let (sa, sb) = (be.upload(&a)?, be.upload(&b)?);
                    let (t, runs, _) = measure(args.runs, args.max_seconds, || {
                        be.matmul(&sa, &layout, &sb, &layout)?;
                        be.synchronize()?;
                        Ok(Vec::new())
                    })?;
                    let out = be.download(&be.matmul(&sa, &layout, &sb, &layout)?)?;
                    (t, runs, out)
                }
            };
            let (t, runs, out) = result;
            // Every contender must compute the same product as the first one measured.
            let reference = reference.get_or_insert_with(|| out.clone());
            let worst = reference
                .iter()
                .zip(&out)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            let tol = 1e-4 * n as f32;
            if out.len() != reference.len() || worst > tol {
                return Err(Error::invalid(
                    "matmul_speedup",
                    format!(
                        "{} at N = {n} differs from the first result by {worst} (tolerance {tol})",
                        col.name
                    ),
                ));
            }
            cells[ci].push(Cell {
                median: Some(t),
                runs,
                note: String::new(),
            });
        }
        let line: Vec<String> = cols
            .iter()
            .zip(&cells)
            .map(|(c, cs)| {
                let cell = cs.last().expect("one cell per size");
                format!(
                    "{} {}",
                    c.name,
                    cell.median
                        .map(common::fmt_ms)
                        .unwrap_or_else(|| "skipped".into())
                )
            })
            .collect();
        println!("  N = {n:>5}: {}", line.join(" | "));
    }

    // The table.
    let mut table = String::new();
    let mut header = format!("| {:>5} |", "N");
    let mut rule = "|------:|".to_string();
    for c in &cols {
        let _ = write!(header, " {:>18} |", c.name);
        rule.push_str("-------------------:|");
    }
    header.push_str(" cpu speed-up over naive |");
    rule.push_str("------------------------:|");
    let _ = writeln!(table, "{header}\n{rule}");
    for (si, n) in sizes.iter().enumerate() {
        let _ = write!(table, "| {n:>5} |");
        for cs in &cells {
            let c = &cs[si];
            let text = match c.median {
                Some(t) => common::fmt_ms(t),
                None => "skipped".into(),
            };
            let _ = write!(table, " {text:>18} |");
        }
        let speedup = match (cells[0][si].median, cells[1][si].median) {
            (Some(naive), Some(fast)) => format!(
                "{:.0}x",
                naive.as_secs_f64() / fast.as_secs_f64().max(1e-12)
            ),
            _ => "-".into(),
        };
        let _ = writeln!(table, " {speedup:>23} |");
    }
    println!("\n{table}");
    for (c, cs) in cols.iter().zip(&cells) {
        for (n, cell) in sizes.iter().zip(cs) {
            if !cell.note.is_empty() {
                println!("note: {} at N = {n}: {}", c.name, cell.note);
            }
        }
    }

    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| common::io_err("matmul_speedup", &args.out_dir, e))?;
    let csv_path = args.out_dir.join("matmul_speedup.csv");
    let mut csv = String::from("backend,device,batch,n,median_ms,gflops,runs,note\n");
    for (c, cs) in cols.iter().zip(&cells) {
        for (&n, cell) in sizes.iter().zip(cs) {
            let (ms, gflops) = match cell.median {
                Some(t) => {
                    let flops = 2.0 * (BATCH * n * n * n) as f64;
                    (
                        format!("{:.6}", t.as_secs_f64() * 1e3),
                        format!("{:.3}", flops / t.as_secs_f64() / 1e9),
                    )
                }
                None => (String::new(), String::new()),
            };
            let _ = writeln!(
                csv,
                "{},\"{}\",{BATCH},{n},{ms},{gflops},{},{}",
                c.name,
                c.detail.replace('"', "'"),
                cell.runs,
                cell.note
            );
        }
    }
    std::fs::write(&csv_path, csv).map_err(|e| common::io_err("matmul_speedup", &csv_path, e))?;
    println!("wrote {}", csv_path.display());

    let svg_path = args.out_dir.join("matmul_speedup.svg");
    plot(&svg_path, &sizes, &cols, &cells)?;
    println!("wrote {}", svg_path.display());
    Ok(())
}

/// Log-log chart: time against N, one line per contender.
fn plot(path: &Path, sizes: &[usize], cols: &[Column], cells: &[Vec<Cell>]) -> Result<()> {
    let e = |err: &dyn std::fmt::Display| common::io_err("matmul_speedup", path, err);
    let times: Vec<f64> = cells
        .iter()
        .flatten()
        .filter_map(|c| c.median.map(|t| t.as_secs_f64() * 1e3))
        .collect();
    let (lo, hi) = times
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    let (lo, hi) = if times.is_empty() {
        (1e-3, 1.0)
    } else {
        (lo / 2.0, hi * 2.0)
    };
    // The x axis is log2(N) on a linear scale, so ticks fall on the powers of two.
    let (nmin, nmax) = (
        (*sizes.iter().min().expect("sizes checked non-empty") as f64).log2(),
        (*sizes.iter().max().expect("sizes checked non-empty") as f64).log2(),
    );
    let root = SVGBackend::new(path, (800, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("batched ({BATCH}, N, N) @ ({BATCH}, N, N): time vs N (log-log)"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(nmin - 0.3..nmax + 0.3, (lo..hi).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("N")
        .y_desc("median time (ms)")
        .x_labels((nmax - nmin) as usize + 3)
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() < 1e-6 {
                format!("{:.0}", v.round().exp2())
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{v}"))
        .draw()
        .map_err(|x| e(&x))?;
    let palette = [
        RGBColor(200, 40, 40),
        RGBColor(30, 90, 200),
        RGBColor(20, 150, 60),
        RGBColor(150, 60, 170),
    ];
    for (i, (col, cs)) in cols.iter().zip(cells).enumerate() {
        let color = palette[i % palette.len()];
        let pts: Vec<(f64, f64)> = sizes
            .iter()
            .zip(cs)
            .filter_map(|(&n, c)| c.median.map(|t| ((n as f64).log2(), t.as_secs_f64() * 1e3)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let label = format!("{} ({})", col.name, col.detail);
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
