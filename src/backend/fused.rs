//! Kernel fusion: a small elementwise expression ([`Program`]) over several inputs and
//! scalar parameters that every backend runs as one kernel ([`Backend::fused`]), or as the
//! epilogue of a matrix product ([`Backend::matmul_fused`]).
//!
//! A program is a list of nodes in evaluation order (each refers only to earlier ones):
//! loads of inputs (read through their layouts, like `zip`), scalar parameters (kernel
//! parameters, never uploaded tensors), constants, and MiniTorch's own [`UnaryOp`] and
//! [`BinaryOp`], so a fused kernel computes exactly what the chain of primitives computes.
//! The CPU interprets programs; the GPU backends generate one kernel per distinct program
//! from the op table below (WGSL and CUDA C from the same table) and cache it.
//!
//! [`Program::gradient`] differentiates a program symbolically (reverse mode over the
//! nodes, with the primitives' own backward ops), so a fused function's backward is one
//! more fused kernel and autodiff above the trait is unchanged.
//!
//! [`Backend::fused`]: super::Backend::fused
//! [`Backend::matmul_fused`]: super::Backend::matmul_fused

use std::fmt::Write;
use std::sync::{Arc, Mutex};

use smallvec::SmallVec;

use super::{BinaryOp, Storage, UnaryOp};
use crate::error::{Error, Result};
use crate::layout::Layout;

/// One step of a [`Program`]; operands are indices of earlier nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// The element of input `i`.
    Input(usize),
    /// Scalar parameter `i` (a kernel parameter).
    Param(usize),
    /// A constant, by its bits (so programs hash and compare exactly).
    Const(u32),
    /// A unary primitive of an earlier node.
    Unary(UnaryOp, usize),
    /// A binary primitive of two earlier nodes.
    Binary(BinaryOp, usize, usize),
}

/// An elementwise expression with one or more outputs. Build one with [`ProgramBuilder`].
///
/// A cheap handle: clones share one body (a fused tensor keeps its program for its
/// backward without copying it). Equality and hashing are by the expression.
#[derive(Clone)]
pub struct Program(Arc<Body>);

struct Body {
    nodes: Vec<Node>,
    outputs: Vec<usize>,
    inputs: usize,
    params: usize,
    /// Gradient programs already derived (see [`Program::gradient`]).
    gradients: Mutex<Vec<GradientEntry>>,
}

/// One remembered gradient program.
struct GradientEntry {
    output: usize,
    wanted: SmallVec<[usize; 4]>,
    program: Program,
}

/// Most gradient programs one program remembers (one per set of wanted inputs in practice;
/// the cap only bounds a caller that asks for many different sets).
const GRADIENT_CACHE_MAX: usize = 16;

impl Body {
    fn key(&self) -> (&[Node], &[usize], usize, usize) {
        (&self.nodes, &self.outputs, self.inputs, self.params)
    }
}

impl PartialEq for Program {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.key() == other.0.key()
    }
}

impl Eq for Program {}

impl std::hash::Hash for Program {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.key().hash(state);
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("nodes", &self.0.nodes)
            .field("outputs", &self.0.outputs)
            .field("inputs", &self.0.inputs)
            .field("params", &self.0.params)
            .finish()
    }
}

/// A node of a program being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(usize);

/// Builds a [`Program`] node by node.
#[derive(Clone, Debug, Default)]
pub struct ProgramBuilder {
    nodes: Vec<Node>,
}

impl ProgramBuilder {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, n: Node) -> Var {
        // Reuse an identical node (inputs, params and repeated subexpressions).
        if let Some(i) = self.nodes.iter().position(|&m| m == n) {
            return Var(i);
        }
        self.nodes.push(n);
        Var(self.nodes.len() - 1)
    }

    /// The element of input `i`.
    pub fn input(&mut self, i: usize) -> Var {
        self.push(Node::Input(i))
    }
    /// Scalar parameter `i`.
    pub fn param(&mut self, i: usize) -> Var {
        self.push(Node::Param(i))
    }
    /// A constant.
    pub fn constant(&mut self, c: f32) -> Var {
        self.push(Node::Const(c.to_bits()))
    }
    /// `op(a)`.
    pub fn unary(&mut self, op: UnaryOp, a: Var) -> Var {
        self.push(Node::Unary(op, a.0))
    }
    /// `op(a, b)`.
    pub fn binary(&mut self, op: BinaryOp, a: Var, b: Var) -> Var {
        self.push(Node::Binary(op, a.0, b.0))
    }
    /// `a + b`.
    pub fn add(&mut self, a: Var, b: Var) -> Var {
        self.binary(BinaryOp::Add, a, b)
    }
    /// `a * b`.
    pub fn mul(&mut self, a: Var, b: Var) -> Var {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// The program computing `outputs`. Inputs and parameters are counted from the
    /// highest index used (an unused index in between is still bound).
    pub fn build(self, outputs: &[Var]) -> Program {
        let (mut inputs, mut params) = (0, 0);
        for n in &self.nodes {
            match *n {
                // Saturating: a hostile index makes a program no call can satisfy
                // (`check` rejects it), not an overflow.
                Node::Input(i) => inputs = inputs.max(i.saturating_add(1)),
                Node::Param(i) => params = params.max(i.saturating_add(1)),
                _ => {}
            }
        }
        Program::from_parts(
            self.nodes,
            outputs.iter().map(|v| v.0).collect(),
            inputs,
            params,
        )
    }
}

