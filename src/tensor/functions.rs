//! The tensor functions with forward and backward (MiniTorch's `tensor_functions.py`).
//!
//! Each forward checks its arguments, asks the backend for the result and records a
//! [`Function`] that knows the backward. Backward results are summed back to each input's
//! shape in one place (`Tensor::chain_rule`), so no function handles broadcasting itself.

use smallvec::{smallvec, SmallVec};

use crate::backend::fused::{Node, Program};
use crate::backend::{BinaryOp, ReduceOp, UnaryOp};
use crate::error::{Error, Result};
use crate::layout::{checked_shape_size, shape_broadcast, Dims, Layout};

use super::Tensor;

/// The backward of one recorded function.
pub(crate) trait Function: Send + Sync {
    /// The MiniTorch name of the function (`Mul`, `Sum`, ...).
    fn name(&self) -> &'static str;
    /// Gradients of the inputs (None for inputs that get none) from the output's.
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads>;
}

/// What a [`Function`]'s backward returns: one gradient or None per input.
pub(crate) type Grads = crate::autodiff::Inputs<Option<Tensor>>;

fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch {
            op,
            a: a.device().to_string(),
            b: b.device().to_string(),
        });
    }
    Ok(())
}

fn check_dim(op: &'static str, t: &Tensor, dim: usize) -> Result<()> {
    if dim >= t.dims() {
        return Err(Error::shape(
            op,
            &[t.shape()],
            format!(
                "dimension {dim} out of range for a tensor of {} dimensions",
                t.dims()
            ),
        ));
    }
    Ok(())
}

// ----- map and zip ------------------------------------------------------------------------

/// The backward of the one-op program `op` (a row of the op table) applied to `inputs`:
/// the table's derivative as the program's symbolic gradient, run as one fused kernel over
/// `(inputs..., grad)` for the inputs that need a gradient. A gradient that is the
/// incoming one itself (`Id`, `Add`) is passed on and a zero one (comparisons, flat almost
/// everywhere as in MiniTorch) is filled, with no kernel.
fn table_backward(
    op: &Program,
    name: &'static str,
    grad: &Tensor,
    inputs: &[Tensor],
) -> Result<Grads> {
    let mut out: Grads = smallvec![None; inputs.len()];
    let wanted: SmallVec<[usize; 2]> = (0..inputs.len())
        .filter(|&i| inputs[i].needs_grad())
        .collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    let gp = op.gradient(0, &wanted).map_err(|_| Error::Autodiff {
        op: "backward",
        msg: format!("{name} has no backward"),
    })?;
    let mut kernel: SmallVec<[usize; 2]> = SmallVec::new();
    for (k, &i) in wanted.iter().enumerate() {
        match gp.nodes()[gp.outputs()[k]] {
            Node::Input(j) if j == inputs.len() => out[i] = Some(grad.clone()),
            Node::Const(bits) if f32::from_bits(bits) == 0.0 => {
                out[i] = Some(inputs[i].full_like(inputs[i].shape(), 0.0)?)
            }
            _ => kernel.push(i),
        }
    }
    if !kernel.is_empty() {
        let gp = op.gradient(0, &kernel)?;
        let mut args: SmallVec<[&Tensor; 3]> = inputs.iter().collect();
        args.push(grad);
        let grads = Tensor::fused(&gp, &args, &[])?;
        for (i, g) in kernel.into_iter().zip(grads) {
            out[i] = Some(g);
        }
    }
    Ok(out)
}

struct Map(UnaryOp);

impl Function for Map {
    fn name(&self) -> &'static str {
        self.0.function_name()
    }

    /// The op table's derivative, as one fused kernel `g * f'(x)` (none for `Id`).
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads> {
        table_backward(Program::of_unary(self.0), self.name(), grad, inputs)
    }
}

struct Zip(BinaryOp);

