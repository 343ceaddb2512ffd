//! Module 2 and 3: tensor forward ops against f64 host references on non-contiguous
//! layouts, gradient checks of every differentiable function, and matmul forward and
//! backward at the course's sizes (MiniTorch's `test_tensor.py`, `test_tensor_general.py`).
//!
//! The device is the CPU unless `MINITORCH_TEST_DEVICE` names another (`wgpu`, `cuda`), so
//! the same checks run on a GPU backend built with its feature.

use minitorch::tensor::grad_check::grad_check;
use minitorch::{Device, Result, Tensor};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ----- host side: the reference ---------------------------------------------------------

fn device() -> Device {
    match std::env::var("MINITORCH_TEST_DEVICE") {
        Ok(s) => Device::parse(&s).expect("MINITORCH_TEST_DEVICE"),
        Err(_) => Device::Cpu,
    }
}

/// A host array in row-major order, the reference side of every test.
#[derive(Clone, Debug)]
struct Host {
    shape: Vec<usize>,
    data: Vec<f64>,
}

fn size_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major multi-index of `ord` (written here, not taken from the library).
fn unravel(mut ord: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = ord % shape[d];
        ord /= shape[d];
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (i, d)| acc * d + i)
}

impl Host {
    fn new(shape: &[usize], data: Vec<f64>) -> Host {
        assert_eq!(size_of(shape), data.len());
        Host {
            shape: shape.to_vec(),
            data,
        }
    }

    /// The element a broadcast read at `big` (an index of a larger shape) sees.
    fn at_broadcast(&self, big: &[usize]) -> f64 {
        let extra = big.len() - self.shape.len();
        let idx: Vec<usize> = self
            .shape
            .iter()
            .enumerate()
            .map(|(k, &d)| if d == 1 { 0 } else { big[extra + k] })
            .collect();
        self.data[ravel(&idx, &self.shape)]
    }

    fn map(&self, f: impl Fn(f64) -> f64) -> Host {
        Host::new(&self.shape, self.data.iter().map(|&x| f(x)).collect())
    }

    /// Reduce dimension `dim` (kept with size 1).
    fn reduce(&self, dim: usize, start: f64, f: impl Fn(f64, f64) -> f64) -> Host {
        let mut shape = self.shape.clone();
        shape[dim] = 1;
        let data = (0..size_of(&shape))
            .map(|o| {
                let mut idx = unravel(o, &shape);
                (0..self.shape[dim]).fold(start, |acc, j| {
                    idx[dim] = j;
                    f(acc, self.data[ravel(&idx, &self.shape)])
                })
            })
            .collect();
        Host::new(&shape, data)
    }
}

/// The broadcast shape, computed here independently of the library.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; n - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(a), pad(b));
    pa.iter()
        .zip(&pb)
        .map(|(&x, &y)| {
            assert!(x == y || x == 1 || y == 1, "test bug: {a:?} and {b:?}");
            x.max(y)
        })
        .collect()
}

fn zip_host(a: &Host, b: &Host, f: impl Fn(f64, f64) -> f64) -> Host {
    let shape = broadcast_shape(&a.shape, &b.shape);
    let data = (0..size_of(&shape))
        .map(|o| {
            let idx = unravel(o, &shape);
            f(a.at_broadcast(&idx), b.at_broadcast(&idx))
        })
        .collect();
    Host::new(&shape, data)
}

/// Naive batched matmul with batch broadcasting, in f64.
fn matmul_host(a: &Host, b: &Host) -> Host {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (n, k, m) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
    assert_eq!(k, b.shape[rb - 2]);
    let batch = broadcast_shape(&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let mut shape = batch.clone();
    shape.extend([n, m]);
    let mut data = vec![0.0; size_of(&shape)];
    // Base of batch `z` of an operand: broadcast batch dims read index 0.
    let base = |h: &Host, bi: &[usize], rows: usize, cols: usize| {
        let hb = &h.shape[..h.shape.len() - 2];
        let extra = bi.len() - hb.len();
        let idx: Vec<usize> = hb
            .iter()
            .enumerate()
            .map(|(j, &d)| if d == 1 { 0 } else { bi[extra + j] })
            .collect();
        ravel(&idx, hb) * rows * cols
    };
    for z in 0..size_of(&batch) {
        let bi = unravel(z, &batch);
        let (ab, bb) = (base(a, &bi, n, k), base(b, &bi, k, m));
        for i in 0..n {
            for j in 0..m {
                let s: f64 = (0..k)
                    .map(|p| a.data[ab + i * k + p] * b.data[bb + p * m + j])
                    .sum();
                data[(z * n + i) * m + j] = s;
            }
        }
    }
    Host::new(&shape, data)
}

/// Swap the last two dims.
fn transpose_host(a: &Host) -> Host {
    let r = a.shape.len();
    let mut shape = a.shape.clone();
    shape.swap(r - 2, r - 1);
    let data = (0..a.data.len())
        .map(|o| {
            let mut idx = unravel(o, &shape);
            idx.swap(r - 2, r - 1);
            a.data[ravel(&idx, &a.shape)]
        })
        .collect();
    Host::new(&shape, data)
}

/// Sum a broadcast result back to `shape` (leading dims dropped, size-1 dims summed).
fn sum_to(g: &Host, shape: &[usize]) -> Host {
    let mut out = vec![0.0; size_of(shape)];
    let extra = g.shape.len() - shape.len();
    for (o, &v) in g.data.iter().enumerate() {
        let idx = unravel(o, &g.shape);
        let small: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(k, &d)| if d == 1 { 0 } else { idx[extra + k] })
            .collect();
        out[ravel(&small, shape)] += v;
    }
    Host::new(shape, out)
}

