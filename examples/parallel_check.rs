//! The CPU backend's parallel diagnostics (the course's `parallel_check.py`, tasks 3.1 and
//! 3.2): for map, zip, reduce and matmul, at the course's tiny sizes and at sizes where
//! threads pay off, it prints which path ran (aligned fast path or strided walk, serial or
//! parallel), how the work was split across threads, and the measured time with one
//! thread and with all of them.
//!
//! The path and split are the [`Plan`] (or matmul [`Split`]) the backend itself computes in
//! the same thread pool, not a re-derivation, and both pools' results are checked to agree.
//!
//! ```text
//! cargo run --release --example parallel_check
//! cargo run --release --example parallel_check -- --runs 3 --small-only
//! ```

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use minitorch::backend::cpu::matmul::{self, Split};
use minitorch::backend::cpu::{CpuBackend, Plan, PARALLEL_MIN};
use minitorch::{Backend, BinaryOp, Error, Layout, ReduceOp, Result, Storage, UnaryOp};

/// Print which path each CPU op takes, how it is split across threads, and its speed-up.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Timed runs per case and pool (the median is printed), after one warm-up run.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Only the course's tiny sizes (10 elements, (1,10,20) @ (1,20,10)).
    #[arg(long)]
    small_only: bool,
}

/// One operation to diagnose, on fixed inputs.
enum Case {
    Map(Layout),
    Zip(Layout, Layout),
    Reduce(Layout, usize),
    Matmul(Layout, Layout),
}

impl Case {
    /// The storage length an input layout needs.
    fn extent(l: &Layout) -> usize {
        minitorch::backend::check::extent(l)
    }

    fn inputs(&self) -> Vec<&Layout> {
        match self {
            Case::Map(l) | Case::Reduce(l, _) => vec![l],
            Case::Zip(a, b) | Case::Matmul(a, b) => vec![a, b],
        }
    }

    fn run(&self, cpu: &CpuBackend, s: &[Storage]) -> Result<Storage> {
        match self {
            Case::Map(l) => cpu.map(UnaryOp::Relu, &s[0], l),
            Case::Zip(a, b) => cpu.zip(BinaryOp::Add, &s[0], a, &s[1], b),
            Case::Reduce(l, d) => cpu.reduce(ReduceOp::Sum, &s[0], l, *d),
            Case::Matmul(a, b) => cpu.matmul(&s[0], a, &s[1], b),
        }
    }

    /// (n, k, m) and batch of a matmul case.
    fn mm_dims(a: &Layout, b: &Layout) -> (usize, usize, usize, usize) {
        let r = a.dims();
        let batch = a.shape()[..r - 2].iter().product();
        (batch, a.shape()[r - 2], a.shape()[r - 1], b.shape()[r - 1])
    }

