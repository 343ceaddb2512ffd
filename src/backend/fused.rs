//! Kernel fusion: a small elementwise expression ([`Program`]) over several inputs and
//! scalar parameters that every backend runs as one kernel ([`Backend::fused`]), or as the
//! epilogue of a matrix product ([`Backend::matmul_fused`]).
//!
//! A program is a list of nodes in evaluation order (each refers only to earlier ones):
//! loads of inputs (read through their layouts, like `zip`), scalar parameters (kernel
//! parameters, never uploaded tensors), constants, and MiniTorch's own [`UnaryOp`] and
//! [`BinaryOp`], so a fused kernel computes exactly what the chain of primitives computes.
//! The CPU interprets programs; the GPU backends generate one kernel per distinct program
//! from the op table (`gpu/codegen.rs`, WGSL and CUDA C from the same rows) and cache it.
//!
//! [`Program::gradient`] differentiates a program symbolically (reverse mode over the
//! nodes, with the primitives' own backward ops), so a fused function's backward is one
//! more fused kernel and autodiff above the trait is unchanged.
//!
//! [`Backend::fused`]: super::Backend::fused
//! [`Backend::matmul_fused`]: super::Backend::matmul_fused

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use smallvec::SmallVec;

use super::{BinaryOp, Storage, UnaryOp};

pub use super::gpu::codegen::{body, cuda_source, entry_point, wgsl_source, Lang, Variant};
pub use super::gpu::meta::{elementwise_meta, matmul_meta, merge_dims};
use crate::error::{Error, Result};
use crate::layout::Layout;

/// Whether [`note`] keeps the programs it sees (see [`record_programs`]).
static RECORDING: AtomicBool = AtomicBool::new(false);
/// The programs seen while recording, each with whether it ran as a matmul epilogue.
static RECORDED: Mutex<Vec<(Program, bool)>> = Mutex::new(Vec::new());

/// Start (or stop) keeping every distinct program the backends are asked to run, so that
/// `examples/dump_kernels.rs` can write the kernels a real run generates; off by default
/// (then a call costs one relaxed load).
pub fn record_programs(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

/// The programs kept since [`record_programs`], each with whether it ran as a matmul
/// epilogue, in first-seen order.
pub fn recorded_programs() -> Vec<(Program, bool)> {
    RECORDED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Called by the contract checks of `fused` and `matmul_fused` on every backend.
pub(crate) fn note(p: &Program, epilogue: bool) {
    if RECORDING.load(Ordering::Relaxed) {
        let mut r = RECORDED.lock().unwrap_or_else(|e| e.into_inner());
        if !r.iter().any(|(q, e)| q == p && *e == epilogue) {
            r.push((p.clone(), epilogue));
        }
    }
}

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

    /// `op(in0)`: the one-op program the GPU backends run for `map` and the tensor `Map`
    /// function differentiates (built once per op).
    pub fn of_unary(op: UnaryOp) -> &'static Program {
        static P: [OnceLock<Program>; UnaryOp::ALL.len()] =
            [const { OnceLock::new() }; UnaryOp::ALL.len()];
        P[op as usize].get_or_init(|| {
            let mut b = ProgramBuilder::new();
            let x = b.input(0);
            let y = b.unary(op, x);
            b.build(&[y])
        })
    }

    /// `op(in0, in1)`: the one-op program the GPU backends run for `zip` (built once per
    /// op).
    pub fn of_binary(op: BinaryOp) -> &'static Program {
        static P: [OnceLock<Program>; BinaryOp::ALL.len()] =
            [const { OnceLock::new() }; BinaryOp::ALL.len()];
        P[op as usize].get_or_init(|| {
            let mut b = ProgramBuilder::new();
            let (x, y) = (b.input(0), b.input(1));
            let z = b.binary(op, x, y);
            b.build(&[z])
        })
    }

    /// The program `in0` (a plain matmul as a `matmul_fused` epilogue).
    pub fn identity() -> Program {
        let mut b = ProgramBuilder::new();
        let x = b.input(0);
        b.build(&[x])
    }

    /// `Some(act)` for the bias epilogue `act(in0 + in1)` (a linear or convolution layer's:
    /// `act` is `None`, relu or sigmoid), which a backend may run without interpreting.
    pub fn as_bias_act(&self) -> Option<Option<UnaryOp>> {
        use Node::*;
        match (&self.0.nodes[..], &self.0.outputs[..]) {
            ([Input(0), Input(1), Binary(BinaryOp::Add, 0, 1)], [2]) => Some(None),
            ([Input(0), Input(1), Binary(BinaryOp::Add, 0, 1), Unary(op, 2)], [3])
                if matches!(op, UnaryOp::Relu | UnaryOp::Sigmoid) =>
            {
                Some(Some(*op))
            }
            _ => None,
        }
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
                    let d = op.gradient(&mut b, Var(a), Var(i), g);
                    acc(&mut b, &mut adj[..], a, d);
                }
                Node::Binary(op, x, y) => {
                    let Some([dx, dy]) = op.gradient(&mut b, (Var(x), Var(y), Var(i)), g) else {
                        return Err(Error::Autodiff {
                            op: "fused backward",
                            msg: format!("{} has no backward", op.name()),
                        });
                    };
                    if let Some(dx) = dx {
                        acc(&mut b, &mut adj[..], x, dx);
                    }
                    if let Some(dy) = dy {
                        acc(&mut b, &mut adj[..], y, dy);
                    }
                }
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

/// Largest product (`batch * n * k * m` multiply-adds) the GPU backends run as one
/// generated `fused_matmul` kernel; a larger one is the tiled primitive matmul followed by
/// the epilogue as a `fused` kernel (two launches, but the tiled kernel's speed).
pub const FUSED_MATMUL_MAX_WORK: usize = 1 << 22;

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The course's loss as a program (also the code generators' test case).
    pub(crate) fn loss() -> Program {
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
    fn bias_epilogues_are_recognised_and_nothing_else() {
        let build = |act: Option<UnaryOp>, swap: bool| {
            let mut b = ProgramBuilder::new();
            let (x, y) = (b.input(0), b.input(1));
            let z = if swap { b.add(y, x) } else { b.add(x, y) };
            let out = act.map_or(z, |op| b.unary(op, z));
            b.build(&[out])
        };
        for act in [None, Some(UnaryOp::Relu), Some(UnaryOp::Sigmoid)] {
            assert_eq!(build(act, false).as_bias_act(), Some(act));
        }
        // Other activations, operand orders and programs run through the interpreter.
        assert_eq!(build(Some(UnaryOp::Exp), false).as_bias_act(), None);
        assert_eq!(build(None, true).as_bias_act(), None);
        assert_eq!(Program::identity().as_bias_act(), None);
        assert_eq!(loss().as_bias_act(), None);
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
}
