//! The course's training loop (`run_fast_tensor.py`, task 3.5) as a library, so the
//! `train` and `report` examples, the tests and the benchmarks all run the same code.
//!
//! Per epoch: shuffle the points, then for each batch of `batch` points:
//! `out = model(X).view(n)`, `prob = out * y + (out - 1) * (y - 1)`, `loss = -log(prob)`,
//! backward of `sum(loss / n)`, one SGD step. The epoch's loss is the sum over its batches
//! (the course printed only the last batch's).
//!
//! The course's exact `-log(prob)` reaches `log(0)` (NaN gradients) on wide networks, where
//! a probability saturates at exactly 0 or 1. By default the log is guarded as the course
//! once did, `-log(prob + 1e-6)`; [`LossKind::Exact`] keeps the exact formula.

use std::sync::OnceLock;

use web_time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backend::fused::{Program, ProgramBuilder};
use crate::backend::{Device, UnaryOp};
use crate::datasets::{DatasetKind, Graph};
use crate::error::{Error, Result};
use crate::executor::{block_on, BoxFuture};
use crate::memory;
use crate::nn::{Module, Network};
use crate::optim::Sgd;
use crate::tensor::{no_grad, Tensor};

mod scalar;
pub use scalar::ScalarTrainer;

/// The constant added to probabilities under the log by [`LossKind::Guarded`].
pub const LOG_GUARD: f32 = 1e-6;

/// Which loss formula to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// `-log(prob + 1e-6)`: never NaN (the default).
    Guarded,
    /// `-log(prob)`, the course's formula: NaN once a probability saturates.
    Exact,
}

/// Everything that defines a training run.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// The dataset.
    pub dataset: DatasetKind,
    /// Number of points.
    pub points: usize,
    /// Hidden units per hidden layer.
    pub hidden: usize,
    /// SGD learning rate.
    pub lr: f32,
    /// Number of epochs.
    pub epochs: usize,
    /// Points per batch.
    pub batch: usize,
    /// Seed of the data, the initial weights and the shuffles.
    pub seed: u64,
    /// Loss formula.
    pub loss: LossKind,
    /// Where the tensors live.
    pub device: Device,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            dataset: DatasetKind::Simple,
            points: 50,
            hidden: 100,
            lr: 0.05,
            epochs: 500,
            batch: 10,
            seed: 42,
            loss: LossKind::Guarded,
            device: Device::Cpu,
        }
    }
}

impl TrainConfig {
    /// Check the numbers make sense and that the run fits this machine's memory: each
    /// size is an error naming the setting (`train: hidden 1048576 needs 4 TiB for
    /// layer2.weights; this machine has 24 GiB`), checked before anything is allocated.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid("train", m.to_string()));
        if self.points == 0 {
            return bad("points must be at least 1");
        }
        if self.dataset == DatasetKind::Spiral && !self.points.is_multiple_of(2) {
            return Err(Error::invalid(
                "train",
                format!("spiral needs an even number of points, got {}", self.points),
            ));
        }
        if self.hidden == 0 {
            return bad("hidden must be at least 1");
        }
        if self.batch == 0 {
            return bad("batch must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("the learning rate must be a positive number");
        }
        self.check_memory()
    }

    /// The memory checks of [`TrainConfig::validate`]: the parameters (with their
    /// gradients and updates), the data and its tensors, one batch's activations, and
    /// the per-epoch records, each alone and then together.
    fn check_memory(&self) -> Result<()> {
        const OP: &str = "train";
        let (h, p, e) = (self.hidden, self.points, self.epochs);
        let b = self.batch.min(self.points);
        Network::check_size(OP, h)?;
        Graph::check_size(OP, p)?;
        // Parameters: value, gradient, the update's new value and the optimiser's temporary.
        let params: u128 = Network::parameter_sizes(h)
            .iter()
            .map(|(_, n)| n * 16)
            .sum();
        // The dataset, its two tensors, the flat copy made for them, the shuffle order.
        let data = p as u128 * (Graph::BYTES_PER_POINT + 8 + 4 + 8 + 8);
        // One batch: a handful of (batch, hidden) activations and their gradients.
        let acts = b as u128 * h as u128 * 4 * 8;
        let epochs = e as u128 * (4 + 16);
        memory::need(
            OP,
            &format!("hidden {h} with batch {b}"),
            "one batch's activations",
            acts,
        )?;
        memory::need(
            OP,
            &format!("epochs {e}"),
            "each epoch's loss and time",
            epochs,
        )?;
        memory::need(
            OP,
            &format!("hidden {h}, points {p}, batch {b} and epochs {e}"),
            "the whole run",
            params + data + acts + epochs,
        )
    }
}