    /// The path and split the backend chooses in the current pool, in words.
    fn describe_plan(&self) -> (String, String) {
        let plan_words = |p: Plan, what: &str, n: usize, cost: usize| {
            let path = if p.aligned {
                format!("aligned fast path ({what})")
            } else {
                "strided walk (odometer cursor over the strides)".to_string()
            };
            let split = if p.is_parallel() {
                format!(
                    "parallel: {} chunks x {} output elements on {} threads",
                    p.chunks,
                    p.chunk_len,
                    rayon::current_num_threads()
                )
            } else if rayon::current_num_threads() == 1 {
                format!("serial: 1 chunk x {} (one thread in the pool)", p.chunk_len)
            } else if cost == 1 {
                format!(
                    "serial: 1 chunk x {} ({n} elements < PARALLEL_MIN = {PARALLEL_MIN})",
                    p.chunk_len
                )
            } else {
                format!(
                    "serial: 1 chunk x {} ({n} outputs x {cost} reduced < PARALLEL_MIN = {PARALLEL_MIN})",
                    p.chunk_len
                )
            };
            (path, split)
        };
        match self {
            Case::Map(l) => plan_words(
                CpuBackend::map_plan(l),
                "plain slice loop, no index math",
                l.size(),
                1,
            ),
            Case::Zip(a, b) => plan_words(
                CpuBackend::zip_plan(a, b),
                "plain slice loops, no index math",
                a.size(),
                1,
            ),
            Case::Reduce(l, d) => {
                let p = CpuBackend::reduce_plan(l, *d);
                let len = l.shape()[*d];
                let (path, split) = plan_words(
                    p,
                    "reduced dim has stride 1: slice loop per output",
                    l.size() / len.max(1),
                    len,
                );
                let path = if p.aligned {
                    path
                } else {
                    format!(
                        "strided: output positions by cursor, reduced dim read with stride {}",
                        l.strides()[*d]
                    )
                };
                (path, split)
            }
            Case::Matmul(a, b) => {
                let (batch, n, k, m) = Self::mm_dims(a, b);
                let r = b.dims();
                let s: Split =
                    matmul::split(batch, n, k, m, (b.strides()[r - 2], b.strides()[r - 1]));
                let a_words = if s.pack_a {
                    "A packed into row panels once"
                } else {
                    "A read in place (few column panels would reuse a packed A)"
                };
                let b_words = if s.pack_b && b.strides()[r - 1] == 1 {
                    "B packed into column panels once"
                } else if s.pack_b {
                    "B packed once, read through its strides (transposed in place)"
                } else {
                    "B read in place (few row panels would reuse a packed B)"
                };
                let b_path = if s.swapped {
                    format!("B stored transposed and A small: run as C^T = B^T A^T, then transposed; {a_words} (B^T), {b_words} (A^T); every task shares them")
                } else {
                    format!("{a_words}, {b_words}; every task shares them")
                };
                let path = if s.row {
                    format!(
                        "one row of A: row kernel `{}` ({} outputs held in registers over the depth, or B streamed row by row when deep and wide); A and B read in place, nothing packed",
                        s.kernel, s.tile.1
                    )
                } else {
                    format!(
                        "{}x{} micro-kernel `{}`, {} depth block(s) of KC = {}; {b_path}",
                        s.tile.0,
                        s.tile.1,
                        s.kernel,
                        s.k_blocks,
                        matmul::KC
                    )
                };
                let how = format!(
                    "{} task(s) = {batch} batch x {} row block(s) of {} rows x {} column block(s) of {} columns (at most MC = {} x NC = {})",
                    s.tasks,
                    s.row_blocks,
                    s.rows_per_task,
                    s.col_blocks,
                    s.cols_per_task,
                    matmul::MC,
                    matmul::NC
                );
                let split = if s.parallel {
                    format!(
                        "parallel on {} threads, {how}",
                        rayon::current_num_threads()
                    )
                } else if rayon::current_num_threads() == 1 {
                    format!("serial (one thread in the pool), {how}")
                } else if s.row {
                    format!(
                        "serial ({} multiply-adds < ROW_PARALLEL_MIN_FLOPS = {}), {how}",
                        batch * n * k * m,
                        matmul::ROW_PARALLEL_MIN_FLOPS
                    )
                } else {
                    format!(
                        "serial ({} multiply-adds < PARALLEL_MIN_FLOPS = {}), {how}",
                        batch * n * k * m,
                        matmul::PARALLEL_MIN_FLOPS
                    )
                };
                (path, split)
            }
        }
    }
}

/// Median wall time of `runs` calls after one warm-up; returns the last result too.
fn time(runs: usize, mut f: impl FnMut() -> Result<Storage>) -> Result<(Duration, Storage)> {
    let mut out = f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        out = f()?;
        times.push(t0.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], out))
}

fn fmt_time(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.2} us")
    } else {
        format!("{:.3} ms", us / 1e3)
    }
}

fn shape_str(l: &Layout) -> String {
    let dims: Vec<String> = l.shape().iter().map(|d| d.to_string()).collect();
    let contiguous = if l.is_contiguous() { "" } else { " permuted" };
    format!("({}){contiguous}", dims.join(","))
}

fn title(case: &Case) -> String {
    match case {
        Case::Map(l) => format!("map relu {}", shape_str(l)),
        Case::Zip(a, b) => format!("zip add {} + {}", shape_str(a), shape_str(b)),
        Case::Reduce(l, d) => {
            let mut out = l.shape().to_vec();
            out[*d] = 1;
            format!("reduce sum {} over dim {d} -> {:?}", shape_str(l), out)
        }
        Case::Matmul(a, b) => format!("matmul {} @ {}", shape_str(a), shape_str(b)),
    }
}