fn assert_close_to(name: &str, got: &Tensor, want: &Host, rtol: f64, atol: f64) {
    assert_eq!(got.shape(), &want.shape[..], "{name}: shape");
    let v = got
        .to_vec()
        .unwrap_or_else(|e| panic!("{name}: to_vec: {e}"));
    for (i, (&g, &w)) in v.iter().zip(&want.data).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            ((g as f64) - w).abs() <= atol + rtol * w.abs()
        };
        assert!(
            ok,
            "{name}: element {i} (index {:?} of {:?}): got {g}, want {w}",
            unravel(i, &want.shape),
            want.shape
        );
    }
}

// ----- tensors laid out non-contiguously ---------------------------------------------------

/// A tensor holding `host` (row-major values) in a non-contiguous layout: the storage is
/// a permutation of the dimensions, with gaps between elements (filled with NaN, so a read
/// from a wrong position shows) and an offset. It is built directly from a storage, the
/// way a backend sees permuted views.
fn strided_tensor(host: &Host, rng: &mut ChaCha8Rng) -> Tensor {
    let n = host.shape.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    // Storage dimension order[i] holds logical dimension i.
    let mut storage_shape = vec![0; n];
    for (i, &o) in order.iter().enumerate() {
        storage_shape[o] = host.shape[i];
    }
    let gap = rng.random_range(1..=2usize);
    let offset = rng.random_range(0..3usize);
    let mut storage_strides = vec![0; n];
    let mut acc = gap;
    for d in (0..n).rev() {
        storage_strides[d] = acc;
        acc *= storage_shape[d];
    }
    let len = offset + acc;
    let mut storage = vec![f32::NAN; len];
    for (ord, &v) in host.data.iter().enumerate() {
        let idx = unravel(ord, &host.shape);
        let pos: usize = offset
            + (0..n)
                .map(|i| idx[i] * storage_strides[order[i]])
                .sum::<usize>();
        storage[pos] = v as f32;
    }
    let backend = device().backend().expect("backend");
    let st = backend.upload(&storage).expect("upload");
    let strides: Vec<usize> = (0..n).map(|i| storage_strides[order[i]]).collect();
    let layout = minitorch::Layout::new(host.shape.clone(), strides, offset).unwrap();
    let t = Tensor::from_storage(st, layout, backend);
    let back = t.to_vec().unwrap();
    for (i, (&b, &h)) in back.iter().zip(&host.data).enumerate() {
        assert_eq!(b, h as f32, "strided tensor element {i} reads back wrong");
    }
    t
}

/// Random values uniform in `[lo, hi)`, rounded to f32 so host and device see the same.
fn random_host(shape: &[usize], lo: f64, hi: f64, rng: &mut ChaCha8Rng) -> Host {
    let data = (0..size_of(shape))
        .map(|_| rng.random_range(lo..hi) as f32 as f64)
        .collect();
    Host::new(shape, data)
}

/// Shapes of rank 1 to 4 with dimensions 1 to 5 (size-1 dimensions included).
fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=5, 1..=4)
}

/// Two shapes that broadcast: copies of `big` with some dimensions set to 1 and, for one
/// of them, leading dimensions dropped.
fn broadcast_pair(big: &[usize], rng: &mut ChaCha8Rng) -> (Vec<usize>, Vec<usize>) {
    let mut a = big.to_vec();
    let mut b = big.to_vec();
    for d in 0..big.len() {
        match rng.random_range(0..4) {
            0 => a[d] = 1,
            1 => b[d] = 1,
            _ => {}
        }
    }
    let drop = rng.random_range(0..big.len());
    if rng.random_bool(0.5) {
        a.drain(..drop);
    } else {
        b.drain(..drop);
    }
    (a, b)
}

