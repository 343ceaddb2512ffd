//! The generated kernels a representative set of workloads makes, for reading and for
//! checking them where no GPU is: `examples/dump_kernels.rs` writes them out, and the NVRTC
//! tests compile them for every architecture the CUDA backend supports.
//!
//! The workloads run briefly on the CPU with program recording on
//! ([`crate::backend::fused::record_programs`]): the course's training loop with both losses,
//! SGD with momentum and weight decay, the course's image network forward and backward
//! (convolutions with their epilogues, pooling, dropout, log-softmax, the NLL loss), softmax
//! and binary cross-entropy, an Adam and an AdamW step, and the composed pooling defaults
//! the GPU backends run (max and average, both directions). One synthetic program is added:
//! the widest elementwise kernel, with eight inputs and eight outputs.

use rand::SeedableRng;

use crate::backend::fused::{record_programs, recorded_programs, Program, ProgramBuilder};
use crate::nn::Module;
use crate::optim::{Adam, Sgd};
use crate::tensor::Reduction;
use crate::train::{LossKind, TrainConfig, Trainer};
use crate::vision::model::{Classifier, ModelKind};
use crate::{Device, Layout, Result, Tensor, UnaryOp};

/// Widest elementwise program the catalog includes: this many inputs and outputs.
pub const WIDEST: usize = 8;

/// The programs of the workloads above, each with a name and whether it runs as a matmul
/// epilogue, in first-use order; the synthetic widest program last.
pub fn representative_programs() -> Result<Vec<(String, Program, bool)>> {
    record_programs(true);
    let run = record();
    record_programs(false);
    run?;
    let mut out: Vec<(String, Program, bool)> = recorded_programs()
        .into_iter()
        .enumerate()
        .map(|(i, (p, epilogue))| (format!("{i:02}"), p, epilogue))
        .collect();
    out.push((format!("wide_{WIDEST}x{WIDEST}"), widest(), false));
    Ok(out)
}

/// `out_j = in_j * p0 + in_{j+1}` (cyclically) for eight inputs and outputs, through
/// sigmoid on the odd ones.
fn widest() -> Program {
    let mut b = ProgramBuilder::new();
    let ins: Vec<_> = (0..WIDEST).map(|j| b.input(j)).collect();
    let p = b.param(0);
    let outs: Vec<_> = (0..WIDEST)
        .map(|j| {
            let m = b.mul(ins[j], p);
            let s = b.add(m, ins[(j + 1) % WIDEST]);
            if j % 2 == 1 {
                b.unary(UnaryOp::Sigmoid, s)
            } else {
                s
            }
        })
        .collect();
    b.build(&outs)
}

fn record() -> Result<()> {
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
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let net = Classifier::new(ModelKind::Course, 0.25, 5, &mut rng, Device::Cpu)?;
    let x = Tensor::rand(&[2, 1, 28, 28], 7, Device::Cpu)?;
    let loss = net.forward(&x)?.nll_loss(&[3, 8], Reduction::Mean)?;
    loss.backward()?;
    Adam::new(net.parameters(), 1e-3).step()?;
    Adam::adamw(net.parameters(), 1e-3).step()?;
    let z = Tensor::rand(&[3, 5], 9, Device::Cpu)?.requires_grad_(true);
    z.softmax(1)?.sum_all()?;
    let target = Tensor::rand(&[3, 5], 11, Device::Cpu)?;
    z.sigmoid()?
        .binary_cross_entropy(&target, Reduction::Sum)?
        .backward()?;
    pooling_defaults()
}

/// The pooling defaults the GPU backends run (the CPU overrides them, so the network
/// above does not record their programs): max and average pooling, both directions.
fn pooling_defaults() -> Result<()> {
    use crate::backend::pool2d::{self, Windows};
    use crate::backend::Backend;
    let cpu = crate::backend::cpu::CpuBackend;
    let x = cpu.upload(&(0..16).map(|i| (i % 5) as f32).collect::<Vec<_>>())?;
    let (xl, gl) = (
        Layout::contiguous(&[1, 1, 4, 4]),
        Layout::contiguous(&[1, 1, 2, 2]),
    );
    let w = Windows::new("kernel catalog", xl.shape(), [2, 2])?;
    let g = cpu.upload(&[1.0, 2.0, 3.0, 4.0])?;
    let (_, first) = pool2d::max_pool2d(&cpu, &x, &xl, &w)?;
    pool2d::max_pool2d_backward(&cpu, &g, &gl, &first, &w)?;
    pool2d::avg_pool2d(&cpu, &x, &xl, &w)?;
    pool2d::avg_pool2d_backward(&cpu, &g, &gl, &w)?;
    Ok(())
}
