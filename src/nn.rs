//! Modules and parameters (MiniTorch's `module.py`), the course's `Linear` layer, and
//! saving / loading parameters by their dotted names (safetensors).
//!
//! ```
//! use minitorch::nn::{Module, Network};
//! use minitorch::{Device, Tensor};
//! use rand::SeedableRng;
//! # fn main() -> minitorch::Result<()> {
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
//! let net = Network::new(10, &mut rng, Device::Cpu)?;
//! let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names[0], "layer1.weights");
//! let p = net.forward(&Tensor::from_vec(vec![0.1, 0.9, 0.5, 0.5], &[2, 2], Device::Cpu)?)?;
//! assert_eq!(p.shape(), &[2, 1]); // class-1 probabilities
//! // A width no machine holds is an error, not an abort.
//! assert!(Network::new(1 << 21, &mut rng, Device::Cpu).is_err());
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;

use crate::backend::Device;
use crate::error::{Error, Result};
use crate::layout::checked_shape_size;
use crate::memory;
use crate::tensor::{Activation, Tensor};

mod conv;
mod dropout;
pub use conv::{Conv1d, Conv2d};
pub use dropout::Dropout;

/// A trainable value: a shared, replaceable tensor that collects gradients. Cloning shares
/// the parameter (the optimiser and the module see the same one).
#[derive(Clone)]
pub struct Parameter(Arc<Mutex<Tensor>>);

impl Parameter {
    /// A parameter holding `value` (marked to collect gradients).
    pub fn new(value: Tensor) -> Parameter {
        let value = value.detach().requires_grad_(true);
        Parameter(Arc::new(Mutex::new(value)))
    }

    /// The current value.
    pub fn value(&self) -> Tensor {
        self.0.lock().expect("parameter lock").clone()
    }

    /// Replace the value (MiniTorch's `Parameter.update`); the new value collects gradients.
    pub fn update(&self, value: Tensor) {
        *self.0.lock().expect("parameter lock") = value.into_detached().requires_grad_(true);
    }

    /// The gradient collected by the last backward, if any.
    pub fn grad(&self) -> Option<Tensor> {
        self.value().grad()
    }

    /// Forget the collected gradient.
    pub fn zero_grad(&self) {
        self.value().zero_grad()
    }
}

impl std::fmt::Debug for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Parameter({:?})", self.value())
    }
}

/// The train / eval flag every module carries.
#[derive(Debug)]
pub struct Mode(AtomicBool);

impl Default for Mode {
    fn default() -> Self {
        Mode(AtomicBool::new(true))
    }
}

impl Mode {
    /// True in training mode (the default).
    pub fn is_training(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed)
    }
}

/// A tree of submodules and parameters.
pub trait Module {
    /// This module's own parameters, by name.
    fn own_parameters(&self) -> Vec<(String, Parameter)>;
    /// The direct submodules, by name.
    fn children(&self) -> Vec<(String, &dyn Module)> {
        Vec::new()
    }
    /// This module's train / eval flag.
    fn mode(&self) -> &Mode;

    /// Every parameter of the tree with its dotted name (`b.c.p3`), own ones first.
    fn named_parameters(&self) -> Vec<(String, Parameter)> {
        let mut out = self.own_parameters();
        for (name, child) in self.children() {
            for (n, p) in child.named_parameters() {
                out.push((format!("{name}.{n}"), p));
            }
        }
        out
    }
    /// Every parameter of the tree.
    fn parameters(&self) -> Vec<Parameter> {
        self.named_parameters()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }
    /// True in training mode.
    fn is_training(&self) -> bool {
        self.mode().is_training()
    }
    /// Set training mode on this module and every descendant.
    fn train(&self) {
        self.mode().set(true);
        self.children().into_iter().for_each(|(_, c)| c.train());
    }
    /// Set evaluation mode on this module and every descendant.
    fn eval(&self) {
        self.mode().set(false);
        self.children().into_iter().for_each(|(_, c)| c.eval());
    }
}

/// A fully connected layer: `x @ weights + bias`, initialised as the course does (weights
/// uniform in [-0.5, 0.5), bias 0.1).
pub struct Linear {
    /// `(in, out)` weights.
    pub weights: Parameter,
    /// `(out,)` bias.
    pub bias: Parameter,
    mode: Mode,
}

impl Linear {
    /// A layer from `in_size` to `out_size` features, weights drawn from `rng`. Sizes
    /// whose weights do not fit this machine's memory are an error naming them, checked
    /// before anything is allocated.
    ///
    /// ```
    /// use minitorch::{nn::Linear, Device, Tensor};
    /// use rand::SeedableRng;
    /// # fn main() -> minitorch::Result<()> {
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// let layer = Linear::new(3, 2, &mut rng, Device::Cpu)?;
    /// let y = layer.forward(&Tensor::ones(&[4, 3], Device::Cpu)?)?;
    /// assert_eq!(y.shape(), &[4, 2]);
    /// assert!(Linear::new(1 << 40, 1 << 40, &mut rng, Device::Cpu).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(
        in_size: usize,
        out_size: usize,
        rng: &mut impl Rng,
        device: Device,
    ) -> Result<Linear> {
        const OP: &str = "Linear::new";
        let n = checked_shape_size(OP, &[in_size, out_size])?;
        let what = format!("in_size {in_size} x out_size {out_size}");
        let mut w: Vec<f32> = memory::try_vec(OP, &what, "the weights", n)?;
        w.extend((0..n).map(|_| rng.random::<f32>() - 0.5));
        Ok(Linear {
            weights: Parameter::new(Tensor::from_vec(w, &[in_size, out_size], device)?),
            bias: Parameter::new(Tensor::full(&[out_size], 0.1, device)?),
            mode: Mode::default(),
        })
    }

    /// `x @ weights + bias` for `x` of shape `(batch, in)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, Activation::Identity)
    }

    /// `act(x @ weights + bias)`: one fused kernel (and a fused backward) for `x` of shape
    /// `(batch, in)`; other shapes go through the primitives.
    pub fn forward_act(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        let (w, b) = (self.weights.value(), self.bias.value());
        if x.dims() == 2 {
            return x.linear(&w, &b, act);
        }
        let z = x.matmul(&w)?.add(&b)?;
        match act {
            Activation::Identity => Ok(z),
            Activation::Relu => z.relu(),
            Activation::Sigmoid => z.sigmoid(),
        }
    }
}

