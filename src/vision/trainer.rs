//! Training an image classifier: the course's loop (shuffle, batches, forward, nll loss,
//! backward, optimiser step) over an [`ImageSet`], written once for the `mnist` example
//! and the digits page. The loop records work without reading anything back, so a page
//! can run a few batches between repaints ([`ImageTrainer::train_batches`]); the epoch's
//! loss and accuracy stay on the device until [`ImageTrainer::finish_epoch_async`] reads
//! them, once per epoch.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::batch::Shifts;
use super::model::{Classifier, ModelKind};
use super::ImageSet;
use crate::backend::Device;
use crate::distributed::DataParallel;
use crate::error::{Error, Result};
use crate::executor::block_on;
use crate::nn::Module;
use crate::optim::{Adam, Optimizer, Sgd};
use crate::tensor::{no_grad, Reduction, Tensor};

/// Which optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptimizerKind {
    /// Stochastic gradient descent (the course's).
    Sgd,
    /// Adam with PyTorch's defaults (betas 0.9, 0.999, eps 1e-8).
    Adam,
}

impl OptimizerKind {
    /// Parses `sgd` or `adam`.
    pub fn parse(s: &str) -> Result<OptimizerKind> {
        match s.to_ascii_lowercase().as_str() {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adam" => Ok(OptimizerKind::Adam),
            _ => Err(Error::invalid(
                "optimizer",
                format!("unknown optimizer {s:?}; expected sgd or adam"),
            )),
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
        }
    }
}

/// How the learning rate changes from epoch to epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// The same in every epoch.
    Constant,
    /// Cosine decay over `epochs` epochs: epoch `e` (from 0) uses
    /// `lr * (1 + cos(pi * e / epochs)) / 2`, PyTorch's `CosineAnnealingLR(T_max = epochs)`
    /// stepped once per epoch; epochs past the last keep the last one's rate.
    Cosine {
        /// The length of the decay (the run's epochs).
        epochs: usize,
    },
}

impl Schedule {
    /// Parses `constant` or `cosine` (decaying over `epochs`).
    pub fn parse(s: &str, epochs: usize) -> Result<Schedule> {
        match s.to_ascii_lowercase().as_str() {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine { epochs }),
            _ => Err(Error::invalid(
                "schedule",
                format!("unknown schedule {s:?}; expected constant or cosine"),
            )),
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Cosine { .. } => "cosine",
        }
    }

    /// The learning rate of epoch `epoch` (from 0) given the base rate `lr`.
    pub fn lr(self, lr: f32, epoch: usize) -> f32 {
        match self {
            Schedule::Constant => lr,
            Schedule::Cosine { epochs } => {
                let e = epoch.min(epochs.saturating_sub(1)) as f64;
                let t = std::f64::consts::PI * e / epochs.max(1) as f64;
                (lr as f64 * 0.5 * (1.0 + t.cos())) as f32
            }
        }
    }
}

/// How to train.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    /// The network.
    pub model: ModelKind,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// Learning rate (of the first epoch, with a schedule).
    pub lr: f32,
    /// How the learning rate changes over the epochs.
    pub schedule: Schedule,
    /// Data augmentation: shift each training image by a random whole-pixel offset of up
    /// to this many pixels in each direction, zero fill (0: none). Drawn from their own
    /// generator of `seed`, so without it a run is the same as before.
    pub augment: usize,
    /// Images per batch.
    pub batch: usize,
    /// Dropout probability in training.
    pub dropout: f32,
    /// Seed of the weights, the shuffles and the dropout masks.
    pub seed: u64,
    /// Shuffle the training images each epoch (else file order).
    pub shuffle: bool,
    /// Where the tensors live.
    pub device: Device,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            model: ModelKind::Course,
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            schedule: Schedule::Constant,
            augment: 0,
            batch: 16,
            dropout: 0.25,
            seed: 42,
            shuffle: true,
            device: Device::Cpu,
        }
    }
}