impl Function for Zip {
    fn name(&self) -> &'static str {
        self.0.function_name()
    }

    /// The op table's derivative, as one fused kernel for both operands (none for `Add`;
    /// zeros for the comparisons).
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads> {
        table_backward(Program::of_binary(self.0), self.name(), grad, inputs)
    }
}

// ----- reductions ------------------------------------------------------------------------

struct Sum;

impl Function for Sum {
    fn name(&self) -> &'static str {
        "Sum"
    }
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads> {
        // d sum / d x = 1: the gradient is read in place, broadcast along the summed dim.
        Ok(smallvec![Some(grad.expand(inputs[0].shape())?)])
    }
}

struct Max(usize);

impl Function for Max {
    fn name(&self) -> &'static str {
        "Max"
    }
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads> {
        // The gradient goes to the positions that hold the maximum; where the maximum is
        // NaN (max propagates NaN), to the NaN positions.
        let x = &inputs[0];
        let m = x.reduce_raw(ReduceOp::Max, self.0)?;
        let is_nan = |t: &Tensor| -> Result<Tensor> {
            // 1 - (t == t)
            t.zip_raw(BinaryOp::Eq, t)?.neg()?.add_scalar(1.0)
        };
        let mask = x
            .zip_raw(BinaryOp::Eq, &m)?
            .add(&is_nan(x)?.mul(&is_nan(&m)?)?)?;
        Ok(smallvec![Some(mask.mul(grad)?)])
    }
}

// ----- shape functions -------------------------------------------------------------------

struct Permute(Dims);

impl Function for Permute {
    fn name(&self) -> &'static str {
        "Permute"
    }
    fn backward(&self, grad: &Tensor, _: &[Tensor]) -> Result<Grads> {
        let mut inverse: Dims = smallvec![0; self.0.len()];
        for (i, &o) in self.0.iter().enumerate() {
            inverse[o] = i;
        }
        Ok(smallvec![Some(grad.permute(&inverse)?)])
    }
}

struct View;

impl Function for View {
    fn name(&self) -> &'static str {
        "View"
    }
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads> {
        let shape = inputs[0].shape();
        if grad.layout().strides().iter().all(|&s| s == 0) {
            // One value broadcast (the gradient of a sum): the same value in any shape,
            // no copy.
            let l = Layout::new(
                shape,
                smallvec::SmallVec::from_elem(0, shape.len()),
                grad.layout().offset(),
            )?;
            return Ok(smallvec![Some(Tensor::from_storage(
                grad.storage().clone(),
                l,
                grad.backend().clone(),
            ))]);
        }
        Ok(smallvec![Some(grad.contiguous()?.view(shape)?)])
    }
}

struct Copy;

impl Function for Copy {
    fn name(&self) -> &'static str {
        "Copy"
    }
    fn backward(&self, grad: &Tensor, _: &[Tensor]) -> Result<Grads> {
        Ok(smallvec![Some(grad.clone())])
    }
}

struct MatMul;

impl Function for MatMul {
    fn name(&self) -> &'static str {
        "MatMul"
    }
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads> {
        let (a, b) = (&inputs[0], &inputs[1]);
        // grad_a = grad @ b^T, grad_b = a^T @ grad; transposes are views, read in place.
        let ga = grad.matmul(&b.transpose()?)?;
        let gb = a.transpose()?.matmul(grad)?;
        Ok(smallvec![Some(ga), Some(gb)])
    }
}

// ----- the tensor methods ------------------------------------------------------------------

impl Tensor {
    fn map_op(&self, op: UnaryOp) -> Result<Tensor> {
        let s = self.backend().map(op, self.storage(), self.layout())?;
        Ok(Tensor::from_op(
            s,
            Layout::contiguous(self.shape()),
            self.backend().clone(),
            Map(op),
            &[self],
        ))
    }

