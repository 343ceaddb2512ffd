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
            "--matmul-rounds",
            "0",
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
        "Every table above the marker at the end comes from this run on this machine",
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
    // The report times every present GPU backend (the emulated CUDA device only when asked).
    for g in present_gpus().into_iter().filter(|&g| g != Device::CudaEmu) {
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
        for op in ["log", "exp", "sigmoid", "tanh"] {
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

#[test]
fn dump_kernels_writes_self_contained_sources() {
    let dir = scratch("dump_kernels");
    let (ok, out, err) = run_example("dump_kernels", &[dir.to_str().unwrap()]);
    assert!(ok, "dump_kernels failed:\n{out}\n{err}");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        out.contains(&format!("wrote {} kernel sources", files.len())),
        "{out}"
    );
    for want in [
        "map_tanh_strided.cu",
        "zip_add_contiguous.wgsl",
        "reduce.cu",
        "matmul.wgsl",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} missing: {files:?}");
    }
    // The course loop's epilogues as generated matmuls, in both languages.
    assert!(files
        .iter()
        .any(|f| f.starts_with("fused_") && f.ends_with("_matmul.cu")));
    assert!(files
        .iter()
        .any(|f| f.starts_with("fused_") && f.ends_with("_matmul.wgsl")));
    for f in &files {
        let src = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(!src.contains("#include \""), "{f} includes a header");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run an example with `args`, killing it after `limit`; (exit code, signal, stdout,
/// stderr). A hostile flag must fail at once, so a run past the limit is a failure.
fn run_example_limited(name: &str, args: &[&str], limit_s: u64) -> (Option<i32>, String, String) {
    use std::time::{Duration, Instant};
    let exe = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut child = Command::new(&exe)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(limit_s) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {args:?} still ran after {limit_s} s: a hostile flag must fail at once");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.signal().is_none(),
            "{name} {args:?} was killed by signal {:?}:\n{}",
            out.status.signal(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every example, given impossible, negative, zero or NaN flags, exits non-zero with one
/// error line (naming the flag's setting where the library checks it): no panic, no
/// abort, no signal, no allocation attempted first.
#[test]
fn every_example_rejects_hostile_flags() {
    // (example, flags, text the error line must hold)
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "train",
            &["--hidden", "1048576"],
            "hidden 1048576 needs 4 TiB for layer2.weights; this machine has",
        ),
        (
            "train",
            &["--hidden", "100000000"],
            "hidden 100000000 needs",
        ),
        (
            "train",
            &["--hidden", "18446744073709551615"],
            "hidden 18446744073709551615 needs",
        ),
        (
            "train",
            &["--points", "1000000000000"],
            "points 1000000000000 needs",
        ),
        (
            "train",
            &["--epochs", "100000000000000"],
            "epochs 100000000000000 needs",
        ),
        (
            "train",
            &[
                "--hidden", "30000", "--points", "100000", "--batch", "100000",
            ],
            "one batch's activations",
        ),
        (
            "train",
            &["--engine", "scalar", "--hidden", "1048576"],
            "hidden 1048576 needs",
        ),
        ("train", &["--hidden", "0"], "hidden must be at least 1"),
        ("train", &["--points", "0"], "points must be at least 1"),
        ("train", &["--batch", "0"], "batch must be at least 1"),
        ("train", &["--lr", "NaN"], "learning rate"),
        ("train", &["--lr", "0"], "learning rate"),
        ("train", &["--lr=-1"], "learning rate"),
        ("train", &["--hidden=-1"], "-1"),
        ("train", &["--epochs", "1e3"], "1e3"),
        ("train", &["--dataset", "moons"], "unknown dataset"),
        (
            "train",
            &["--points", "7", "--dataset", "spiral"],
            "even number of points",
        ),
        (
            "epoch_time",
            &["--hidden", "1048576"],
            "hidden 1048576 needs",
        ),
        (
            "epoch_time",
            &["--points", "1000000000000"],
            "points 1000000000000 needs",
        ),
        (
            "epoch_time",
            &["--epochs", "100000000000000"],
            "epochs 100000000000000 needs",
        ),
        ("epoch_time", &["--lr", "NaN"], "learning rate"),
        (
            "step_cost",
            &["--hidden", "1048576"],
            "hidden 1048576 needs",
        ),
        (
            "step_cost",
            &["--epochs", "100000000000000"],
            "epochs 100000000000000 needs",
        ),
        (
            "step_cost",
            &["--loss-epochs", "100000000000000"],
            "epochs 100000000000000 needs",
        ),
        ("step_cost", &["--hidden", "0"], "hidden must be at least 1"),
        ("report", &["--hidden", "1048576"], "hidden 1048576 needs"),
        (
            "report",
            &["--big-hidden", "100000000"],
            "hidden 100000000 needs",
        ),
        (
            "report",
            &["--points", "1000000000000"],
            "points 1000000000000 needs",
        ),
        (
            "report",
            &["--epochs", "100000000000000"],
            "epochs 100000000000000 needs",
        ),
        (
            "report",
            &["--large", "--large-hidden", "1048576"],
            "hidden 1048576 needs",
        ),
        ("report", &["--batch", "0"], "batch must be at least 1"),
        ("report", &["--lr", "NaN"], "learning rate"),
        ("report", &["--datasets", "moons"], "unknown dataset"),
        ("accuracy", &["--chunk", "0"], "--chunk must be at least 1"),
        ("accuracy", &["--step", "0"], "--step must be at least 1"),
        (
            "accuracy",
            &["--chunk", "100000000000000", "--step", "1"],
            "needs",
        ),
        ("accuracy", &["--device", "tpu"], "tpu"),
        (
            "parallel_check",
            &["--runs", "0"],
            "--runs must be at least 1",
        ),
        ("parallel_check", &["--runs=-3"], "-3"),
        ("matmul_speedup", &["--sizes", "0"], "--sizes"),
        (
            "matmul_speedup",
            &["--sizes", "100000000"],
            "--sizes 100000000 needs",
        ),
        (
            "matmul_speedup",
            &["--sizes", "4294967296"],
            "matmul_speedup",
        ),
        (
            "matmul_speedup",
            &["--runs", "0"],
            "--runs must be at least 1",
        ),
        (
            "matmul_speedup",
            &["--max-seconds", "NaN"],
            "--max-seconds must be a positive number",
        ),
        (
            "matmul_speedup",
            &["--max-seconds=-1"],
            "--max-seconds must be a positive number",
        ),
        (
            "matmul_vs_gemm",
            &["--rounds", "0"],
            "--rounds must be at least 1",
        ),
        ("matmul_vs_gemm", &["--rounds", "NaN"], "NaN"),
        (
            "mnist",
            &["--backend", "cpu", "--model", "cnn", "--augment", "28"],
            "--augment 28 shifts 28x28 images out of the frame",
        ),
        (
            "mnist",
            &["--backend", "cpu", "--augment", "18446744073709551615"],
            "--augment 18446744073709551615",
        ),
        ("mnist", &["--augment=-1"], "-1"),
        ("mnist", &["--augment", "NaN"], "NaN"),
        ("mnist", &["--schedule", "step"], "step"),
        (
            "mnist",
            &["--backend", "cpu", "--schedule", "cosine", "--epochs", "0"],
            "a cosine schedule needs at least 1 epoch",
        ),
        (
            "mnist",
            &["--backend", "cpu", "--batch", "0"],
            "batch must be at least 1",
        ),
        ("mnist", &["--backend", "cpu", "--lr", "NaN"], "--lr NaN"),
    ];
    let mut failures = Vec::new();
    for &(name, args, needle) in cases {
        let (code, out, err) = run_example_limited(name, args, 120);
        let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        let problems = [
            (code.is_none_or(|c| c == 0), "exit status 0"),
            (error_lines.len() != 1, "not exactly one error line"),
            (
                error_lines.first().is_none_or(|l| !l.contains(needle)),
                "the error line does not say what is wrong",
            ),
            (
                err.contains("panicked") || err.contains("memory allocation of"),
                "a panic or an abort",
            ),
            // Our own errors (exit 1) print that line only; clap's (exit 2) add usage.
            (
                code == Some(1) && err.lines().filter(|l| !l.trim().is_empty()).count() != 1,
                "more than the error line on stderr",
            ),
        ];
        for (bad, what) in problems {
            if bad {
                failures.push(format!(
                    "{name} {}: {what} (exit {code:?})\nstderr:\n{err}\nstdout (last 300 bytes):\n{}",
                    args.join(" "),
                    &out[out.len().saturating_sub(300)..]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