impl Program {
    fn from_parts(nodes: Vec<Node>, outputs: Vec<usize>, inputs: usize, params: usize) -> Self {
        Program(Arc::new(Body {
            nodes,
            outputs,
            inputs,
            params,
            gradients: Mutex::new(Vec::new()),
        }))
    }

    /// The nodes in evaluation order.
    pub fn nodes(&self) -> &[Node] {
        &self.0.nodes
    }
    /// The nodes whose values are the outputs.
    pub fn outputs(&self) -> &[usize] {
        &self.0.outputs
    }
    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.0.inputs
    }
    /// Number of scalar parameters.
    pub fn params(&self) -> usize {
        self.0.params
    }

    /// The program `in0` (a plain matmul as a `matmul_fused` epilogue).
    pub fn identity() -> Program {
        let mut b = ProgramBuilder::new();
        let x = b.input(0);
        b.build(&[x])
    }

    /// True for the program that returns its only input unchanged.
    pub fn is_identity(&self) -> bool {
        self.0.nodes == [Node::Input(0)] && self.0.outputs == [0]
    }

    /// The program on one element: the reference every backend must agree with.
    pub fn eval(&self, inputs: &[f32], params: &[f32]) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.0.nodes.len());
        for n in &self.0.nodes {
            v.push(match *n {
                Node::Input(i) => inputs[i],
                Node::Param(i) => params[i],
                Node::Const(b) => f32::from_bits(b),
                Node::Unary(op, a) => op.apply(v[a]),
                Node::Binary(op, a, b) => op.apply(v[a], v[b]),
            });
        }
        self.0.outputs.iter().map(|&o| v[o]).collect()
    }

    /// Check a call: as many inputs and parameters as the program uses, operands before
    /// their nodes, at least one output. `op` names the caller in the error.
    pub fn check(&self, op: &'static str, inputs: usize, params: usize) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(op, m));
        if inputs != self.0.inputs {
            return bad(format!(
                "the fused program reads {} inputs, {inputs} given",
                self.0.inputs
            ));
        }
        if params != self.0.params {
            return bad(format!(
                "the fused program takes {} scalar parameters, {params} given",
                self.0.params
            ));
        }
        if self.0.outputs.is_empty() {
            return bad("the fused program has no output".into());
        }
        for (i, n) in self.0.nodes.iter().enumerate() {
            let ok = match *n {
                Node::Unary(_, a) => a < i,
                Node::Binary(_, a, b) => a < i && b < i,
                _ => true,
            };
            if !ok {
                return bad(format!("node {i} of the fused program uses a later node"));
            }
        }
        if self.0.outputs.iter().any(|&o| o >= self.0.nodes.len()) {
            return bad("an output of the fused program is not a node".into());
        }
        Ok(())
    }

    /// The gradient program: its inputs are this program's inputs followed by the
    /// gradient of output `output`; its outputs are the gradients of the inputs `wanted`
    /// (in that order), each of the output's shape. Uses the primitives' backward rules
    /// (`Inv` -> `InvBack`, `Exp` -> `exp(x) * d`, comparisons have zero gradient), so the
    /// result equals what autodiff over the primitives computes. Errors for nodes with no
    /// backward (the `*Back` ops) on a path to a wanted input.
    ///
    /// Gradients are remembered per `(output, wanted)` (a backward pass asks for the same
    /// few every step), so only the first call derives one.
    pub fn gradient(&self, output: usize, wanted: &[usize]) -> Result<Program> {
        let cache = &self.0.gradients;
        let hit = |c: &[GradientEntry]| {
            c.iter()
                .find(|e| e.output == output && e.wanted[..] == *wanted)
                .map(|e| e.program.clone())
        };
        if let Some(p) = hit(&cache.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(p);
        }
        let p = self.derive_gradient(output, wanted)?;
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() < GRADIENT_CACHE_MAX && hit(&c).is_none() {
            c.push(GradientEntry {
                output,
                wanted: wanted.into(),
                program: p.clone(),
            });
        }
        Ok(p)
    }

    /// [`Program::gradient`] without the cache.
    fn derive_gradient(&self, output: usize, wanted: &[usize]) -> Result<Program> {
        let n = self.0.nodes.len();
        let mut b = ProgramBuilder {
            nodes: self.0.nodes.clone(),
        };
        let d_out = b.input(self.0.inputs);
        // adjoint[i]: the gradient flowing into node i (None: none).
        let mut adj: Vec<Option<Var>> = vec![None; n];
        adj[self.0.outputs[output]] = Some(d_out);
        let acc = |b: &mut ProgramBuilder, adj: &mut [Option<Var>], i: usize, g: Var| {
            adj[i] = Some(match adj[i] {
                Some(prev) => b.add(prev, g),
                None => g,
            });
        };
        for i in (0..n).rev() {
            let Some(g) = adj[i] else { continue };
            match self.0.nodes[i] {
                Node::Input(_) | Node::Param(_) | Node::Const(_) => {}
                Node::Unary(op, a) => {
                    let x = Var(a);
                    let d = match op {
                        UnaryOp::Neg => b.unary(UnaryOp::Neg, g),
                        UnaryOp::Id => g,
                        UnaryOp::Inv => b.binary(BinaryOp::InvBack, x, g),
                        UnaryOp::Relu => b.binary(BinaryOp::ReluBack, x, g),
                        UnaryOp::Sigmoid => b.binary(BinaryOp::SigmoidBack, x, g),
                        UnaryOp::Log => b.binary(BinaryOp::LogBack, x, g),
                        UnaryOp::Exp => b.mul(Var(i), g),
                    };
                    acc(&mut b, &mut adj[..], a, d);
                }
                Node::Binary(op, x, y) => match op {
                    BinaryOp::Add => {
                        acc(&mut b, &mut adj[..], x, g);
                        acc(&mut b, &mut adj[..], y, g);
                    }
                    BinaryOp::Mul => {
                        let dx = b.mul(g, Var(y));
                        let dy = b.mul(g, Var(x));
                        acc(&mut b, &mut adj[..], x, dx);
                        acc(&mut b, &mut adj[..], y, dy);
                    }
                    BinaryOp::Lt | BinaryOp::Eq | BinaryOp::IsClose => {}
                    _ => {
                        return Err(Error::Autodiff {
                            op: "fused backward",
                            msg: format!("{} has no backward", op.name()),
                        })
                    }
                },
            }
        }
        let zero = b.constant(0.0);
        let outs: Vec<Var> = wanted
            .iter()
            .map(|&w| {
                self.0
                    .nodes
                    .iter()
                    .position(|&m| m == Node::Input(w))
                    .and_then(|i| adj[i])
                    .unwrap_or(zero)
            })
            .collect();
        let p = b.build(&outs);
        Ok(Program::from_parts(
            p.0.nodes.clone(),
            p.0.outputs.clone(),
            self.0.inputs + 1,
            self.0.params,
        )
        .pruned())
    }

    /// The same program without the nodes no output depends on (inputs and parameters
    /// keep their numbers).
    fn pruned(&self) -> Program {
        let mut live = vec![false; self.0.nodes.len()];
        for &o in &self.0.outputs {
            live[o] = true;
        }
        for i in (0..self.0.nodes.len()).rev() {
            if !live[i] {
                continue;
            }
            match self.0.nodes[i] {
                Node::Unary(_, a) => live[a] = true,
                Node::Binary(_, a, b) => {
                    live[a] = true;
                    live[b] = true;
                }
                _ => {}
            }
        }
        let mut map = vec![usize::MAX; self.0.nodes.len()];
        let mut nodes = Vec::new();
        for (i, n) in self.0.nodes.iter().enumerate() {
            if !live[i] {
                continue;
            }
            map[i] = nodes.len();
            nodes.push(match *n {
                Node::Unary(op, a) => Node::Unary(op, map[a]),
                Node::Binary(op, a, b) => Node::Binary(op, map[a], map[b]),
                other => other,
            });
        }
        Program::from_parts(
            nodes,
            self.0.outputs.iter().map(|&o| map[o]).collect(),
            self.0.inputs,
            self.0.params,
        )
    }
}