impl Module for Linear {
    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        vec![
            ("weights".into(), self.weights.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
    fn mode(&self) -> &Mode {
        &self.mode
    }
}

/// The course's network: Linear(2, H) -> relu -> Linear(H, H) -> relu -> Linear(H, 1) ->
/// sigmoid.
pub struct Network {
    /// First layer, `2 -> H`.
    pub layer1: Linear,
    /// Second layer, `H -> H`.
    pub layer2: Linear,
    /// Output layer, `H -> 1`.
    pub layer3: Linear,
    mode: Mode,
}

impl Network {
    /// A network with `hidden` units per hidden layer, initialised from `rng`. A width
    /// whose parameters do not fit this machine's memory is an error (see
    /// [`Network::check_size`]), checked before anything is allocated.
    pub fn new(hidden: usize, rng: &mut impl Rng, device: Device) -> Result<Network> {
        Network::check_size("Network::new", hidden)?;
        Ok(Network {
            layer1: Linear::new(2, hidden, rng, device)?,
            layer2: Linear::new(hidden, hidden, rng, device)?,
            layer3: Linear::new(hidden, 1, rng, device)?,
            mode: Mode::default(),
        })
    }

    /// Each parameter's dotted name and number of elements for `hidden` units (computed
    /// without overflow).
    pub fn parameter_sizes(hidden: usize) -> [(&'static str, u128); 6] {
        let h = hidden as u128;
        [
            ("layer1.weights", 2 * h),
            ("layer1.bias", h),
            ("layer2.weights", h * h),
            ("layer2.bias", h),
            ("layer3.weights", h),
            ("layer3.bias", 1),
        ]
    }

    /// Errors, naming `hidden` and the parameter, when a network of `hidden` units does
    /// not fit this machine's memory: `{op}: hidden 1048576 needs 4 TiB for layer2.weights;
    /// this machine has 24 GiB`.
    pub fn check_size(op: &'static str, hidden: usize) -> Result<()> {
        let what = format!("hidden {hidden}");
        let sizes = Network::parameter_sizes(hidden);
        for (name, n) in sizes {
            memory::need(op, &what, name, n * 4)?;
        }
        let total: u128 = sizes.iter().map(|(_, n)| n * 4).sum();
        memory::need(op, &what, "the parameters", total)
    }

    /// Probabilities of class 1, shape `(batch, 1)`, for points `x` of shape `(batch, 2)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.layer1.forward_act(x, Activation::Relu)?;
        let h = self.layer2.forward_act(&h, Activation::Relu)?;
        self.layer3.forward_act(&h, Activation::Sigmoid)
    }
}

impl Module for Network {
    fn own_parameters(&self) -> Vec<(String, Parameter)> {
        Vec::new()
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![
            ("layer1".into(), &self.layer1 as &dyn Module),
            ("layer2".into(), &self.layer2),
            ("layer3".into(), &self.layer3),
        ]
    }
    fn mode(&self) -> &Mode {
        &self.mode
    }
}

/// Write every parameter of `module` to a safetensors file, keyed by dotted name.
pub fn save_safetensors(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let io = |msg: String| Error::Io {
        op: "save_safetensors",
        path: path.display().to_string(),
        msg,
    };
    let mut tensors = Vec::new();
    for (name, p) in module.named_parameters() {
        let v = p.value();
        let bytes: Vec<u8> = v.to_vec()?.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((name, v.shape().to_vec(), bytes));
    }
    let views = tensors
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| io(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| io(e.to_string()))
}

/// Load parameters saved by [`save_safetensors`] into `module`. Every parameter must be in
/// the file with the same shape; errors name the parameter and both shapes.
pub fn load_safetensors(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let io = |msg: String| Error::Io {
        op: "load_safetensors",
        path: path.display().to_string(),
        msg,
    };
    let bytes = std::fs::read(path).map_err(|e| io(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| io(format!("not a valid safetensors file: {e}")))?;
    let mut found: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(io(format!(
                "tensor {name} has dtype {:?}, expected F32",
                view.dtype()
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        found.insert(name, (view.shape().to_vec(), data));
    }
    // Check everything before changing anything, so a bad file leaves the module intact.
    let params = module.named_parameters();
    for (name, p) in &params {
        let Some((shape, _)) = found.get(name) else {
            return Err(io(format!("parameter {name} is missing from the file")));
        };
        if shape.as_slice() != p.value().shape() {
            return Err(Error::shape(
                "load_safetensors",
                &[p.value().shape(), shape],
                format!("parameter {name}: the network's shape and the file's differ"),
            ));
        }
    }
    for (name, p) in params {
        let (shape, data) = found.remove(&name).expect("checked above");
        let device = p.value().device();
        p.update(Tensor::from_vec(data, &shape, device)?);
    }
    Ok(())
}
