//! Cross-backend conformance matrix: one table of cases, run on every backend present
//! (the columns: `Device::ALL` that are compiled in and have hardware), each result
//! compared element by element with the CPU backend. Adding a backend adds a column, not
//! a copy of these tests. Absent backends print `SKIPPED: backend X not present (reason)`;
//! `MINITORCH_REQUIRE_BACKENDS=cpu,wgpu` turns an absent listed backend into a failure.
//!
//! Run with `cargo test --features wgpu --test conformance` (lavapipe, the software Vulkan
//! driver of mesa-vulkan-drivers, makes wgpu present on machines without a GPU).
//!
//! # Tolerances, per op (vs the CPU value; NaN must match NaN)
//!
//! | op | allowed difference |
//! |----|--------------------|
//! | neg, id, relu, add, mul, lt, eq, is_close, relu_back, copy, view, permute+contiguous | bit-identical |
//! | max (reduce) | bit-identical, except that +0 and -0 are equal (the order picks either); NaN if any term is NaN |
//! | exp, log, sigmoid | 4 ULP (every backend is within 2 ULP of the correctly rounded result: tests/accuracy.rs) |
//! | inv, log_back | 4 ULP (WGSL division: 2.5 ULP, plus the CPU's rounding) |
//! | inv_back(x, d) = -(d / x) / x | 8 ULP (two divisions) |
//! | sigmoid_back(x, d) = d s(x) s(-x) | 10 ULP (two sigmoids and two products; no cancellation) |
//! | sum, prod over n terms | n eps (the op on \|terms\|): the worst-case rounding of n terms in any order |
//! | matmul with inner size k | k eps sum_j \|a_ij b_jk\| |
//! | chains through Tensor ops, gradients | 1e-4 max(1, \|cpu value\|) |
//! | training losses | 1e-3 max(1, \|cpu loss\|) per step |
//!
//! Special values (`table_special_values`, every op on NaN, +-inf, +-0, subnormals, the
//! smallest normal, f32::MAX and the points where exp and sigmoid overflow or underflow;
//! every pair of them for zip, two-term reductions and matmul): NaN must match NaN,
//! infinities and zeros are exact (max may pick either zero), max propagates NaN, and
//! subnormal inputs and results follow each op's bound like any other value. Only matmul
//! may flush (on every backend, the CPU included): each of its results must be the product
//! computed with or without subnormal inputs and results taken as zero.
//! In the browser tests (web/), which share these cases, WebGPU may flush any subnormal
//! result to a zero of the same sign (WGSL allows it; SwiftShader, Chromium's software
//! adapter, does); natively every backend keeps them.
//!
//! Beyond the table, property tests generate random shapes, permutations and broadcast
//! pairs for every op (256 cases per family by default, `PROPTEST_CASES` to change).

mod common;

use common::cases::{self, mm_case, reduce_domain};
use common::*;
use minitorch::{no_grad, BinaryOp, Device, Layout, ReduceOp, Tensor, UnaryOp};
use proptest::prelude::*;

// ----- the table (tests/common/cases.rs, shared with the browser tests in web/) ---------

#[test]
fn table_map() {
    check_all(&cases::map());
}

#[test]
fn table_zip() {
    check_all(&cases::zip());
}

#[test]
fn table_reduce() {
    check_all(&cases::reduce());
}

#[test]
fn table_matmul() {
    check_all(&cases::matmul());
}

#[test]
fn table_copy_and_view() {
    check_all(&cases::copy_and_view());
}

#[test]
fn table_pad() {
    check_all(&cases::pad());
}

#[test]
fn table_uniform() {
    check_all(&cases::uniform());
}