// ----- code generation: one op table, two languages ------------------------------------------

/// The GPU languages kernels are generated in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// WGSL (wgpu); `log_f`, `exp_f` and `sigmoid_f` come from shaders/math.wgsl.
    Wgsl,
    /// CUDA C (NVRTC); `log_f`, `exp_f` and `sigmoid_f` come from cuda/math.cuh.
    Cuda,
}

/// The op table: the expression of `op` on the variables `a`, in `lang`. The formulas are
/// those of the primitive kernels (shaders/map.wgsl, cuda/map.cu), and of
/// [`UnaryOp::apply`].
pub fn unary_expr(lang: Lang, op: UnaryOp, a: &str) -> String {
    use Lang::*;
    match (op, lang) {
        (UnaryOp::Neg, _) => format!("-{a}"),
        (UnaryOp::Id, _) => a.to_string(),
        (UnaryOp::Inv, Wgsl) => format!("1.0 / {a}"),
        (UnaryOp::Inv, Cuda) => format!("__fdiv_rn(1.0f, {a})"),
        (UnaryOp::Relu, Wgsl) => format!("select(0.0, {a}, {a} > 0.0)"),
        (UnaryOp::Relu, Cuda) => format!("({a} > 0.0f ? {a} : 0.0f)"),
        (UnaryOp::Sigmoid, _) => format!("sigmoid_f({a})"),
        // The primitives' own 2-ULP functions, not the platform's (see math.wgsl).
        (UnaryOp::Log, _) => format!("log_f({a})"),
        (UnaryOp::Exp, _) => format!("exp_f({a})"),
    }
}