// ----- forward: the course's MathTest functions -----------------------------------------

type TensorFn = fn(&Tensor) -> Result<Tensor>;
type HostFn = fn(f64) -> f64;

fn one_arg_cases() -> Vec<(&'static str, TensorFn, HostFn)> {
    vec![
        ("neg", |x| -x, |x| -x),
        ("add_constant", |x| x + 5.0, |x| x + 5.0),
        ("sub_constant", |x| x - 5.0, |x| x - 5.0),
        ("mult_constant", |x| x * 5.0, |x| x * 5.0),
        ("div_constant", |x| x / 5.0, |x| x / 5.0),
        ("square", |x| x * x, |x| x * x),
        ("cube", |x| &(x * x)? * x, |x| x * x * x),
        ("sig", |x| x.sigmoid(), |x| 1.0 / (1.0 + (-x).exp())),
        ("tanh", |x| x.tanh(), |x| x.tanh()),
        // The course's log(x + 100000) and exp(x - 200) cannot fail: the first is ln(1e5)
        // whatever x is (to 1e-4), the second underflows to 0 within the tolerance. These
        // keep their spirit (log of a shifted argument, exp of a shifted one) over ranges
        // where a wrong function is visible: ln over [0.25, 100], exp over [e^-3.5, e^1.5].
        (
            "log",
            |x| (x * x)?.add_scalar(0.25)?.log(),
            |x| (x * x + 0.25).ln(),
        ),
        ("log_positive", |x| (x + 11.0)?.log(), |x| (x + 11.0).ln()),
        ("relu", |x| (x + 5.5)?.relu(), |x| (x + 5.5).max(0.0)),
        ("exp", |x| x.exp(), |x| x.exp()),
        (
            "exp_shifted",
            |x| x.mul_scalar(0.25)?.add_scalar(-1.0)?.exp(),
            |x| (x / 4.0 - 1.0).exp(),
        ),
        (
            "explog",
            |x| (x * x)?.add_scalar(0.25)?.log()? + x.mul_scalar(0.25)?.add_scalar(-1.0)?.exp()?,
            |x| (x * x + 0.25).ln() + (x / 4.0 - 1.0).exp(),
        ),
        ("inv", |x| 1.0 / &(x + 3.5)?, |x| 1.0 / (x + 3.5)),
        ("inv_method", |x| x.inv(), |x| 1.0 / x),
    ]
}

type TensorFn2 = fn(&Tensor, &Tensor) -> Result<Tensor>;
type HostFn2 = fn(f64, f64) -> f64;

