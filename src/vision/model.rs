//! The networks of the `mnist` example and the digits page, with PyTorch's parameter names
//! and layouts (`conv1.weight [4, 1, 3, 3]`, `fc1.weight [64, 392]`), so a model saved by
//! either side loads in the other (`scripts/torch_mnist.py` defines the same two).

use rand::Rng;

use crate::backend::Device;
use crate::error::{Error, Result};
use crate::nn::{Conv2d, Dropout, Mode, Module, Parameter};
use crate::tensor::{Activation, Tensor};

/// Which network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// The course's network: conv 1->4 3x3, relu, conv 4->8 3x3, relu, avgpool 4x4,
    /// linear 392->64, relu, dropout, linear 64->10, log_softmax (padding 1, "same").
    Course,
    /// A bigger network for accuracy: conv 1->32 3x3, relu, maxpool 2x2, conv 32->64 3x3,
    /// relu, maxpool 2x2, linear 3136->128, relu, dropout, linear 128->10, log_softmax.
    Cnn,
}

impl ModelKind {
    /// Lower-case name, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Course => "course",
            ModelKind::Cnn => "cnn",
        }
    }

    /// Parses `course` or `cnn`.
    pub fn parse(s: &str) -> Result<ModelKind> {
        match s.to_ascii_lowercase().as_str() {
            "course" => Ok(ModelKind::Course),
            "cnn" => Ok(ModelKind::Cnn),
            _ => Err(Error::invalid(
                "model",
                format!("unknown model {s:?}; expected course or cnn"),
            )),
        }
    }
}

/// PyTorch's default initialisation of a layer with `fan_in` inputs per output
/// (`kaiming_uniform_(a = sqrt(5))` for the weight, and the bias alike): uniform in
/// `[-1/sqrt(fan_in), 1/sqrt(fan_in))`.
fn uniform(shape: &[usize], fan_in: usize, rng: &mut impl Rng, device: Device) -> Result<Tensor> {
    let n = crate::layout::checked_shape_size("init", shape)?;
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    let v = (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * bound)
        .collect();
    Tensor::from_vec(v, shape, device)
}

/// A 3x3 convolution with padding 1 ("same") and stride 1, PyTorch's initialisation.
fn conv3x3(cin: usize, cout: usize, rng: &mut impl Rng, device: Device) -> Result<Conv2d> {
    Conv2d::with(
        cin,
        cout,
        [3, 3],
        [1, 1],
        [(1, 1), (1, 1)],
        true,
        rng,
        device,
    )
}

/// A fully connected layer in PyTorch's layout: weight `[out, in]`, bias `[out]`.
struct Dense {
    weight: Parameter,
    bias: Parameter,
    mode: Mode,
}

impl Dense {
    fn new(input: usize, output: usize, rng: &mut impl Rng, device: Device) -> Result<Dense> {
        Ok(Dense {
            weight: Parameter::new(uniform(&[output, input], input, rng, device)?),
            bias: Parameter::new(uniform(&[output], input, rng, device)?),
            mode: Mode::default(),
        })
    }

    fn forward(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        let w = self.weight.value().transpose()?;
        x.linear(&w, &self.bias.value(), act)
    }
}

impl Module for Dense {
    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
    fn mode(&self) -> &Mode {
        &self.mode
    }
}

/// An image classifier: two convolutions and two linear layers, named as in PyTorch.
pub struct Classifier {
    /// Which network this is.
    pub kind: ModelKind,
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Dense,
    dropout: Dropout,
    fc2: Dense,
    mode: Mode,
}

impl Classifier {
    /// A `kind` network for 28x28 single-channel images and 10 classes, initialised as
    /// PyTorch does from `rng`, with dropout probability `dropout` in training (masks from
    /// generator `seed`, the same on every backend).
    pub fn new(
        kind: ModelKind,
        dropout: f32,
        seed: u64,
        rng: &mut impl Rng,
        device: Device,
    ) -> Result<Self> {
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::invalid(
                "model",
                format!("dropout {dropout} is outside [0, 1)"),
            ));
        }
        let (c1, c2, hidden, flat) = match kind {
            ModelKind::Course => (4, 8, 64, 8 * 7 * 7),
            ModelKind::Cnn => (32, 64, 128, 64 * 7 * 7),
        };
        Ok(Classifier {
            kind,
            conv1: conv3x3(1, c1, rng, device)?,
            conv2: conv3x3(c1, c2, rng, device)?,
            fc1: Dense::new(flat, hidden, rng, device)?,
            dropout: Dropout::new(dropout, seed)?,
            fc2: Dense::new(hidden, 10, rng, device)?,
            mode: Mode::default(),
        })
    }

    /// Log-probabilities `[B, 10]` of images `[B, 1, 28, 28]` (dropout in training mode
    /// only).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 || s[1] != 1 || s[2] != 28 || s[3] != 28 {
            return Err(Error::shape(
                "Classifier::forward",
                &[s],
                "expected images [B, 1, 28, 28]",
            ));
        }
        let b = s[0];
        let relu = Activation::Relu;
        let h = self.conv1.forward_act(x, relu)?;
        let h = match self.kind {
            ModelKind::Course => self.conv2.forward_act(&h, relu)?.avgpool2d([4, 4])?,
            ModelKind::Cnn => self
                .conv2
                .forward_act(&h.maxpool2d([2, 2])?, relu)?
                .maxpool2d([2, 2])?,
        };
        let flat = h.contiguous()?.view(&[b, h.size() / b])?;
        let h = self.fc1.forward(&flat, Activation::Relu)?;
        let h = self.dropout.forward(&h)?;
        self.fc2.forward(&h, Activation::Identity)?.log_softmax(1)
    }
}

impl Module for Classifier {
    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        Vec::new()
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![
            ("conv1".into(), &self.conv1 as &dyn Module),
            ("conv2".into(), &self.conv2),
            ("fc1".into(), &self.fc1),
            ("dropout".into(), &self.dropout),
            ("fc2".into(), &self.fc2),
        ]
    }
    fn mode(&self) -> &Mode {
        &self.mode
    }
}
