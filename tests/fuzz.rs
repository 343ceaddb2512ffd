//! Differential fuzz: proptest builds random op programs (up to 4 dims, sizes 0 to 7,
//! permutes, views, broadcasts, chains of unary, binary, reduce and matmul ops, then a sum
//! and backward), runs each on every present backend and compares every backend with the
//! CPU (values and gradients), and the CPU with an f64 interpreter of the same program
//! (values). 2,000 programs per run by default; set `MINITORCH_FUZZ_CASES` (for example
//! `MINITORCH_FUZZ_CASES=100000 cargo test --release --features wgpu --test fuzz`) for a
//! longer local run. A failure prints the seed of the program, which proptest also
//! shrinks and records.
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

/// A shape that broadcasts to `shape`: some dims set to 1, maybe fewer leading dims.
fn broadcastable(shape: &[usize], rng: &mut ChaCha8Rng) -> Vec<usize> {
    let drop = rng.random_range(0..=shape.len());
    shape[drop..]
        .iter()
        .map(|&d| if rng.random_bool(0.3) { 1 } else { d })
        .collect()
}

/// One step of the program on `x`; returns the new value and its description.
fn step(x: &Val, rng: &mut ChaCha8Rng) -> (Val, String) {
    let rank = x.r.shape.len();
    let choice = rng.random_range(0..9u32);
    match choice {
        0 => {
            // unary ops, on a domain where they are finite
            let u = rng.random_range(0..6u32);
            let max_abs = x.r.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            match u {
                0 => (x.apply(|t| t.neg(), |r| r.map(|v| -v)), "neg".into()),
                1 if !near_zero(&x.r) => (
                    x.apply(|t| t.relu(), |r| r.map(|v| v.max(0.0))),
                    "relu".into(),
                ),
                2 if max_abs < 10.0 => (x.apply(|t| t.exp(), |r| r.map(f64::exp)), "exp".into()),
                3 if !near_zero(&x.r) => (
                    x.apply(
                        |t| t.relu()?.add_scalar(0.5)?.log(),
                        |r| r.map(|v| (v.max(0.0) + 0.5).ln()),
                    ),
                    "log(relu + 0.5)".into(),
                ),
                4 if !near_zero(&x.r) => (
                    x.apply(
                        |t| t.relu()?.add_scalar(1.0)?.inv(),
                        |r| r.map(|v| 1.0 / (v.max(0.0) + 1.0)),
                    ),
                    "inv(relu + 1)".into(),
                ),
                _ => (
                    x.apply(|t| t.sigmoid(), |r| r.map(sigmoid64)),
                    "sigmoid".into(),
                ),
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
            let v = match b {
                0 => pair(&|a, c| a.add(c), &|a, c| a + c),
                1 => pair(&|a, c| a.sub(c), &|a, c| a - c),
                2 => pair(&|a, c| a.mul(c), &|a, c| a * c),
                3 if !ties => pair(&|a, c| a.lt(c), &|a, c| if a < c { 1.0 } else { 0.0 }),
                4 if !ties => pair(&|a, c| a.gt(c), &|a, c| if a > c { 1.0 } else { 0.0 }),
                _ => {
                    // division by a value in [1, 3]
                    let den = |t: &Tensor| t.mul(t)?.add_scalar(1.0);
                    Val {
                        t: x.t
                            .iter()
                            .zip(&o.t)
                            .map(|(a, c)| den(c).and_then(|dc| a.div(&dc)).expect("div"))
                            .collect(),
                        r: x.r.zip(&o.r, |a, c| a / (c * c + 1.0)),
                    }
                }
            };
            (v, format!("binary {desc}"))
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
                (v, format!("max {dim}"))
            } else if kind == 2 && len > 0 {
                let v = x.apply(
                    |t| t.mean(dim),
                    |r| {
                        r.reduce(dim, 0.0, |a, b| a + b)
                            .map(|s| s * (1.0 / len as f32) as f64)
                    },
                );
                (v, format!("mean {dim}"))
            } else {
                (
                    x.apply(|t| t.sum(dim), |r| r.reduce(dim, 0.0, |a, b| a + b)),
                    format!("sum {dim}"),
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
            (v, format!("view {shape:?}"))
        }
        7 if rank >= 2 => {
            let k = x.r.shape[rank - 1];
            let m = rng.random_range(0..=7);
            let w = constant(&[k, m], rng, -1.0, 1.0);
            let v = Val {
                t: x.t
                    .iter()
                    .zip(&w.t)
                    .map(|(a, b)| a.matmul(b).expect("matmul"))
                    .collect(),
                r: x.r.matmul(&w.r),
            };
            (v, format!("matmul [{k}, {m}]"))
        }
        _ => (
            x.apply(|t| t.sigmoid(), |r| r.map(sigmoid64)),
            "sigmoid".into(),
        ),
    }
}

/// `got` within 1e-3 max(1, max |want|) of `want`, element by element.
fn agree(what: &str, got: &[f32], want: &[f64]) -> std::result::Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} elements, expected {}",
            got.len(),
            want.len()
        ));
    }
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok =
            (g.is_nan() && w.is_nan()) || g as f64 == w || ((g as f64) - w).abs() <= 1e-3 * scale;
        if !ok {
            return Err(format!(
                "{what}: element {i}: {g:e} vs {w:e} (scale {scale:e})"
            ));
        }
    }
    Ok(())
}

/// Build and check the program of `seed` with `len` steps.
fn run_program(seed: u64, len: usize) -> std::result::Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rank = rng.random_range(0..=4);
    let shape: Vec<usize> = (0..rank).map(|_| rng.random_range(0..=7)).collect();
    let x = constant(&shape, &mut rng, -2.0, 2.0);
    for t in &x.t {
        t.set_requires_grad(true);
    }
    let mut v = x.clone();
    let mut log = vec![format!("x {shape:?}")];
    for _ in 0..len {
        let (next, desc) = step(&v, &mut rng);
        v = next;
        log.push(desc);
    }
    let ctx = |e: String| format!("seed {seed}: program {}: {e}", log.join(" -> "));
    let devs = devices();
    let cpu_vals = v.t[0].to_vec().map_err(|e| ctx(e.to_string()))?;
    agree("cpu vs f64", &cpu_vals, &v.r.data).map_err(ctx)?;
    let mut grads = Vec::new();
    for (t, leaf) in v.t.iter().zip(&x.t) {
        t.sum_all()
            .and_then(|s| s.backward())
            .map_err(|e| ctx(format!("backward: {e}")))?;
        let g = match leaf.grad() {
            Some(g) => g.to_vec().map_err(|e| ctx(e.to_string()))?,
            None => vec![0.0; size(&shape)],
        };
        grads.push(g);
    }
    for (k, d) in devs.iter().enumerate().skip(1) {
        let vals = v.t[k].to_vec().map_err(|e| ctx(e.to_string()))?;
        let cpu64: Vec<f64> = cpu_vals.iter().map(|&c| c as f64).collect();
        agree(&format!("{d} vs cpu values"), &vals, &cpu64).map_err(ctx)?;
        let g64: Vec<f64> = grads[0].iter().map(|&c| c as f64).collect();
        agree(&format!("{d} vs cpu gradients"), &grads[k], &g64).map_err(ctx)?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("MINITORCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_programs_agree_everywhere(seed in any::<u64>(), len in 1usize..8) {
        if let Err(e) = run_program(seed, len) {
            prop_assert!(false, "{}", e);
        }
    }
}