fn two_arg_cases() -> Vec<(&'static str, TensorFn2, HostFn2)> {
    // Comparisons are referenced in f32 arithmetic, since that decides which side of the
    // boundary an element falls on.
    vec![
        ("add2", |a, b| a + b, |a, b| a + b),
        ("sub2", |a, b| a - b, |a, b| a - b),
        ("mul2", |a, b| a * b, |a, b| a * b),
        ("div2", |a, b| a / &(b + 5.5)?, |a, b| a / (b + 5.5)),
        (
            "gt2",
            |a, b| (a + 1.2)?.gt(b),
            |a, b| {
                if (a as f32 + 1.2f32) > b as f32 {
                    1.0
                } else {
                    0.0
                }
            },
        ),
        (
            "lt2",
            |a, b| (a + 1.2)?.lt(b),
            |a, b| {
                if (a as f32 + 1.2f32) < b as f32 {
                    1.0
                } else {
                    0.0
                }
            },
        ),
        (
            "eq2",
            |a, b| a.eq(&(b + 5.5)?),
            |a, b| {
                if a as f32 == b as f32 + 5.5f32 {
                    1.0
                } else {
                    0.0
                }
            },
        ),
        (
            "is_close",
            |a, b| (a * 0.001)?.is_close(&(b * 0.001)?),
            |a, b| {
                if (a as f32 * 0.001f32 - b as f32 * 0.001f32).abs() < 1e-2 {
                    1.0
                } else {
                    0.0
                }
            },
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn one_arg_forward(shape in shape_strategy(), seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let host = random_host(&shape, -10.0, 10.0, &mut rng);
        let t = strided_tensor(&host, &mut rng);
        for (name, f, h) in one_arg_cases() {
            let got = f(&t).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            // inv has a pole at 0: skip draws right on it (the f32 rounding dominates).
            if name == "inv_method" && host.data.iter().any(|x| x.abs() < 1e-3) {
                continue;
            }
            assert_close_to(name, &got, &host.map(h), 1e-5, 1e-5);
        }
    }

    #[test]
    fn two_arg_forward(big in shape_strategy(), seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (sa, sb) = broadcast_pair(&big, &mut rng);
        let ha = random_host(&sa, -10.0, 10.0, &mut rng);
        let hb = random_host(&sb, -10.0, 10.0, &mut rng);
        let a = strided_tensor(&ha, &mut rng);
        let b = strided_tensor(&hb, &mut rng);
        assert_close_to("eq_self", &a.eq(&a).unwrap(), &ha.map(|_| 1.0), 0.0, 0.0);
        for (name, f, h) in two_arg_cases() {
            let got = f(&a, &b).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            assert_close_to(name, &got, &zip_host(&ha, &hb, h), 1e-5, 1e-5);
            // The other operand order broadcasts too.
            let got = f(&b, &a).map_err(|e| TestCaseError::fail(format!("{name} (swapped): {e}")))?;
            assert_close_to(name, &got, &zip_host(&hb, &ha, h), 1e-5, 1e-5);
        }
    }

    #[test]
    fn reductions_forward(shape in shape_strategy(), seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let host = random_host(&shape, -10.0, 10.0, &mut rng);
        let t = strided_tensor(&host, &mut rng);
        let n = size_of(&shape) as f64;
        // f32 sums: tolerance scales with the number of terms.
        let atol = 1e-5 * n * 10.0;
        for (dim, &len) in shape.iter().enumerate() {
            let len = len as f64;
            let sum = host.reduce(dim, 0.0, |a, x| a + x);
            assert_close_to("sum", &t.sum(dim).unwrap(), &sum, 1e-5, atol);
            assert_close_to("mean", &t.mean(dim).unwrap(), &sum.map(|s| s / len), 1e-5, atol);
            let max = host.reduce(dim, f64::NEG_INFINITY, f64::max);
            assert_close_to("max", &t.max(dim).unwrap(), &max, 0.0, 0.0);
            let scaled = t.mul_scalar(0.1).unwrap();
            let prod = host.map(|x| (x as f32 * 0.1f32) as f64).reduce(dim, 1.0, |a, x| a * x);
            assert_close_to("prod", &scaled.prod(dim).unwrap(), &prod, 1e-4, 1e-6);
        }
        let total: f64 = host.data.iter().sum();
        assert_close_to("sum_all", &t.sum_all().unwrap(), &Host::new(&[1], vec![total]), 1e-5, atol);
        assert_close_to("mean_all", &t.mean_all().unwrap(), &Host::new(&[1], vec![total / n]), 1e-5, atol / n);
        prop_assert!((t.mean_all().unwrap().item().unwrap() as f64 - total / n).abs() <= 1e-5 + atol / n);
    }

    /// permute, view and contiguous move elements as the index rules say.
    #[test]
    fn permute_view_contiguous(shape in shape_strategy(), seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let host = random_host(&shape, -10.0, 10.0, &mut rng);
        let t = strided_tensor(&host, &mut rng);
        let mut order: Vec<usize> = (0..shape.len()).collect();
        order.shuffle(&mut rng);
        let p = t.permute(&order).unwrap();
        let pshape: Vec<usize> = order.iter().map(|&o| shape[o]).collect();
        let want: Vec<f64> = (0..host.data.len())
            .map(|o| {
                let pi = unravel(o, &pshape);
                let mut idx = vec![0; shape.len()];
                for (i, &ord) in order.iter().enumerate() {
                    idx[ord] = pi[i];
                }
                host.data[ravel(&idx, &shape)]
            })
            .collect();
        let want = Host::new(&pshape, want);
        assert_close_to("permute", &p, &want, 0.0, 0.0);
        let c = p.contiguous().unwrap();
        prop_assert!(c.is_contiguous());
        assert_close_to("contiguous", &c, &want, 0.0, 0.0);
        let flat = c.view(&[host.data.len()]).unwrap();
        assert_close_to("view", &flat, &Host::new(&[host.data.len()], want.data.clone()), 0.0, 0.0);
        // get reads single elements through the layout.
        let idx = unravel(host.data.len() / 2, &shape);
        let i: Vec<isize> = idx.iter().map(|&x| x as isize).collect();
        prop_assert_eq!(t.get(&i).unwrap() as f64, host.data[ravel(&idx, &shape)]);
    }
}

#[test]
fn eq_and_all_on_partly_equal_tensors() {
    let d = device();
    let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], d).unwrap();
    let b = Tensor::from_vec(vec![1.0, 0.0, 3.0, 4.0, 0.5, 6.0], &[2, 3], d).unwrap();
    assert_eq!(
        a.eq(&b).unwrap().to_vec().unwrap(),
        vec![1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    );
    let bt = b
        .contiguous()
        .unwrap()
        .view(&[3, 2])
        .unwrap()
        .permute(&[1, 0])
        .unwrap();
    // bt is b's storage read as (3, 2) and transposed: different element pairing.
    assert_eq!(bt.to_vec().unwrap(), vec![1.0, 3.0, 0.5, 0.0, 4.0, 6.0]);
    assert_eq!(a.all().unwrap().to_vec().unwrap(), vec![1.0]);
    assert_eq!(b.all().unwrap().to_vec().unwrap(), vec![0.0]);
    assert_eq!(b.all_dim(1).unwrap().to_vec().unwrap(), vec![0.0, 1.0]);
    assert_eq!(b.all_dim(0).unwrap().to_vec().unwrap(), vec![1.0, 0.0, 1.0]);
}

// ----- gradient checks -------------------------------------------------------------------

/// Distinct values with |x| in [0.1, 1], spaced at least 0.9/n apart: away from the kinks
/// of relu and inv, and no ties for max.
fn spaced(shape: &[usize], seed: u64) -> Vec<f32> {
    let n = size_of(shape);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
    w.shuffle(&mut rng);
    w.into_iter()
        .map(|w| {
            let s = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            (s * (0.1 + 0.9 * w)) as f32
        })
        .collect()
}

/// Fixed non-uniform weights for an output shape, so that a gradient routed to the wrong
/// element shows even for linear functions (grad_check sums the output).
fn weights(shape: &[usize]) -> Result<Tensor> {
    let n = size_of(shape);
    let v = (0..n)
        .map(|i| 0.5 + ((i * 7919) % 13) as f32 / 13.0)
        .collect();
    Tensor::from_vec(v, shape, device())
}

fn weighted(out: Result<Tensor>) -> Result<Tensor> {
    let out = out?;
    &out * &weights(out.shape())?
}

fn gc_shapes() -> Vec<Vec<usize>> {
    vec![
        vec![5],
        vec![3, 4],
        vec![1, 4],
        vec![2, 3, 2],
        vec![2, 1, 3, 2],
        vec![1],
    ]
}

type GradFn = fn(&Tensor) -> Result<Tensor>;

fn one_arg_grad_cases() -> Vec<(&'static str, GradFn)> {
    vec![
        ("neg", |x| -x),
        ("add_constant", |x| x + 5.0),
        ("sub_constant", |x| x - 5.0),
        ("mult_constant", |x| x * 5.0),
        ("div_constant", |x| x / 5.0),
        ("rdiv_constant", |x| 2.0 / x),
        ("square", |x| x * x),
        ("cube", |x| &(x * x)? * x),
        ("sig", |x| x.sigmoid()),
        ("tanh", |x| x.tanh()),
        ("tanh_scaled", |x| (x * 3.0)?.tanh()),
        ("log", |x| (x + 2.0)?.log()),
        ("relu", |x| x.relu()),
        ("relu_shifted", |x| (x + 0.5)?.relu()),
        ("exp", |x| x.exp()),
        ("explog", |x| (x + 2.0)?.log()? + x.exp()?),
        ("inv", |x| x.inv()),
        ("inv_shifted", |x| 1.0 / &(x + 3.5)?),
        ("complex", |x| {
            ((((x * 10.0)? + 7.0)?.relu()? * 6.0)? + 5.0)?
                .relu()?
                .sigmoid()?
                .log()?
                / 50.0
        }),
        ("mean_all", |x| x.mean_all()),
        ("sum_all", |x| x.sum_all()),
        ("contiguous", |x| x.contiguous()),
        ("view_flat", |x| x.contiguous()?.view(&[x.size()])),
    ]
}

#[test]
fn grad_check_one_arg_functions() {
    for (si, shape) in gc_shapes().iter().enumerate() {
        let x = Tensor::from_vec(spaced(shape, si as u64), shape, device()).unwrap();
        for (name, f) in one_arg_grad_cases() {
            grad_check(|v| weighted(f(&v[0])), std::slice::from_ref(&x), 8, 1)
                .unwrap_or_else(|e| panic!("{name} on {shape:?}: {e}"));
        }
    }
}

#[test]
fn grad_check_reductions_every_dim() {
    for (si, shape) in gc_shapes().iter().enumerate() {
        let x = Tensor::from_vec(spaced(shape, 10 + si as u64), shape, device()).unwrap();
        for dim in 0..shape.len() {
            grad_check(|v| weighted(v[0].sum(dim)), std::slice::from_ref(&x), 8, 2)
                .unwrap_or_else(|e| panic!("sum({dim}) on {shape:?}: {e}"));
            grad_check(|v| weighted(v[0].mean(dim)), std::slice::from_ref(&x), 8, 3)
                .unwrap_or_else(|e| panic!("mean({dim}) on {shape:?}: {e}"));
            grad_check(|v| weighted(v[0].max(dim)), std::slice::from_ref(&x), 8, 4)
                .unwrap_or_else(|e| panic!("max({dim}) on {shape:?}: {e}"));
            // A reduction of a function, so the gradient is not constant.
            grad_check(
                |v| weighted(v[0].sigmoid()?.sum(dim)?.exp()),
                std::slice::from_ref(&x),
                8,
                5,
            )
            .unwrap_or_else(|e| panic!("exp(sum(sigmoid, {dim})) on {shape:?}: {e}"));
        }
    }
}

#[test]
fn grad_check_permute_and_view() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (si, shape) in gc_shapes().iter().enumerate() {
        let x = Tensor::from_vec(spaced(shape, 20 + si as u64), shape, device()).unwrap();
        for _ in 0..3 {
            let mut order: Vec<usize> = (0..shape.len()).collect();
            order.shuffle(&mut rng);
            let o = order.clone();
            grad_check(
                |v| weighted(v[0].permute(&o)),
                std::slice::from_ref(&x),
                8,
                6,
            )
            .unwrap_or_else(|e| panic!("permute {order:?} on {shape:?}: {e}"));
            let o = order.clone();
            grad_check(
                |v| {
                    weighted(
                        v[0].permute(&o)?
                            .contiguous()?
                            .view(&[v[0].size()])?
                            .sigmoid(),
                    )
                },
                std::slice::from_ref(&x),
                8,
                7,
            )
            .unwrap_or_else(|e| panic!("permute {order:?} + view on {shape:?}: {e}"));
            let o = order.clone();
            // An elementwise op read through the permuted layout (no copy in between).
            grad_check(
                |v| weighted(&v[0].permute(&o)?.exp()? * &v[0].permute(&o)?),
                std::slice::from_ref(&x),
                8,
                8,
            )
            .unwrap_or_else(|e| panic!("exp(permute {order:?}) on {shape:?}: {e}"));
        }
        // A view to another shape of the same size, then a broadcast op.
        let n = x.size();
        grad_check(
            |v| weighted(&v[0].contiguous()?.view(&[1, n])? * &v[0].contiguous()?.view(&[n, 1])?),
            std::slice::from_ref(&x),
            8,
            9,
        )
        .unwrap_or_else(|e| panic!("view outer product on {shape:?}: {e}"));
    }
}

