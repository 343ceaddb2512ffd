//! Backpropagation shared by the scalar engine (module 1) and tensors (module 2):
//! MiniTorch's `autodiff.py`. A [`Variable`] knows its parents and how to push a
//! derivative back to them (the chain rule); this module orders the graph and runs it.

use std::collections::{HashMap, HashSet};

use smallvec::SmallVec;

use crate::error::Result;

/// A function's inputs, or what flows back to them: up to three inline (every primitive
/// has at most three), so building and walking a graph allocates no list per node.
pub type Inputs<T> = SmallVec<[T; 3]>;

/// Nodes reserved up front by a backward pass (a training step's graph fits, so the
/// work lists and maps do not grow node by node).
const GRAPH_CAPACITY: usize = 64;

/// A node of a computation graph.
pub trait Variable: Clone {
    /// The derivative type (`f64` for scalars, a tensor for tensors).
    type Grad: Clone;
    /// A number that identifies the node.
    fn unique_id(&self) -> usize;
    /// True for a variable created by the user (no history) that wants a derivative.
    fn is_leaf(&self) -> bool;
    /// True for a variable that needs no derivative (no history, no grad wanted).
    fn is_constant(&self) -> bool;
    /// The inputs of the function that produced this variable.
    fn parents(&self) -> Inputs<Self>;
    /// Derivatives of the inputs from the derivative of this output (the chain rule).
    fn chain_rule(&self, d_output: &Self::Grad) -> Result<Inputs<(Self, Self::Grad)>>;
    /// Add `d` to a leaf's stored derivative.
    fn accumulate_derivative(&self, d: Self::Grad) -> Result<()>;
    /// `a + b` for two derivatives of the same variable.
    fn add_grads(a: &Self::Grad, b: &Self::Grad) -> Result<Self::Grad>;
}

/// The non-constant variables reachable from `root`, each after every variable that
/// depends on it (root first). Iterative, so deep graphs do not overflow the stack.
pub fn topological_sort<V: Variable>(root: &V) -> Vec<V> {
    let mut order = Vec::with_capacity(GRAPH_CAPACITY);
    let mut visited = HashSet::with_capacity(GRAPH_CAPACITY);
    // (node, children pushed yet?)
    let mut stack = Vec::with_capacity(GRAPH_CAPACITY);
    stack.push((root.clone(), false));
    while let Some((v, expanded)) = stack.pop() {
        if expanded {
            order.push(v);
            continue;
        }
        if v.is_constant() || !visited.insert(v.unique_id()) {
            continue;
        }
        stack.push((v.clone(), true));
        for p in v.parents() {
            if !p.is_constant() && !visited.contains(&p.unique_id()) {
                stack.push((p, false));
            }
        }
    }
    order.reverse();
    order
}

/// Run backpropagation from `root` with derivative `d_output`, accumulating the results
/// into the leaves.
pub fn backpropagate<V: Variable>(root: &V, d_output: V::Grad) -> Result<()> {
    let order = topological_sort(root);
    let mut grads: HashMap<usize, V::Grad> = HashMap::with_capacity(GRAPH_CAPACITY);
    grads.insert(root.unique_id(), d_output);
    for v in order {
        let Some(d) = grads.remove(&v.unique_id()) else {
            continue;
        };
        if v.is_leaf() {
            v.accumulate_derivative(d)?;
            continue;
        }
        for (parent, dp) in v.chain_rule(&d)? {
            if parent.is_constant() {
                continue;
            }
            let id = parent.unique_id();
            let sum = match grads.remove(&id) {
                Some(prev) => V::add_grads(&prev, &dp)?,
                None => dp,
            };
            grads.insert(id, sum);
        }
    }
    Ok(())
}

/// Drop a graph without recursion: `take_inputs` gets a node that is about to be freed
/// and returns its inputs when it was the last handle to it. Dropping a long chain
/// (a sum of many terms, a 100k-op tape) recursively would overflow the stack; scalars
/// and tensors both call this from their `Drop`.
pub(crate) fn unlink_iteratively<T>(
    inputs: Inputs<T>,
    take_inputs: impl Fn(T) -> Option<Inputs<T>>,
) {
    let mut stack: SmallVec<[T; 8]> = inputs.into_iter().collect();
    while let Some(node) = stack.pop() {
        if let Some(more) = take_inputs(node) {
            stack.extend(more);
        }
    }
}

/// Central difference `(f(x + eps) - f(x - eps)) / (2 eps)` of argument `arg` of `f`.
pub fn central_difference(f: impl Fn(&[f64]) -> f64, vals: &[f64], arg: usize, eps: f64) -> f64 {
    let mut up = vals.to_vec();
    let mut down = vals.to_vec();
    up[arg] += eps;
    down[arg] -= eps;
    (f(&up) - f(&down)) / (2.0 * eps)
}