/// The op table for binary ops (see [`unary_expr`]). CUDA uses the `_rn` intrinsics for
/// `+`, `*` and `/`, which the compiler never contracts into fused multiply-adds: a fused
/// kernel rounds every step as the chain of primitive kernels does.
pub fn binary_expr(lang: Lang, op: BinaryOp, a: &str, b: &str) -> String {
    use Lang::*;
    match (op, lang) {
        (BinaryOp::Add, Wgsl) => format!("{a} + {b}"),
        (BinaryOp::Add, Cuda) => format!("__fadd_rn({a}, {b})"),
        (BinaryOp::Mul, Wgsl) => format!("{a} * {b}"),
        (BinaryOp::Mul, Cuda) => format!("__fmul_rn({a}, {b})"),
        (BinaryOp::Lt, Wgsl) => format!("select(0.0, 1.0, {a} < {b})"),
        (BinaryOp::Lt, Cuda) => format!("({a} < {b} ? 1.0f : 0.0f)"),
        (BinaryOp::Eq, Wgsl) => format!("select(0.0, 1.0, {a} == {b})"),
        (BinaryOp::Eq, Cuda) => format!("({a} == {b} ? 1.0f : 0.0f)"),
        (BinaryOp::IsClose, Wgsl) => format!("select(0.0, 1.0, abs({a} - {b}) < 0.01)"),
        (BinaryOp::IsClose, Cuda) => format!("(fabsf({a} - {b}) < 0.01f ? 1.0f : 0.0f)"),
        (BinaryOp::ReluBack, Wgsl) => format!("select(0.0, {b}, {a} > 0.0)"),
        (BinaryOp::ReluBack, Cuda) => format!("({a} > 0.0f ? {b} : 0.0f)"),
        (BinaryOp::LogBack, Wgsl) => format!("{b} / {a}"),
        (BinaryOp::LogBack, Cuda) => format!("__fdiv_rn({b}, {a})"),
        // -(d / x) / x: x * x would underflow for |x| < 1e-19.
        (BinaryOp::InvBack, Wgsl) => format!("-({b} / {a}) / {a}"),
        (BinaryOp::InvBack, Cuda) => format!("__fdiv_rn(-__fdiv_rn({b}, {a}), {a})"),
        // s(x) (1 - s(x)) as s(x) s(-x): no cancellation when s(x) is near 1.
        (BinaryOp::SigmoidBack, Wgsl) => format!("{b} * sigmoid_f({a}) * sigmoid_f(-{a})"),
        (BinaryOp::SigmoidBack, Cuda) => {
            format!("__fmul_rn(__fmul_rn({b}, sigmoid_f({a})), sigmoid_f(-{a}))")
        }
    }
}

