//! Fused tensor functions, beside MiniTorch's primitives (which stay as they are): an
//! elementwise [`Program`] over several tensors run as one kernel, whose backward is the
//! program's symbolic gradient (one more kernel for all input gradients), and the linear
//! layer `act(x @ w + b)` as one matmul with a bias-and-activation epilogue.
//!
//! Each replaces a chain of primitives and computes the same values with the same
//! roundings (the conformance matrix compares them with the chains they replace).

use std::sync::OnceLock;

use smallvec::{smallvec, SmallVec};

use crate::backend::fused::{Program, ProgramBuilder};
use crate::backend::{BinaryOp, Outputs, ReduceOp, Storage, UnaryOp};
use crate::error::{Error, Result};
use crate::layout::{shape_broadcast, Dims, Layout};

use super::{Function, Grads, Tensor};

/// The tensors a fused function returns, one per program output (up to two inline, so a
/// call costs no list allocation).
pub type Tensors = SmallVec<[Tensor; 2]>;

/// The activation a fused linear layer applies to `x @ w + b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// None: the affine map itself.
    Identity,
    /// max(z, 0).
    Relu,
    /// 1 / (1 + e^-z).
    Sigmoid,
}

impl Activation {
    /// The epilogue `act(in0 + in1)`: the product plus the bias, then the activation
    /// (built once per activation).
    fn epilogue(self) -> &'static Program {
        static P: [OnceLock<Program>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        P[self as usize].get_or_init(|| self.build_epilogue())
    }

    fn build_epilogue(self) -> Program {
        let mut p = ProgramBuilder::new();
        let (acc, bias) = (p.input(0), p.input(1));
        let z = p.add(acc, bias);
        let out = match self {
            Activation::Identity => z,
            Activation::Relu => p.unary(UnaryOp::Relu, z),
            Activation::Sigmoid => p.unary(UnaryOp::Sigmoid, z),
        };
        p.build(&[out])
    }
}

/// Broadcast every input to one shape (the error names `op` and the shapes).
fn broadcast_all(op: &'static str, inputs: &[&Tensor]) -> Result<(Dims, SmallVec<[Layout; 4]>)> {
    let mut shape: Dims = inputs.first().map(|t| t.shape().into()).unwrap_or_default();
    for t in inputs.iter().skip(1) {
        if t.shape() != &shape[..] {
            shape = shape_broadcast(&shape, t.shape()).map_err(|_| {
                let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
                Error::shape(op, &shapes, "shapes do not broadcast")
            })?;
        }
    }
    let layouts = inputs
        .iter()
        .map(|t| t.layout().broadcast_to(&shape))
        .collect::<Result<SmallVec<_>>>()?;
    Ok((shape, layouts))
}

fn same_device(op: &'static str, inputs: &[&Tensor]) -> Result<()> {
    if let Some(first) = inputs.first() {
        if let Some(other) = inputs.iter().find(|t| t.device() != first.device()) {
            return Err(Error::DeviceMismatch {
                op,
                a: first.device().to_string(),
                b: other.device().to_string(),
            });
        }
    }
    Ok(())
}

/// Run `program` on broadcast inputs; no history.
fn run(program: &Program, inputs: &[&Tensor], params: &[f32]) -> Result<(Outputs, Layout)> {
    if inputs.is_empty() {
        return Err(Error::invalid(
            "fused",
            "a fused function needs at least one input",
        ));
    }
    same_device("fused", inputs)?;
    let (shape, layouts) = broadcast_all("fused", inputs)?;
    let args: SmallVec<[(&Storage, &Layout); 4]> = inputs
        .iter()
        .zip(&layouts)
        .map(|(t, l)| (t.storage(), l))
        .collect();
    let outs = inputs[0].backend().fused(program, &args, params)?;
    Ok((outs, Layout::contiguous(&shape)))
}

/// The backward of a one-output fused program: its gradient program, one kernel.
struct Fused {
    program: Program,
    params: SmallVec<[f32; 4]>,
}

impl Function for Fused {
    fn name(&self) -> &'static str {
        "Fused"
    }
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads> {
        let wanted: SmallVec<[usize; 4]> = (0..inputs.len())
            .filter(|&i| inputs[i].needs_grad())
            .collect();
        let mut out: Grads = smallvec![None; inputs.len()];
        if wanted.is_empty() {
            return Ok(out);
        }
        let gp = self.program.gradient(0, &wanted)?;
        let mut args: SmallVec<[&Tensor; 4]> = inputs.iter().collect();
        args.push(grad);
        let grads = Tensor::fused(&gp, &args, &self.params)?;
        for (i, g) in wanted.into_iter().zip(grads) {
            out[i] = Some(g);
        }
        Ok(out)
    }
}

/// The backward of `act(x @ w + b)`: the activation's derivative from the stored output
/// (one elementwise kernel, none for the identity), then `dz @ w^T`, `x^T @ dz` and the
/// bias gradient `sum(dz, 0)`, each only when its input needs it.
struct Linear {
    act: Activation,
    out: Storage,
    layout: Layout,
}