/// Special inputs of the special-value table: NaN, +-inf, +-0, subnormals (the smallest,
/// one in the middle, the largest), the smallest normal, and values where the functions
/// overflow, underflow or saturate.
const SPECIAL_INPUTS: [f32; 26] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    0.0,
    -0.0,
    1e-45,
    -1e-45,
    1e-40,
    -1e-40,
    1.175_494_2e-38,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    1.0,
    -1.0,
    0.5,
    2.0,
    f32::MAX,
    -f32::MAX,
    17.0,
    -17.0,
    88.8,
    -88.8,
    100.0,
    -104.5,
    3e-39,
    0.999_991_8,
];

/// Ops whose subnormal results a backend may flush to zero of the same sign: matmul only
/// (the agreed numeric rule: it may run with flush-to-zero on every backend). Everything
/// else reads and writes subnormals as IEEE does; lavapipe flushes nothing (measured by
/// this test), and our own log, exp and sigmoid build subnormal results on the bits.
fn may_flush(op: Op) -> bool {
    matches!(op, Op::Matmul)
}

/// Whether `got` is the one-term product `a * b` as a backend may compute it under the
/// matmul subnormal rule: with or without subnormal inputs flushed to zero (DAZ), and with
/// or without a subnormal result flushed to zero (FTZ). NaN matches NaN; a zero matches a
/// zero of either sign (the sum starts from +0).
fn matmul_special_ok(a: f32, b: f32, got: f32) -> bool {
    let fz = |x: f32| {
        if x.is_subnormal() {
            0.0f32.copysign(x)
        } else {
            x
        }
    };
    [a * b, fz(a) * fz(b)]
        .into_iter()
        .flat_map(|p| [p, fz(p)])
        .any(|p| {
            (p.is_nan() && got.is_nan()) || p.to_bits() == got.to_bits() || (p == 0.0 && got == 0.0)
        })
}

