//! The course's MLP training loop ([`crate::train::Trainer`]) data-parallel: the same
//! data, initial weights, shuffles and global batches, each batch split over the ranks.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{CommStats, Communicator, DataParallel};
use crate::datasets::Graph;
use crate::error::Result;
use crate::executor::BoxFuture;
use crate::nn::{Module, Network};
use crate::optim::Sgd;
use crate::tensor::{no_grad, Tensor};
use crate::train::{shuffle_rng, weight_rng, Epochs, TrainConfig, Trainer};

/// A failure injected on purpose (tests of a rank that dies mid-run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectedFailure {
    /// The rank that fails.
    pub rank: usize,
    /// The 1-based global step at which it fails.
    pub step: usize,
    /// How it fails.
    pub mode: FailureMode,
}

/// How an [`InjectedFailure`] fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureMode {
    /// Return an error.
    Error,
    /// Panic.
    Panic,
    /// Stop making progress (sleep forever): the others' watchdog must end the job.
    Hang,
}

/// [`Trainer`] over a [`Communicator`]: `config.batch` is the global batch.
pub struct DistributedTrainer {
    /// The configuration (`batch` is the global batch).
    pub config: TrainConfig,
    /// This rank's replica of the network.
    pub model: Network,
    /// The data (every rank holds all of it and takes its shard of each batch).
    pub data: Graph,
    dp: DataParallel,
    optim: Sgd,
    shuffle_rng: ChaCha8Rng,
    x_all: Tensor,
    y_all: Tensor,
    check_replicas: bool,
    failure: Option<InjectedFailure>,
}

impl DistributedTrainer {
    /// Build the data and network for `config` (as [`Trainer::new`] does) and broadcast
    /// rank 0's parameters.
    pub fn new(config: TrainConfig, comm: Box<dyn Communicator>) -> Result<Self> {
        config.validate()?;
        let data = Graph::new(config.dataset, config.points, config.seed)?;
        let model = Network::new(config.hidden, &mut weight_rng(config.seed), config.device)?;
        let dp = DataParallel::new(&model, comm)?;
        let optim = Sgd::new(model.parameters(), config.lr);
        let x_all = Tensor::from_vec(data.x_flat(), &[data.len(), 2], config.device)?;
        let y_all = Tensor::from_vec(data.y.clone(), &[data.len()], config.device)?;
        Ok(DistributedTrainer {
            shuffle_rng: shuffle_rng(config.seed),
            config,
            model,
            data,
            dp,
            optim,
            x_all,
            y_all,
            check_replicas: false,
            failure: None,
        })
    }

    /// After every step, check that every rank holds rank 0's parameters bit for bit
    /// (one broadcast of all parameters per step: for tests).
    pub fn with_replica_check(mut self, on: bool) -> Self {
        self.check_replicas = on;
        self
    }

    /// Measure the wait for the slowest rank apart from the all-reduce
    /// ([`DataParallel::with_wait_split`]).
    pub fn with_wait_split(mut self, on: bool) -> Self {
        self.dp = self.dp.with_wait_split(on);
        self
    }

    /// Make one rank fail at one step (for tests of the others' exit).
    pub fn with_failure(mut self, failure: Option<InjectedFailure>) -> Self {
        self.failure = failure;
        self
    }

    /// The data-parallel state (engine, shards, statistics).
    pub fn data_parallel(&self) -> &DataParallel {
        &self.dp
    }

    /// Time and volume of the collectives so far.
    pub fn stats(&self) -> &CommStats {
        self.dp.stats()
    }

    /// Train one epoch; the sum of the global batches' losses (the same on every rank).
    pub fn epoch(&mut self) -> Result<f32> {
        let n = self.data.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.shuffle_rng);
        let (device, kind) = (self.config.device, self.config.loss);
        let mut total = 0.0f32;
        for chunk in order.chunks(self.config.batch) {
            if let Some(f) = self.failure {
                if f.rank == self.dp.comm().rank() && f.step == self.dp.stats().steps + 1 {
                    let msg = format!("rank {} fails at step {} on purpose", f.rank, f.step);
                    match f.mode {
                        FailureMode::Error => {
                            return Err(crate::Error::invalid("DistributedTrainer", msg))
                        }
                        FailureMode::Panic => panic!("{msg}"),
                        FailureMode::Hang => loop {
                            eprintln!("{msg} (hangs)");
                            std::thread::sleep(std::time::Duration::from_secs(3600));
                        },
                    }
                }
            }
            let (data, model) = (&self.data, &self.model);
            let global = chunk.len();
            let loss = self.dp.step(global, &mut self.optim, |shard| {
                let mine = &chunk[shard.range.clone()];
                let xs: Vec<f32> = mine
                    .iter()
                    .flat_map(|&i| [data.x[i][0] as f32, data.x[i][1] as f32])
                    .collect();
                let ys: Vec<f32> = mine.iter().map(|&i| data.y[i]).collect();
                let b = mine.len();
                let x = Tensor::from_vec(xs, &[b, 2], device)?;
                let y = Tensor::from_vec(ys, &[b], device)?;
                let out = model.forward(&x)?.view(&[b])?;
                Trainer::scaled_batch_loss(&out, &y, kind, shard.scale())?.sum(0)
            })?;
            // The global batch's loss is its mean times its size, as in one process.
            total += loss * global as f32;
            if self.check_replicas {
                self.dp.check_replicas()?;
            }
        }
        Ok(total)
    }

    /// Number of points this rank's replica classifies correctly.
    pub fn correct(&self) -> Result<usize> {
        let hits = no_grad(|| {
            let out = self.model.forward(&self.x_all)?.view(&[self.data.len()])?;
            let half = out.full_like(&[1], 0.5)?;
            out.gt(&half)?.eq(&self.y_all)?.sum_all()
        })?;
        Ok(hits.item()?.round() as usize)
    }
}

impl Epochs for DistributedTrainer {
    fn config(&self) -> &TrainConfig {
        &self.config
    }
    fn points(&self) -> usize {
        self.data.len()
    }
    // The collectives block (MPI runs natively only), so the futures are ready at once.
    fn epoch_async(&mut self) -> BoxFuture<'_, Result<f32>> {
        Box::pin(std::future::ready(DistributedTrainer::epoch(self)))
    }
    fn correct_async(&self) -> BoxFuture<'_, Result<usize>> {
        Box::pin(std::future::ready(DistributedTrainer::correct(self)))
    }
}