type GradFn2 = fn(&Tensor, &Tensor) -> Result<Tensor>;

fn two_arg_grad_cases() -> Vec<(&'static str, GradFn2)> {
    vec![
        ("add2", |a, b| a + b),
        ("sub2", |a, b| a - b),
        ("mul2", |a, b| a * b),
        ("div2", |a, b| a / &(b + 5.5)?),
        ("div_shifted", |a, b| a / &(b + 3.0)?),
        // lt / gt carry no gradient themselves; multiplying keeps the check meaningful.
        ("lt_mask", |a, b| &a.lt(b)? * a),
        ("gt_mask", |a, b| &(&a.gt(b)? * b)? + a),
        ("sig_of_sum", |a, b| (a + b)?.sigmoid()),
        ("permuted_sum", |a, b| {
            let s = (a * b)?;
            let mut order: Vec<usize> = (0..s.dims()).collect();
            order.reverse();
            s.permute(&order)?.exp()
        }),
    ]
}

#[test]
fn grad_check_two_arg_with_broadcasting() {
    let pairs: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![3, 4], vec![3, 4]),
        (vec![3, 1], vec![1, 4]),
        (vec![2, 3, 4], vec![4]),
        (vec![4], vec![2, 3, 4]),
        (vec![2, 1, 3], vec![4, 1]),
        (vec![1], vec![2, 3]),
        (vec![2, 3, 1, 2], vec![3, 2, 1]),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (sa, sb) in &pairs {
        // Values on the grids k/10 + 0.05 (a) and k/10 (b): every a differs from every b
        // by at least 0.05, so lt / gt are never at their jump.
        let av: Vec<f32> = (0..size_of(sa))
            .map(|_| rng.random_range(-10..10) as f32 / 10.0 + 0.05)
            .collect();
        let bv: Vec<f32> = (0..size_of(sb))
            .map(|_| rng.random_range(-10..=10) as f32 / 10.0)
            .collect();
        let a = Tensor::from_vec(av, sa, device()).unwrap();
        let b = Tensor::from_vec(bv, sb, device()).unwrap();
        for (name, f) in two_arg_grad_cases() {
            grad_check(
                |v| weighted(f(&v[0], &v[1])),
                &[a.clone(), b.clone()],
                8,
                12,
            )
            .unwrap_or_else(|e| panic!("{name} on {sa:?} and {sb:?}: {e}"));
        }
    }
}