/// Every op on every special input (every pair of them for zip, reduce and matmul),
/// against the CPU: the op's bound from the table above, NaN for NaN, infinities and
/// zeros exact, and for the ops of [`may_flush`] a zero of the same sign accepted in place
/// of a subnormal result on a GPU.
#[test]
fn table_special_values() {
    let s = &SPECIAL_INPUTS;
    let n = s.len();
    let col_l = broadcast(&[n, 1], &[n, n]);
    let row_l = broadcast(&[1, n], &[n, n]);
    let mut cases = Vec::new();
    let one = |l: Layout, data: Vec<f32>| Input {
        data,
        layout: l,
        same_as: None,
    };
    for op in UnaryOp::ALL {
        cases.push(Case::new(
            Op::Map(op),
            "specials",
            vec![one(Layout::contiguous(&[n]), s.to_vec())],
        ));
    }
    for op in BinaryOp::ALL {
        cases.push(Case::new(
            Op::Zip(op),
            "all pairs of specials",
            vec![
                one(col_l.clone(), s.to_vec()),
                one(row_l.clone(), s.to_vec()),
            ],
        ));
    }
    // Reductions of two terms (the order of two terms cannot matter).
    let pairs: Vec<f32> = (0..n * n).flat_map(|k| [s[k / n], s[k % n]]).collect();
    for op in ReduceOp::ALL {
        cases.push(Case::new(
            Op::Reduce(op, 1),
            "all pairs of specials",
            vec![one(Layout::contiguous(&[n * n, 2]), pairs.clone())],
        ));
    }
    // Outer products: k = 1, every product of two specials.
    cases.push(Case::new(
        Op::Matmul,
        "outer product of specials",
        vec![
            one(Layout::contiguous(&[n, 1]), s.to_vec()),
            one(Layout::contiguous(&[1, n]), s.to_vec()),
        ],
    ));
    cases.push(Case::new(
        Op::Copy,
        "specials",
        vec![one(Layout::contiguous(&[n]), s.to_vec())],
    ));

    let cpu = cpu();
    let mut failures = Vec::new();
    for case in &cases {
        let want = run(cpu.as_ref(), case.op, &case.inputs).unwrap();
        let bound = {
            match case.op {
                Op::Map(u) => unary_bound(u, 0.0),
                Op::Zip(b) => binary_bound(b, 0.0, 0.0),
                Op::Reduce(ReduceOp::Max, _) => Bound {
                    any_zero: true,
                    ..Bound::EXACT
                },
                // Two terms: one rounding, the same on every backend.
                Op::Reduce(..) | Op::Copy | Op::Pad(_) | Op::Uniform(..) => Bound::EXACT,
                // One product per result: exact, or flushed (the absolute floor).
                Op::Matmul => Bound {
                    ulps: 0.0,
                    abs: f32::MIN_POSITIVE as f64,
                    any_zero: true,
                },
            }
        };
        for col in columns() {
            let got = match run(col.backend.as_ref(), case.op, &case.inputs) {
                Ok(g) => g,
                Err(e) => {
                    failures.push(format!("{} on {}: error {e}", case.op.name(), col.device));
                    continue;
                }
            };
            let flush_ok = may_flush(case.op);
            let inputs_of = |i: usize| -> String {
                match case.op {
                    Op::Zip(_) | Op::Matmul => format!("({:e}, {:e})", s[i / n], s[i % n]),
                    Op::Reduce(..) => format!("({:e}, {:e})", pairs[2 * i], pairs[2 * i + 1]),
                    _ => format!("{:e}", s[i]),
                }
            };
            for i in 0..want.len() {
                let (g, w) = (got[i], want[i]);
                let ok = if matches!(case.op, Op::Matmul) {
                    // Matmul may flush subnormal inputs and results (DAZ/FTZ) on any backend,
                    // the CPU included, so both sides are checked against what a flushing
                    // and a non-flushing product give.
                    matmul_special_ok(s[i / n], s[i % n], g)
                        && matmul_special_ok(s[i / n], s[i % n], w)
                } else {
                    within(g, w, bound) || (flush_ok && flushed(g, w))
                };
                if !ok {
                    failures.push(format!(
                        "{} on {} at {}: got {g:e} ({:#010x}), cpu {w:e} ({:#010x})",
                        case.op.name(),
                        col.device,
                        inputs_of(i),
                        g.to_bits(),
                        w.to_bits()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} special-value results differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ----- through Tensor ops: forward and backward -----------------------------------------

type TensorFn = fn(&[Tensor]) -> minitorch::Result<Tensor>;

/// A differentiable computation: inputs of these shapes and domains, and the function.
struct GradCase {
    name: &'static str,
    inputs: Vec<(Vec<usize>, Domain)>,
    f: TensorFn,
    /// False for results with no gradient (is_close, prod).
    backward: bool,
}

fn grad_case(name: &'static str, inputs: &[(&[usize], Domain)], f: TensorFn) -> GradCase {
    GradCase {
        name,
        inputs: inputs.iter().map(|(s, d)| (s.to_vec(), *d)).collect(),
        f,
        backward: true,
    }
}

/// Forward value and input gradients on `device` (the weights `w` make every output
/// element's gradient different).
fn eval_grad(case: &GradCase, device: Device) -> minitorch::Result<(Vec<f32>, Vec<Vec<f32>>)> {
    let xs: Vec<Tensor> = case
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (s, d))| {
            let n = s.iter().product();
            Tensor::from_vec(data(n, *d, 700 + i as u64), s, device).map(|t| t.requires_grad_(true))
        })
        .collect::<minitorch::Result<_>>()?;
    let y = (case.f)(&xs)?;
    let forward = y.to_vec()?;
    if !case.backward {
        return Ok((forward, Vec::new()));
    }
    let w = Tensor::from_vec(data(y.size(), Domain::General, 799), y.shape(), device)?;
    y.mul(&w)?.sum_all()?.backward()?;
    let grads = xs
        .iter()
        .map(|x| match x.grad() {
            Some(g) => g.to_vec(),
            None => Ok(vec![0.0; x.size()]),
        })
        .collect::<minitorch::Result<_>>()?;
    Ok((forward, grads))
}

#[test]
fn table_forward_backward() {
    use Domain::*;
    let mut cases = vec![
        grad_case("neg", &[(&[3, 4], General)], |x| x[0].neg()),
        grad_case("inv", &[(&[3, 4], NonZero)], |x| x[0].inv()),
        grad_case("relu", &[(&[3, 4], Ties)], |x| x[0].relu()),
        grad_case("sigmoid", &[(&[3, 4], Wide)], |x| x[0].sigmoid()),
        grad_case("log", &[(&[3, 4], Positive)], |x| x[0].log()),
        grad_case("exp", &[(&[3, 4], General)], |x| x[0].exp()),
        grad_case(
            "add (broadcast)",
            &[(&[3, 1, 5], General), (&[4, 1], General)],
            |x| x[0].add(&x[1]),
        ),
        grad_case(
            "sub (broadcast)",
            &[(&[3, 4, 5], General), (&[5], General)],
            |x| x[0].sub(&x[1]),
        ),
        grad_case(
            "mul (broadcast)",
            &[(&[2, 1, 5], General), (&[3, 5], General)],
            |x| x[0].mul(&x[1]),
        ),
        grad_case(
            "div (broadcast)",
            &[(&[4, 5], General), (&[4, 1], NonZero)],
            |x| x[0].div(&x[1]),
        ),
        grad_case("lt", &[(&[3, 4], Ties), (&[4], Ties)], |x| x[0].lt(&x[1])),
        grad_case("gt", &[(&[3, 4], Ties), (&[3, 1], Ties)], |x| {
            x[0].gt(&x[1])
        }),
        grad_case("eq", &[(&[3, 4], Ties), (&[3, 4], Ties)], |x| {
            x[0].eq(&x[1])
        }),
        grad_case("sum dim 1", &[(&[3, 4, 5], General)], |x| x[0].sum(1)),
        grad_case("sum_all", &[(&[3, 4, 5], General)], |x| x[0].sum_all()),
        grad_case("mean dim 0", &[(&[3, 4], General)], |x| x[0].mean(0)),
        grad_case("mean_all", &[(&[7, 3], General)], |x| x[0].mean_all()),
        grad_case("max dim 1", &[(&[4, 6], General)], |x| x[0].max(1)),
        grad_case("matmul", &[(&[5, 7], General), (&[7, 3], General)], |x| {
            x[0].matmul(&x[1])
        }),
        grad_case(
            "matmul batch broadcast",
            &[(&[2, 1, 4, 5], General), (&[3, 5, 6], General)],
            |x| x[0].matmul(&x[1]),
        ),
        grad_case(
            "transpose matmul",
            &[(&[7, 5], General), (&[7, 3], General)],
            |x| x[0].transpose()?.matmul(&x[1]),
        ),
        grad_case("permute contiguous view", &[(&[2, 3, 4], General)], |x| {
            x[0].permute(&[2, 0, 1])?.contiguous()?.view(&[4, 6])
        }),
        grad_case("view then permute", &[(&[6, 4], General)], |x| {
            x[0].view(&[2, 3, 4])?.permute(&[1, 2, 0])
        }),
        grad_case(
            "mlp layer",
            &[(&[8, 5], General), (&[5, 4], General), (&[4], General)],
            |x| x[0].matmul(&x[1])?.add(&x[2])?.sigmoid()?.log(),
        ),
        grad_case(
            "large (1M) chain",
            &[(&[1024, 1024], General), (&[1024], General)],
            |x| x[0].mul(&x[1])?.relu()?.sum(0),
        ),
        // Module 4: convolution, pooling, softmax, losses and dropout through Tensor ops.
        grad_case(
            "conv2d bias stride 2 padding (1, 2)",
            &[
                (&[2, 3, 7, 6], General),
                (&[4, 3, 3, 2], General),
                (&[4], General),
            ],
            |x| x[0].conv2d(&x[1], Some(&x[2]), [2, 1], [(1, 1), (1, 2)]),
        ),
        grad_case(
            "conv2d permuted input, kernel as large as the input",
            &[(&[2, 5, 4, 3], General), (&[2, 3, 5, 4], General)],
            |x| {
                x[0].permute(&[0, 3, 1, 2])?
                    .conv2d(&x[1], None, [1, 1], [(0, 0), (0, 0)])
            },
        ),
        grad_case(
            "conv1d course padding",
            &[(&[2, 2, 9], General), (&[3, 2, 4], General)],
            |x| x[0].conv1d(&x[1], None, 1, (0, 3)),
        ),
        grad_case("avgpool2d", &[(&[2, 3, 4, 6], General)], |x| {
            x[0].avgpool2d([2, 3])
        }),
        grad_case("maxpool2d (ties)", &[(&[2, 3, 4, 6], Ties)], |x| {
            x[0].maxpool2d([2, 2])
        }),
        grad_case("softmax dim 1", &[(&[3, 7], Wide)], |x| x[0].softmax(1)),
        grad_case("log_softmax dim 0", &[(&[5, 4], Wide)], |x| {
            x[0].log_softmax(0)
        }),
        grad_case("cross_entropy mean", &[(&[4, 5], General)], |x| {
            x[0].cross_entropy(&[0, 4, 2, 2], minitorch::tensor::Reduction::Mean)
        }),
        grad_case(
            "dropout p 0.3 (one mask on every backend)",
            &[(&[6, 50], General)],
            |x| x[0].dropout(0.3, true, 5, 2),
        ),
    ];
    let mut no_grad_cases = vec![
        grad_case("argmax dim 1 (ties)", &[(&[6, 9], Ties)], |x| {
            x[0].argmax(1)
        }),
        grad_case("is_close", &[(&[3, 4], Ties), (&[4], Ties)], |x| {
            x[0].is_close(&x[1])
        }),
        grad_case("prod dim 0", &[(&[5, 3], NearOne)], |x| x[0].prod(0)),
    ];
    for c in &mut no_grad_cases {
        c.backward = false;
    }
    cases.extend(no_grad_cases);

    let mut failures = Vec::new();
    for case in &cases {
        let shapes = format!(
            "{:?}",
            case.inputs
                .iter()
                .map(|(s, _)| s.clone())
                .collect::<Vec<_>>()
        );
        let (want_y, want_g) = eval_grad(case, Device::Cpu).expect("cpu");
        for col in columns() {
            let res = eval_grad(case, col.device)
                .map_err(|e| format!("{} on {}: error: {e}", case.name, col.device));
            let res = res.and_then(|(got_y, got_g)| {
                let what = format!("{} forward", case.name);
                compare(
                    &what,
                    &shapes,
                    "Tensor ops",
                    col.device,
                    &got_y,
                    &want_y,
                    |i| Bound::composite(1e-4, want_y[i]),
                )?;
                for (k, (g, w)) in got_g.iter().zip(&want_g).enumerate() {
                    let what = format!("{} gradient of input {k}", case.name);
                    compare(&what, &shapes, "Tensor backward", col.device, g, w, |i| {
                        Bound::composite(1e-4, w[i])
                    })?;
                }
                Ok(())
            });
            if let Err(e) = res {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A two-layer MLP trained with plain SGD, all in Tensor ops; returns the loss per step.
fn train_mlp(device: Device, steps: usize) -> minitorch::Result<Vec<f32>> {
    let (n, d, h) = (64, 2, 16);
    let xs = data(n * d, Domain::General, 900);
    // A circle: label 1 inside radius 1.5.
    let ys: Vec<f32> = xs
        .chunks(2)
        .map(|p| f32::from(p[0] * p[0] + p[1] * p[1] < 2.25))
        .collect();
    let x = Tensor::from_vec(xs, &[n, d], device)?;
    let y = Tensor::from_vec(ys, &[n, 1], device)?;
    let scaled = |v: Vec<f32>, s: f32| v.into_iter().map(|e| e * s).collect::<Vec<_>>();
    let mut params = vec![
        Tensor::from_vec(
            scaled(data(d * h, Domain::General, 901), 0.5),
            &[d, h],
            device,
        )?,
        Tensor::from_vec(scaled(data(h, Domain::General, 902), 0.1), &[h], device)?,
        Tensor::from_vec(scaled(data(h, Domain::General, 903), 0.5), &[h, 1], device)?,
        Tensor::from_vec(vec![0.0], &[1], device)?,
    ];
    let lr = 0.5;
    let mut losses = Vec::new();
    for _ in 0..steps {
        for p in &params {
            p.set_requires_grad(true);
        }
        let hidden = x.matmul(&params[0])?.add(&params[1])?.relu()?;
        let out = hidden.matmul(&params[2])?.add(&params[3])?.sigmoid()?;
        // Binary cross-entropy: -(y log p + (1 - y) log(1 - p)).
        let one_minus = |t: &Tensor| t.neg()?.add_scalar(1.0);
        let ll = y
            .mul(&out.log()?)?
            .add(&one_minus(&y)?.mul(&one_minus(&out)?.log()?)?)?;
        let loss = ll.mean_all()?.neg()?;
        loss.backward()?;
        losses.push(loss.item()?);
        params = no_grad(|| {
            params
                .iter()
                .map(|p| {
                    let g = p.grad().expect("every parameter gets a gradient");
                    Ok(p.sub(&g.mul_scalar(lr)?)?.detach())
                })
                .collect::<minitorch::Result<Vec<_>>>()
        })?;
    }
    Ok(losses)
}

#[test]
fn training_losses_track_cpu() {
    let steps = 25;
    let want = train_mlp(Device::Cpu, steps).expect("cpu training");
    assert!(
        want[steps - 1] < want[0],
        "the cpu run does not learn: {want:?}"
    );
    for col in columns() {
        let got = train_mlp(col.device, steps)
            .unwrap_or_else(|e| panic!("training on {}: {e}", col.device));
        compare(
            "training loss",
            "MLP 2-16-1, 64 points",
            "per step",
            col.device,
            &got,
            &want,
            |i| Bound::abs(1e-3 * (want[i].abs() as f64).max(1.0)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn required_backends_are_present() {
    // Fails (through `columns`) when MINITORCH_REQUIRE_BACKENDS names an absent backend.
    let present: Vec<Device> = columns().iter().map(|c| c.device).collect();
    assert!(present.contains(&Device::Cpu));
}

// ----- property tests ------------------------------------------------------------------

/// Dimensions: mostly 1 to 5, sometimes 0.
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0usize), 4 => Just(1usize), 15 => 2usize..6]
}

fn shape(ranks: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(dim(), ranks)
}

/// A shape with a storage dimension order (a permutation) and an offset.
fn permuted_layout(ranks: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Layout> {
    shape(ranks)
        .prop_flat_map(|s| {
            let order: Vec<usize> = (0..s.len()).collect();
            (Just(s), Just(order).prop_shuffle(), 0usize..4)
        })
        .prop_map(|(s, order, off)| {
            let l = permuted(&s, &order);
            Layout::new(l.shape().to_vec(), l.strides().to_vec(), off).unwrap()
        })
}

/// A layout of `out` that is broadcast from a smaller permuted shape: some dimensions set
/// to 1 and some leading ones dropped (`mask` and `drop` choose which).
fn broadcast_from(out: &[usize], mask: u32, drop: usize, order_seed: u64) -> Layout {
    let drop = drop.min(out.len());
    let small: Vec<usize> = out[drop..]
        .iter()
        .enumerate()
        .map(|(i, &d)| if mask >> i & 1 == 1 { 1 } else { d })
        .collect();
    let mut order: Vec<usize> = (0..small.len()).collect();
    // A deterministic shuffle from the seed.
    let mut s = order_seed;
    for i in (1..order.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (s >> 33) as usize % (i + 1));
    }
    permuted(&small, &order).broadcast_to(out).unwrap()
}

fn prop_check(case: Case) -> Result<(), TestCaseError> {
    check_case(&case).map_err(TestCaseError::fail)
}

proptest! {
    #[test]
    fn prop_map_every_op(l in permuted_layout(0..=4), seed in any::<u64>()) {
        for op in UnaryOp::ALL {
            let input = Input::new(l.clone(), unary_domain(op), seed);
            prop_check(Case::new(Op::Map(op), "random permuted", vec![input]))?;
        }
    }

    #[test]
    fn prop_zip_every_op_broadcast(
        out in shape(0..=4),
        (ma, mb) in (any::<u32>(), any::<u32>()),
        (da, db) in (0usize..3, 0usize..3),
        (oa, ob) in (any::<u64>(), any::<u64>()),
        seed in any::<u64>(),
    ) {
        let la = broadcast_from(&out, ma, da, oa);
        let lb = broadcast_from(&out, mb, db, ob);
        for op in BinaryOp::ALL {
            let (xa, xb) = binary_domains(op);
            let inputs = vec![Input::new(la.clone(), xa, seed), Input::new(lb.clone(), xb, seed ^ 1)];
            prop_check(Case::new(Op::Zip(op), "random broadcast pair", inputs))?;
        }
    }

    #[test]
    fn prop_reduce_every_op(
        out in shape(1..=4),
        mask in any::<u32>(),
        order in any::<u64>(),
        dim in 0usize..4,
        seed in any::<u64>(),
    ) {
        // Some dimensions broadcast (stride 0), storage permuted.
        let l = broadcast_from(&out, mask & 0b0101, 0, order);
        let dim = dim % l.dims();
        for op in ReduceOp::ALL {
            let input = Input::new(l.clone(), reduce_domain(op, l.shape()[dim]), seed);
            prop_check(Case::new(Op::Reduce(op, dim), "random permuted/broadcast", vec![input]))?;
        }
    }

    #[test]
    fn prop_matmul(
        batch in prop::collection::vec(1usize..4, 0..=2),
        (n, k, m) in (0usize..70, 0usize..70, 0usize..70),
        (ta, tb) in (any::<bool>(), any::<bool>()),
        (ma, mb) in (any::<u32>(), any::<u32>()),
        seed in any::<u64>(),
    ) {
        let mut case = mm_case("random", &batch, (n, k, m), ta, tb, seed);
        // Broadcast some batch dimensions of each operand (stride 0).
        let nb = batch.len();
        for (input, mask) in case.inputs.iter_mut().zip([ma, mb]) {
            let full = input.layout.shape().to_vec();
            let mut small = full.clone();
            for (i, d) in small.iter_mut().take(nb).enumerate() {
                if mask >> i & 1 == 1 {
                    *d = 1;
                }
            }
            let order: Vec<usize> = (0..full.len()).collect();
            let base = if input.layout.is_contiguous() { Layout::contiguous(&small) } else {
                let mut o = order.clone();
                o.swap(nb, nb + 1);
                permuted(&small, &o)
            };
            *input = Input::new(base.broadcast_to(&full).unwrap(), Domain::General, seed ^ mask as u64);
        }
        case.desc = format!("random batch {batch:?}, transposed {ta}/{tb}, broadcast masks {ma:#x}/{mb:#x}");
        prop_check(case)?;
    }

    #[test]
    fn prop_copy_and_view(l in permuted_layout(0..=4), seed in any::<u64>()) {
        let input = Input::new(l.clone(), Domain::General, seed).specials();
        prop_check(Case::new(Op::Copy, "random permuted (permute + contiguous)", vec![input]))?;
        // A view of the contiguous copy, flattened: copy through the viewed layout.
        let flat = at_offset(l.shape(), l.offset()).view(&[l.size()]).unwrap();
        prop_check(Case::new(Op::Copy, "view", vec![Input::new(flat, Domain::General, seed)]))?;
    }
}