    /// Broadcast both operands to one shape and run `op` on the backend (no history).
    fn zip_storage(
        &self,
        op: BinaryOp,
        other: &Tensor,
    ) -> Result<(crate::backend::Storage, Layout)> {
        let shape = self.broadcast_pair(op.name(), other)?;
        let al = self.layout().broadcast_to(&shape)?;
        let bl = other.layout().broadcast_to(&shape)?;
        let s = self
            .backend()
            .zip(op, self.storage(), &al, other.storage(), &bl)?;
        Ok((s, Layout::contiguous(&shape)))
    }

    /// Check that `self` and `other` can meet in the binary op the user called `name`
    /// (same device, shapes that broadcast) and return the broadcast shape; errors name
    /// `name` and list the operands in the user's order.
    fn broadcast_pair(&self, name: &'static str, other: &Tensor) -> Result<Dims> {
        same_device(name, self, other)?;
        shape_broadcast(self.shape(), other.shape()).map_err(|e| match e {
            Error::Shape { msg, .. } => Error::shape(
                name,
                &[self.shape(), other.shape()],
                format!("shapes do not broadcast: {msg}"),
            ),
            other => other,
        })
    }

    fn zip_op(&self, op: BinaryOp, other: &Tensor) -> Result<Tensor> {
        let (s, l) = self.zip_storage(op, other)?;
        Ok(Tensor::from_op(
            s,
            l,
            self.backend().clone(),
            Zip(op),
            &[self, other],
        ))
    }

    /// A zip with no history (for backward passes and non-differentiable ops).
    pub(crate) fn zip_raw(&self, op: BinaryOp, other: &Tensor) -> Result<Tensor> {
        let (s, l) = self.zip_storage(op, other)?;
        Ok(Tensor::from_storage(s, l, self.backend().clone()))
    }

    /// A reduction with no history.
    pub(crate) fn reduce_raw(&self, op: ReduceOp, dim: usize) -> Result<Tensor> {
        let (s, l) = self.reduce_storage(op, dim)?;
        Ok(Tensor::from_storage(s, l, self.backend().clone()))
    }

    /// The storage and layout of a reduction (no tensor made).
    pub(crate) fn reduce_storage(
        &self,
        op: ReduceOp,
        dim: usize,
    ) -> Result<(crate::backend::Storage, Layout)> {
        check_dim(op.name(), self, dim)?;
        let s = self
            .backend()
            .reduce(op, self.storage(), self.layout(), dim)?;
        Ok((s, Layout::contiguous(&self.layout().reduced_shape(dim))))
    }

