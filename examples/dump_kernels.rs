//! Write every kernel the GPU backends can launch to a folder, one self-contained file per
//! kernel variant (CUDA headers inlined), so a student can read the kernel that ran or
//! compile it with their own NVRTC:
//!
//! ```text
//! cargo run --example dump_kernels -- DIR
//! ```
//!
//! `DIR/*.wgsl` and `DIR/*.cu`: the hand-written families (`reduce_<op>.wgsl`, `reduce.cu`,
//! `matmul.*`), `map_<op>_<variant>` and `zip_<op>_<variant>` for every row of the op
//! table, and `fused_<n>_<variant>` for every fused program a short run of the course's
//! training loop generates (the linear layers' epilogues, both losses and their gradients,
//! the SGD steps with and without momentum and weight decay), numbered in first-use order.

use std::path::PathBuf;
use std::process::ExitCode;

use minitorch::backend::fused::{record_programs, recorded_programs};
use minitorch::backend::gpu::sources::all_kernels;
use minitorch::nn::Module;
use minitorch::optim::Sgd;
use minitorch::train::{LossKind, TrainConfig, Trainer};
use minitorch::Result;

/// Run the course's loop briefly on the CPU with program recording on.
fn record() -> Result<()> {
    record_programs(true);
    for loss in [LossKind::Guarded, LossKind::Exact] {
        let mut t = Trainer::new(TrainConfig {
            points: 12,
            hidden: 4,
            batch: 5,
            epochs: 1,
            loss,
            ..TrainConfig::default()
        })?;
        t.epoch()?;
        // The SGD variants the trainer does not use, on the gradients it left.
        let mut sgd = Sgd::new(t.model.parameters(), 0.1)
            .with_momentum(0.9)
            .with_weight_decay(1e-4);
        sgd.step()?;
        sgd.step()?;
    }
    record_programs(false);
    Ok(())
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: dump_kernels DIR");
        return ExitCode::from(2);
    };
    if let Err(e) = record() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let programs: Vec<_> = recorded_programs()
        .into_iter()
        .enumerate()
        .map(|(i, (p, epilogue))| (format!("{i:02}"), p, epilogue))
        .collect();
    let kernels = all_kernels(&programs);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for k in &kernels {
        let path = dir.join(&k.file);
        if let Err(e) = std::fs::write(&path, &k.source) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!(
        "wrote {} kernel sources ({} fused programs) to {}",
        kernels.len(),
        programs.len(),
        dir.display()
    );
    ExitCode::SUCCESS
}
