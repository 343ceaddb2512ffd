//! Differential fuzz: proptest builds random op programs (up to 4 dims, sizes 1 to 7,
//! permutes, views, broadcasts, chains of unary, binary, reduce and matmul ops, then a sum
//! and backward), runs each on every present backend and compares every backend, element
//! by element, with an independent f64 reference: an f64 interpreter for the values and,
//! for the gradients, an f64 reverse pass over the same program written here (each op's
//! derivative stated from calculus, not taken from `autodiff.rs` or the backward rules of
//! the tensor functions), so a wrong gradient rule fails on every backend at once.
//!
//! Tolerances come from each element's own condition, not from the tensor's largest
//! element: a value may differ from the f64 one by 2^-13 of its running error bound (the
//! sum of the magnitudes of everything rounded on the way to it, propagated through each
//! op's derivative), and a gradient element by 2^-10 of its absolute gradient (the same
//! reverse pass with every local derivative and weight replaced by its magnitude: the sum
//! over chain-rule paths of |path|). An element whose terms do not cancel is thus checked
//! to about 1e-4 (values) or 1e-3 (gradients) relative; below that, only results under
//! 1e-30 (which f32 flushes through underflow) have an absolute slack.
//!
//! 2,000 programs per run by default; set `MINITORCH_FUZZ_CASES` (for example
//! `MINITORCH_FUZZ_CASES=100000 cargo test --release --features wgpu --test fuzz`) for a
//! longer local run. A failure prints the one-line command that reruns exactly that
//! program (`MINITORCH_FUZZ_SEED=<seed>:<len> cargo test ... --test fuzz`).
//!
//! Programs avoid the points where f32 and f64 may legitimately take different branches
//! (a comparison of two nearly equal values, relu of a value within 1e-4 of 0, a max with
//! two nearly equal candidates, exp of a value above 10): the interpreter sees those in
//! its own values and picks another op, the same on every backend.

mod common;

use common::columns;
use minitorch::{Device, Result, Tensor};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The f64 reference: a contiguous tensor.
#[derive(Clone, Debug)]
struct Ref {
    shape: Vec<usize>,
    data: Vec<f64>,
}

fn size(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        s[i] = acc;
        acc *= shape[i];
    }
    s
}

/// The multi-index of ordinal `o` of `shape`.
fn index(mut o: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for i in (0..shape.len()).rev() {
        if shape[i] > 0 {
            idx[i] = o % shape[i];
            o /= shape[i];
        }
    }
    idx
}