impl Function for Linear {
    fn name(&self) -> &'static str {
        "Linear"
    }
    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Grads> {
        let (x, w, b) = (&inputs[0], &inputs[1], &inputs[2]);
        let out = Tensor::from_storage(
            self.out.clone(),
            self.layout.clone(),
            grad.backend().clone(),
        );
        let dz = match self.act {
            Activation::Identity => grad.clone(),
            // relu(z) > 0 exactly where z > 0, so the output decides as z would.
            Activation::Relu => out.zip_raw(BinaryOp::ReluBack, grad)?,
            // d * s * (1 - s) with s the stored sigmoid (the input is not kept, as in
            // PyTorch): within 2^-24 absolute of sigmoid_back's d * s(x) * s(-x).
            Activation::Sigmoid => {
                static PROG: OnceLock<Program> = OnceLock::new();
                let prog = PROG.get_or_init(|| {
                    let mut p = ProgramBuilder::new();
                    let (s, d) = (p.input(0), p.input(1));
                    let one = p.constant(1.0);
                    let ds = p.mul(d, s);
                    let ns = p.unary(UnaryOp::Neg, s);
                    let one_minus = p.add(one, ns);
                    let r = p.mul(ds, one_minus);
                    p.build(&[r])
                });
                let (mut s, l) = run(prog, &[&out, grad], &[])?;
                Tensor::from_storage(s.remove(0), l, grad.backend().clone())
            }
        };
        let dx = match x.needs_grad() {
            true => Some(product(&dz, &w.transpose()?)?),
            false => None,
        };
        let dw = match w.needs_grad() {
            true => Some(product(&x.transpose()?, &dz)?),
            false => None,
        };
        // The bias gradient sum(dz, 0) of shape (1, m), read as b's (m,): one tensor.
        let db = match b.needs_grad() {
            true => {
                let (s, _) = dz.reduce_storage(ReduceOp::Sum, 0)?;
                Some(Tensor::from_storage(
                    s,
                    Layout::contiguous(b.shape()),
                    grad.backend().clone(),
                ))
            }
            false => None,
        };
        Ok(smallvec![dx, dw, db])
    }
}

/// `a @ b` of two 2-D tensors through `matmul_fused` with the identity epilogue (on a GPU,
/// one generated kernel at the sizes of small layers, the tiled primitive beyond); no
/// history.
fn product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    static IDENTITY: OnceLock<Program> = OnceLock::new();
    let s = a.backend().matmul_fused(
        a.storage(),
        a.layout(),
        b.storage(),
        b.layout(),
        IDENTITY.get_or_init(Program::identity),
        &[],
        &[],
    )?;
    let layout = Layout::contiguous(&[a.shape()[0], b.shape()[1]]);
    Ok(Tensor::from_storage(s, layout, a.backend().clone()))
}

impl Tensor {
    /// Run the elementwise `program` on `inputs` (broadcast to one shape) with scalar
    /// `params` as one kernel; one tensor per program output. A one-output program records
    /// its backward (its gradient program); a program with several outputs is for use
    /// without gradients (inside [`no_grad`](super::no_grad), like an optimiser step).
    pub fn fused(program: &Program, inputs: &[&Tensor], params: &[f32]) -> Result<Tensors> {
        let (storages, layout) = run(program, inputs, params)?;
        let backend = inputs[0].backend().clone();
        let track = !super::is_grad_disabled() && inputs.iter().any(|t| t.needs_grad());
        if !track {
            return Ok(storages
                .into_iter()
                .map(|s| Tensor::from_storage(s, layout.clone(), backend.clone()))
                .collect());
        }
        if storages.len() != 1 {
            return Err(Error::Autodiff {
                op: "fused",
                msg: format!(
                    "a fused program with {} outputs has no backward; run it under no_grad",
                    storages.len()
                ),
            });
        }
        let s = storages.into_iter().next().expect("one output");
        let func = Fused {
            program: program.clone(),
            params: params.into(),
        };
        Ok(smallvec![Tensor::from_op(s, layout, backend, func, inputs)])
    }

    /// The linear layer `act(self @ w + b)` as one kernel (a matmul with a bias and
    /// activation epilogue), for `self` of shape `(n, k)`, `w` of `(k, m)` and `b` of
    /// `(m,)`. Equals `self.matmul(w)?.add(b)?` followed by the activation.
    pub fn linear(&self, w: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
        same_device("linear", &[self, w, b])?;
        let (sx, sw, sb) = (self.shape(), w.shape(), b.shape());
        if sx.len() != 2 || sw.len() != 2 || sb.len() != 1 || sx[1] != sw[0] || sb[0] != sw[1] {
            return Err(Error::shape(
                "linear",
                &[sx, sw, sb],
                "linear needs x (n, k), w (k, m) and b (m,)",
            ));
        }
        let shape = [sx[0], sw[1]];
        let bl = b.layout().broadcast_to(&shape)?;
        let s = self.backend().matmul_fused(
            self.storage(),
            self.layout(),
            w.storage(),
            w.layout(),
            act.epilogue(),
            &[(b.storage(), &bl)],
            &[],
        )?;
        let layout = Layout::contiguous(&shape);
        let func = Linear {
            act,
            out: s.clone(),
            layout: layout.clone(),
        };
        Ok(Tensor::from_op(
            s,
            layout,
            self.backend().clone(),
            func,
            &[self, w, b],
        ))
    }
}