#[test]
fn broadcast_gradients_are_summed_to_input_shapes() {
    let d = device();
    let a = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3, 1], d)
        .unwrap()
        .requires_grad_(true);
    let b = Tensor::from_vec(vec![10.0, 20.0, 30.0, 40.0], &[4], d)
        .unwrap()
        .requires_grad_(true);
    let out = (&a * &b).unwrap();
    assert_eq!(out.shape(), &[3, 4]);
    out.sum_all().unwrap().backward().unwrap();
    let ga = a.grad().unwrap();
    let gb = b.grad().unwrap();
    assert_eq!(ga.shape(), &[3, 1]);
    assert_eq!(gb.shape(), &[4]);
    assert_eq!(ga.to_vec().unwrap(), vec![100.0; 3]);
    assert_eq!(gb.to_vec().unwrap(), vec![6.0; 4]);
    // Gradients accumulate over backward calls until zero_grad.
    let out2 = (&a * &b).unwrap().sum_all().unwrap();
    out2.backward().unwrap();
    assert_eq!(a.grad().unwrap().to_vec().unwrap(), vec![200.0; 3]);
    a.zero_grad();
    assert!(a.grad().is_none());
    // eq / lt pass zero gradients.
    let c = Tensor::from_vec(vec![1.0, 5.0, 3.0], &[3, 1], d)
        .unwrap()
        .requires_grad_(true);
    (&c.eq(&a).unwrap() + &c.lt(&a).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(c.grad().unwrap().to_vec().unwrap(), vec![0.0; 3]);
}