    /// -self
    pub fn neg(&self) -> Result<Tensor> {
        self.map_op(UnaryOp::Neg)
    }
    /// 1 / self
    pub fn inv(&self) -> Result<Tensor> {
        self.map_op(UnaryOp::Inv)
    }
    /// max(self, 0)
    pub fn relu(&self) -> Result<Tensor> {
        self.map_op(UnaryOp::Relu)
    }
    /// 1 / (1 + e^-self)
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.map_op(UnaryOp::Sigmoid)
    }
    /// ln self
    pub fn log(&self) -> Result<Tensor> {
        self.map_op(UnaryOp::Log)
    }
    /// e^self
    pub fn exp(&self) -> Result<Tensor> {
        self.map_op(UnaryOp::Exp)
    }
    /// tanh x elementwise.
    pub fn tanh(&self) -> Result<Tensor> {
        self.map_op(UnaryOp::Tanh)
    }
    /// sqrt(self), correctly rounded on every backend
    pub fn sqrt(&self) -> Result<Tensor> {
        self.map_op(UnaryOp::Sqrt)
    }

    /// self + other, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_op(BinaryOp::Add, other)
    }
    /// self - other (Add of Neg, as in MiniTorch).
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.broadcast_pair("sub", other)?;
        self.add(&other.neg()?)
    }
    /// self * other, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_op(BinaryOp::Mul, other)
    }
    /// self / other (Mul of Inv, as in MiniTorch).
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.broadcast_pair("div", other)?;
        self.mul(&other.inv()?)
    }
    /// 1 where self < other, else 0.
    pub fn lt(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_op(BinaryOp::Lt, other)
    }
    /// 1 where self > other, else 0.
    pub fn gt(&self, other: &Tensor) -> Result<Tensor> {
        self.broadcast_pair("gt", other)?;
        other.zip_op(BinaryOp::Lt, self)
    }
    /// 1 where self == other, else 0.
    pub fn eq(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_op(BinaryOp::Eq, other)
    }
    /// 1 where |self - other| < 1e-2, else 0 (no gradient).
    pub fn is_close(&self, other: &Tensor) -> Result<Tensor> {
        self.zip_raw(BinaryOp::IsClose, other)
    }

    /// self + c
    pub fn add_scalar(&self, c: f32) -> Result<Tensor> {
        self.add(&self.full_like(&[1], c)?)
    }
    /// self * c
    pub fn mul_scalar(&self, c: f32) -> Result<Tensor> {
        self.mul(&self.full_like(&[1], c)?)
    }

    /// Sum over dimension `dim`, kept with size 1 (as MiniTorch does).
    pub fn sum(&self, dim: usize) -> Result<Tensor> {
        let (s, l) = self.reduce_storage(ReduceOp::Sum, dim)?;
        Ok(Tensor::from_op(s, l, self.backend().clone(), Sum, &[self]))
    }

    /// Sum of all elements, shape `(1,)`.
    pub fn sum_all(&self) -> Result<Tensor> {
        // A permuted view of dense storage (a convolution's output, a transpose) is summed
        // in storage order, with no copy: the sum of all elements does not depend on the
        // order it visits them (up to rounding).
        let st = self.layout().strides();
        let mut order: Vec<usize> = (0..self.dims()).collect();
        order.sort_by_key(|&d| std::cmp::Reverse(st[d]));
        let mut t = self.clone();
        if order.iter().enumerate().any(|(i, &d)| i != d) {
            let p = self.permute(&order)?;
            if p.layout().is_contiguous() {
                t = p;
            }
        }
        t.contiguous()?.view(&[self.size()])?.sum(0)
    }

    /// Mean over dimension `dim`, kept with size 1.
    pub fn mean(&self, dim: usize) -> Result<Tensor> {
        check_dim("mean", self, dim)?;
        let n = self.shape()[dim] as f32;
        self.sum(dim)?.mul_scalar(1.0 / n)
    }

    /// Mean of all elements, shape `(1,)`.
    pub fn mean_all(&self) -> Result<Tensor> {
        let n = self.size() as f32;
        self.sum_all()?.mul_scalar(1.0 / n)
    }

    /// Maximum over dimension `dim`, kept with size 1; the gradient goes to the maxima.
    pub fn max(&self, dim: usize) -> Result<Tensor> {
        let (s, l) = self.reduce_storage(ReduceOp::Max, dim)?;
        Ok(Tensor::from_op(
            s,
            l,
            self.backend().clone(),
            Max(dim),
            &[self],
        ))
    }

    /// Product over dimension `dim`, kept with size 1 (no gradient).
    pub fn prod(&self, dim: usize) -> Result<Tensor> {
        self.reduce_raw(ReduceOp::Prod, dim)
    }

    /// 1 when every element along `dim` is non-zero, else 0 (no gradient).
    pub fn all_dim(&self, dim: usize) -> Result<Tensor> {
        check_dim("all_dim", self, dim)?;
        let zero = self.full_like(&[1], 0.0)?;
        let any_zero = self
            .zip_raw(BinaryOp::Eq, &zero)?
            .reduce_raw(ReduceOp::Max, dim)?;
        any_zero.zip_raw(BinaryOp::Eq, &zero)
    }

    /// 1 when every element is non-zero, else 0; shape `(1,)`.
    pub fn all(&self) -> Result<Tensor> {
        self.detach().contiguous()?.view(&[self.size()])?.all_dim(0)
    }

    /// Reorder dimensions: dimension `i` of the result is dimension `order[i]` of self.
    pub fn permute(&self, order: &[usize]) -> Result<Tensor> {
        let l = self.layout().permute(order)?;
        Ok(Tensor::from_op(
            self.storage().clone(),
            l,
            self.backend().clone(),
            Permute(order.into()),
            &[self],
        ))
    }

    /// Swap the last two dimensions (a view).
    pub fn transpose(&self) -> Result<Tensor> {
        let n = self.dims();
        if n < 2 {
            return Err(Error::shape(
                "transpose",
                &[self.shape()],
                "needs at least 2 dimensions",
            ));
        }
        let mut order: Dims = (0..n).collect();
        order.swap(n - 2, n - 1);
        self.permute(&order)
    }

    /// The same elements with another shape; the tensor must be contiguous.
    pub fn view(&self, shape: &[usize]) -> Result<Tensor> {
        let l = self.layout().view(shape)?;
        Ok(Tensor::from_op(
            self.storage().clone(),
            l,
            self.backend().clone(),
            View,
            &[self],
        ))
    }

    /// A contiguous tensor with the same elements (self when already contiguous).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let s = self.backend().copy(self.storage(), self.layout())?;
        Ok(Tensor::from_op(
            s,
            Layout::contiguous(self.shape()),
            self.backend().clone(),
            Copy,
            &[self],
        ))
    }

    /// Read self as `shape` (a broadcast view with stride 0, no copy, no history).
    pub(crate) fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        let l = self.layout().broadcast_to(shape)?;
        Ok(Tensor::from_storage(
            self.storage().clone(),
            l,
            self.backend().clone(),
        ))
    }

    /// Sum a broadcast gradient back to `shape` (MiniTorch's `expand` in backward).
    pub(crate) fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let extra = self.dims().checked_sub(shape.len()).ok_or_else(|| {
            Error::shape(
                "sum_to_shape",
                &[self.shape(), shape],
                "gradient has fewer dimensions than its input",
            )
        })?;
        let mut g = self.clone();
        for d in 0..self.dims() {
            let target = if d < extra { 1 } else { shape[d - extra] };
            if g.shape()[d] != target {
                g = g.reduce_raw(ReduceOp::Sum, d)?;
            }
        }
        g.contiguous()?.view(shape)
    }

    /// Matrix product with batch broadcasting: `[..a, n, k] @ [..b, k, m]` gives
    /// `[..broadcast(a, b), n, m]`. Two 2-D tensors give a 2-D result.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        same_device("matmul", self, other)?;
        let (sa, sb) = (self.shape(), other.shape());
        if sa.len() < 2 || sb.len() < 2 {
            return Err(Error::shape(
                "matmul",
                &[sa, sb],
                "both operands need at least 2 dimensions",
            ));
        }
        let (n, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (k2, m) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != k2 {
            return Err(Error::shape(
                "matmul",
                &[sa, sb],
                format!("inner dimensions differ ({k} vs {k2})"),
            ));
        }
        let batch = shape_broadcast(&sa[..sa.len() - 2], &sb[..sb.len() - 2])
            .map_err(|_| Error::shape("matmul", &[sa, sb], "batch dimensions do not broadcast"))?;
        let mut shape_a = batch.clone();
        shape_a.extend([n, k]);
        let mut shape_b = batch.clone();
        shape_b.extend([k, m]);
        let mut shape_out = batch;
        shape_out.extend([n, m]);
        checked_shape_size("matmul", &shape_out)?;
        let al = self.layout().broadcast_to(&shape_a)?;
        let bl = other.layout().broadcast_to(&shape_b)?;
        let s = self
            .backend()
            .matmul(self.storage(), &al, other.storage(), &bl)?;
        Ok(Tensor::from_op(
            s,
            Layout::contiguous(&shape_out),
            self.backend().clone(),
            MatMul,
            &[self, other],
        ))
    }
}