/// The body of a generated kernel for one element: `let`s of every node, in `lang`.
/// `load(i)` is the expression of input `i`'s element, `param(i)` of parameter `i`.
/// Node `k` is the variable `v{k}`.
pub fn body(
    lang: Lang,
    p: &Program,
    load: impl Fn(usize) -> String,
    param: impl Fn(usize) -> String,
) -> String {
    let mut s = String::new();
    let decl = match lang {
        Lang::Wgsl => "let",
        Lang::Cuda => "const float",
    };
    for (k, n) in p.nodes().iter().enumerate() {
        let e = match *n {
            Node::Input(i) => load(i),
            Node::Param(i) => param(i),
            Node::Const(bits) => match lang {
                Lang::Wgsl => format!("bitcast<f32>({bits}u)"),
                Lang::Cuda => format!("__int_as_float({:#010x})", bits),
            },
            Node::Unary(op, a) => unary_expr(lang, op, &format!("v{a}")),
            Node::Binary(op, a, b) => binary_expr(lang, op, &format!("v{a}"), &format!("v{b}")),
        };
        let _ = writeln!(s, "    {decl} v{k} = {e};");
    }
    s
}

/// Which kernel to generate for a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Elementwise, every input read through its strides (`fused`).
    Strided,
    /// Elementwise, every input contiguous: element `i` at `offset + i` (`fused`).
    Contiguous,
    /// A matmul whose result goes through the program (input 0: the product) before it is
    /// stored (`fused_matmul`): one thread per result element, a plain loop over k (no
    /// shared memory, no barriers: at the sizes it serves, launch and barrier costs
    /// dominate; larger products use the tiled primitive matmul, see
    /// [`FUSED_MATMUL_MAX_WORK`]).
    Matmul,
}

/// Entry point of the generated kernel of `variant`.
pub fn entry_point(variant: Variant) -> &'static str {
    match variant {
        Variant::Strided | Variant::Contiguous => "fused",
        Variant::Matmul => "fused_matmul",
    }
}

/// Largest product (`batch * n * k * m` multiply-adds) the GPU backends run as one
/// generated `fused_matmul` kernel; a larger one is the tiled primitive matmul followed by
/// the epilogue as a `fused` kernel (two launches, but the tiled kernel's speed).
pub const FUSED_MATMUL_MAX_WORK: usize = 1 << 22;

/// The metadata the generated kernels read (u32 words; parameters as f32 bits), shared by
/// WGSL and CUDA:
/// - elementwise: `[size, rank, shape[rank], offsets[inputs], strides[inputs][rank],
///   params]`;
/// - matmul: `[n, k, m, batch_rank, a_offset, b_offset, a_row_stride, a_col_stride,
///   b_row_stride, b_col_stride, batch_shape[batch_rank], a_batch_strides[batch_rank],
///   b_batch_strides[batch_rank]]`, then the elementwise words of the epilogue's inputs
///   1.. (over the result's shape).
///
/// Strides of dimensions of size 1 are written as 0 (they are only indexed at 0).
pub fn elementwise_meta(
    shape: &[usize],
    layouts: &[&crate::layout::Layout],
    params: &[f32],
    mut push: impl FnMut(&str, usize) -> Result<()>,
) -> Result<()> {
    push("size", shape.iter().product())?;
    push("rank", shape.len())?;
    for &d in shape {
        push("dimension", d)?;
    }
    for l in layouts {
        push("offset", l.offset())?;
    }
    for l in layouts {
        for (&d, &s) in l.shape().iter().zip(l.strides()) {
            push("stride", if d == 1 { 0 } else { s })?;
        }
    }
    for &p in params {
        push("parameter", p.to_bits() as usize)?;
    }
    Ok(())
}

/// The words of a `Variant::Matmul` kernel (the second layout above) for `a @ b` with
/// `(n, k, m)`, then the epilogue's `extra` inputs (inputs 1..) over the result's `shape`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_meta(
    al: &crate::layout::Layout,
    bl: &crate::layout::Layout,
    (n, k, m): (usize, usize, usize),
    shape: &[usize],
    extra: &[&crate::layout::Layout],
    params: &[f32],
    mut push: impl FnMut(&str, usize) -> Result<()>,
) -> Result<()> {
    let r = al.dims();
    let (sa, sb) = (al.strides(), bl.strides());
    for v in [n, k, m, r - 2, al.offset(), bl.offset()] {
        push("size", v)?;
    }
    for v in [sa[r - 2], sa[r - 1], sb[r - 2], sb[r - 1]] {
        push("stride", v)?;
    }
    let batch_dims = &al.shape()[..r - 2];
    for &v in batch_dims {
        push("dimension", v)?;
    }
    for l in [al, bl] {
        for (&d, &s) in batch_dims.iter().zip(l.strides()) {
            push("stride", if d == 1 { 0 } else { s })?;
        }
    }
    elementwise_meta(shape, extra, params, push)
}

