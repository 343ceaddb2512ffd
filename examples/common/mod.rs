//! Pieces shared by the examples: backend selection and plotting.
#![allow(dead_code)]

pub mod images;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use minitorch::backend::Device;
use minitorch::datasets::Graph;
use minitorch::{Error, Result};
use plotters::prelude::*;

/// The backend a user asked for on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The best compiled-in backend with a device: cuda, then wgpu, then cpu.
    Auto,
    /// The CPU (rayon).
    Cpu,
    /// WebGPU (needs `--features wgpu`).
    Wgpu,
    /// CUDA (needs `--features cuda`).
    Cuda,
    /// The CUDA backend on the emulated device (needs `--features cuda` and a C++
    /// compiler; slow, for checking without a GPU).
    #[value(name = "cuda-emu")]
    CudaEmu,
}

/// Pick the device for `choice`. Returns the device and, for `auto`, why better backends
/// were passed over. An explicit GPU backend that cannot run is an error saying how to get it.
pub fn select_device(choice: BackendChoice) -> Result<(Device, Vec<String>)> {
    let explicit = |d: Device| d.backend().map(|_| (d, Vec::new()));
    match choice {
        BackendChoice::Cpu => explicit(Device::Cpu),
        BackendChoice::Wgpu => explicit(Device::Wgpu),
        BackendChoice::Cuda => explicit(Device::Cuda),
        BackendChoice::CudaEmu => explicit(Device::CudaEmu),
        BackendChoice::Auto => {
            let mut why = Vec::new();
            for d in [Device::Cuda, Device::Wgpu] {
                if !d.is_compiled() {
                    continue;
                }
                match d.backend() {
                    // A software adapter (lavapipe) still counts: the user built with the
                    // feature to run it. describe_choice says the CPU backend is faster.
                    Ok(_) => return Ok((d, why)),
                    // "cuda: no NVIDIA driver (...)": the message alone, its first line a
                    // summary and later lines the details (fallback_details).
                    Err(Error::DeviceUnavailable { msg, .. }) => why.push(format!("{d}: {msg}")),
                    Err(e) => why.push(format!("{d}: {e}")),
                }
            }
            if why.is_empty() {
                why.push(
                    "no GPU backend compiled in (build with --features cuda or --features wgpu)"
                        .into(),
                );
            }
            Ok((Device::Cpu, why))
        }
    }
}

/// The first line every example prints: which backend and device, and why.
pub fn describe_choice(device: Device, why: &[String]) -> Result<String> {
    let b = device.backend()?;
    let mut s = format!("backend {device} on {}", b.describe());
    if !why.is_empty() {
        let what = if device == Device::Cpu {
            "fell back to the CPU"
        } else {
            "passed over"
        };
        // Only each reason's first line, so the line reads at a glance; the rest is in
        // fallback_details.
        let short: Vec<String> = why
            .iter()
            .map(|w| truncate(w.lines().next().unwrap_or_default(), 120))
            .collect();
        s.push_str(&format!(" ({what}: {})", short.join("; ")));
    }
    if b.is_emulated() {
        s.push_str(" (a software adapter, no GPU: expect it to be slower than --backend cpu)");
    }
    Ok(truncate(&s, MAX_FIRST_LINE))
}

/// Longest first line an example prints.
pub const MAX_FIRST_LINE: usize = 300;

/// `s` cut to at most `max` characters, ending in "..." when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(3)).collect();
    t.push_str("...");
    t
}

/// The full text of every reason a backend was passed over (names tried, loader path,
/// how to fix it), one indented block per reason, or None when there is nothing more than
/// the first line said.
pub fn fallback_details(why: &[String]) -> Option<String> {
    let blocks: Vec<String> = why
        .iter()
        .filter(|w| w.lines().nth(1).is_some() || w.chars().count() > 120)
        .map(|w| {
            w.lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    (!blocks.is_empty()).then(|| blocks.join("\n"))
}

/// An I/O error of example `op` on `path`.
pub fn io_err(op: &'static str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        op,
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    io_err("plot", path, e)
}

/// A duration in milliseconds with three significant digits or so.
pub fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

/// The exit status of an example: errors are printed as `error: ...` and fail the process.
pub fn exit_code(r: Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Draw the decision boundary of `predict` over [0,1]^2 with the data's points, and (when
/// given) the loss curve beside it, into an SVG file.
pub fn plot_svg(
    path: &Path,
    title: &str,
    data: &Graph,
    predict: impl Fn(&[[f64; 2]]) -> Result<Vec<f32>>,
    losses: &[f32],
) -> Result<()> {
    const GRID: usize = 60;
    let cells: Vec<[f64; 2]> = (0..GRID * GRID)
        .map(|i| {
            let (r, c) = (i / GRID, i % GRID);
            [
                (c as f64 + 0.5) / GRID as f64,
                (r as f64 + 0.5) / GRID as f64,
            ]
        })
        .collect();
    let probs = predict(&cells)?;
    let width = if losses.is_empty() { 520 } else { 1040 };
    let root = SVGBackend::new(path, (width, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let (left, right) = if losses.is_empty() {
        (root.clone(), None)
    } else {
        let (l, r) = root.split_horizontally(520);
        (l, Some(r))
    };
    let mut chart = ChartBuilder::on(&left)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0.0..1.0f64, 0.0..1.0f64)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .draw()
        .map_err(|e| plot_err(path, e))?;
    let step = 1.0 / GRID as f64;
    chart
        .draw_series(cells.iter().zip(&probs).map(|(c, &p)| {
            let p = p.clamp(0.0, 1.0) as f64;
            // Blue for class 0, red for class 1, pale near 0.5.
            let color = RGBColor(
                (255.0 * (0.55 + 0.45 * p)) as u8,
                (255.0 * (1.0 - 0.45 * (2.0 * p - 1.0).abs())) as u8,
                (255.0 * (1.0 - 0.45 * p)) as u8,
            );
            Rectangle::new(
                [
                    (c[0] - step / 2.0, c[1] - step / 2.0),
                    (c[0] + step / 2.0, c[1] + step / 2.0),
                ],
                color.filled(),
            )
        }))
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(data.x.iter().zip(&data.y).map(|(p, &y)| {
            let color = if y > 0.5 { RED } else { BLUE };
            Circle::new((p[0], p[1]), 4, color.filled())
        }))
        .map_err(|e| plot_err(path, e))?;
    if let Some(right) = right {
        let max = losses
            .iter()
            .copied()
            .filter(|l| l.is_finite())
            .fold(0.0f32, f32::max)
            .max(1e-6);
        let mut lc = ChartBuilder::on(&right)
            .caption("loss per epoch", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0..losses.len(), 0.0..(max * 1.05))
            .map_err(|e| plot_err(path, e))?;
        lc.configure_mesh().draw().map_err(|e| plot_err(path, e))?;
        lc.draw_series(LineSeries::new(
            losses.iter().enumerate().map(|(i, &l)| (i, l)),
            &BLACK,
        ))
        .map_err(|e| plot_err(path, e))?;
    }
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// Errors unless the flag's value is at least 1: `{example}: --{flag} must be at least 1`.
pub fn at_least_one(example: &'static str, flag: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::invalid(
            example,
            format!("--{flag} must be at least 1, got 0"),
        ));
    }
    Ok(())
}

/// Errors unless the flag's value is a finite number above 0.
pub fn positive(example: &'static str, flag: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(Error::invalid(
            example,
            format!("--{flag} must be a positive number, got {value}"),
        ));
    }
    Ok(())
}