// ----- matmul --------------------------------------------------------------------------------

/// Check forward and backward of `a @ b` against the reference: out = a b,
/// grad_a = g b^T and grad_b = a^T g, summed over broadcast batch dimensions.
fn check_matmul(sa: &[usize], sb: &[usize], seed: u64, permuted: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ha = random_host(sa, -1.0, 1.0, &mut rng);
    let hb = random_host(sb, -1.0, 1.0, &mut rng);
    let (a, b) = if permuted {
        (strided_tensor(&ha, &mut rng), strided_tensor(&hb, &mut rng))
    } else {
        (
            Tensor::from_vec(ha.data.iter().map(|&x| x as f32).collect(), sa, device()).unwrap(),
            Tensor::from_vec(hb.data.iter().map(|&x| x as f32).collect(), sb, device()).unwrap(),
        )
    };
    let (a, b) = (a.requires_grad_(true), b.requires_grad_(true));
    let name = format!("{sa:?} @ {sb:?}");
    let out = a.matmul(&b).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = matmul_host(&ha, &hb);
    let k = sa[sa.len() - 1] as f64;
    let atol = 1e-5 * k.max(1.0);
    assert_close_to(&name, &out, &want, 1e-4, atol);

    let hg = random_host(&want.shape, -1.0, 1.0, &mut rng);
    let g = Tensor::from_vec(
        hg.data.iter().map(|&x| x as f32).collect(),
        &hg.shape,
        device(),
    )
    .unwrap();
    out.backward_with(&g).unwrap();
    let ga = sum_to(&matmul_host(&hg, &transpose_host(&hb)), sa);
    let gb = sum_to(&matmul_host(&transpose_host(&ha), &hg), sb);
    let n_out = want.shape[want.shape.len() - 2] as f64;
    let m_out = want.shape[want.shape.len() - 1] as f64;
    let batch_terms = (size_of(&want.shape) as f64 / (n_out * m_out)).max(1.0);
    assert_close_to(
        &format!("{name} grad a"),
        &a.grad().unwrap(),
        &ga,
        1e-4,
        1e-5 * m_out * batch_terms,
    );
    assert_close_to(
        &format!("{name} grad b"),
        &b.grad().unwrap(),
        &gb,
        1e-4,
        1e-5 * n_out * batch_terms,
    );
}

