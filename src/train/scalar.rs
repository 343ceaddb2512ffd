//! The scalar engine (the course's `run_scalar`): the same network and loop as the tensor
//! [`Trainer`](super::Trainer), on the module 1 [`Scalar`] autodiff, one number at a time.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{shuffle_rng, weight_rng, Epochs, LossKind, TrainConfig, LOG_GUARD};
use crate::backend::Device;
use crate::datasets::Graph;
use crate::error::Result;
use crate::executor::BoxFuture;
use crate::nn::Network;
use crate::scalar::Scalar;

/// One layer of scalars: `weights[i][j]` from input i to output j, and `bias[j]`.
struct ScalarLinear {
    weights: Vec<Vec<Scalar>>,
    bias: Vec<Scalar>,
}

impl ScalarLinear {
    fn from_linear(l: &crate::nn::Linear) -> Result<ScalarLinear> {
        let w = l.weights.value();
        let (rows, cols) = (w.shape()[0], w.shape()[1]);
        let wv = w.to_vec()?;
        Ok(ScalarLinear {
            weights: (0..rows)
                .map(|i| {
                    (0..cols)
                        .map(|j| Scalar::new(wv[i * cols + j] as f64))
                        .collect()
                })
                .collect(),
            bias: l
                .bias
                .value()
                .to_vec()?
                .into_iter()
                .map(|b| Scalar::new(b as f64))
                .collect(),
        })
    }

    fn forward(&self, x: &[Scalar]) -> Vec<Scalar> {
        self.bias
            .iter()
            .enumerate()
            .map(|(j, b)| {
                x.iter()
                    .zip(&self.weights)
                    .fold(b.clone(), |acc, (xi, row)| acc.add(xi.mul(&row[j])))
            })
            .collect()
    }

    fn params_mut(&mut self) -> impl Iterator<Item = &mut Scalar> {
        self.weights
            .iter_mut()
            .flatten()
            .chain(self.bias.iter_mut())
    }
}

/// The same network and loop on the module 1 [`Scalar`] engine (the course's `run_scalar`),
/// one number at a time on the CPU: a baseline and a cross-check of the tensor engine. It
/// starts from the tensor network's initial weights and replays its data order, so from
/// the same seed its first epoch's loss matches the tensor engine's.
pub struct ScalarTrainer {
    /// The configuration (`device` is ignored: scalars live on the host).
    pub config: TrainConfig,
    /// The data.
    pub data: Graph,
    layers: Vec<ScalarLinear>,
    shuffle_rng: ChaCha8Rng,
}

impl ScalarTrainer {
    /// The scalar twin of `Trainer::new(config)`.
    pub fn new(config: TrainConfig) -> Result<ScalarTrainer> {
        config.validate()?;
        let data = Graph::new(config.dataset, config.points, config.seed)?;
        let net = Network::new(config.hidden, &mut weight_rng(config.seed), Device::Cpu)?;
        let layers = [&net.layer1, &net.layer2, &net.layer3]
            .into_iter()
            .map(ScalarLinear::from_linear)
            .collect::<Result<_>>()?;
        Ok(ScalarTrainer {
            shuffle_rng: shuffle_rng(config.seed),
            config,
            data,
            layers,
        })
    }

    /// The class-1 probability of one point.
    fn forward(&self, p: [f64; 2]) -> Scalar {
        let mut h = vec![Scalar::constant(p[0]), Scalar::constant(p[1])];
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h);
            if i + 1 < self.layers.len() {
                h = h.iter().map(Scalar::relu).collect();
            }
        }
        h[0].sigmoid()
    }

    /// Class-1 probabilities at `points`.
    pub fn predict(&self, points: &[[f64; 2]]) -> Vec<f32> {
        points
            .iter()
            .map(|&p| self.forward(p).value() as f32)
            .collect()
    }
}

impl Epochs for ScalarTrainer {
    fn config(&self) -> &TrainConfig {
        &self.config
    }

    fn points(&self) -> usize {
        self.data.len()
    }

    fn epoch_async(&mut self) -> BoxFuture<'_, Result<f32>> {
        Box::pin(std::future::ready(self.train_epoch()))
    }

    fn correct_async(&self) -> BoxFuture<'_, Result<usize>> {
        Box::pin(std::future::ready(Ok(self.count_correct())))
    }
}

impl ScalarTrainer {
    /// One epoch of the course loop, one scalar at a time.
    fn train_epoch(&mut self) -> Result<f32> {
        let n = self.data.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.shuffle_rng);
        let lr = self.config.lr as f64;
        let mut total = 0.0;
        for chunk in order.chunks(self.config.batch) {
            let scale = 1.0 / chunk.len() as f64;
            let mut objective = Scalar::constant(0.0);
            for &i in chunk {
                let out = self.forward(self.data.x[i]);
                let y = self.data.y[i] as f64;
                let prob = out.mul(y).add(out.sub(1.0).mul(y - 1.0));
                let prob = match self.config.loss {
                    LossKind::Guarded => prob.add(LOG_GUARD as f64),
                    LossKind::Exact => prob,
                };
                let loss = prob.log().neg();
                total += loss.value();
                objective = objective.add(loss.mul(scale));
            }
            objective.backward()?;
            for layer in &mut self.layers {
                for p in layer.params_mut() {
                    let d = p.derivative().unwrap_or(0.0);
                    *p = Scalar::new(p.value() - lr * d);
                }
            }
        }
        Ok(total as f32)
    }

    /// Points classified correctly now.
    fn count_correct(&self) -> usize {
        self.data
            .x
            .iter()
            .zip(&self.data.y)
            .filter(|&(&p, &y)| (self.forward(p).value() > 0.5) == (y > 0.5))
            .count()
    }
}
