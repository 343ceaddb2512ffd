//! The examples run end to end on tiny settings, so the report commands cannot rot:
//! `parallel_check`, `matmul_speedup`, `report`, `accuracy`, and `train` (bad flags fail with a clear
//! message; save, plot and load work).
//!
//! The examples are built once by a nested `cargo build --examples` with this test's
//! profile, features and target directory (so nothing is rebuilt), then run directly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use minitorch::Device;

/// The features this test was built with, as cargo arguments.
fn feature_args() -> Vec<String> {
    let mut f = Vec::new();
    if cfg!(feature = "wgpu") {
        f.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        f.push("cuda");
    }
    // The same set as tests/distributed.rs, so neither rebuilds the examples for the other.
    if cfg!(feature = "mpi") {
        f.push("mpi");
    }
    if cfg!(feature = "nccl") {
        f.push("nccl");
    }
    if f.is_empty() {
        Vec::new()
    } else {
        vec!["--features".into(), f.join(",")]
    }
}

/// Build the examples once; the directory holding them.
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test runs from <target>/<profile>/deps/; the examples land in <target>/<profile>/examples/.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("<target>").to_path_buf();
        let profile = profile_dir
            .file_name()
            .expect("profile dir name")
            .to_string_lossy()
            .to_string();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--examples", "--target-dir"])
            .arg(&target_dir)
            .args(feature_args());
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd.output().expect("run cargo");
        assert!(
            out.status.success(),
            "cargo build --examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir.join("examples")
    })
}