impl Ref {
    fn map(&self, f: impl Fn(f64) -> f64) -> Ref {
        Ref {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }

    /// Element of `self` at `idx` of a broadcast shape.
    fn at_broadcast(&self, idx: &[usize]) -> f64 {
        let extra = idx.len() - self.shape.len();
        let st = strides(&self.shape);
        let pos: usize = (0..self.shape.len())
            .map(|i| {
                if self.shape[i] == 1 {
                    0
                } else {
                    idx[extra + i] * st[i]
                }
            })
            .sum();
        self.data[pos]
    }

    fn zip(&self, o: &Ref, f: impl Fn(f64, f64) -> f64) -> Ref {
        let n = self.shape.len().max(o.shape.len());
        let dim = |s: &[usize], i: usize| {
            if i + s.len() >= n {
                s[i + s.len() - n]
            } else {
                1
            }
        };
        let shape: Vec<usize> = (0..n)
            .map(|i| {
                let (a, b) = (dim(&self.shape, i), dim(&o.shape, i));
                if a == 1 {
                    b
                } else {
                    a
                }
            })
            .collect();
        let data = (0..size(&shape))
            .map(|k| {
                let idx = index(k, &shape);
                f(self.at_broadcast(&idx), o.at_broadcast(&idx))
            })
            .collect();
        Ref { shape, data }
    }

    fn reduce(&self, dim: usize, init: f64, f: impl Fn(f64, f64) -> f64) -> Ref {
        let mut shape = self.shape.clone();
        let len = shape[dim];
        shape[dim] = 1;
        let st = strides(&self.shape);
        let data = (0..size(&shape))
            .map(|k| {
                let idx = index(k, &shape);
                let base: usize = idx.iter().zip(&st).map(|(i, s)| i * s).sum();
                (0..len).fold(init, |acc, j| f(acc, self.data[base + j * st[dim]]))
            })
            .collect();
        Ref { shape, data }
    }

    fn permute(&self, order: &[usize]) -> Ref {
        let shape: Vec<usize> = order.iter().map(|&o| self.shape[o]).collect();
        let st = strides(&self.shape);
        let data = (0..size(&shape))
            .map(|k| {
                let idx = index(k, &shape);
                let pos: usize = idx.iter().zip(order).map(|(i, &o)| i * st[o]).sum();
                self.data[pos]
            })
            .collect();
        Ref { shape, data }
    }

    /// `[..batch, n, k] @ [k, m]`.
    fn matmul(&self, b: &Ref) -> Ref {
        let r = self.shape.len();
        let (n, k, m) = (self.shape[r - 2], self.shape[r - 1], b.shape[1]);
        let batch = size(&self.shape[..r - 2]);
        let mut data = vec![0.0; batch * n * m];
        for z in 0..batch {
            for i in 0..n {
                for j in 0..m {
                    data[(z * n + i) * m + j] = (0..k)
                        .map(|q| self.data[(z * n + i) * k + q] * b.data[q * m + j])
                        .sum();
                }
            }
        }
        let mut shape = self.shape[..r - 1].to_vec();
        shape.push(m);
        Ref { shape, data }
    }
}

/// A value of the program on every backend, and in f64.
#[derive(Clone)]
struct Val {
    t: Vec<Tensor>,
    r: Ref,
}

impl Val {
    fn apply(&self, f: impl Fn(&Tensor) -> Result<Tensor>, rf: impl Fn(&Ref) -> Ref) -> Val {
        Val {
            t: self.t.iter().map(|t| f(t).expect("op")).collect(),
            r: rf(&self.r),
        }
    }
}

fn devices() -> Vec<Device> {
    columns().iter().map(|c| c.device).collect()
}

fn constant(shape: &[usize], rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> Val {
    let data: Vec<f32> = (0..size(shape))
        .map(|_| rng.random_range(lo..hi) as f32)
        .collect();
    Val {
        t: devices()
            .into_iter()
            .map(|d| Tensor::from_vec(data.clone(), shape, d).expect("upload"))
            .collect(),
        r: Ref {
            shape: shape.to_vec(),
            data: data.iter().map(|&v| v as f64).collect(),
        },
    }
}

fn near_zero(r: &Ref) -> bool {
    r.data.iter().any(|&v| v != 0.0 && v.abs() < 1e-4)
}

/// Two values of `r` and `o` (broadcast) that are different but within the tolerance.
fn near_ties(a: &Ref, b: &Ref) -> bool {
    a.zip(b, |x, y| {
        let close = x != y && (x - y).abs() < 1e-3 * (1.0 + x.abs() + y.abs());
        if close {
            1.0
        } else {
            0.0
        }
    })
    .data
    .contains(&1.0)
}

/// A max along `dim` whose winner is not clear.
fn unclear_max(r: &Ref, dim: usize) -> bool {
    let st = strides(&r.shape);
    let mut shape = r.shape.clone();
    let len = shape[dim];
    shape[dim] = 1;
    (0..size(&shape)).any(|k| {
        let idx = index(k, &shape);
        let base: usize = idx.iter().zip(&st).map(|(i, s)| i * s).sum();
        let mut v: Vec<f64> = (0..len).map(|j| r.data[base + j * st[dim]]).collect();
        v.sort_by(|a, b| b.total_cmp(a));
        v.len() >= 2 && v[0] != v[1] && v[0] - v[1] < 1e-3 * (1.0 + v[0].abs())
    })
}

fn sigmoid64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// sigmoid'(x) = e^-|x| / (1 + e^-|x|)^2: no cancellation where sigmoid saturates (there
/// `s (1 - s)` in f64 is 0 while the derivative is not).
fn sigmoid_d64(x: f64) -> f64 {
    let e = (-x.abs()).exp();
    e / ((1.0 + e) * (1.0 + e))
}

/// A shape that broadcasts to `shape`: some dims set to 1, maybe fewer leading dims.
fn broadcastable(shape: &[usize], rng: &mut ChaCha8Rng) -> Vec<usize> {
    let drop = rng.random_range(0..=shape.len());
    shape[drop..]
        .iter()
        .map(|&d| if rng.random_bool(0.3) { 1 } else { d })
        .collect()
}

type F1 = Box<dyn Fn(f64) -> f64>;
type F2 = Box<dyn Fn(f64, f64) -> f64>;

/// One op of a program as the f64 reverse pass sees it.
enum Op {
    /// `y = f(x)` elementwise: `f` and `f'`.
    Unary(F1, F1),
    /// `y = f(x, c)` with `c` broadcast (a swapped op is written with `x` first): `f` and
    /// `df/dx`.
    Binary(Ref, F2, F2),
    /// Sum along `dim` times `scale` (1 for sum, the f32 `1/len` for mean).
    Sum(usize, f64),
    /// Max along `dim`: the derivative is 1 at every position holding the maximum.
    Max(usize),
    /// `y = x.permute(order)`.
    Permute(Vec<usize>),
    /// `y` = the same elements in this shape.
    View(Vec<usize>),
    /// `y = x @ w` with `w` of shape `[k, m]`.
    Matmul(Ref),
}

fn zeros(shape: &[usize]) -> Ref {
    Ref {
        shape: shape.to_vec(),
        data: vec![0.0; size(shape)],
    }
}

/// Visit every element of `x` with, for each, the positions of `y` it reaches through a
/// reduction of `dim` (the output position) and the input position.
fn reduce_pairs(x: &Ref, dim: usize) -> Vec<(usize, usize)> {
    let mut out_shape = x.shape.clone();
    out_shape[dim] = 1;
    let ost = strides(&out_shape);
    (0..size(&x.shape))
        .map(|k| {
            let mut idx = index(k, &x.shape);
            idx[dim] = 0;
            let o: usize = idx.iter().zip(&ost).map(|(i, s)| i * s).sum();
            (k, o)
        })
        .collect()
}

impl Op {
    /// The vector-Jacobian product: `g` (of `y`'s shape) to the gradient of `x`. With
    /// `abs`, every local derivative and weight is replaced by its magnitude (the absolute
    /// gradient that scales the tolerance).
    fn back(&self, x: &Ref, y: &Ref, g: &Ref, abs: bool) -> Ref {
        let m = |v: f64| if abs { v.abs() } else { v };
        match self {
            Op::Unary(_, d) => Ref {
                shape: x.shape.clone(),
                data: x
                    .data
                    .iter()
                    .zip(&g.data)
                    .map(|(&v, &gi)| m(d(v)) * gi)
                    .collect(),
            },
            Op::Binary(c, _, d) => {
                // The output has x's shape (the constant broadcasts to it).
                let data = (0..size(&x.shape))
                    .map(|k| {
                        let cv = c.at_broadcast(&index(k, &x.shape));
                        m(d(x.data[k], cv)) * g.data[k]
                    })
                    .collect();
                Ref {
                    shape: x.shape.clone(),
                    data,
                }
            }
            Op::Sum(dim, scale) => {
                let mut gx = zeros(&x.shape);
                for (k, o) in reduce_pairs(x, *dim) {
                    gx.data[k] = g.data[o] * scale;
                }
                gx
            }
            Op::Max(dim) => {
                let mut gx = zeros(&x.shape);
                for (k, o) in reduce_pairs(x, *dim) {
                    if x.data[k] == y.data[o] {
                        gx.data[k] = g.data[o];
                    }
                }
                gx
            }
            Op::Permute(order) => {
                // y[idx] = x[idx permuted back]: scatter g to x's positions.
                let mut gx = zeros(&x.shape);
                let st = strides(&x.shape);
                for (k, &gk) in g.data.iter().enumerate() {
                    let idx = index(k, &y.shape);
                    let pos: usize = idx.iter().zip(order).map(|(i, &o)| i * st[o]).sum();
                    gx.data[pos] = gk;
                }
                gx
            }
            Op::View(_) => Ref {
                shape: x.shape.clone(),
                data: g.data.clone(),
            },
            Op::Matmul(w) => {
                // gx[.., i, q] = sum_j g[.., i, j] w[q, j]
                let r = x.shape.len();
                let (n, k) = (x.shape[r - 2], x.shape[r - 1]);
                let mm = w.shape[1];
                let batch = size(&x.shape[..r - 2]);
                let mut gx = zeros(&x.shape);
                for z in 0..batch {
                    for i in 0..n {
                        for q in 0..k {
                            gx.data[(z * n + i) * k + q] = (0..mm)
                                .map(|j| g.data[(z * n + i) * mm + j] * m(w.data[q * mm + j]))
                                .sum();
                        }
                    }
                }
                gx
            }
        }
    }

    /// A bound on the rounding error an f32 evaluation can have in `y` (in units of
    /// "magnitude rounded"), from `x`'s bound `ex`: each input error carried by the
    /// derivative's magnitude, plus the magnitudes rounded by the op itself.
    fn error_bound(&self, x: &Ref, ex: &Ref, y: &Ref) -> Ref {
        match self {
            Op::Unary(_, d) => Ref {
                shape: y.shape.clone(),
                data: (0..x.data.len())
                    .map(|k| {
                        let v = x.data[k];
                        d(v).abs() * (ex.data[k] + v.abs() + 1.0) + 4.0 * y.data[k].abs()
                    })
                    .collect(),
            },
            Op::Binary(c, _, d) => Ref {
                shape: y.shape.clone(),
                data: (0..x.data.len())
                    .map(|k| {
                        let cv = c.at_broadcast(&index(k, &x.shape));
                        d(x.data[k], cv).abs() * ex.data[k] + 4.0 * (y.data[k].abs() + cv.abs())
                    })
                    .collect(),
            },
            Op::Sum(dim, scale) => {
                let len = x.shape[*dim] as f64;
                let mut e = zeros(&y.shape);
                for (k, o) in reduce_pairs(x, *dim) {
                    e.data[o] += (ex.data[k] + len * x.data[k].abs()) * scale;
                }
                for (eo, yo) in e.data.iter_mut().zip(&y.data) {
                    *eo += yo.abs();
                }
                e
            }
            Op::Max(dim) => {
                let mut e = zeros(&y.shape);
                for (k, o) in reduce_pairs(x, *dim) {
                    e.data[o] = e.data[o].max(ex.data[k]);
                }
                e
            }
            Op::Permute(order) => ex.permute(order),
            Op::View(_) => Ref {
                shape: y.shape.clone(),
                data: ex.data.clone(),
            },
            Op::Matmul(w) => {
                let r = x.shape.len();
                let (n, k) = (x.shape[r - 2], x.shape[r - 1]);
                let mm = w.shape[1];
                let batch = size(&x.shape[..r - 2]);
                let mut e = zeros(&y.shape);
                for z in 0..batch {
                    for i in 0..n {
                        for j in 0..mm {
                            e.data[(z * n + i) * mm + j] = (0..k)
                                .map(|q| {
                                    let (xv, wv) =
                                        (x.data[(z * n + i) * k + q], w.data[q * mm + j]);
                                    wv.abs() * (ex.data[(z * n + i) * k + q] + k as f64 * xv.abs())
                                })
                                .sum::<f64>()
                                + y.data[(z * n + i) * mm + j].abs();
                        }
                    }
                }
                e
            }
        }
    }
}

/// One step of the program on `x`: the new value, its description and the op.
fn step(x: &Val, rng: &mut ChaCha8Rng) -> (Val, String, Op) {
    let rank = x.r.shape.len();
    let choice = rng.random_range(0..9u32);
    let sigmoid = |x: &Val| {
        (
            x.apply(|t| t.sigmoid(), |r| r.map(sigmoid64)),
            "sigmoid".to_string(),
            Op::Unary(Box::new(sigmoid64), Box::new(sigmoid_d64)),
        )
    };
    let relu_d = |v: f64| if v > 0.0 { 1.0 } else { 0.0 };
    match choice {
        0 => {
            // unary ops, on a domain where they are finite
            let u = rng.random_range(0..6u32);
            let max_abs = x.r.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            match u {
                0 => (
                    x.apply(|t| t.neg(), |r| r.map(|v| -v)),
                    "neg".into(),
                    Op::Unary(Box::new(|v| -v), Box::new(|_| -1.0)),
                ),
                1 if !near_zero(&x.r) => (
                    x.apply(|t| t.relu(), |r| r.map(|v| v.max(0.0))),
                    "relu".into(),
                    Op::Unary(Box::new(|v| v.max(0.0)), Box::new(relu_d)),
                ),
                2 if max_abs < 10.0 => (
                    x.apply(|t| t.exp(), |r| r.map(f64::exp)),
                    "exp".into(),
                    Op::Unary(Box::new(f64::exp), Box::new(f64::exp)),
                ),
                3 if !near_zero(&x.r) => (
                    x.apply(
                        |t| t.relu()?.add_scalar(0.5)?.log(),
                        |r| r.map(|v| (v.max(0.0) + 0.5).ln()),
                    ),
                    "log(relu + 0.5)".into(),
                    Op::Unary(
                        Box::new(|v| (v.max(0.0) + 0.5).ln()),
                        Box::new(move |v| relu_d(v) / (v.max(0.0) + 0.5)),
                    ),
                ),
                4 if !near_zero(&x.r) => (
                    x.apply(
                        |t| t.relu()?.add_scalar(1.0)?.inv(),
                        |r| r.map(|v| 1.0 / (v.max(0.0) + 1.0)),
                    ),
                    "inv(relu + 1)".into(),
                    Op::Unary(
                        Box::new(|v| 1.0 / (v.max(0.0) + 1.0)),
                        Box::new(move |v| -relu_d(v) / (v.max(0.0) + 1.0).powi(2)),
                    ),
                ),
                _ => sigmoid(x),
            }
        }
        1..=3 => {
            // binary ops with a broadcast constant, on either side
            let shape = broadcastable(&x.r.shape, rng);
            let o = constant(&shape, rng, -2.0, 2.0);
            let b = rng.random_range(0..6u32);
            let swap = rng.random_bool(0.5);
            let ties = near_ties(&x.r, &o.r);
            let pair = |f: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>,
                        rf: &dyn Fn(f64, f64) -> f64| Val {
                t: x.t
                    .iter()
                    .zip(&o.t)
                    .map(|(a, c)| if swap { f(c, a) } else { f(a, c) }.expect("binary op"))
                    .collect(),
                r: if swap {
                    o.r.zip(&x.r, rf)
                } else {
                    x.r.zip(&o.r, rf)
                },
            };
            let desc = format!("{} {:?}{}", b, shape, if swap { " swapped" } else { "" });
            // f(x, c) for the op with its operands in program order, and df/dx.
            let d = |f: F2, df: F2| {
                let f: F2 = if swap {
                    Box::new(move |x, c| f(c, x))
                } else {
                    f
                };
                Op::Binary(o.r.clone(), f, df)
            };
            let lt = |a: f64, c: f64| if a < c { 1.0 } else { 0.0 };
            let gt = |a: f64, c: f64| if a > c { 1.0 } else { 0.0 };
            let (v, op) = match b {
                0 => (
                    pair(&|a, c| a.add(c), &|a, c| a + c),
                    d(Box::new(|a, c| a + c), Box::new(|_, _| 1.0)),
                ),
                1 => (
                    pair(&|a, c| a.sub(c), &|a, c| a - c),
                    // x - c, or c - x when swapped
                    d(
                        Box::new(|a, c| a - c),
                        Box::new(move |_, _| if swap { -1.0 } else { 1.0 }),
                    ),
                ),
                2 => (
                    pair(&|a, c| a.mul(c), &|a, c| a * c),
                    d(Box::new(|a, c| a * c), Box::new(|_, c| c)),
                ),
                3 if !ties => (
                    pair(&|a, c| a.lt(c), &lt),
                    d(Box::new(lt), Box::new(|_, _| 0.0)),
                ),
                4 if !ties => (
                    pair(&|a, c| a.gt(c), &gt),
                    d(Box::new(gt), Box::new(|_, _| 0.0)),
                ),
                _ => {
                    // division by a value in [1, 3]
                    let den = |t: &Tensor| t.mul(t)?.add_scalar(1.0);
                    (
                        Val {
                            t: x.t
                                .iter()
                                .zip(&o.t)
                                .map(|(a, c)| den(c).and_then(|dc| a.div(&dc)).expect("div"))
                                .collect(),
                            r: x.r.zip(&o.r, |a, c| a / (c * c + 1.0)),
                        },
                        Op::Binary(
                            o.r.clone(),
                            Box::new(|a, c| a / (c * c + 1.0)),
                            Box::new(|_, c| 1.0 / (c * c + 1.0)),
                        ),
                    )
                }
            };
            (v, format!("binary {desc}"), op)
        }
        4 if rank >= 1 => {
            let dim = rng.random_range(0..rank);
            let kind = rng.random_range(0..3u32);
            let len = x.r.shape[dim];
            if kind == 1 && len > 0 && !unclear_max(&x.r, dim) {
                let v = x.apply(
                    |t| t.max(dim),
                    |r| r.reduce(dim, f64::NEG_INFINITY, f64::max),
                );
                (v, format!("max {dim}"), Op::Max(dim))
            } else if kind == 2 && len > 0 {
                let scale = (1.0 / len as f32) as f64;
                let v = x.apply(
                    |t| t.mean(dim),
                    |r| r.reduce(dim, 0.0, |a, b| a + b).map(|s| s * scale),
                );
                (v, format!("mean {dim}"), Op::Sum(dim, scale))
            } else {
                (
                    x.apply(|t| t.sum(dim), |r| r.reduce(dim, 0.0, |a, b| a + b)),
                    format!("sum {dim}"),
                    Op::Sum(dim, 1.0),
                )
            }
        }
        5 if rank >= 2 => {
            let mut order: Vec<usize> = (0..rank).collect();
            for i in (1..rank).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            let o = order.clone();
            (
                x.apply(|t| t.permute(&o), |r| r.permute(&o)),
                format!("permute {order:?}"),
                Op::Permute(order),
            )
        }
        6 => {
            // view: flatten, or insert a dimension of 1 (rank stays <= 4)
            let n = size(&x.r.shape);
            let shape = if rank >= 4 || rng.random_bool(0.5) {
                vec![n]
            } else {
                let mut s = x.r.shape.clone();
                s.insert(rng.random_range(0..=rank), 1);
                s
            };
            let s2 = shape.clone();
            let v = x.apply(
                |t| t.contiguous()?.view(&s2),
                |r| Ref {
                    shape: s2.clone(),
                    data: r.data.clone(),
                },
            );
            (v, format!("view {shape:?}"), Op::View(shape))
        }
        7 if rank >= 2 => {
            let k = x.r.shape[rank - 1];
            let m = rng.random_range(1..=7);
            let w = constant(&[k, m], rng, -1.0, 1.0);
            let v = Val {
                t: x.t
                    .iter()
                    .zip(&w.t)
                    .map(|(a, b)| a.matmul(b).expect("matmul"))
                    .collect(),
                r: x.r.matmul(&w.r),
            };
            (v, format!("matmul [{k}, {m}]"), Op::Matmul(w.r))
        }
        _ => sigmoid(x),
    }
}

/// `got` within `rel * bound[i]` (plus [`UNDERFLOW`]) of `want[i]`, element by element
/// (NaN where NaN is expected).
fn agree(
    what: &str,
    got: &[f32],
    want: &[f64],
    bound: &[f64],
    rel: f64,
) -> std::result::Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} elements, expected {}",
            got.len(),
            want.len()
        ));
    }
    for (i, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
        let tol = rel * b + UNDERFLOW;
        let ok = (g.is_nan() && w.is_nan()) || g as f64 == w || ((g as f64) - w).abs() <= tol;
        if !ok {
            return Err(format!(
                "{what}: element {i}: {g:e} vs f64 {w:e} (tolerance {tol:e} = {rel:e} x the element's bound {b:e})"
            ));
        }
    }
    Ok(())
}

