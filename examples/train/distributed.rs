//! `train --distributed mpi|nccl`: the same run data-parallel over the processes an MPI
//! launcher started. Rank 0 prints; an error on any rank aborts the whole job.

use minitorch::datasets::DatasetKind;
use minitorch::distributed::{self, DistributedTrainer, Engine, FailureMode, InjectedFailure};
use minitorch::nn::save_safetensors;
use minitorch::train::{self, LossKind, TrainConfig};
use minitorch::{Device, Error, Result};

use super::{common, Args};

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("train --distributed", msg.into())
}

/// `R:S`, `R:S:panic` or `R:S:hang`.
fn parse_failure(s: &str) -> Result<InjectedFailure> {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |p: &str| {
        p.parse::<usize>()
            .map_err(|_| bad(format!("--fail-at {s:?}: expected RANK:STEP[:panic|hang]")))
    };
    match parts.as_slice() {
        [r, st] | [r, st, "panic" | "hang"] => Ok(InjectedFailure {
            rank: num(r)?,
            step: num(st)?,
            mode: match parts.get(2) {
                Some(&"panic") => FailureMode::Panic,
                Some(_) => FailureMode::Hang,
                None => FailureMode::Error,
            },
        }),
        _ => Err(bad(format!(
            "--fail-at {s:?}: expected RANK:STEP[:panic|hang]"
        ))),
    }
}

pub fn run(args: &Args, dataset: DatasetKind, engine: &str) -> Result<()> {
    let engine = Engine::parse(engine)?;
    if args.engine != super::Engine::Tensor || args.load.is_some() || args.plot.is_some() {
        return Err(bad(
            "works with the tensor engine, without --load and --plot (--save writes rank 0's model)",
        ));
    }
    let failure = args.fail_at.as_deref().map(parse_failure).transpose()?;
    // NCCL runs on CUDA buffers; MPI on whichever backend was asked for.
    let (device, why) = match engine {
        Engine::Nccl => (Device::Cuda, Vec::new()),
        Engine::Mpi => common::select_device(args.backend)?,
    };
    let comm = distributed::connect(engine)?;
    let (rank, world) = (comm.rank(), comm.world_size());
    let config = TrainConfig {
        dataset,
        points: args.points,
        hidden: args.hidden,
        lr: args.lr,
        epochs: args.epochs,
        batch: args.batch,
        seed: args.seed,
        loss: if args.exact_loss {
            LossKind::Exact
        } else {
            LossKind::Guarded
        },
        device,
    };
    let mut trainer = DistributedTrainer::new(config.clone(), comm)?
        .with_replica_check(args.check_replicas)
        .with_wait_split(args.split_wait)
        .with_failure(failure);
    let rank0 = rank == 0;
    if rank0 {
        println!(
            "{}",
            common::truncate(
                &format!(
                    "minitorch train: {}",
                    common::describe_choice(device, &why)?
                ),
                common::MAX_FIRST_LINE
            )
        );
        println!(
            "engine tensor | dataset {dataset}, {} points, hidden {}, lr {}, batch {} (global), {} epochs, seed {}",
            config.points, config.hidden, config.lr, config.batch, config.epochs, config.seed
        );
        let dp = trainer.data_parallel();
        let sizes = dp.shard_sizes(config.batch);
        let last = config.points % config.batch;
        println!(
            "distributed {} | world size {world} | shard per rank of a global batch of {}: {sizes:?}{}",
            engine.name(),
            config.batch,
            if last > 0 {
                format!(" (last batch of {last}: {:?})", dp.shard_sizes(last))
            } else {
                String::new()
            }
        );
    }
    let log = |l: &train::EpochLog| {
        if rank0 {
            println!(
                "Epoch {} | loss {:.6} | correct {}/{} | time per epoch {}",
                l.epoch,
                l.loss,
                l.correct,
                l.total,
                common::fmt_ms(l.mean_epoch)
            );
        }
    };
    let summary = match train::run(&mut trainer, args.log_every, log) {
        Ok(s) => s,
        Err(e) => {
            // Stop every rank now: the others wait in a collective for this one.
            eprintln!("error on rank {rank} of {world}: {e}");
            trainer.data_parallel().comm().abort(1)
        }
    };
    if rank0 {
        if let Some(path) = &args.save {
            save_safetensors(&trainer.model, path)?;
            println!("saved parameters to {}", path.display());
        }
        let s = trainer.stats();
        // Medians over all steps but the first epoch's (warm-up).
        let steps_per_epoch = config.points.div_ceil(config.batch);
        let (reduce_med, step_med) = s.medians(steps_per_epoch);
        println!(
            "Done: final loss {:.6} | correct {}/{} ({:.1}%) | median time per epoch {} (all but the first) | total {:.2} s",
            summary.final_loss,
            summary.correct,
            summary.total,
            100.0 * summary.correct as f64 / summary.total as f64,
            common::fmt_ms(summary.median_epoch()),
            summary.total_time.as_secs_f64()
        );
        println!(
            "all-reduce per step {} of step time {} (medians; means {} of {}) | {} bytes per step in one bucket | {} steps | world size {world}",
            common::fmt_ms(reduce_med),
            common::fmt_ms(step_med),
            common::fmt_ms(s.all_reduce_per_step()),
            common::fmt_ms(s.step_per_step()),
            s.bucket_bytes,
            s.steps
        );
        if args.split_wait {
            println!(
                "waiting for the slowest rank before the all-reduce: mean {} per step",
                common::fmt_ms(s.wait_time / s.steps.max(1) as u32)
            );
        }
        println!(
            "losses (full precision): {}",
            summary
                .losses
                .iter()
                .map(|l| format!("{l:e}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}
