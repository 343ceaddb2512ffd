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
//! table, and `fused_<n>_<variant>` for every generated program of
//! [`minitorch::kernel_catalog`] (the course's training loop and image network forward and
//! backward, softmax, the losses, SGD, Adam and AdamW steps, and the widest 8-input
//! 8-output kernel), numbered in first-use order.

use std::path::PathBuf;
use std::process::ExitCode;

use minitorch::backend::gpu::sources::all_kernels;
use minitorch::kernel_catalog::representative_programs;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: dump_kernels DIR");
        return ExitCode::from(2);
    };
    let programs = match representative_programs() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
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