/// Run an example with `args`; (success, stdout, stderr).
fn run_example(name: &str, args: &[&str]) -> (bool, String, String) {
    let exe = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(&exe)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("minitorch-examples-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// GPU devices compiled in and present in this process.
fn present_gpus() -> Vec<Device> {
    Device::ALL
        .into_iter()
        .filter(|&d| d != Device::Cpu && d.is_compiled() && d.backend().is_ok())
        .collect()
}

#[test]
fn parallel_check_reports_paths_splits_and_speedups() {
    let (ok, out, err) = run_example("parallel_check", &["--runs", "1"]);
    assert!(ok, "parallel_check failed:\n{out}\n{err}");
    for needle in [
        "map relu (10)",
        "zip add (10) + (10)",
        "reduce sum (10) over dim 0",
        "matmul (1,10,20) @ (1,20,10)",
        "map relu (1048576)",
        "matmul (2,512,512) @ (2,512,512)",
        "aligned fast path",
        "strided walk",
        "1 thread    :",
        "micro-kernel",
        "matmul (1,10,1000) @ (1,1000,1000)",
        "column block(s)",
        "matmul (1,1,20) @ (1,20,100)",
        "row kernel",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    // One speed-up line per case: 6 tiny, 9 large.
    assert_eq!(out.matches("speed-up    :").count(), 15, "{out}");
    if std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        > 1
    {
        assert!(
            out.contains("parallel:"),
            "no parallel plan with several threads:\n{out}"
        );
    }
}

#[test]
fn matmul_speedup_writes_csv_and_svg() {
    let dir = scratch("matmul");
    let d = dir.to_str().unwrap();
    let (ok, out, err) = run_example(
        "matmul_speedup",
        &[
            "--sizes",
            "8,33",
            "--runs",
            "2",
            "--naive-max",
            "8",
            "--out-dir",
            d,
        ],
    );
    assert!(ok, "matmul_speedup failed:\n{out}\n{err}");
    assert!(
        out.contains("skipped"),
        "naive at 33 should be skipped:\n{out}"
    );
    let csv = std::fs::read_to_string(dir.join("matmul_speedup.csv")).expect("csv written");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "backend,device,batch,n,median_ms,gflops,runs,note"
    );
    let backends = 2 + present_gpus().len();
    assert_eq!(lines.len(), 1 + 2 * backends, "{csv}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("naive,") && l.contains(",8,") && !l.contains("skipped")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("naive,") && l.contains("skipped")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("cpu,") && l.contains(",33,")));
    for g in present_gpus() {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{g},"))),
            "no {g} rows:\n{csv}"
        );
    }
    let svg = std::fs::read_to_string(dir.join("matmul_speedup.svg")).expect("svg written");
    assert!(svg.starts_with("<svg") && svg.contains("naive") && svg.contains("cpu"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_writes_table_and_pictures() {
    let dir = scratch("report");
    let md = dir.join("docs/results.md");
    let img = dir.join("docs/img");
    let (ok, out, err) = run_example(
        "report",
        &[
            "--epochs",
            "3",
            "--datasets",
            "simple,xor",
            "--hidden",
            "4",
            "--big-hidden",
            "6",
            "--large",
            "--large-hidden",
            "8",
            "--large-points",
            "60",
            "--large-batch",
            "30",
            "--large-epochs",
            "2",
            "--out",
            md.to_str().unwrap(),
            "--img-dir",
            img.to_str().unwrap(),
        ],
    );
    assert!(ok, "report failed:\n{out}\n{err}");
    let text = std::fs::read_to_string(&md).expect("results.md written");
    for needle in [
        "## Hidden 4 (50 points, batch 10, 3 epochs)",
        "## Bigger model: hidden 6",
        "## Large run: hidden 8 (60 points, batch 30, 2 epochs)",
        "| simple |",
        "| xor |",
        "| split |",
        "img/simple-cpu-h4.svg",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // A GPU backend absent here must say so, never show numbers.
    for d in [Device::Wgpu, Device::Cuda] {
        if !present_gpus().contains(&d) {
            assert!(text.contains("not yet measured on a GPU"), "{text}");
        }
    }
    for f in ["simple-cpu-h4.svg", "xor-cpu-h6.svg", "split-cpu-h8.svg"] {
        let svg = std::fs::read_to_string(img.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(svg.starts_with("<svg"), "{f}");
    }
    for g in present_gpus() {
        assert!(
            img.join(format!("simple-{g}-h4.svg")).exists(),
            "no picture for {g}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_rejects_bad_flags() {
    let (ok, _, err) = run_example(
        "report",
        &["--datasets", "nope", "--out", "/nonexistent/r.md"],
    );
    assert!(!ok);
    assert!(err.contains("unknown dataset \"nope\""), "{err}");
    let (ok, _, err) = run_example(
        "report",
        &["--big-hidden", "0", "--out", "/nonexistent/r.md"],
    );
    assert!(!ok);
    assert!(err.contains("hidden must be at least 1"), "{err}");
}

#[test]
fn train_rejects_bad_flags_with_clear_messages() {
    let (ok, _, err) = run_example("train", &["--backend", "cpu", "--dataset", "moons"]);
    assert!(!ok, "unknown dataset accepted");
    assert!(err.contains("unknown dataset \"moons\""), "{err}");

    let (ok, _, err) = run_example("train", &["--backend", "cpu", "--points", "0"]);
    assert!(!ok, "--points 0 accepted");
    assert!(err.contains("points must be at least 1"), "{err}");

    let missing = scratch("missing").join("absent.safetensors");
    let (ok, _, err) = run_example(
        "train",
        &["--backend", "cpu", "--load", missing.to_str().unwrap()],
    );
    assert!(!ok, "missing --load file accepted");
    assert!(
        err.contains("absent.safetensors"),
        "error does not name the file: {err}"
    );
    let _ = std::fs::remove_dir_all(missing.parent().unwrap());
}

#[test]
fn train_saves_plots_and_loads() {
    let dir = scratch("train");
    let (svg, model) = (dir.join("x.svg"), dir.join("m.safetensors"));
    let (ok, out, err) = run_example(
        "train",
        &[
            "--backend",
            "cpu",
            "--epochs",
            "3",
            "--plot",
            svg.to_str().unwrap(),
            "--save",
            model.to_str().unwrap(),
        ],
    );
    assert!(ok, "train failed:\n{out}\n{err}");
    assert!(out.contains("Epoch 3 |"), "{out}");
    assert!(std::fs::read_to_string(&svg)
        .expect("plot written")
        .starts_with("<svg"));
    assert!(std::fs::metadata(&model).expect("model saved").len() > 0);

    let (ok, out, err) = run_example(
        "train",
        &[
            "--backend",
            "cpu",
            "--load",
            model.to_str().unwrap(),
            "--epochs",
            "0",
        ],
    );
    assert!(ok, "train --load failed:\n{out}\n{err}");
    assert!(out.contains("loaded parameters"), "{out}");
    // The loaded model is the trained one, so it is evaluated without training (0 epochs).
    assert!(out.contains("Done:"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn accuracy_writes_the_ulp_table() {
    let dir = scratch("accuracy");
    let out_file = dir.join("accuracy.md");
    let mut devices = vec!["cpu".to_string()];
    devices.extend(present_gpus().iter().map(|d| d.name().to_string()));
    let list = devices.join(",");
    let (ok, out, err) = run_example(
        "accuracy",
        &[
            "--device",
            &list,
            "--step",
            "65536",
            "--out",
            out_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "accuracy failed:\n{out}\n{err}");
    let table = std::fs::read_to_string(&out_file).expect("table written");
    for d in &devices {
        for op in ["log", "exp", "sigmoid"] {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| {op} | {d} |")))
                .unwrap_or_else(|| panic!("no row for {op} on {d}:\n{table}"));
            let max_ulp: u64 = row.split('|').nth(4).unwrap().trim().parse().unwrap();
            assert!(max_ulp <= 2, "{row}");
        }
    }
    let (ok, _, err) = run_example("accuracy", &["--device", "tpu"]);
    assert!(!ok && err.contains("tpu"), "{err}");
}

#[test]
fn step_cost_counts_launches_and_prints_losses() {
    let (ok, out, err) = run_example(
        "step_cost",
        &["--hidden", "8", "--epochs", "1", "--loss-epochs", "1"],
    );
    assert!(ok, "step_cost failed:\n{out}\n{err}");
    assert!(out.contains("cpu: launches per step not counted"), "{out}");
    for d in present_gpus() {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{d}: launches per step ")))
            .unwrap_or_else(|| panic!("no {d} line in:\n{out}"));
        let n: f64 = line
            .split("launches per step ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no launch count in {line:?}"));
        assert!(n > 0.0 && n <= 24.0, "{line}");
    }
    assert_eq!(out.matches("losses ").count(), 6, "{out}");
}

/// The first line of `train` reads at a glance: at most 300 characters, each fallback
/// reason in short (the names tried and LD_LIBRARY_PATH come on later lines).
#[test]
fn train_first_line_is_short() {
    let (ok, out, err) = run_example("train", &["--epochs", "0", "--points", "10"]);
    assert!(ok, "train failed:\n{out}\n{err}");
    let first = out.lines().next().unwrap_or_default();
    println!("{out}");
    assert!(first.starts_with("minitorch train: backend"), "{first}");
    assert!(
        first.chars().count() <= 300,
        "{} chars: {first}",
        first.len()
    );
    assert!(!first.contains("LD_LIBRARY_PATH"), "{first}");
}
