//! The data-parallel step, generic over any [`Module`]: broadcast rank 0's parameters,
//! then per step forward and backward on this rank's shard, one all-reduce of one bucket,
//! the same optimiser step everywhere.

use web_time::{Duration, Instant};

use super::{Bucket, BucketPart, Communicator, Shard};
use crate::autodiff::Variable;
use crate::error::{Error, Result};
use crate::nn::{Module, Parameter};
use crate::optim::Optimizer;
use crate::tensor::Tensor;

/// Time and volume spent in collectives.
#[derive(Clone, Debug, Default)]
pub struct CommStats {
    /// Steps taken.
    pub steps: usize,
    /// Wall time of the steps (forward, backward, all-reduce, update).
    pub step_time: Duration,
    /// Wall time inside the gradient all-reduce (packing and unpacking included; with
    /// [`DataParallel::with_wait_split`], after the wait for the slowest rank).
    pub all_reduce_time: Duration,
    /// Wall time waiting for the slowest rank before the all-reduce (a barrier; measured
    /// only with [`DataParallel::with_wait_split`]).
    pub wait_time: Duration,
    /// Bytes of one step's bucket (each rank sends and receives about this much times the
    /// engine's algorithm factor).
    pub bucket_bytes: usize,
    /// Each step's (all-reduce, whole step) wall time, for medians: a shared machine's
    /// stalls skew the means.
    pub per_step: Vec<(Duration, Duration)>,
}

impl CommStats {
    /// Mean all-reduce time per step.
    pub fn all_reduce_per_step(&self) -> Duration {
        self.all_reduce_time / self.steps.max(1) as u32
    }

    /// Mean step time.
    pub fn step_per_step(&self) -> Duration {
        self.step_time / self.steps.max(1) as u32
    }

    /// Median (all-reduce, step) time over the steps but the first `skip` (warm-up).
    pub fn medians(&self, skip: usize) -> (Duration, Duration) {
        let median = |mut v: Vec<Duration>| {
            v.sort();
            v.get(v.len() / 2).copied().unwrap_or_default()
        };
        let rest = || {
            self.per_step
                .iter()
                .skip(skip.min(self.per_step.len().saturating_sub(1)))
        };
        (
            median(rest().map(|s| s.0).collect()),
            median(rest().map(|s| s.1).collect()),
        )
    }
}

/// Data parallelism over one model's parameters.
pub struct DataParallel {
    comm: Box<dyn Communicator>,
    params: Vec<Parameter>,
    stats: CommStats,
    split_wait: bool,
}

impl DataParallel {
    /// Wrap `model` (any [`Module`]: the parameters are its [`Module::parameters`]) and
    /// copy rank 0's parameters to every rank.
    pub fn new<M: Module + ?Sized>(model: &M, comm: Box<dyn Communicator>) -> Result<Self> {
        let dp = DataParallel {
            comm,
            params: model.parameters(),
            stats: CommStats::default(),
            split_wait: false,
        };
        let mut bucket = dp.parameter_bucket();
        dp.comm.broadcast_bucket(&mut bucket, 0)?;
        for (p, part) in dp.params.iter().zip(bucket.parts) {
            p.update(part.value.expect("set by the broadcast"));
        }
        Ok(dp)
    }

    /// Enter a barrier before each all-reduce, so that [`CommStats::all_reduce_time`] is
    /// the collective itself and [`CommStats::wait_time`] the wait for the slowest rank
    /// (one more small collective per step: for measurements).
    pub fn with_wait_split(mut self, on: bool) -> Self {
        self.split_wait = on;
        self
    }

    /// The engine.
    pub fn comm(&self) -> &dyn Communicator {
        self.comm.as_ref()
    }

    /// This rank's shard of a global batch of `global` items.
    pub fn shard(&self, global: usize) -> Shard {
        Shard::of(global, self.comm.rank(), self.comm.world_size())
    }

    /// Every rank's shard size of a global batch of `global` items.
    pub fn shard_sizes(&self, global: usize) -> Vec<usize> {
        let world = self.comm.world_size();
        (0..world)
            .map(|r| Shard::of(global, r, world).len())
            .collect()
    }

    /// Time and volume so far.
    pub fn stats(&self) -> &CommStats {
        &self.stats
    }

