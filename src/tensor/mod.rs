//! Tensors with automatic differentiation (MiniTorch's `tensor.py`).
//!
//! A [`Tensor`] is a cheap handle (an `Arc`) to a storage on some backend, a [`Layout`]
//! into it, and, when it was computed from tensors that need gradients, the history of
//! the function that made it. Autodiff lives here, above the [`Backend`] trait, and uses
//! nothing but that trait, so it runs unchanged on every backend.

mod conv;
mod functions;
mod fused;
pub mod grad_check;
mod nn_ops;
mod ops;

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::autodiff::{self, Variable};
use crate::backend::{Backend, Device, Storage};
use crate::error::{Error, Result};
use crate::executor::block_on;
use crate::layout::{checked_shape_size, shape_size, Layout};

pub use conv::Padding;
pub(crate) use functions::{Function, Grads};
pub use fused::{Activation, Tensors};
pub use nn_ops::Reduction;

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static NO_GRAD_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Run `f` without recording history: results of tensor ops inside need no gradient.
/// Used for evaluation, optimiser steps and inside backward itself.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            NO_GRAD_DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    NO_GRAD_DEPTH.with(|d| d.set(d.get() + 1));
    let _g = Guard;
    f()
}

/// True while inside [`no_grad`].
pub fn is_grad_disabled() -> bool {
    NO_GRAD_DEPTH.with(|d| d.get() > 0)
}

/// The function that produced a tensor and its inputs.
pub(crate) struct History {
    pub(crate) func: Box<dyn Function>,
    pub(crate) inputs: autodiff::Inputs<Tensor>,
}

struct Inner {
    id: usize,
    storage: Storage,
    layout: Layout,
    backend: Arc<dyn Backend>,
    requires_grad: AtomicBool,
    history: Option<History>,
    grad: Mutex<Option<Tensor>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self.history.take() {
            autodiff::unlink_iteratively(h.inputs, |t: Tensor| {
                Arc::try_unwrap(t.0).ok()?.history.take().map(|h| h.inputs)
            });
        }
    }
}

/// An n-dimensional array of f32 on one device, with autodiff.
///
/// Ops broadcast like NumPy and return a `Result` (a shape that does not fit is an error
/// naming the op and the shapes); `backward` fills the gradients of the leaves that
/// require them.
///
/// ```
/// use minitorch::{Device, Tensor};
/// # fn main() -> minitorch::Result<()> {
/// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], Device::Cpu)?
///     .requires_grad_(true);
/// let b = Tensor::from_vec(vec![10.0, 20.0, 30.0], &[3], Device::Cpu)?;
/// let y = x.add(&b)?; // (2, 3) + (3,) broadcasts
/// assert_eq!(y.to_vec()?, vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
/// y.mul(&y)?.sum_all()?.backward()?; // d(sum y^2)/dx = 2y
/// assert_eq!(x.grad().unwrap().to_vec()?, vec![22.0, 44.0, 66.0, 28.0, 50.0, 72.0]);
/// assert!(x.add(&Tensor::ones(&[4], Device::Cpu)?).is_err()); // (2, 3) + (4,)
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

impl Tensor {
    // ----- construction -------------------------------------------------------------