fn check_case(cpu: &CpuBackend, one: &rayon::ThreadPool, case: &Case, runs: usize) -> Result<()> {
    let inputs: Vec<Storage> = case
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let n = Case::extent(l);
            let data: Vec<f32> = (0..n)
                .map(|j| (((j * 7 + i * 3) % 23) as f32 - 11.0) / 11.0)
                .collect();
            cpu.upload(&data)
        })
        .collect::<Result<_>>()?;
    println!("{}", title(case));
    let (path1, split1) = one.install(|| case.describe_plan());
    let (path_all, split_all) = case.describe_plan();
    println!("  path        : {path_all}");
    if path1 != path_all {
        println!("  path (1 thr): {path1}");
    }
    let (t1, r1) = one.install(|| time(runs, || case.run(cpu, &inputs)))?;
    let (tn, rn) = time(runs, || case.run(cpu, &inputs))?;
    let threads = rayon::current_num_threads();
    println!("  1 thread    : {:>10}  {split1}", fmt_time(t1));
    println!(
        "  {:<12}: {:>10}  {split_all}",
        format!("{threads} threads"),
        fmt_time(tn)
    );
    let (v1, vn) = (cpu.download(&r1)?, cpu.download(&rn)?);
    // Same plan arithmetic per output element in both pools, so the results are bitwise equal.
    if v1 != vn {
        return Err(Error::invalid(
            "parallel_check",
            format!(
                "{}: results with 1 and {threads} threads differ",
                title(case)
            ),
        ));
    }
    println!(
        "  speed-up    : {:.2}x with {threads} threads (results identical)\n",
        t1.as_secs_f64() / tn.as_secs_f64().max(1e-12)
    );
    Ok(())
}

fn permuted(shape: &[usize], order: &[usize]) -> Result<Layout> {
    Layout::contiguous(shape).permute(order)
}

fn main() -> ExitCode {
    common::exit_code(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    common::at_least_one("parallel_check", "runs", args.runs)?;
    let cpu = CpuBackend;
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| {
            Error::invalid(
                "parallel_check",
                format!("cannot build a 1-thread pool: {e}"),
            )
        })?;
    println!(
        "minitorch parallel_check: CPU backend on {} | PARALLEL_MIN = {PARALLEL_MIN} elements, matmul PARALLEL_MIN_FLOPS = {} | median of {} runs after a warm-up\n",
        cpu.describe(),
        matmul::PARALLEL_MIN_FLOPS,
        args.runs.max(1)
    );

    println!("=== Task 3.1 / 3.2 at the course's sizes ===\n");
    let small = [
        Case::Map(Layout::contiguous(&[10])),
        Case::Zip(Layout::contiguous(&[10]), Layout::contiguous(&[10])),
        Case::Reduce(Layout::contiguous(&[10]), 0),
        Case::Matmul(
            Layout::contiguous(&[1, 10, 20]),
            Layout::contiguous(&[1, 20, 10]),
        ),
        // One row of A (a vector times a matrix): the row kernel.
        Case::Matmul(
            Layout::contiguous(&[1, 1, 20]),
            Layout::contiguous(&[1, 20, 100]),
        ),
        // A permuted input takes the strided path even when tiny.
        Case::Map(permuted(&[2, 5], &[1, 0])?),
    ];
    for case in &small {
        check_case(&cpu, &one, case, args.runs)?;
    }
    if args.small_only {
        println!("(sizes where threads pay off skipped: --small-only)");
        return Ok(());
    }

    println!("=== The same ops where threads pay off ===\n");
    let big = [
        Case::Map(Layout::contiguous(&[1 << 20])),
        Case::Map(permuted(&[1024, 1024], &[1, 0])?),
        Case::Zip(
            Layout::contiguous(&[1 << 20]),
            Layout::contiguous(&[1 << 20]),
        ),
        Case::Zip(
            Layout::contiguous(&[1024, 1024]),
            permuted(&[1024, 1024], &[1, 0])?,
        ),
        Case::Reduce(Layout::contiguous(&[1024, 1024]), 1),
        Case::Reduce(Layout::contiguous(&[1024, 1024]), 0),
        Case::Matmul(
            Layout::contiguous(&[2, 512, 512]),
            Layout::contiguous(&[2, 512, 512]),
        ),
        Case::Matmul(
            Layout::contiguous(&[2, 512, 512]),
            permuted(&[2, 512, 512], &[0, 2, 1])?,
        ),
        // A skinny product: few rows, so the split cuts columns and B is read in place.
        Case::Matmul(
            Layout::contiguous(&[1, 10, 1000]),
            Layout::contiguous(&[1, 1000, 1000]),
        ),
    ];
    for case in &big {
        check_case(&cpu, &one, case, args.runs)?;
    }
    Ok(())
}