/// The state of a tensor-engine training run.
pub struct Trainer {
    /// The configuration.
    pub config: TrainConfig,
    /// The network.
    pub model: Network,
    /// The data.
    pub data: Graph,
    optim: Sgd,
    shuffle_rng: ChaCha8Rng,
    x_all: Tensor,
    y_all: Tensor,
}

/// Initial weights and data come from `seed`; shuffles from a separate stream of it, so
/// the scalar engine can replay the same order.
pub fn shuffle_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed)
}

/// The weight generator for `seed`.
pub fn weight_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_add(1))
}

impl Trainer {
    /// Build the data, network and optimiser for `config`.
    pub fn new(config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        let data = Graph::new(config.dataset, config.points, config.seed)?;
        let model = Network::new(config.hidden, &mut weight_rng(config.seed), config.device)?;
        let optim = Sgd::new(model.parameters(), config.lr);
        let x_all = Tensor::from_vec(data.x_flat(), &[data.len(), 2], config.device)?;
        let y_all = Tensor::from_vec(data.y.clone(), &[data.len()], config.device)?;
        Ok(Trainer {
            shuffle_rng: shuffle_rng(config.seed),
            config,
            model,
            data,
            optim,
            x_all,
            y_all,
        })
    }

    /// The loss of one batch: `-log(prob)` per point (guarded or exact), shape `(n,)`.
    pub fn batch_loss(out: &Tensor, y: &Tensor, kind: LossKind) -> Result<Tensor> {
        Self::scaled_batch_loss(out, y, kind, 1.0)
    }

    /// `scale * -log(prob)` per point as one fused kernel (and one for its backward), the
    /// guard and the scale passed as kernel parameters: the primitives' chain
    /// `prob = out * y + (out - 1) * (y - 1)`, `-log(prob [+ guard]) * scale`.
    pub fn scaled_batch_loss(
        out: &Tensor,
        y: &Tensor,
        kind: LossKind,
        scale: f32,
    ) -> Result<Tensor> {
        static PROGRAMS: [OnceLock<Program>; 2] = [OnceLock::new(), OnceLock::new()];
        let program =
            PROGRAMS[(kind == LossKind::Exact) as usize].get_or_init(|| loss_program(kind));
        let params: &[f32] = match kind {
            LossKind::Guarded => &[scale, LOG_GUARD],
            LossKind::Exact => &[scale],
        };
        Ok(Tensor::fused(program, &[out, y], params)?.remove(0))
    }

    /// Train one epoch; returns the sum of the batches' losses. (In a browser on WebGPU,
    /// use [`Trainer::epoch_async`].)
    pub fn epoch(&mut self) -> Result<f32> {
        block_on("epoch", "Trainer::epoch_async", self.epoch_async())
    }

    /// Train one epoch and await its one readback, the sum of the batches' losses: the
    /// form a browser needs.
    pub async fn epoch_async(&mut self) -> Result<f32> {
        match self.epoch_steps()? {
            Some(total) => total.item_async().await,
            None => Ok(0.0),
        }
    }