    /// A tensor from a storage and layout on `backend` (no history). For backend authors
    /// and internal use; most users want [`Tensor::from_vec`].
    pub fn from_storage(storage: Storage, layout: Layout, backend: Arc<dyn Backend>) -> Tensor {
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage,
            layout,
            backend,
            requires_grad: AtomicBool::new(false),
            history: None,
            grad: Mutex::new(None),
        }))
    }

    /// The result of a function: records history when an input needs a gradient.
    pub(crate) fn from_op(
        storage: Storage,
        layout: Layout,
        backend: Arc<dyn Backend>,
        func: impl Function + 'static,
        inputs: &[&Tensor],
    ) -> Tensor {
        let track = !is_grad_disabled() && inputs.iter().any(|t| t.needs_grad());
        let history = track.then(|| History {
            func: Box::new(func),
            inputs: inputs.iter().map(|&t| t.clone()).collect(),
        });
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage,
            layout,
            backend,
            requires_grad: AtomicBool::new(false),
            history,
            grad: Mutex::new(None),
        }))
    }

    /// A tensor holding `data` with `shape` on `device`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize], device: Device) -> Result<Tensor> {
        if data.len() != checked_shape_size("from_vec", shape)? {
            return Err(Error::shape(
                "from_vec",
                &[shape],
                format!(
                    "{} values given for {} elements",
                    data.len(),
                    shape_size(shape)
                ),
            ));
        }
        let backend = device.backend()?;
        let storage = backend.upload(&data)?;
        Ok(Tensor::from_storage(
            storage,
            Layout::contiguous(shape),
            backend,
        ))
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f32, device: Device) -> Result<Tensor> {
        let backend = device.backend()?;
        Self::full_on(shape, value, backend)
    }

    pub(crate) fn full_on(
        shape: &[usize],
        value: f32,
        backend: Arc<dyn Backend>,
    ) -> Result<Tensor> {
        let storage = backend.full(checked_shape_size("full", shape)?, value)?;
        Ok(Tensor::from_storage(
            storage,
            Layout::contiguous(shape),
            backend,
        ))
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], device: Device) -> Result<Tensor> {
        Self::full(shape, 0.0, device)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize], device: Device) -> Result<Tensor> {
        Self::full(shape, 1.0, device)
    }

    /// A one-element tensor of shape `(1,)`.
    pub fn scalar(value: f32, device: Device) -> Result<Tensor> {
        Self::full(&[1], value, device)
    }

    /// Values uniform in `[0, 1)` from the library's counter-based generator
    /// (`backend::random`, draw 0 of `seed`), computed on the device: the same seed gives
    /// the same values on every machine and backend.
    pub fn rand(shape: &[usize], seed: u64, device: Device) -> Result<Tensor> {
        Self::rand_draw(shape, seed, 0, device)
    }

    /// A tensor like `self` (same device) holding `value` in `shape`.
    pub fn full_like(&self, shape: &[usize], value: f32) -> Result<Tensor> {
        Self::full_on(shape, value, self.backend().clone())
    }

    /// The same data on another device (a copy through the host when devices differ).
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        Tensor::from_vec(self.to_vec()?, self.shape(), device)
    }

    // ----- accessors ----------------------------------------------------------------

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }
    /// Number of elements.
    pub fn size(&self) -> usize {
        self.0.layout.size()
    }
    /// Number of dimensions.
    pub fn dims(&self) -> usize {
        self.0.layout.dims()
    }
    /// Shape, strides and offset.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    /// The device-resident storage (shared with views of this tensor).
    pub fn storage(&self) -> &Storage {
        &self.0.storage
    }
    /// The backend that owns the storage.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.0.backend
    }
    /// The device the tensor lives on.
    pub fn device(&self) -> Device {
        self.0.backend.device()
    }
    /// A number that identifies this tensor in a graph.
    pub fn id(&self) -> usize {
        self.0.id
    }
    /// True when the elements are contiguous in row-major order.
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }

    /// The elements in row-major order, copied to the host. Waits for the device; in a
    /// browser a GPU tensor needs [`Tensor::to_vec_async`] (this returns an error naming
    /// it).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        block_on("to_vec", "Tensor::to_vec_async", self.to_vec_async())
    }

    /// The elements in row-major order, copied to the host, as a future: the form that
    /// works in a browser, where a GPU readback completes asynchronously.
    pub async fn to_vec_async(&self) -> Result<Vec<f32>> {
        let l = &self.0.layout;
        if l.is_contiguous() && l.offset() == 0 && l.size() == self.0.storage.len() {
            return self.0.backend.download_async(&self.0.storage).await;
        }
        let c = self.0.backend.copy(&self.0.storage, l)?;
        self.0.backend.download_async(&c).await
    }

    /// The value of a one-element tensor (in a browser, use [`Tensor::item_async`] for a
    /// GPU tensor).
    pub fn item(&self) -> Result<f32> {
        block_on("item", "Tensor::item_async", self.item_async())
    }

    /// The value of a one-element tensor, as a future (see [`Tensor::to_vec_async`]).
    pub async fn item_async(&self) -> Result<f32> {
        if self.size() != 1 {
            return Err(Error::shape(
                "item",
                &[self.shape()],
                "item() needs a tensor with exactly one element",
            ));
        }
        Ok(self.to_vec_async().await?[0])
    }

    /// The element at `index` (checked: count, sign and range of every index).
    pub fn get(&self, index: &[isize]) -> Result<f32> {
        let pos = self.0.layout.checked_position(index)?;
        let one = Layout::new(vec![1], vec![1], pos)?;
        let c = self.0.backend.copy(&self.0.storage, &one)?;
        Ok(self.0.backend.download(&c)?[0])
    }

    // ----- autodiff -----------------------------------------------------------------

    /// Whether this tensor is a leaf that collects a gradient.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Mark this tensor as a leaf that collects a gradient in `backward`.
    pub fn set_requires_grad(&self, on: bool) {
        self.0.requires_grad.store(on, Ordering::Relaxed);
    }

    /// `set_requires_grad` that returns the tensor, for chaining.
    pub fn requires_grad_(self, on: bool) -> Tensor {
        self.set_requires_grad(on);
        self
    }

    /// True when a gradient flows through this tensor (a leaf that wants one, or the
    /// result of a recorded function).
    pub fn needs_grad(&self) -> bool {
        self.requires_grad() || self.0.history.is_some()
    }

    /// True when the tensor was made by the user, not recorded from a function.
    pub fn is_leaf(&self) -> bool {
        self.0.history.is_none()
    }

    /// The gradient collected by the last `backward` calls, if any.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().expect("grad lock").clone()
    }

    /// Forget the collected gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().expect("grad lock") = None;
    }

    /// The same data with no history: gradients stop here.
    pub fn detach(&self) -> Tensor {
        Tensor::from_storage(
            self.0.storage.clone(),
            self.0.layout.clone(),
            self.0.backend.clone(),
        )
    }

    /// [`Tensor::detach`] that reuses the handle when it is the only one and has no
    /// history or gradient (an optimiser's fresh result): nothing to detach it from, and no
    /// other holder to see its flags change.
    pub(crate) fn into_detached(self) -> Tensor {
        let fresh = self.0.history.is_none()
            && !self.requires_grad()
            && self.0.grad.lock().is_ok_and(|g| g.is_none());
        if fresh && Arc::strong_count(&self.0) == 1 && Arc::weak_count(&self.0) == 0 {
            return self;
        }
        self.detach()
    }

    /// Backpropagate from this one-element tensor (d self = 1).
    pub fn backward(&self) -> Result<()> {
        if self.size() != 1 {
            return Err(Error::Autodiff {
                op: "backward",
                msg: format!(
                    "backward() needs a one-element output, this one has shape {:?}; call backward_with(grad) or reduce it first",
                    self.shape()
                ),
            });
        }
        let ones = self.full_like(self.shape(), 1.0)?;
        self.backward_with(&ones)
    }

    /// Backpropagate from this tensor with `grad` as its derivative (same shape, same
    /// device). Both are checked before anything runs, so a bad seed changes no gradient.
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        if grad.device() != self.device() {
            return Err(Error::DeviceMismatch {
                op: "backward",
                a: self.device().to_string(),
                b: grad.device().to_string(),
            });
        }
        if grad.shape() != self.shape() {
            return Err(Error::shape(
                "backward",
                &[self.shape(), grad.shape()],
                "the gradient must have the output's shape",
            ));
        }
        if !self.needs_grad() {
            return Err(Error::Autodiff {
                op: "backward",
                msg: "this tensor does not depend on any tensor that requires a gradient".into(),
            });
        }
        no_grad(|| autodiff::backpropagate(self, grad.detach()))
    }

    pub(crate) fn history(&self) -> Option<&History> {
        self.0.history.as_ref()
    }
}