    /// One step on a global batch of `global` items: `loss` gets this rank's shard (it is
    /// not called for an empty shard) and returns this rank's part of the global loss, a
    /// one-element tensor: its per-example losses times [`Shard::scale`] summed (or its
    /// mean loss times [`Shard::share`]). Backward, one all-reduce of the gradients (and
    /// the loss), then `optim.step()` on every rank. Returns the global loss, the sum of
    /// the ranks' parts.
    ///
    /// An error on one rank leaves the others waiting in the all-reduce: end the job with
    /// [`Communicator::abort`] (as the `train` example does) rather than return quietly.
    pub fn step<O: Optimizer + ?Sized>(
        &mut self,
        global: usize,
        optim: &mut O,
        loss: impl FnOnce(&Shard) -> Result<Tensor>,
    ) -> Result<f32> {
        let start = Instant::now();
        let shard = self.shard(global);
        optim.zero_grad();
        let part = if shard.is_empty() {
            None
        } else {
            let l = loss(&shard)?;
            if l.size() != 1 {
                return Err(Error::shape(
                    "DataParallel::step",
                    &[l.shape()],
                    "the loss must have one element",
                ));
            }
            l.backward()?;
            Some(l.detach().view(&[1])?)
        };
        if self.split_wait {
            let wait = Instant::now();
            self.comm.barrier()?;
            self.stats.wait_time += wait.elapsed();
        }
        let reduce_start = Instant::now();
        // One bucket: every gradient (zeros where this rank has none), the loss, then one
        // flag per parameter saying how many ranks had a gradient for it.
        let mut bucket = Bucket::default();
        let mut flags = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let v = p.value();
            let g = v.grad();
            flags.push(if g.is_some() { 1.0 } else { 0.0 });
            bucket.parts.push(BucketPart {
                shape: v.shape().to_vec(),
                device: v.device(),
                value: g,
            });
        }
        let device = self.params.first().map(|p| p.value().device());
        bucket.parts.push(BucketPart {
            shape: vec![1],
            device: device.unwrap_or(crate::Device::Cpu),
            value: part,
        });
        bucket.tail = flags;
        self.comm.all_reduce_bucket(&mut bucket)?;
        let loss_part = bucket.parts.pop().and_then(|p| p.value);
        for ((p, part), flag) in self.params.iter().zip(bucket.parts).zip(&bucket.tail) {
            let value = p.value();
            value.zero_grad();
            // A parameter no rank has a gradient for is skipped by the optimiser, as in
            // one process.
            if *flag > 0.0 {
                value.accumulate_derivative(part.value.expect("set by the all-reduce"))?;
            }
        }
        let reduce_time = reduce_start.elapsed();
        self.stats.all_reduce_time += reduce_time;
        self.stats.bucket_bytes = bucket_bytes(&self.params);
        optim.step()?;
        self.stats.steps += 1;
        let step_time = start.elapsed();
        self.stats.step_time += step_time;
        self.stats.per_step.push((reduce_time, step_time));
        match loss_part {
            Some(t) => t.item(),
            None => Ok(0.0),
        }
    }

    /// Check every rank holds exactly rank 0's parameters (bit for bit): an error naming
    /// the first parameter that differs.
    pub fn check_replicas(&self) -> Result<()> {
        let mine = self.parameter_bucket().to_host()?;
        let mut root = mine.clone();
        self.comm.broadcast(&mut root, 0)?;
        let same = mine
            .iter()
            .zip(&root)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        // Every rank learns whether any rank differs, so all return the same answer.
        let mut bad = [if same { 0.0 } else { 1.0 }];
        self.comm.all_reduce_sum(&mut bad)?;
        if bad[0] > 0.0 {
            let at = mine
                .iter()
                .zip(&root)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            return Err(Error::invalid(
                "DataParallel::check_replicas",
                format!(
                    "{} rank(s) hold parameters that differ from rank 0's (this rank {}: {})",
                    bad[0],
                    self.comm.rank(),
                    match at {
                        Some(i) => format!("first difference at flat index {i}"),
                        None => "identical".into(),
                    }
                ),
            ));
        }
        Ok(())
    }

    fn parameter_bucket(&self) -> Bucket {
        Bucket {
            parts: self
                .params
                .iter()
                .map(|p| {
                    let v = p.value();
                    BucketPart {
                        shape: v.shape().to_vec(),
                        device: v.device(),
                        value: Some(v.detach()),
                    }
                })
                .collect(),
            tail: Vec::new(),
        }
    }
}

/// Bytes of one step's bucket: the gradients, the loss, one flag per parameter.
fn bucket_bytes(params: &[Parameter]) -> usize {
    let n: usize = params.iter().map(|p| p.value().size()).sum();
    (n + 1 + params.len()) * 4
}
