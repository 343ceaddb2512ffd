//! Convolution layers with PyTorch's parameters: `weight [Cout, Cin, KH, KW]` (or
//! `[Cout, Cin, K]`) and `bias [Cout]`, named `weight` and `bias` as in PyTorch's
//! `state_dict`, so a model saved by either side loads in the other. Initialisation is
//! PyTorch's default (`kaiming_uniform_(a = sqrt(5))` for the weight, which comes to
//! `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, and the same bound for the bias), with
//! `fan_in = Cin * KH * KW`.

use rand::Rng;

use super::{Mode, Module, Parameter};
use crate::backend::Device;
use crate::error::{Error, Result};
use crate::tensor::{Activation, Padding, Tensor};

/// `n` values uniform in `[-bound, bound)` from `rng`.
fn uniform(n: usize, bound: f32, rng: &mut impl Rng) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * bound)
        .collect()
}

/// Weight and bias of a convolution of `shape` (`[Cout, Cin, kernel..]`), PyTorch's init.
fn init(
    op: &'static str,
    shape: &[usize],
    bias: bool,
    rng: &mut impl Rng,
    device: Device,
) -> Result<(Parameter, Option<Parameter>)> {
    if shape.contains(&0) {
        return Err(Error::shape(
            op,
            &[shape],
            "channels and kernel sizes must be at least 1",
        ));
    }
    let fan_in: usize = shape[1..].iter().product();
    let n = crate::layout::checked_shape_size(op, shape)?;
    let bound = 1.0 / (fan_in as f32).sqrt();
    let w = Parameter::new(Tensor::from_vec(uniform(n, bound, rng), shape, device)?);
    let b = if bias {
        Some(Parameter::new(Tensor::from_vec(
            uniform(shape[0], bound, rng),
            &shape[..1],
            device,
        )?))
    } else {
        None
    };
    Ok((w, b))
}

fn params(w: &Parameter, b: &Option<Parameter>) -> Vec<(String, Parameter)> {
    let mut v = vec![("weight".to_string(), w.clone())];
    if let Some(b) = b {
        v.push(("bias".into(), b.clone()));
    }
    v
}

/// A 2-D convolution layer (PyTorch's `nn.Conv2d`, with groups = dilation = 1).
pub struct Conv2d {
    /// `[Cout, Cin, KH, KW]`.
    pub weight: Parameter,
    /// `[Cout]`, or None for a layer without bias.
    pub bias: Option<Parameter>,
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Zeros before and after, per spatial dimension.
    pub padding: [Padding; 2],
    mode: Mode,
}

impl Conv2d {
    /// A layer from `cin` to `cout` channels with a `kernel` (height, width), stride 1 and
    /// no padding; set `stride` / `padding` (or use [`Conv2d::with`]) for others.
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: [usize; 2],
        rng: &mut impl Rng,
        device: Device,
    ) -> Result<Conv2d> {
        Self::with(
            cin,
            cout,
            kernel,
            [1, 1],
            [(0, 0), (0, 0)],
            true,
            rng,
            device,
        )
    }

    /// A layer with every option: stride, padding per side, and whether it has a bias.
    #[allow(clippy::too_many_arguments)]
    pub fn with(
        cin: usize,
        cout: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [Padding; 2],
        bias: bool,
        rng: &mut impl Rng,
        device: Device,
    ) -> Result<Conv2d> {
        let (weight, bias) = init(
            "Conv2d",
            &[cout, cin, kernel[0], kernel[1]],
            bias,
            rng,
            device,
        )?;
        Ok(Conv2d {
            weight,
            bias,
            stride,
            padding,
            mode: Mode::default(),
        })
    }

    /// The convolution of `x` (`[B, Cin, H, W]`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, Activation::Identity)
    }

    /// `act(conv2d(x))`, the activation in the convolution's matmul epilogue.
    pub fn forward_act(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| b.value());
        x.conv2d_act(
            &self.weight.value(),
            b.as_ref(),
            self.stride,
            self.padding,
            act,
        )
    }
}

impl Module for Conv2d {
    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        params(&self.weight, &self.bias)
    }
    fn mode(&self) -> &Mode {
        &self.mode
    }
}

/// A 1-D convolution layer (PyTorch's `nn.Conv1d`, with groups = dilation = 1).
pub struct Conv1d {
    /// `[Cout, Cin, K]`.
    pub weight: Parameter,
    /// `[Cout]`, or None.
    pub bias: Option<Parameter>,
    /// Stride.
    pub stride: usize,
    /// Zeros before and after.
    pub padding: Padding,
    mode: Mode,
}

impl Conv1d {
    /// A layer from `cin` to `cout` channels with a kernel of `k`, stride 1, no padding.
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        rng: &mut impl Rng,
        device: Device,
    ) -> Result<Conv1d> {
        Self::with(cin, cout, k, 1, (0, 0), true, rng, device)
    }

    /// A layer with every option.
    #[allow(clippy::too_many_arguments)]
    pub fn with(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: Padding,
        bias: bool,
        rng: &mut impl Rng,
        device: Device,
    ) -> Result<Conv1d> {
        let (weight, bias) = init("Conv1d", &[cout, cin, k], bias, rng, device)?;
        Ok(Conv1d {
            weight,
            bias,
            stride,
            padding,
            mode: Mode::default(),
        })
    }

    /// The convolution of `x` (`[B, Cin, W]`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| b.value());
        x.conv1d(&self.weight.value(), b.as_ref(), self.stride, self.padding)
    }
}

impl Module for Conv1d {
    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        params(&self.weight, &self.bias)
    }
    fn mode(&self) -> &Mode {
        &self.mode
    }
}