/// One epoch's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// The sum over the epoch's batches of each batch's mean loss (as `train` prints it).
    pub loss: f32,
    /// Training images classified correctly while training (before each batch's step).
    pub correct: usize,
    /// Training images seen.
    pub seen: usize,
}

/// A classifier, its optimiser and its data, trained one batch at a time.
pub struct ImageTrainer {
    /// The settings.
    pub config: ImageConfig,
    /// The network.
    pub model: Classifier,
    /// Training images.
    pub train: ImageSet,
    /// Validation images.
    pub val: ImageSet,
    optimizer: Box<dyn Optimizer>,
    data_parallel: Option<DataParallel>,
    rng: ChaCha8Rng,
    shifts: Shifts,
    /// Epochs started so far (the schedule's clock).
    epochs_started: usize,
    order: Vec<usize>,
    next: usize,
    loss_sum: Option<Tensor>,
    correct_sum: Option<Tensor>,
}

/// Images per batch when only evaluating (no gradients kept).
const EVAL_BATCH: usize = 250;

impl ImageTrainer {
    /// A freshly initialised network for `config`, with its training and validation sets.
    pub fn new(config: ImageConfig, train: ImageSet, val: ImageSet) -> Result<ImageTrainer> {
        const OP: &str = "ImageTrainer::new";
        if train.is_empty() {
            return Err(Error::invalid(OP, "no training images"));
        }
        if config.batch == 0 {
            return Err(Error::invalid(OP, "--batch must be at least 1"));
        }
        if !(config.lr.is_finite() && config.lr > 0.0) {
            return Err(Error::invalid(
                OP,
                format!("--lr {} must be a positive number", config.lr),
            ));
        }
        if let Schedule::Cosine { epochs: 0 } = config.schedule {
            return Err(Error::invalid(
                OP,
                "a cosine schedule needs at least 1 epoch to decay over",
            ));
        }
        if config.augment >= 28 {
            return Err(Error::invalid(
                OP,
                format!(
                    "--augment {} shifts 28x28 images out of the frame; it must be below 28",
                    config.augment
                ),
            ));
        }
        for set in [&train, &val] {
            if !set.is_empty() && (set.rows, set.cols) != (28, 28) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "images are {}x{}; the networks read 28x28",
                        set.rows, set.cols
                    ),
                ));
            }
            if set.classes() > 10 {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "labels up to {}; the networks have 10 classes",
                        set.classes() - 1
                    ),
                ));
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let model = Classifier::new(
            config.model,
            config.dropout,
            config.seed,
            &mut rng,
            config.device,
        )?;
        let params = model.parameters();
        let optimizer = match config.optimizer {
            OptimizerKind::Sgd => Box::new(Sgd::try_new(params, config.lr)?),
            OptimizerKind::Adam => {
                let adam = Adam::new(params, config.lr);
                adam.validate()?;
                Box::new(adam) as Box<dyn Optimizer>
            }
        };
        let shifts = Shifts::new(config.augment, config.seed)?;
        Ok(ImageTrainer {
            config,
            model,
            train,
            val,
            optimizer,
            data_parallel: None,
            rng,
            shifts,
            epochs_started: 0,
            order: Vec::new(),
            next: 0,
            loss_sum: None,
            correct_sum: None,
        })
    }

    /// Trains data-parallel from now on: each batch is split over the ranks of `dp`
    /// (built on this trainer's model, [`DataParallel::new`]), their gradients summed so
    /// that every rank takes the step one process would take on the whole batch. Every
    /// rank must use the same data, settings and seed.
    pub fn set_data_parallel(&mut self, dp: DataParallel) {
        self.data_parallel = Some(dp);
    }

    /// The data-parallel state, when training over several ranks.
    pub fn data_parallel(&self) -> Option<&DataParallel> {
        self.data_parallel.as_ref()
    }

    /// The learning rate the optimiser uses now (the schedule's, once an epoch started).
    pub fn lr(&self) -> f32 {
        self.optimizer.lr()
    }

    /// Batches in one epoch (the last one may be short).
    pub fn batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.config.batch)
    }

    /// Batches left in the current epoch (0 when none is running).
    pub fn batches_left(&self) -> usize {
        self.order
            .len()
            .saturating_sub(self.next)
            .div_ceil(self.config.batch)
    }

    /// Trains up to `k` batches of the current epoch, starting a new epoch (a new shuffle)
    /// when none is running; returns the batches left in the epoch. Nothing is read back.
    pub fn train_batches(&mut self, k: usize) -> Result<usize> {
        if self.next >= self.order.len() && self.loss_sum.is_none() {
            self.order = (0..self.train.len()).collect();
            if self.config.shuffle {
                self.order.shuffle(&mut self.rng);
            }
            self.next = 0;
            let lr = self.config.schedule.lr(self.config.lr, self.epochs_started);
            self.optimizer.set_lr(lr);
            self.epochs_started += 1;
        }
        for _ in 0..k {
            if self.next >= self.order.len() {
                break;
            }
            let end = (self.next + self.config.batch).min(self.order.len());
            let idx = &self.order[self.next..end];
            // Every rank draws the whole global batch's shifts, so the ranks stay in step.
            let shifts = if self.config.augment > 0 {
                self.shifts.draw(idx.len())
            } else {
                Vec::new()
            };
            let (loss, hits) = match &mut self.data_parallel {
                None => {
                    let (x, labels) = self.train.batch_shifted(idx, &shifts, self.config.device)?;
                    self.model.train();
                    let out = self.model.forward(&x)?;
                    let loss = out.nll_loss(&labels, Reduction::Mean)?;
                    self.optimizer.zero_grad();
                    loss.backward()?;
                    self.optimizer.step()?;
                    let hits = no_grad(|| correct_count(&out, &labels))?;
                    (loss.detach(), hits)
                }
                Some(dp) => {
                    // This rank's shard of the global batch; the step all-reduces the
                    // gradients (and the loss) so every rank updates alike.
                    let (model, train, device) = (&self.model, &self.train, self.config.device);
                    let mut hits = None;
                    let global = dp.step(idx.len(), self.optimizer.as_mut(), |shard| {
                        let r = shard.range.clone();
                        let sh = if shifts.is_empty() {
                            &[][..]
                        } else {
                            &shifts[r.clone()]
                        };
                        let (x, labels) = train.batch_shifted(&idx[r], sh, device)?;
                        model.train();
                        let out = model.forward(&x)?;
                        hits = Some(no_grad(|| correct_count(&out, &labels))?);
                        out.nll_loss(&labels, Reduction::Sum)?
                            .mul_scalar(shard.scale())
                    })?;
                    let hits = match hits {
                        Some(h) => h,
                        None => Tensor::full(&[], 0.0, device)?,
                    };
                    (Tensor::full(&[], global, device)?, hits)
                }
            };
            no_grad(|| -> Result<()> {
                self.loss_sum = Some(match self.loss_sum.take() {
                    Some(s) => s.add(&loss)?,
                    None => loss,
                });
                self.correct_sum = Some(match self.correct_sum.take() {
                    Some(s) => s.add(&hits)?,
                    None => hits,
                });
                Ok(())
            })?;
            self.next = end;
        }
        Ok(self.batches_left())
    }

    /// Finishes the current epoch (training what is left of it) and reads its figures
    /// back: one readback.
    pub async fn finish_epoch_async(&mut self) -> Result<EpochStats> {
        self.train_batches(usize::MAX)?;
        let seen = self.order.len();
        let (loss, correct) = match (self.loss_sum.take(), self.correct_sum.take()) {
            (Some(l), Some(c)) => {
                let loss = l.to_vec_async().await?[0];
                let mut correct = [c.to_vec_async().await?[0]];
                // Data-parallel: each rank counted its own shards.
                if let Some(dp) = &self.data_parallel {
                    dp.comm().all_reduce_sum(&mut correct)?;
                }
                (loss, correct[0] as usize)
            }
            _ => (0.0, 0),
        };
        self.order.clear();
        self.next = 0;
        Ok(EpochStats {
            loss,
            correct,
            seen,
        })
    }

    /// [`ImageTrainer::finish_epoch_async`], blocking (not in a browser).
    pub fn finish_epoch(&mut self) -> Result<EpochStats> {
        block_on(
            "ImageTrainer::finish_epoch",
            "ImageTrainer::finish_epoch_async",
            self.finish_epoch_async(),
        )
    }

    /// One whole epoch: [`ImageTrainer::train_batches`] then
    /// [`ImageTrainer::finish_epoch`].
    pub fn epoch(&mut self) -> Result<EpochStats> {
        self.train_batches(usize::MAX)?;
        self.finish_epoch()
    }

    /// Class probabilities `[n, 10]` (row-major) of `n` 28x28 images given as bytes, in
    /// evaluation mode.
    pub async fn probabilities_async(&self, images: &[u8]) -> Result<Vec<f32>> {
        let px = 28 * 28;
        if images.is_empty() || !images.len().is_multiple_of(px) {
            return Err(Error::invalid(
                "probabilities",
                format!("{} bytes are not whole 28x28 images", images.len()),
            ));
        }
        let n = images.len() / px;
        let set = ImageSet::new(images.to_vec(), vec![0; n], 28, 28)?;
        let mut out = Vec::with_capacity(n * 10);
        for start in (0..n).step_by(EVAL_BATCH) {
            let idx: Vec<usize> = (start..(start + EVAL_BATCH).min(n)).collect();
            let logp = self.eval_forward(&set, &idx)?;
            out.extend(logp.exp()?.to_vec_async().await?);
        }
        Ok(out)
    }

    /// The predicted class of every image of `set` (evaluation mode).
    pub async fn predict_async(&self, set: &ImageSet) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(set.len());
        for start in (0..set.len()).step_by(EVAL_BATCH) {
            let idx: Vec<usize> = (start..(start + EVAL_BATCH).min(set.len())).collect();
            let logp = self.eval_forward(set, &idx)?;
            let best = no_grad(|| logp.argmax(1))?;
            out.extend(best.to_vec_async().await?.into_iter().map(|v| v as u32));
        }
        Ok(out)
    }

    /// [`ImageTrainer::predict_async`], blocking (not in a browser).
    pub fn predict(&self, set: &ImageSet) -> Result<Vec<u32>> {
        block_on(
            "ImageTrainer::predict",
            "ImageTrainer::predict_async",
            self.predict_async(set),
        )
    }

    fn eval_forward(&self, set: &ImageSet, idx: &[usize]) -> Result<Tensor> {
        let (x, _) = set.batch(idx, self.config.device)?;
        self.model.eval();
        let r = no_grad(|| self.model.forward(&x));
        self.model.train();
        r
    }
}

/// How many rows of log-probabilities `out` have their largest entry at the label, as a
/// one-element tensor (no readback).
fn correct_count(out: &Tensor, labels: &[u32]) -> Result<Tensor> {
    let y: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    let y = Tensor::from_vec(y, &[labels.len(), 1], out.device())?;
    out.argmax(1)?.eq(&y)?.sum_all()
}

/// Accuracy of `predicted` against `set`'s labels, as `(correct, total)`.
pub fn accuracy(predicted: &[u32], set: &ImageSet) -> (usize, usize) {
    let correct = predicted
        .iter()
        .zip(&set.labels)
        .filter(|(&p, &l)| p == l as u32)
        .count();
    (correct, set.len())
}