/// The absolute slack for results f32 cannot hold: an intermediate below f32's normal
/// range (2^-126, about 1.2e-38) is flushed towards 0 (a saturated sigmoid's derivative is
/// e^-|x|), and later factors of the program may scale that loss by a few orders.
const UNDERFLOW: f64 = 1e-30;

/// Values may differ from f64 by this fraction of their running error bound.
const VALUE_REL: f64 = 1.0 / 8192.0;
/// Gradients may differ from the f64 reverse pass by this fraction of their absolute
/// gradient.
const GRAD_REL: f64 = 1.0 / 1024.0;

/// The one-line command that reruns the program `seed`, `len`.
fn rerun_command(seed: u64, len: usize) -> String {
    let mut features = Vec::new();
    if cfg!(feature = "wgpu") {
        features.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        features.push("cuda");
    }
    let features = if features.is_empty() {
        String::new()
    } else {
        format!(" --features {}", features.join(","))
    };
    format!("MINITORCH_FUZZ_SEED={seed}:{len} cargo test{features} --test fuzz")
}

/// Build and check the program of `seed` with `len` steps.
fn run_program(seed: u64, len: usize) -> std::result::Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rank = rng.random_range(0..=4);
    // No empty tensors here (they are the hostile and conformance tests' business): every
    // program has elements to check.
    let shape: Vec<usize> = (0..rank).map(|_| rng.random_range(1..=7)).collect();
    let x = constant(&shape, &mut rng, -2.0, 2.0);
    for t in &x.t {
        t.set_requires_grad(true);
    }
    let mut v = x.clone();
    let mut log = vec![format!("x {shape:?}")];
    // The f64 values before each op, the ops, and the values' error bounds.
    let mut tape: Vec<(Ref, Op)> = Vec::new();
    let mut err = x.r.map(f64::abs);
    for _ in 0..len {
        let (next, desc, op) = step(&v, &mut rng);
        err = op.error_bound(&v.r, &err, &next.r);
        tape.push((v.r.clone(), op));
        v = next;
        log.push(desc);
    }
    let ctx = |e: String| {
        format!(
            "seed {seed}, len {len}: program {}: {e}\nrerun: {}",
            log.join(" -> "),
            rerun_command(seed, len)
        )
    };
    // The f64 reverse pass for d(sum y)/dx, and its absolute twin.
    let mut g = v.r.map(|_| 1.0);
    let mut gabs = g.clone();
    let mut y = v.r.clone();
    for (xr, op) in tape.iter().rev() {
        g = op.back(xr, &y, &g, false);
        gabs = op.back(xr, &y, &gabs, true);
        y = xr.clone();
    }
    for (k, d) in devices().iter().enumerate() {
        let vals = v.t[k].to_vec().map_err(|e| ctx(e.to_string()))?;
        agree(
            &format!("{d} values vs f64"),
            &vals,
            &v.r.data,
            &err.data,
            VALUE_REL,
        )
        .map_err(ctx)?;
        v.t[k]
            .sum_all()
            .and_then(|s| s.backward())
            .map_err(|e| ctx(format!("{d}: backward: {e}")))?;
        let grads = match x.t[k].grad() {
            Some(g) => g.to_vec().map_err(|e| ctx(e.to_string()))?,
            None => vec![0.0; size(&shape)],
        };
        agree(
            &format!("{d} gradients vs the f64 reverse pass"),
            &grads,
            &g.data,
            &gabs.data,
            GRAD_REL,
        )
        .map_err(ctx)?;
    }
    Ok(())
}