/// The second step of a `matmul_fused` that runs its product as a kernel of its own (the
/// CPU always; the GPUs past [`FUSED_MATMUL_MAX_WORK`]): `epilogue(product, extra...)`
/// over the contiguous `product` of `shape`, where `run` is the backend's `fused`.
pub fn then_epilogue(
    product: &Storage,
    shape: &[usize],
    extra: &[(&Storage, &Layout)],
    run: impl FnOnce(&[(&Storage, &Layout)]) -> Result<super::Outputs>,
) -> Result<Storage> {
    let pl = Layout::contiguous(shape);
    let mut ins: smallvec::SmallVec<[(&Storage, &Layout); 4]> = smallvec::smallvec![(product, &pl)];
    ins.extend(extra.iter().copied());
    Ok(run(&ins)?.remove(0))
}

/// The WGSL of `p` as a `variant` kernel: the bindings are the inputs (`in{j}`; for the
/// matmul `ma`, `mb`, then the epilogue's inputs 1..), the outputs (`out{j}`), then `md`.
/// `prelude` is shaders/indexing.wgsl (global_linear, strided_position) followed by
/// shaders/math.wgsl (log_f, exp_f, sigmoid_f).
pub fn wgsl_source(p: &Program, variant: Variant, prelude: &str) -> String {
    let mut s = String::from(prelude);
    s.push_str("\n// Generated from a fused program (src/backend/fused.rs).\n");
    let mut binding = 0;
    let mut bind = |s: &mut String, name: String, rw: bool| {
        let access = if rw { "read_write" } else { "read" };
        let _ = writeln!(
            s,
            "@group(0) @binding({binding}) var<storage, {access}> {name}: array<f32>;"
        );
        binding += 1;
    };
    let first = match variant {
        Variant::Matmul => {
            bind(&mut s, "ma".into(), false);
            bind(&mut s, "mb".into(), false);
            1
        }
        _ => 0,
    };
    for j in first..p.inputs() {
        bind(&mut s, format!("in{j}"), false);
    }
    for j in 0..p.outputs().len() {
        bind(&mut s, format!("out{j}"), true);
    }
    let _ = writeln!(
        s,
        "@group(0) @binding({binding}) var<storage, read> md: array<u32>;\n"
    );
    // Inputs with a layout (all but the matmul's product) are numbered from `first`.
    let nl = p.inputs() - first;
    let param = |j: usize| format!("bitcast<f32>(md[pa + {j}u])");
    let stores: String = (0..p.outputs().len())
        .map(|j| format!("    out{j}[i] = v{};\n", p.outputs()[j]))
        .collect();
    let header = |e: &str| {
        format!(
            "    let rank = md[{e}1u];\n    let off = {e}2u + rank;\n    let st = off + {nl}u;\n    let pa = st + {nl}u * rank;\n"
        )
    };
    match variant {
        Variant::Strided | Variant::Contiguous => {
            let contiguous = variant == Variant::Contiguous;
            let load = |j: usize| {
                if contiguous {
                    format!("in{j}[md[off + {j}u] + i]")
                } else {
                    format!(
                        "in{j}[strided_position(i, rank, 2u, st + {j}u * rank, md[off + {j}u])]"
                    )
                }
            };
            let _ = write!(
                s,
                "@compute @workgroup_size(256)\nfn fused(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,\n         @builtin(local_invocation_index) lid: u32) {{\n    let i = global_linear(wg, nwg, lid);\n    if (i >= md[0]) {{\n        return;\n    }}\n{}{}{}}}\n",
                header(""),
                body(Lang::Wgsl, p, load, param),
                stores
            );
        }
        Variant::Matmul => {
            let load = |j: usize| {
                if j == 0 {
                    "acc".to_string()
                } else {
                    format!(
                        "in{j}[strided_position(i, rank, e + 2u, st + {}u * rank, md[off + {}u])]",
                        j - 1,
                        j - 1
                    )
                }
            };
            let _ = write!(
                s,
                r#"@compute @workgroup_size(256)
fn fused_matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {{
    let i = global_linear(wg, nwg, lid);
    let e = 10u + 3u * md[3];
    if (i >= md[e]) {{
        return;
    }}
    let n = md[0];
    let k = md[1];
    let m = md[2];
    let br = md[3];
    let col = i % m;
    let row = (i / m) % n;
    let z = i / (m * n);
    let a_row = strided_position(z, br, 10u, 10u + br, md[4]) + row * md[6];
    let b_col = strided_position(z, br, 10u, 10u + 2u * br, md[5]) + col * md[9];
    var acc = 0.0;
    for (var q = 0u; q < k; q = q + 1u) {{
        acc = acc + ma[a_row + q * md[7]] * mb[b_col + q * md[8]];
    }}
{}{}{}}}
"#,
                header("e + "),
                body(Lang::Wgsl, p, load, param),
                stores
            );
        }
    }
    s
}