impl Variable for Tensor {
    type Grad = Tensor;

    fn unique_id(&self) -> usize {
        self.0.id
    }

    fn is_leaf(&self) -> bool {
        self.0.history.is_none() && self.requires_grad()
    }

    fn is_constant(&self) -> bool {
        !self.needs_grad()
    }

    fn parents(&self) -> autodiff::Inputs<Tensor> {
        self.history().map(|h| h.inputs.clone()).unwrap_or_default()
    }

    fn chain_rule(&self, d_output: &Tensor) -> Result<autodiff::Inputs<(Tensor, Tensor)>> {
        let Some(h) = self.history() else {
            return Ok(autodiff::Inputs::new());
        };
        let grads = h.func.backward(d_output, &h.inputs)?;
        let mut out = autodiff::Inputs::new();
        for (input, g) in h.inputs.iter().zip(grads) {
            if let Some(g) = g {
                // Gradients of broadcast inputs are summed back to the input's shape.
                let g = g.sum_to_shape(input.shape())?;
                out.push((input.clone(), g));
            }
        }
        Ok(out)
    }

    fn accumulate_derivative(&self, d: Tensor) -> Result<()> {
        let mut slot = self.0.grad.lock().expect("grad lock");
        // On an error the previous gradient stays in place.
        let next = match slot.as_ref() {
            Some(prev) => no_grad(|| prev.add(&d))?,
            None => d,
        };
        *slot = Some(next);
        Ok(())
    }

    fn add_grads(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        a.add(b)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor(shape={:?}, device={}",
            self.shape(),
            self.device()
        )?;
        if self.size() <= 16 {
            if let Ok(v) = self.to_vec() {
                write!(f, ", data={v:?}")?;
            }
        }
        if let Some(h) = self.history() {
            write!(f, ", fn={}", h.func.name())?;
        }
        write!(f, ")")
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