fn cases() -> u32 {
    if replay().is_some() {
        return 1;
    }
    std::env::var("MINITORCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// `MINITORCH_FUZZ_SEED=<seed>:<len>`: rerun that one program.
fn replay() -> Option<(u64, usize)> {
    let v = std::env::var("MINITORCH_FUZZ_SEED").ok()?;
    let (s, l) = v
        .split_once(':')
        .expect("MINITORCH_FUZZ_SEED is <seed>:<len>");
    Some((
        s.parse().expect("MINITORCH_FUZZ_SEED: the seed is a u64"),
        l.parse()
            .expect("MINITORCH_FUZZ_SEED: the length is a number"),
    ))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_programs_agree_with_f64(seed in any::<u64>(), len in 1usize..8) {
        let (seed, len) = replay().unwrap_or((seed, len));
        if let Err(e) = run_program(seed, len) {
            eprintln!("{e}");
            prop_assert!(false, "{}", e);
        }
    }
}

/// The reference itself: the f64 reverse pass against central differences of the f64
/// interpreter on a few fixed programs, so a wrong derivative stated here is caught too.
#[test]
fn reverse_pass_matches_central_differences() {
    for seed in 0..40u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shape = vec![2, 3];
        let x0 = constant(&shape, &mut rng, -2.0, 2.0);
        let mut tape = Vec::new();
        let mut v = x0.clone();
        let mut ops_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xd1ff);
        for _ in 0..4 {
            let (next, _, op) = step(&v, &mut ops_rng);
            tape.push((v.r.clone(), op));
            v = next;
        }
        // Forward in f64 only, replaying the recorded ops on a perturbed input.
        let forward = |x: &Ref| -> f64 {
            let mut cur = x.clone();
            for (_, op) in &tape {
                cur = apply_f64(op, &cur);
            }
            cur.data.iter().sum()
        };
        let mut g = v.r.map(|_| 1.0);
        let mut y = v.r.clone();
        for (xr, op) in tape.iter().rev() {
            g = op.back(xr, &y, &g, false);
            y = xr.clone();
        }
        for i in 0..size(&shape) {
            let h = 1e-6;
            let (mut xp, mut xm) = (x0.r.clone(), x0.r.clone());
            xp.data[i] += h;
            xm.data[i] -= h;
            let fd = (forward(&xp) - forward(&xm)) / (2.0 * h);
            assert!(
                (fd - g.data[i]).abs() <= 1e-5 * (1.0 + fd.abs()),
                "seed {seed}: element {i}: reverse pass {} vs central difference {fd}",
                g.data[i]
            );
        }
    }
}

/// An op of the tape applied to an f64 value alone (for the central differences).
fn apply_f64(op: &Op, x: &Ref) -> Ref {
    match op {
        Op::Unary(f, _) => x.map(f),
        Op::Binary(c, f, _) => Ref {
            shape: x.shape.clone(),
            data: (0..size(&x.shape))
                .map(|k| f(x.data[k], c.at_broadcast(&index(k, &x.shape))))
                .collect(),
        },
        Op::Sum(dim, scale) => x.reduce(*dim, 0.0, |a, b| a + b).map(|s| s * scale),
        Op::Max(dim) => x.reduce(*dim, f64::NEG_INFINITY, f64::max),
        Op::Permute(order) => x.permute(order),
        Op::View(shape) => Ref {
            shape: shape.clone(),
            data: x.data.clone(),
        },
        Op::Matmul(w) => x.matmul(w),
    }
}