    /// The steps of one epoch; returns the running loss, still on the device.
    fn epoch_steps(&mut self) -> Result<Option<Tensor>> {
        let n = self.data.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.shuffle_rng);
        let device = self.config.device;
        let mut total: Option<Tensor> = None;
        for chunk in order.chunks(self.config.batch) {
            let xs: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| [self.data.x[i][0] as f32, self.data.x[i][1] as f32])
                .collect();
            let ys: Vec<f32> = chunk.iter().map(|&i| self.data.y[i]).collect();
            let b = chunk.len();
            let x = Tensor::from_vec(xs, &[b, 2], device)?;
            let y = Tensor::from_vec(ys, &[b], device)?;
            self.optim.zero_grad();
            let out = self.model.forward(&x)?.view(&[b])?;
            let scale = 1.0 / b as f32;
            let objective = Self::scaled_batch_loss(&out, &y, self.config.loss, scale)?.sum(0)?;
            objective.backward()?;
            // Keep the running loss on the device: one download per epoch, not per batch.
            // The batch's loss is its mean times b: one kernel adds it to the total.
            let batch = b as f32;
            static ACCUMULATE: OnceLock<Program> = OnceLock::new();
            static SCALE: OnceLock<Program> = OnceLock::new();
            total = Some(
                no_grad(|| match &total {
                    Some(t) => Tensor::fused(
                        ACCUMULATE.get_or_init(accumulate_program),
                        &[t, &objective],
                        &[batch],
                    ),
                    None => {
                        Tensor::fused(SCALE.get_or_init(scale_program), &[&objective], &[batch])
                    }
                })?
                .remove(0),
            );
            self.optim.step()?;
        }
        Ok(total)
    }

    /// Number of points classified correctly (`out > 0.5` equals the label).
    pub fn correct(&self) -> Result<usize> {
        block_on("correct", "Trainer::correct_async", self.correct_async())
    }

    /// [`Trainer::correct`] as a future (one readback).
    pub async fn correct_async(&self) -> Result<usize> {
        let hits = no_grad(|| {
            let out = self.model.forward(&self.x_all)?.view(&[self.data.len()])?;
            let half = out.full_like(&[1], 0.5)?;
            out.gt(&half)?.eq(&self.y_all)?.sum_all()
        })?;
        Ok(hits.item_async().await?.round() as usize)
    }

    /// Class-1 probabilities at `points`.
    pub fn predict(&self, points: &[[f64; 2]]) -> Result<Vec<f32>> {
        block_on(
            "predict",
            "Trainer::predict_async",
            self.predict_async(points),
        )
    }

    /// [`Trainer::predict`] as a future (one readback).
    pub async fn predict_async(&self, points: &[[f64; 2]]) -> Result<Vec<f32>> {
        let out = no_grad(|| {
            let flat: Vec<f32> = points
                .iter()
                .flat_map(|p| [p[0] as f32, p[1] as f32])
                .collect();
            let x = Tensor::from_vec(flat, &[points.len(), 2], self.config.device)?;
            self.model.forward(&x)
        })?;
        out.to_vec_async().await
    }
}

/// The course's loss as a program over `(out, y)` with parameters `[scale, guard]`
/// (`[scale]` for the exact loss): `-log(out * y + (out - 1) * (y - 1) [+ guard]) * scale`.
fn loss_program(kind: LossKind) -> Program {
    let mut b = ProgramBuilder::new();
    let (out, y) = (b.input(0), b.input(1));
    let m1 = b.constant(-1.0);
    let oy = b.mul(out, y);
    let o1 = b.add(out, m1);
    let y1 = b.add(y, m1);
    let t = b.mul(o1, y1);
    let mut prob = b.add(oy, t);
    if kind == LossKind::Guarded {
        let guard = b.param(1);
        prob = b.add(prob, guard);
    }
    let log = b.unary(UnaryOp::Log, prob);
    let loss = b.unary(UnaryOp::Neg, log);
    let scale = b.param(0);
    let scaled = b.mul(loss, scale);
    b.build(&[scaled])
}

/// `total + x * c` over `(total, x)` with parameter `[c]`.
fn accumulate_program() -> Program {
    let mut b = ProgramBuilder::new();
    let (t, x, c) = (b.input(0), b.input(1), b.param(0));
    let xc = b.mul(x, c);
    let r = b.add(t, xc);
    b.build(&[r])
}

/// `x * c` with parameter `[c]`.
fn scale_program() -> Program {
    let mut b = ProgramBuilder::new();
    let (x, c) = (b.input(0), b.param(0));
    let r = b.mul(x, c);
    b.build(&[r])
}

/// What one logging interval reports.
#[derive(Clone, Debug)]
pub struct EpochLog {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Sum of this epoch's batch losses.
    pub loss: f32,
    /// Points classified correctly after this epoch.
    pub correct: usize,
    /// Number of points.
    pub total: usize,
    /// Mean time per epoch since the last log.
    pub mean_epoch: Duration,
}

