//! Data-parallel training under `mpirun` (feature `mpi`): the `train` example run as 2 and
//! 3 ranks gives the same per-epoch losses as one process with the same global batch and
//! seed (computed here with [`Trainer`]), and so does the `mnist` example's course CNN and
//! `cnn` ([`ImageTrainer`]), with every rank's parameters checked against
//! rank 0's after every step; a rank that fails (error, panic or hang) ends the whole job
//! within a bounded time; a missing launcher and (feature `nccl`) a missing libnccl are
//! clear errors, not panics.
//!
//! Needs `mpirun` (apt-get install openmpi-bin libopenmpi-dev); without it the tests say
//! so on stderr and pass, unless `MINITORCH_REQUIRE_MPI=1`, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use minitorch::datasets::DatasetKind;
use minitorch::train::{TrainConfig, Trainer};
use minitorch::vision::{ImageConfig, ImageTrainer, ModelKind, OptimizerKind, Split};
use minitorch::Device;

/// The features this test was built with, as cargo arguments (tests/examples.rs builds the
/// examples with the same set, so neither rebuilds them for the other).
fn feature_args() -> Vec<String> {
    let f: Vec<&str> = [
        ("wgpu", cfg!(feature = "wgpu")),
        ("cuda", cfg!(feature = "cuda")),
        ("mpi", cfg!(feature = "mpi")),
        ("nccl", cfg!(feature = "nccl")),
    ]
    .into_iter()
    .filter_map(|(n, on)| on.then_some(n))
    .collect();
    vec!["--features".into(), f.join(",")]
}

/// Build the examples once (a no-op after `cargo test`); the `train` executable.
fn train_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| example_exe("train"))
}

/// The `mnist` executable (built like [`train_exe`]).
fn mnist_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| example_exe("mnist"))
}

/// Builds example `name` with this test's features and profile; its executable.
fn example_exe(name: &str) -> PathBuf {
    {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>");
        let target_dir = profile_dir.parent().expect("<target>");
        let profile = profile_dir.file_name().expect("profile").to_string_lossy();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--example", name, "--target-dir"])
            .arg(target_dir)
            .args(feature_args());
        match profile.as_ref() {
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
            "cargo build --example {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir
            .join("examples")
            .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
    }
}

/// True when `mpirun` runs; otherwise says so (and fails when MPI is required).
fn have_mpirun() -> bool {
    let ok = Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg =
            "mpirun not found: install openmpi-bin libopenmpi-dev to run the distributed tests";
        assert!(
            std::env::var("MINITORCH_REQUIRE_MPI").as_deref() != Ok("1"),
            "{msg} (MINITORCH_REQUIRE_MPI=1)"
        );
        {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
        }
    }
    ok
}

struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Run `cmd` with a time limit (killing it past the limit, which fails the caller's checks).
fn run_with_limit(mut cmd: Command, limit: Duration) -> Run {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let start = Instant::now();
    let dir = std::env::temp_dir().join(format!(
        "minitorch-distributed-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = Run {
        success: status.is_some_and(|s| s.success()),
        code: status.and_then(|s| s.code()),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: start.elapsed(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        status.is_some(),
        "still running after {limit:?} (killed): a hang\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run
}

/// `mpirun -n ranks train --distributed mpi --backend cpu <args>`, one rayon thread each
/// (a later `--backend` in `args` wins).
fn mpirun_train(ranks: usize, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Run {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--oversubscribe", "-n", &ranks.to_string()])
        .arg(train_exe())
        .args(["--distributed", "mpi", "--backend", "cpu"])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RAYON_NUM_THREADS", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_limit(cmd, limit)
}

/// One process, same settings: every epoch's loss.
fn reference_losses(
    points: usize,
    batch: usize,
    hidden: usize,
    epochs: usize,
    device: Device,
) -> Vec<f32> {
    let mut t = Trainer::new(TrainConfig {
        dataset: DatasetKind::Xor,
        points,
        hidden,
        lr: 0.1,
        epochs,
        batch,
        seed: 7,
        device,
        ..TrainConfig::default()
    })
    .unwrap();
    (0..epochs).map(|_| t.epoch().unwrap()).collect()
}

fn check_matches_one_process(ranks: usize, points: usize, batch: usize, shards: &str) {
    check_matches_one_process_on(Device::Cpu, ranks, points, batch, shards)
}

fn check_matches_one_process_on(
    device: Device,
    ranks: usize,
    points: usize,
    batch: usize,
    shards: &str,
) {
    let (hidden, epochs) = (12, 15);
    let want = reference_losses(points, batch, hidden, epochs, device);
    let (p, b, h, e) = (
        points.to_string(),
        batch.to_string(),
        hidden.to_string(),
        epochs.to_string(),
    );
    let run = mpirun_train(
        ranks,
        &[
            "--dataset",
            "xor",
            "--points",
            &p,
            "--batch",
            &b,
            "--hidden",
            &h,
            "--epochs",
            &e,
            "--lr",
            "0.1",
            "--seed",
            "7",
            "--log-every",
            "5",
            "--check-replicas",
        ],
        &[],
        Duration::from_secs(120),
    );
    assert!(
        run.success,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let out = &run.stdout;
    assert!(out.contains(&format!("world size {ranks}")), "{out}");
    assert!(out.contains(shards), "expected shards {shards} in:\n{out}");
    // Only rank 0 prints.
    assert_eq!(out.matches("Done:").count(), 1, "{out}");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("losses (full precision): "))
        .unwrap_or_else(|| panic!("no losses line in:\n{out}"));
    let got: Vec<f32> = line.split(' ').map(|x| x.parse().unwrap()).collect();
    assert_eq!(got.len(), epochs, "{line}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let rel = (g - w).abs() / w.abs().max(1e-30);
        assert!(
            rel <= 1e-5,
            "epoch {}: {ranks} ranks {g} vs one process {w} (relative {rel:e})\n{out}",
            i + 1
        );
    }
    // The losses must move, or equality would prove nothing.
    assert!(want[0] > want[epochs - 1] * 1.05, "{want:?}");
}

#[test]
fn two_ranks_match_one_process_on_an_even_batch() {
    if have_mpirun() {
        check_matches_one_process(2, 40, 10, "[5, 5]");
    }
}

#[test]
fn uneven_shards_match_one_process() {
    if have_mpirun() {
        // 7 over 2 ranks: 4 and 3; the last batch of each epoch holds 1 point: one rank idle.
        check_matches_one_process(2, 43, 7, "[4, 3] (last batch of 1: [1, 0])");
        // 10 over 3 ranks: 4, 3, 3.
        check_matches_one_process(3, 40, 10, "[4, 3, 3]");
    }
}

/// wgpu through its readback: the bucket goes through the host.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_ranks_match_one_process() {
    if Device::Wgpu.backend().is_err() {
        let required = std::env::var("MINITORCH_REQUIRE_BACKENDS").unwrap_or_default();
        assert!(
            !required.contains("wgpu"),
            "no wgpu adapter, and wgpu is required"
        );
        {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: no wgpu adapter");
        }
        return;
    }
    if have_mpirun() {
        check_matches_one_process_on(Device::Wgpu, 2, 30, 7, "[4, 3] (last batch of 2: [1, 1])");
    }
}

fn check_failure_ends_the_job(mode: &str, expect: &str, env: &[(&str, &str)]) {
    let fail = format!("1:3{mode}");
    let limit = Duration::from_secs(90);
    let run = mpirun_train(
        2,
        &[
            "--points",
            "40",
            "--batch",
            "10",
            "--hidden",
            "8",
            "--epochs",
            "50",
            "--fail-at",
            &fail,
        ],
        env,
        limit,
    );
    assert!(
        !run.success,
        "a failing rank must fail the job:\n{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(expect),
        "expected {expect:?} in stderr (exit code {:?}):\n{}",
        run.code,
        run.stderr
    );
    // Well inside the limit: nothing waited for a collective that never completes.
    assert!(
        run.elapsed < Duration::from_secs(60),
        "took {:?}",
        run.elapsed
    );
    // The failure came at step 3: rank 0 never finished.
    assert!(!run.stdout.contains("Done:"), "{}", run.stdout);
}

#[test]
fn a_rank_that_returns_an_error_ends_the_job() {
    if have_mpirun() {
        check_failure_ends_the_job("", "rank 1 fails at step 3 on purpose", &[]);
    }
}

#[test]
fn a_rank_that_panics_ends_the_job() {
    if have_mpirun() {
        check_failure_ends_the_job(":panic", "rank 1 panicked; aborting the MPI job", &[]);
    }
}

#[test]
fn a_rank_that_hangs_ends_the_job_through_the_others_watchdog() {
    if have_mpirun() {
        check_failure_ends_the_job(
            ":hang",
            "all-reduce did not complete within 3.0 s",
            &[("MINITORCH_DIST_TIMEOUT_S", "3")],
        );
    }
}

#[test]
fn no_launcher_is_a_clear_error() {
    let mut cmd = Command::new(train_exe());
    cmd.args(["--distributed", "mpi", "--backend", "cpu", "--epochs", "1"]);
    for v in ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"] {
        cmd.env_remove(v);
    }
    let run = run_with_limit(cmd, Duration::from_secs(60));
    assert!(!run.success);
    assert!(run.stderr.contains("mpirun -n 2"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn unknown_engine_is_a_clear_error() {
    let mut cmd = Command::new(train_exe());
    cmd.args(["--distributed", "gloo", "--epochs", "1"]);
    let run = run_with_limit(cmd, Duration::from_secs(60));
    assert!(!run.success);
    assert!(
        run.stderr.contains("expected mpi or nccl"),
        "{}",
        run.stderr
    );
}

/// Without libnccl, `--distributed nccl` says what to install (cudarc would panic).
#[cfg(feature = "nccl")]
#[test]
fn nccl_without_the_library_is_a_clear_error() {
    if minitorch::distributed::nccl::nccl_library_present().is_ok() {
        {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: libnccl is present here; the missing-library path is not testable"
            );
        }
        return;
    }
    let mut cmd = Command::new(train_exe());
    cmd.args(["--distributed", "nccl", "--epochs", "1"]);
    let run = run_with_limit(cmd, Duration::from_secs(60));
    assert!(!run.success);
    assert!(run.stderr.contains("libnccl.so"), "{}", run.stderr);
    assert!(
        run.stderr.contains("pip install nvidia-nccl-cu12"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// The image networks data-parallel: `mnist --distributed mpi` on 3 ranks (uneven shards)
/// gives one process's per-epoch losses and training accuracy (computed here with
/// [`ImageTrainer`] on the same digits), for the course's CNN with SGD and the bigger
/// `cnn` with Adam and the example's default augmentation for it (random shifts of up to 1
/// pixel: every rank draws the whole global batch's shifts and uses its shard's). Dropout
/// is off: its masks are drawn per rank's shard.
#[test]
fn image_networks_match_one_process() {
    if !have_mpirun() {
        return;
    }
    let sample =
        Split::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/digits")).unwrap();
    let (train, val, epochs) = (100, 32, 3);
    for (model, name, optimizer, opt, lr, batch, shards) in [
        (
            ModelKind::Course,
            "course",
            OptimizerKind::Sgd,
            "sgd",
            "0.05",
            16,
            "[6, 5, 5]",
        ),
        (
            ModelKind::Cnn,
            "cnn",
            OptimizerKind::Adam,
            "adam",
            "0.001",
            10,
            "[4, 3, 3]",
        ),
    ] {
        let mut t = ImageTrainer::new(
            ImageConfig {
                model,
                optimizer,
                lr: lr.parse().unwrap(),
                batch,
                dropout: 0.0,
                seed: 42,
                // The example's default: shifts for cnn, none for the course network.
                augment: if model == ModelKind::Cnn { 1 } else { 0 },
                ..ImageConfig::default()
            },
            sample.train.take(train),
            sample.test.take(val),
        )
        .unwrap();
        let want: Vec<(f32, usize)> = (0..epochs)
            .map(|_| {
                let s = t.epoch().unwrap();
                (s.loss, s.correct)
            })
            .collect();
        let b = batch.to_string();
        let mut cmd = Command::new("mpirun");
        cmd.args(["--oversubscribe", "-n", "3"])
            .arg(mnist_exe())
            .args([
                "--distributed",
                "mpi",
                "--backend",
                "cpu",
                "--data",
                "samples/digits",
            ])
            .args([
                "--train",
                "100",
                "--val",
                "32",
                "--epochs",
                "3",
                "--dropout",
                "0",
            ])
            .args([
                "--model",
                name,
                "--optimizer",
                opt,
                "--lr",
                lr,
                "--batch",
                &b,
                "--seed",
                "42",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("RAYON_NUM_THREADS", "1");
        let run = run_with_limit(cmd, Duration::from_secs(300));
        assert!(
            run.success,
            "stdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        );
        let out = &run.stdout;
        assert!(
            out.contains(&format!("global batch of {batch}: {shards}")),
            "{out}"
        );
        let got: Vec<(f32, f64)> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Epoch "))
            .map(|l| {
                let field = |key: &str| {
                    let v = l.split(" | ").find_map(|f| f.strip_prefix(key)).unwrap();
                    v.trim_end_matches('%').to_string()
                };
                (
                    field("loss ").parse().unwrap(),
                    field("train acc ").parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(got.len(), epochs, "{out}");
        for (i, ((g, acc), (w, correct))) in got.iter().zip(&want).enumerate() {
            let rel = (g - w).abs() / w.abs();
            assert!(
                rel <= 1e-5,
                "{name} epoch {}: 3 ranks {g} vs one process {w}\n{out}",
                i + 1
            );
            let want_acc = 100.0 * *correct as f64 / train as f64;
            assert!(
                (acc - want_acc).abs() < 0.01,
                "{name} epoch {}: train acc {acc} vs {want_acc}",
                i + 1
            );
        }
        assert!(
            want[0].0 > want[epochs - 1].0 * 1.001,
            "{name}: losses must move: {want:?}"
        );
    }
}