#[test]
fn matmul_course_sizes() {
    check_matmul(&[2, 3], &[3, 4], 1, false);
    check_matmul(&[2, 2], &[2, 2], 2, false);
    check_matmul(&[32, 32], &[32, 32], 3, false);
    check_matmul(&[33, 33], &[33, 33], 4, false);
    check_matmul(&[33, 33], &[33, 33], 5, true);
    check_matmul(&[2, 33, 33], &[2, 33, 33], 6, false);
    check_matmul(&[2, 45, 33], &[2, 33, 40], 7, false);
    check_matmul(&[2, 45, 33], &[2, 33, 40], 8, true);
}

#[test]
fn matmul_batch_broadcast() {
    // (D, A, B) @ (1, B, C) for A..D in 2..=4.
    let mut seed = 100;
    for a in 2..=4 {
        for b in 2..=4 {
            for c in 2..=4 {
                for d in 2..=4 {
                    seed += 1;
                    check_matmul(&[d, a, b], &[1, b, c], seed, seed % 2 == 0);
                }
            }
        }
    }
    // A 2-D operand broadcasts over the other's batch, and batch dims broadcast both ways.
    check_matmul(&[3, 4], &[2, 4, 5], 200, false);
    check_matmul(&[2, 1, 3, 4], &[5, 4, 2], 201, true);
}

#[test]
fn matmul_odd_large() {
    check_matmul(&[257, 513], &[513, 129], 300, false);
    check_matmul(&[257, 513], &[513, 129], 301, true);
}

#[test]
fn grad_check_matmul() {
    for (i, (sa, sb)) in [
        (vec![2, 3], vec![3, 4]),
        (vec![2, 2, 3], vec![1, 3, 2]),
        (vec![3, 4], vec![2, 4, 2]),
    ]
    .into_iter()
    .enumerate()
    {
        let a = Tensor::from_vec(spaced(&sa, 40 + i as u64), &sa, device()).unwrap();
        let b = Tensor::from_vec(spaced(&sb, 50 + i as u64), &sb, device()).unwrap();
        grad_check(
            |v| weighted(v[0].matmul(&v[1])),
            &[a.clone(), b.clone()],
            10,
            13,
        )
        .unwrap_or_else(|e| panic!("matmul {sa:?} @ {sb:?}: {e}"));
        // Through transposed views: (b^T @ a^T)^T = a @ b.
        grad_check(
            |v| weighted(v[1].transpose()?.matmul(&v[0].transpose()?)?.transpose()),
            &[a.clone(), b.clone()],
            10,
            14,
        )
        .unwrap_or_else(|e| panic!("transposed matmul {sa:?} @ {sb:?}: {e}"));
    }
}

#[test]
fn tensor_is_usable_from_the_course_api() {
    let d = device();
    let t = Tensor::rand(&[2, 3], 42, d).unwrap();
    let t2 = Tensor::rand(&[2, 3], 42, d).unwrap();
    assert_eq!(
        t.to_vec().unwrap(),
        t2.to_vec().unwrap(),
        "seeded rand is reproducible"
    );
    assert!(t.to_vec().unwrap().iter().all(|&x| (0.0..1.0).contains(&x)));
    assert_eq!((t.size(), t.dims(), t.shape()), (6, 2, &[2usize, 3][..]));
    assert_eq!(
        Tensor::zeros(&[2], d).unwrap().to_vec().unwrap(),
        vec![0.0, 0.0]
    );
    assert_eq!(
        Tensor::ones(&[1, 2], d).unwrap().to_vec().unwrap(),
        vec![1.0, 1.0]
    );
    assert_eq!(Tensor::scalar(2.5, d).unwrap().item().unwrap(), 2.5);
    // A tensor made from constants records nothing.
    let c = (&t + &t2).unwrap();
    assert!(c.is_leaf() && !c.needs_grad());
    // no_grad stops recording.
    let x = t.clone().requires_grad_(true);
    let y = minitorch::no_grad(|| x.exp().unwrap());
    assert!(!y.needs_grad());
}

/// A very long chain of recorded ops: backward is iterative, and dropping the graph must
/// not recurse once per node (that overflowed the test thread's stack).
#[test]
fn deep_chain_backward_and_drop() {
    let d = device();
    let x = Tensor::from_vec(vec![0.5, -1.0], &[2], d)
        .unwrap()
        .requires_grad_(true);
    let n = 100_000;
    let mut y = Tensor::zeros(&[2], d).unwrap();
    for _ in 0..n {
        y = (&y + &x).unwrap();
    }
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![n as f32; 2]);
    drop(y);
    assert_eq!((&x * 2.0).unwrap().to_vec().unwrap(), vec![1.0, -2.0]);
}