/// The outcome of a whole run.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Loss of the last epoch.
    pub final_loss: f32,
    /// Correct points after the last epoch.
    pub correct: usize,
    /// Number of points.
    pub total: usize,
    /// Every epoch's loss.
    pub losses: Vec<f32>,
    /// Every epoch's wall time.
    pub epoch_times: Vec<Duration>,
    /// Wall time of the whole run.
    pub total_time: Duration,
}

impl TrainSummary {
    /// Median time per epoch over all epochs but the first (which pays for warm-up).
    pub fn median_epoch(&self) -> Duration {
        let mut t: Vec<Duration> = self.epoch_times.iter().skip(1).copied().collect();
        if t.is_empty() {
            t = self.epoch_times.clone();
        }
        if t.is_empty() {
            return Duration::ZERO;
        }
        t.sort();
        t[t.len() / 2]
    }
}

/// What [`run`] needs of an engine: train one epoch, count correct points. Each is one
/// async method (an engine whose epoch ends in a device readback awaits it; the others
/// are ready at once) with its blocking form provided ([`block_on`] of it).
pub trait Epochs {
    /// The run's configuration.
    fn config(&self) -> &TrainConfig;
    /// Number of points.
    fn points(&self) -> usize;
    /// Train one epoch; the sum of its batch losses.
    fn epoch_async(&mut self) -> BoxFuture<'_, Result<f32>>;
    /// Points classified correctly now.
    fn correct_async(&self) -> BoxFuture<'_, Result<usize>>;
    /// [`Epochs::epoch_async`], waited for.
    fn epoch(&mut self) -> Result<f32> {
        block_on("epoch", "Epochs::epoch_async", self.epoch_async())
    }
    /// [`Epochs::correct_async`], waited for.
    fn correct(&self) -> Result<usize> {
        block_on("correct", "Epochs::correct_async", self.correct_async())
    }
}

impl Epochs for Trainer {
    fn config(&self) -> &TrainConfig {
        &self.config
    }
    fn points(&self) -> usize {
        self.data.len()
    }
    fn epoch_async(&mut self) -> BoxFuture<'_, Result<f32>> {
        Box::pin(Trainer::epoch_async(self))
    }
    fn correct_async(&self) -> BoxFuture<'_, Result<usize>> {
        Box::pin(Trainer::correct_async(self))
    }
}

/// Train for the configured epochs, calling `on_log` every `log_every` epochs (and after
/// the last). (In a browser on WebGPU, use [`run_async`].)
pub fn run<T: Epochs>(
    trainer: &mut T,
    log_every: usize,
    on_log: impl FnMut(&EpochLog),
) -> Result<TrainSummary> {
    block_on(
        "run",
        "train::run_async",
        run_async(trainer, log_every, on_log),
    )
}

/// [`run`] as a future: awaits one readback per epoch (the loss), plus one per log.
pub async fn run_async<T: Epochs>(
    trainer: &mut T,
    log_every: usize,
    mut on_log: impl FnMut(&EpochLog),
) -> Result<TrainSummary> {
    let epochs = trainer.config().epochs;
    let start = Instant::now();
    let what = format!("epochs {epochs}");
    let mut losses: Vec<f32> = memory::try_vec("train", &what, "each epoch's loss", epochs)?;
    let mut times: Vec<Duration> = memory::try_vec("train", &what, "each epoch's time", epochs)?;
    let mut since_log = Duration::ZERO;
    let mut epochs_since_log = 0;
    let mut correct = 0;
    for e in 1..=epochs {
        let t0 = Instant::now();
        let loss = trainer.epoch_async().await?;
        let dt = t0.elapsed();
        losses.push(loss);
        times.push(dt);
        since_log += dt;
        epochs_since_log += 1;
        if e % log_every.max(1) == 0 || e == epochs {
            correct = trainer.correct_async().await?;
            on_log(&EpochLog {
                epoch: e,
                loss,
                correct,
                total: trainer.points(),
                mean_epoch: since_log / epochs_since_log as u32,
            });
            since_log = Duration::ZERO;
            epochs_since_log = 0;
        }
    }
    if epochs == 0 {
        correct = trainer.correct_async().await?;
    }
    Ok(TrainSummary {
        final_loss: losses.last().copied().unwrap_or(0.0),
        correct,
        total: trainer.points(),
        losses,
        epoch_times: times,
        total_time: start.elapsed(),
    })
}