/// The CUDA C of `p` as a `variant` kernel (the twin of [`wgsl_source`]): parameters are
/// the outputs (`out{j}`), the inputs (`in{j}`; for the matmul `ma`, `mb`, then the
/// epilogue's inputs 1..), then the metadata by value. Includes `indexing.cuh` and
/// `math.cuh`.
pub fn cuda_source(p: &Program, variant: Variant) -> String {
    let mut s = String::from(
        "// Generated from a fused program (src/backend/fused.rs).\n#include \"indexing.cuh\"\n#include \"math.cuh\"\n\n",
    );
    let first = if variant == Variant::Matmul { 1 } else { 0 };
    let nl = p.inputs() - first;
    let mut args: Vec<String> = (0..p.outputs().len())
        .map(|j| format!("float* __restrict__ out{j}"))
        .collect();
    if variant == Variant::Matmul {
        args.push("const float* __restrict__ ma".into());
        args.push("const float* __restrict__ mb".into());
    }
    args.extend((first..p.inputs()).map(|j| format!("const float* in{j}")));
    args.push("const __grid_constant__ Meta meta".into());
    let param = |j: usize| format!("__int_as_float(meta.w[pa + {j}])");
    let stores: String = (0..p.outputs().len())
        .map(|j| format!("    out{j}[i] = v{};\n", p.outputs()[j]))
        .collect();
    let header = |e: &str| {
        format!(
            "    const u32 rank = meta.w[{e}1];\n    const u32* shape = &meta.w[{e}2];\n    const u32 off = {e}2 + rank;\n    const u32 st = off + {nl};\n    const u32 pa = st + {nl} * rank;\n    (void)shape;\n    (void)pa;\n"
        )
    };
    match variant {
        Variant::Strided | Variant::Contiguous => {
            let contiguous = variant == Variant::Contiguous;
            let load = |j: usize| {
                if contiguous {
                    format!("in{j}[meta.w[off + {j}] + i]")
                } else {
                    format!("in{j}[strided_position((u32)i, shape, &meta.w[st + {j} * rank], rank, meta.w[off + {j}])]")
                }
            };
            let body = body(Lang::Cuda, p, load, param).replace("\n    ", "\n        ");
            let stores = stores.replace("    out", "        out");
            let _ = write!(
                s,
                "extern \"C\" __global__ void __launch_bounds__(BLOCK) fused({}) {{\n    const u32 size = meta.w[0];\n{}    for (u64 i = grid_start(); i < size; i += grid_stride()) {{\n    {}{}    }}\n}}\n",
                args.join(", "),
                header(""),
                body,
                stores
            );
        }
        Variant::Matmul => {
            let load = |j: usize| {
                if j == 0 {
                    "acc".to_string()
                } else {
                    format!(
                        "in{j}[strided_position(i, shape, &meta.w[st + {} * rank], rank, meta.w[off + {}])]",
                        j - 1,
                        j - 1
                    )
                }
            };
            let body = body(Lang::Cuda, p, load, param).replace("\n    ", "\n        ");
            let stores = stores.replace("    out", "        out");
            let _ = write!(
                s,
                r#"extern "C" __global__ void __launch_bounds__(BLOCK) fused_matmul({}) {{
    const u32 n = meta.w[0];
    const u32 k = meta.w[1];
    const u32 m = meta.w[2];
    const u32 br = meta.w[3];
    const u32 e = 10 + 3 * br;
    const u32 size = meta.w[e];
{}    for (u64 i64 = grid_start(); i64 < size; i64 += grid_stride()) {{
        const u32 i = (u32)i64;
        const u32 col = i % m;
        const u32 row = (i / m) % n;
        const u32 z = i / (m * n);
        const u32 a_row = strided_position(z, &meta.w[10], &meta.w[10 + br], br, meta.w[4]) + row * meta.w[6];
        const u32 b_col = strided_position(z, &meta.w[10], &meta.w[10 + 2 * br], br, meta.w[5]) + col * meta.w[9];
        float acc = 0.0f;
        for (u32 q = 0; q < k; ++q) {{
            acc = __fadd_rn(acc, __fmul_rn(ma[a_row + q * meta.w[7]], mb[b_col + q * meta.w[8]]));
        }}
    {}{}    }}
}}
"#,
                args.join(", "),
                header("e + "),
                body,
                stores
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss() -> Program {
        // -log(x*y + (x-1)*(y-1) + guard) * scale
        let mut b = ProgramBuilder::new();
        let (x, y) = (b.input(0), b.input(1));
        let m1 = b.constant(-1.0);
        let xy = b.mul(x, y);
        let x1 = b.add(x, m1);
        let y1 = b.add(y, m1);
        let t = b.mul(x1, y1);
        let prob = b.add(xy, t);
        let g = b.param(0);
        let pg = b.add(prob, g);
        let l = b.unary(UnaryOp::Log, pg);
        let nl = b.unary(UnaryOp::Neg, l);
        let s = b.param(1);
        let out = b.mul(nl, s);
        b.build(&[out])
    }

    #[test]
    fn gradient_matches_central_differences() {
        let p = loss();
        assert_eq!((p.inputs(), p.params()), (2, 2));
        let g = p.gradient(0, &[0, 1]).unwrap();
        assert_eq!((g.inputs(), g.params(), g.outputs().len()), (3, 2, 2));
        let params = [1e-6, 0.25];
        for &(x, y) in &[(0.3f32, 1.0f32), (0.7, 0.0), (0.55, 0.4)] {
            let d = g.eval(&[x, y, 1.0], &params);
            let f = |x: f64, y: f64| {
                let prob = x * y + (x - 1.0) * (y - 1.0) + 1e-6;
                -prob.ln() * 0.25
            };
            let h = 1e-4;
            let dx = (f(x as f64 + h, y as f64) - f(x as f64 - h, y as f64)) / (2.0 * h);
            let dy = (f(x as f64, y as f64 + h) - f(x as f64, y as f64 - h)) / (2.0 * h);
            assert!(
                (d[0] as f64 - dx).abs() < 1e-3 * dx.abs().max(1.0),
                "{d:?} {dx}"
            );
            assert!(
                (d[1] as f64 - dy).abs() < 1e-3 * dy.abs().max(1.0),
                "{d:?} {dy}"
            );
        }
    }

    #[test]
    fn unused_inputs_get_zero_gradients_and_bad_calls_are_errors() {
        let mut b = ProgramBuilder::new();
        let x = b.input(0);
        let y = b.input(1);
        let c = b.binary(BinaryOp::Lt, x, y);
        let e = b.unary(UnaryOp::Exp, x);
        let out = b.add(e, c);
        let p = b.build(&[out]);
        let g = p.gradient(0, &[0, 1]).unwrap();
        let d = g.eval(&[0.5, 2.0, 3.0], &[]);
        assert_eq!(d, vec![0.5f32.exp() * 3.0, 0.0]);
        assert!(p.check("t", 1, 0).is_err());
        assert!(p.check("t", 2, 1).is_err());
        p.check("t", 2, 0).unwrap();
        let mut b = ProgramBuilder::new();
        let x = b.input(0);
        let r = b.binary(BinaryOp::ReluBack, x, x);
        assert!(b.build(&[r]).gradient(0, &[0]).is_err());
    }

    #[test]
    fn generated_bodies_name_every_node() {
        let p = loss();
        let w = body(Lang::Wgsl, &p, |i| format!("in{i}"), |i| format!("P{i}"));
        let c = body(Lang::Cuda, &p, |i| format!("in{i}"), |i| format!("P{i}"));
        assert_eq!(w.lines().count(), p.nodes().len());
        assert!(w.contains("log_f(") && c.contains("log_f(") && c.contains("__fmul_rn"));
        assert!(c.contains("__int_as_float(0xbf800000)"), "{c}");
    }
}
