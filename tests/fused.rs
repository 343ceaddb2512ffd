//! The fused functions against the chains of primitives they replace, on every present
//! backend (the conformance columns): forward values and gradients (vs the same chain on
//! the same backend and vs the CPU), grad_check, odd sizes, non-contiguous and broadcast
//! inputs, saturated and singular values, zero-size tensors, and bad calls as errors.
//!
//! Tolerance: composite results, 1e-4 max(1, |reference|), as for every chain of ops in the
//! conformance matrix; on the CPU a fused function rounds every step as the primitives do,
//! so there it must be bit-identical to its chain.

mod common;

use common::*;
use minitorch::backend::fused::{Program, ProgramBuilder};
use minitorch::nn::{Module, Network};
use minitorch::optim::Sgd;
use minitorch::tensor::grad_check::grad_check;
use minitorch::tensor::Activation;
use minitorch::train::{LossKind, TrainConfig, Trainer};
use minitorch::{no_grad, BinaryOp, Device, Layout, Tensor, UnaryOp};

type Fwd = dyn Fn(&[Tensor]) -> minitorch::Result<Tensor>;

/// Forward value and gradients of every input of `f` (weighted so each output element's
/// gradient differs).
fn value_and_grads(
    f: &Fwd,
    inputs: &[Tensor],
    device: Device,
) -> minitorch::Result<(Vec<f32>, Vec<Vec<f32>>)> {
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|t| Ok(t.to_device(device)?.detach().requires_grad_(true)))
        .collect::<minitorch::Result<_>>()?;
    let y = f(&leaves)?;
    let w = Tensor::from_vec(data(y.size(), Domain::General, 77), y.shape(), device)?;
    y.mul(&w)?.sum_all()?.backward()?;
    let grads = leaves
        .iter()
        .map(|x| match x.grad() {
            Some(g) => g.to_vec(),
            None => Ok(vec![0.0; x.size()]),
        })
        .collect::<minitorch::Result<_>>()?;
    Ok((y.to_vec()?, grads))
}

/// `fused` against `chain` on every column: same values and gradients as the chain on the
/// same backend (bit-identical on the CPU) and as the CPU's chain.
fn check_pair(name: &str, fused: &Fwd, chain: &Fwd, inputs: &[Tensor]) {
    check_pair_with(name, fused, chain, inputs, true)
}

/// [`check_pair`]; `exact_on_cpu` false where an input is used more than twice, so its
/// gradient contributions may be summed in another order than autodiff's.
fn check_pair_with(name: &str, fused: &Fwd, chain: &Fwd, inputs: &[Tensor], exact_on_cpu: bool) {
    let (want_y, want_g) = value_and_grads(chain, inputs, Device::Cpu).expect("cpu chain");
    let mut failures = Vec::new();
    for col in columns() {
        let d = col.device;
        let got = value_and_grads(fused, inputs, d);
        let same = value_and_grads(chain, inputs, d);
        let (got, same) = match (got, same) {
            (Ok(g), Ok(s)) => (g, s),
            (Err(e), _) | (_, Err(e)) => {
                failures.push(format!("{name} on {d}: error: {e}"));
                continue;
            }
        };
        let refs = [
            ("the cpu chain", &want_y, &want_g),
            ("its own chain", &same.0, &same.1),
        ];
        for (what, ry, rg) in refs {
            let exact = exact_on_cpu && d == Device::Cpu;
            let bound = |w: f32| {
                if exact {
                    Bound::EXACT
                } else {
                    Bound::composite(1e-4, w)
                }
            };
            let mut res = compare(
                &format!("{name} forward vs {what}"),
                "",
                "fused",
                d,
                &got.0,
                ry,
                |i| bound(ry[i]),
            );
            for (k, (g, w)) in got.1.iter().zip(rg.iter()).enumerate() {
                res = res.and_then(|_| {
                    compare(
                        &format!("{name} gradient of input {k} vs {what}"),
                        "",
                        "fused backward",
                        d,
                        g,
                        w,
                        |i| bound(w[i]),
                    )
                });
            }
            if let Err(e) = res {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn t(shape: &[usize], domain: Domain, seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(data(n, domain, seed), shape, Device::Cpu).unwrap()
}

/// Whether the fused linear layer's gradients are bit-identical to the chain's on the CPU.
/// Not with sigmoid: the fused backward takes the derivative from the stored output,
/// `s (1 - s)` (as PyTorch does: the input is not kept), while the primitive `sigmoid_back`
/// recomputes `s(x) s(-x)` from the input; they agree within the composite bound.
fn exact_backward(act: Activation) -> bool {
    act != Activation::Sigmoid
}

fn chain_act(z: Tensor, act: Activation) -> minitorch::Result<Tensor> {
    match act {
        Activation::Identity => Ok(z),
        Activation::Relu => z.relu(),
        Activation::Sigmoid => z.sigmoid(),
    }
}

#[test]
fn linear_matches_matmul_add_activation() {
    for act in [Activation::Identity, Activation::Relu, Activation::Sigmoid] {
        // Odd sizes off every tile edge; a batch of 1; k = 1.
        for &(n, k, m) in &[(7, 13, 5), (1, 3, 1), (10, 1, 33), (37, 70, 19)] {
            let inputs = [
                t(&[n, k], Domain::General, 1),
                t(&[k, m], Domain::General, 2),
                t(&[m], Domain::General, 3),
            ];
            let name = format!("linear {act:?} ({n}x{k}) @ ({k}x{m})");
            check_pair_with(
                &name,
                &move |x: &[Tensor]| x[0].linear(&x[1], &x[2], act),
                &move |x: &[Tensor]| chain_act(x[0].matmul(&x[1])?.add(&x[2])?, act),
                &inputs,
                exact_backward(act),
            );
        }
    }
}

#[test]
fn linear_reads_transposed_inputs_in_place() {
    let inputs = [
        t(&[9, 6], Domain::General, 4),
        t(&[11, 9], Domain::General, 5),
        t(&[11], Domain::Ties, 6),
    ];
    check_pair(
        "linear relu of transposed x and w",
        &|x: &[Tensor]| {
            x[0].transpose()?
                .linear(&x[1].transpose()?, &x[2], Activation::Relu)
        },
        &|x: &[Tensor]| {
            x[0].transpose()?
                .matmul(&x[1].transpose()?)?
                .add(&x[2])?
                .relu()
        },
        &inputs,
    );
}

#[test]
fn linear_saturates_like_the_chain() {
    // |z| up to ~1000: sigmoid at exactly 0 and 1, relu far on both sides.
    let x = Tensor::from_vec(
        vec![300.0, -300.0, 0.0, 1e-30, -1e-30, 2.0],
        &[3, 2],
        Device::Cpu,
    )
    .unwrap();
    let inputs = [
        x,
        t(&[2, 4], Domain::General, 7),
        t(&[4], Domain::General, 8),
    ];
    for act in [Activation::Relu, Activation::Sigmoid] {
        check_pair_with(
            &format!("linear {act:?} saturated"),
            &move |x: &[Tensor]| x[0].linear(&x[1], &x[2], act),
            &move |x: &[Tensor]| chain_act(x[0].matmul(&x[1])?.add(&x[2])?, act),
            &inputs,
            exact_backward(act),
        );
    }
}

/// The course's loss, as the primitives computed it before fusion.
fn loss_chain(out: &Tensor, y: &Tensor, kind: LossKind, scale: f32) -> minitorch::Result<Tensor> {
    let prob = out
        .mul(y)?
        .add(&out.add_scalar(-1.0)?.mul(&y.add_scalar(-1.0)?)?)?;
    let prob = match kind {
        LossKind::Guarded => prob.add_scalar(minitorch::train::LOG_GUARD)?,
        LossKind::Exact => prob,
    };
    prob.log()?.neg()?.mul_scalar(scale)
}

#[test]
fn loss_matches_its_chain() {
    // Probabilities near 0 and 1 (log near 0 and near the guard), labels 0 and 1.
    let out = Tensor::from_vec(
        vec![
            0.5,
            1e-7,
            1.0 - 1e-7,
            0.999,
            0.001,
            0.3,
            0.7,
            0.0,
            1.0,
            0.25,
            0.9999,
        ],
        &[11],
        Device::Cpu,
    )
    .unwrap();
    let y = Tensor::from_vec(
        vec![1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0],
        &[11],
        Device::Cpu,
    )
    .unwrap();
    for kind in [LossKind::Guarded, LossKind::Exact] {
        for scale in [1.0, 0.1, 1.0 / 3.0] {
            let inputs = [out.clone(), y.clone()];
            check_pair(
                &format!("loss {kind:?} scale {scale}"),
                &move |x: &[Tensor]| Trainer::scaled_batch_loss(&x[0], &x[1], kind, scale),
                &move |x: &[Tensor]| loss_chain(&x[0], &x[1], kind, scale),
                &inputs,
            );
        }
    }
    // The exact loss at a saturated probability is inf with a NaN/inf gradient, as the chain.
    let out = Tensor::from_vec(vec![0.0, 1.0], &[2], Device::Cpu).unwrap();
    let y = Tensor::from_vec(vec![1.0, 0.0], &[2], Device::Cpu).unwrap();
    let l = Trainer::batch_loss(&out, &y, LossKind::Exact)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(l, vec![f32::INFINITY, f32::INFINITY]);
}

/// A program over three inputs using every differentiable op:
/// `exp(a) * b + sigmoid(a) * inv(b) + log(c) - relu(a) + (a < b) * p0`.
fn every_op() -> Program {
    let mut p = ProgramBuilder::new();
    let (a, b, c) = (p.input(0), p.input(1), p.input(2));
    let ea = p.unary(UnaryOp::Exp, a);
    let t1 = p.mul(ea, b);
    let sa = p.unary(UnaryOp::Sigmoid, a);
    let ib = p.unary(UnaryOp::Inv, b);
    let t2 = p.mul(sa, ib);
    let lc = p.unary(UnaryOp::Log, c);
    let ra = p.unary(UnaryOp::Relu, a);
    let nra = p.unary(UnaryOp::Neg, ra);
    let lt = p.binary(BinaryOp::Lt, a, b);
    let p0 = p.param(0);
    let t3 = p.mul(lt, p0);
    let s1 = p.add(t1, t2);
    let s2 = p.add(s1, lc);
    let s3 = p.add(s2, nra);
    let out = p.add(s3, t3);
    p.build(&[out])
}

fn every_op_chain(x: &[Tensor], p0: f32) -> minitorch::Result<Tensor> {
    let (a, b, c) = (&x[0], &x[1], &x[2]);
    let t1 = a.exp()?.mul(b)?;
    let t2 = a.sigmoid()?.mul(&b.inv()?)?;
    let t3 = a.lt(b)?.mul_scalar(p0)?;
    t1.add(&t2)?
        .add(&c.log()?)?
        .add(&a.relu()?.neg()?)?
        .add(&t3)
}

#[test]
fn general_fused_program_matches_its_chain_with_broadcasting() {
    let prog = every_op();
    let p0 = 0.75;
    // Broadcast shapes, and a permuted (non-contiguous) first input.
    let a = t(&[5, 3], Domain::General, 10).transpose().unwrap();
    let inputs = [
        a,
        t(&[5], Domain::NonZero, 11),
        t(&[3, 1], Domain::Positive, 12),
    ];
    let pr = prog.clone();
    check_pair_with(
        "every op, broadcast and permuted",
        &move |x: &[Tensor]| Ok(Tensor::fused(&pr, &[&x[0], &x[1], &x[2]], &[p0])?.remove(0)),
        &move |x: &[Tensor]| every_op_chain(x, p0),
        &inputs,
        false,
    );
    // grad_check on every present backend.
    for col in columns() {
        let on = |x: &Tensor| x.to_device(col.device).unwrap();
        let xs = [on(&inputs[0]), on(&inputs[1]), on(&inputs[2])];
        let pr = prog.clone();
        grad_check(
            move |x: &[Tensor]| Ok(Tensor::fused(&pr, &[&x[0], &x[1], &x[2]], &[p0])?.remove(0)),
            &xs,
            10,
            5,
        )
        .unwrap_or_else(|e| panic!("grad_check on {}: {e}", col.device));
    }
}

#[test]
fn large_fused_kernels_match_the_cpu() {
    // 1M elements: parallel on the CPU, many workgroups on a GPU; the second input is
    // transposed so the strided variant runs.
    let prog = every_op();
    let a = t(&[1024, 1024], Domain::General, 20);
    let b = t(&[1024, 1024], Domain::NonZero, 21);
    let c = t(&[1024], Domain::Positive, 22);
    let run = |d: Device| -> Vec<f32> {
        let on = |x: &Tensor| x.to_device(d).unwrap();
        let (a, b, c) = (on(&a), on(&b).transpose().unwrap(), on(&c));
        Tensor::fused(&prog, &[&a, &b, &c], &[0.5]).unwrap()[0]
            .to_vec()
            .unwrap()
    };
    let want: Vec<f32> = {
        let (av, bv, cv) = (
            a.to_vec().unwrap(),
            b.transpose().unwrap().to_vec().unwrap(),
            c.to_vec().unwrap(),
        );
        (0..1024 * 1024)
            .map(|i| prog.eval(&[av[i], bv[i], cv[i % 1024]], &[0.5])[0])
            .collect()
    };
    for col in columns() {
        let got = run(col.device);
        compare(
            "every op 1M",
            "[1024, 1024]",
            "fused",
            col.device,
            &got,
            &want,
            |i| Bound::composite(1e-4, want[i]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn special_values_propagate_like_the_primitives() {
    let prog = every_op();
    let specials = [
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-40,
        -1e-40,
        88.0,
        -88.0,
    ];
    let n = specials.len();
    let mut av = Vec::new();
    let mut bv = Vec::new();
    for &x in &specials {
        for &y in &specials {
            av.push(x);
            bv.push(y);
        }
    }
    let cv: Vec<f32> = av.iter().map(|x| x.abs()).collect();
    for col in columns() {
        let d = col.device;
        let mk = |v: &Vec<f32>| Tensor::from_vec(v.clone(), &[n * n], d).unwrap();
        let (a, b, c) = (mk(&av), mk(&bv), mk(&cv));
        let got = Tensor::fused(&prog, &[&a, &b, &c], &[1.5]).unwrap()[0]
            .to_vec()
            .unwrap();
        // Against the primitives on the same device (a GPU may flush subnormals to zero,
        // in both), and on the CPU against Program::eval.
        let want = if d == Device::Cpu {
            (0..n * n)
                .map(|i| prog.eval(&[av[i], bv[i], cv[i]], &[1.5])[0])
                .collect()
        } else {
            every_op_chain(&[a, b, c], 1.5).unwrap().to_vec().unwrap()
        };
        // NaN must match NaN, infinities exactly; finite values within the composite bound.
        compare(
            "every op on specials",
            "[81]",
            "fused",
            d,
            &got,
            &want,
            |i| {
                if want[i].is_finite() {
                    Bound::composite(1e-4, want[i])
                } else {
                    Bound::EXACT
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn matmul_epilogue_with_broadcast_batches_at_the_backend() {
    // [2, 3, n, k] @ [1 -> 3 (stride 0), k, m] with a bias broadcast over the batch.
    let (n, k, m) = (17, 20, 18);
    let av = data(2 * 3 * n * k, Domain::General, 30);
    let bv = data(k * m, Domain::General, 31);
    let cv = data(m, Domain::General, 32);
    let al = Layout::contiguous(&[2, 3, n, k]);
    let bl = Layout::contiguous(&[1, 1, k, m])
        .broadcast_to(&[2, 3, k, m])
        .unwrap();
    let cl = Layout::contiguous(&[m])
        .broadcast_to(&[2, 3, n, m])
        .unwrap();
    let epi = {
        let mut p = ProgramBuilder::new();
        let (acc, c, s) = (p.input(0), p.input(1), p.param(0));
        let z = p.add(acc, c);
        let r = p.mul(z, s);
        let o = p.unary(UnaryOp::Sigmoid, r);
        p.build(&[o])
    };
    let mut want = vec![0.0f32; 6 * n * m];
    for z in 0..6 {
        for i in 0..n {
            for j in 0..m {
                let dot: f64 = (0..k)
                    .map(|q| av[z * n * k + i * k + q] as f64 * bv[q * m + j] as f64)
                    .sum();
                want[z * n * m + i * m + j] = epi.eval(&[dot as f32, cv[j]], &[0.5])[0];
            }
        }
    }
    for col in columns() {
        let be = &col.backend;
        let (a, b, c) = (
            be.upload(&av).unwrap(),
            be.upload(&bv).unwrap(),
            be.upload(&cv).unwrap(),
        );
        let s = be
            .matmul_fused(&a, &al, &b, &bl, &epi, &[(&c, &cl)], &[0.5])
            .unwrap();
        let got = be.download(&s).unwrap();
        compare(
            "matmul_fused batch",
            "[2,3,17,20]@[3,20,18]",
            "epilogue",
            col.device,
            &got,
            &want,
            |i| Bound::abs(1e-5 * (want[i].abs() as f64).max(1.0)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn zero_size_and_bad_calls() {
    let prog = every_op();
    for col in columns() {
        let d = col.device;
        let e = Tensor::zeros(&[3, 0], d).unwrap();
        let out = Tensor::fused(&prog, &[&e, &e, &e], &[1.0]).unwrap();
        assert_eq!(out[0].shape(), &[3, 0]);
        let x = Tensor::ones(&[2, 3], d).unwrap();
        let y = Tensor::ones(&[4], d).unwrap();
        let err = |r: minitorch::Result<minitorch::Tensors>| r.unwrap_err().to_string();
        let msg = err(Tensor::fused(&prog, &[&x, &x], &[1.0]));
        assert!(msg.contains("3 inputs"), "{msg}");
        let msg = err(Tensor::fused(&prog, &[&x, &x, &x], &[]));
        assert!(msg.contains("parameters"), "{msg}");
        let msg = err(Tensor::fused(&prog, &[&x, &y, &x], &[1.0]));
        assert!(msg.contains("broadcast"), "{msg}");
        let w = Tensor::ones(&[4, 2], d).unwrap();
        let b = Tensor::ones(&[2], d).unwrap();
        let msg = x.linear(&w, &b, Activation::Relu).unwrap_err().to_string();
        assert!(msg.contains("linear") && msg.contains("(2, 3)"), "{msg}");
        // Several outputs are for no_grad use only.
        let two = {
            let mut p = ProgramBuilder::new();
            let a = p.input(0);
            let n = p.unary(UnaryOp::Neg, a);
            p.build(&[a, n])
        };
        let leaf = Tensor::ones(&[2], d).unwrap().requires_grad_(true);
        assert!(Tensor::fused(&two, &[&leaf], &[]).is_err());
        let outs = no_grad(|| Tensor::fused(&two, &[&leaf], &[])).unwrap();
        assert_eq!(outs[1].to_vec().unwrap(), vec![-1.0, -1.0]);
    }
}

/// SGD before fusion, in primitives: `g += wd p`, `v = m v + g`, `p += -lr v`.
fn sgd_chain(
    p: &Tensor,
    g: &Tensor,
    v: Option<&Tensor>,
    lr: f32,
    m: f32,
    wd: f32,
) -> (Tensor, Option<Tensor>) {
    let mut g = g.clone();
    if wd != 0.0 {
        g = g.add(&p.mul_scalar(wd).unwrap()).unwrap();
    }
    let mut v_new = None;
    if m != 0.0 {
        g = match v {
            Some(prev) => prev.mul_scalar(m).unwrap().add(&g).unwrap(),
            None => g,
        };
        v_new = Some(g.clone());
    }
    (p.add(&g.mul_scalar(-lr).unwrap()).unwrap(), v_new)
}

#[test]
fn sgd_step_matches_its_chain() {
    for &(lr, m, wd) in &[
        (0.05, 0.0, 0.0),
        (0.1, 0.9, 0.0),
        (0.1, 0.0, 0.01),
        (0.3, 0.5, 0.1),
    ] {
        for col in columns() {
            let d = col.device;
            let p0 = Tensor::from_vec(data(35, Domain::General, 40), &[5, 7], d).unwrap();
            let param = minitorch::nn::Parameter::new(p0.clone());
            let mut opt = Sgd::new(vec![param.clone()], lr)
                .with_momentum(m)
                .with_weight_decay(wd);
            let (mut want, mut v) = (p0.clone(), None);
            for step in 0..3 {
                // The gradient of sum(p * w) is w.
                let w = Tensor::from_vec(data(35, Domain::General, 41 + step), &[5, 7], d).unwrap();
                opt.zero_grad();
                param
                    .value()
                    .mul(&w)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                opt.step().unwrap();
                let (p, nv) = no_grad(|| sgd_chain(&want, &w, v.as_ref(), lr, m, wd));
                want = p;
                v = nv;
                let (got, exp) = (param.value().to_vec().unwrap(), want.to_vec().unwrap());
                let bound = |i: usize| {
                    if d == Device::Cpu {
                        Bound::EXACT
                    } else {
                        Bound::composite(1e-5, exp[i])
                    }
                };
                compare(
                    &format!("sgd lr {lr} momentum {m} decay {wd} step {step}"),
                    "[5, 7]",
                    "fused step",
                    d,
                    &got,
                    &exp,
                    bound,
                )
                .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}

/// One epoch of the course loop as it was before fusion (every op a primitive), on the
/// same data, weights and order as `Trainer`.
struct PrimitiveTrainer {
    net: Network,
    data: minitorch::datasets::Graph,
    rng: rand_chacha::ChaCha8Rng,
    config: TrainConfig,
}

impl PrimitiveTrainer {
    fn new(config: TrainConfig) -> PrimitiveTrainer {
        let data =
            minitorch::datasets::Graph::new(config.dataset, config.points, config.seed).unwrap();
        let net = Network::new(
            config.hidden,
            &mut minitorch::train::weight_rng(config.seed),
            config.device,
        )
        .unwrap();
        PrimitiveTrainer {
            rng: minitorch::train::shuffle_rng(config.seed),
            net,
            data,
            config,
        }
    }

    fn epoch(&mut self) -> f32 {
        use rand::seq::SliceRandom;
        let n = self.data.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        let d = self.config.device;
        let layers = [&self.net.layer1, &self.net.layer2, &self.net.layer3];
        let mut total = 0.0;
        for chunk in order.chunks(self.config.batch) {
            let xs: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| [self.data.x[i][0] as f32, self.data.x[i][1] as f32])
                .collect();
            let ys: Vec<f32> = chunk.iter().map(|&i| self.data.y[i]).collect();
            let b = chunk.len();
            let x = Tensor::from_vec(xs, &[b, 2], d).unwrap();
            let y = Tensor::from_vec(ys, &[b], d).unwrap();
            self.net.parameters().iter().for_each(|p| p.zero_grad());
            let mut h = x;
            for (k, l) in layers.iter().enumerate() {
                let z = h
                    .matmul(&l.weights.value())
                    .unwrap()
                    .add(&l.bias.value())
                    .unwrap();
                h = if k < 2 {
                    z.relu().unwrap()
                } else {
                    z.sigmoid().unwrap()
                };
            }
            let out = h.view(&[b]).unwrap();
            let loss = loss_chain(&out, &y, self.config.loss, 1.0).unwrap();
            loss.mul_scalar(1.0 / b as f32)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            total += loss.sum_all().unwrap().item().unwrap();
            no_grad(|| {
                for p in self.net.parameters() {
                    let v = p.value();
                    let g = v.grad().unwrap();
                    p.update(v.add(&g.mul_scalar(-self.config.lr).unwrap()).unwrap());
                }
            });
        }
        total
    }
}

#[test]
fn training_losses_of_the_six_datasets_match_the_primitive_loop() {
    let epochs = 8;
    for col in columns() {
        for dataset in minitorch::datasets::DatasetKind::ALL {
            let config = TrainConfig {
                dataset,
                hidden: 20,
                epochs,
                device: col.device,
                ..TrainConfig::default()
            };
            let mut fused = Trainer::new(config.clone()).unwrap();
            let mut prim = PrimitiveTrainer::new(config);
            for e in 0..epochs {
                let (got, want) = (fused.epoch().unwrap(), prim.epoch());
                let rel = ((got - want) / want).abs();
                assert!(
                    rel <= 1e-4,
                    "{dataset:?} on {}: epoch {e}: fused loop loss {got}, primitive loop {want} (relative {rel:e})",
                    col.device
                );
            }
        }
    }
}

#[test]
fn large_products_take_the_tiled_path_with_the_same_results() {
    // 256^3 multiply-adds: past FUSED_MATMUL_MAX_WORK, so the GPUs run the tiled primitive
    // and then the epilogue; forward and gradients still match the chain.
    assert!(256usize.pow(3) > minitorch::backend::fused::FUSED_MATMUL_MAX_WORK);
    let inputs = [
        t(&[256, 256], Domain::General, 50),
        t(&[256, 256], Domain::General, 51),
        t(&[256], Domain::General, 52),
    ];
    check_pair_with(
        "linear sigmoid 256^3",
        &|x: &[Tensor]| x[0].linear(&x[1], &x[2], Activation::Sigmoid),
        &|x: &[Tensor]| x[0].matmul(&x[1])?.add(&x[2])?.sigmoid(),
        &inputs,
        exact_backward(Activation::Sigmoid),
    );
}

#[test]
fn several_outputs_on_a_million_elements() {
    // The CPU's parallel path assembles every output from its blocks.
    let prog = {
        let mut p = ProgramBuilder::new();
        let (a, b) = (p.input(0), p.input(1));
        let s = p.add(a, b);
        let m = p.mul(a, b);
        p.build(&[s, m, a])
    };
    let (av, bv) = (
        data(1 << 20, Domain::General, 60),
        data(1 << 20, Domain::General, 61),
    );
    for col in columns() {
        let a = Tensor::from_vec(av.clone(), &[1 << 20], col.device).unwrap();
        let b = Tensor::from_vec(bv.clone(), &[1 << 20], col.device).unwrap();
        let outs = Tensor::fused(&prog, &[&a, &b], &[]).unwrap();
        let got: Vec<Vec<f32>> = outs.iter().map(|o| o.to_vec().unwrap()).collect();
        for i in (0..1 << 20).step_by(997) {
            assert_eq!(got[0][i], av[i] + bv[i], "{} sum at {i}", col.device);
            assert_eq!(got[1][i], av[i] * bv[i], "{} product at {i}", col.device);
            assert_eq!(got[2][i], av[i], "{} copy at {i}", col.device);
        }
    }
}

#[test]
fn grad_check_linear_and_loss_on_every_backend() {
    for col in columns() {
        let d = col.device;
        let on = |x: Tensor| x.to_device(d).unwrap();
        let xs = [
            on(t(&[6, 5], Domain::General, 70)),
            on(t(&[5, 4], Domain::General, 71)),
            on(t(&[4], Domain::General, 72)),
        ];
        for act in [Activation::Identity, Activation::Relu, Activation::Sigmoid] {
            grad_check(
                move |x: &[Tensor]| x[0].linear(&x[1], &x[2], act),
                &xs,
                10,
                3,
            )
            .unwrap_or_else(|e| panic!("grad_check linear {act:?} on {d}: {e}"));
        }
        // Probabilities away from 0 and 1, so the central difference stays accurate.
        let out =
            on(
                Tensor::from_vec(vec![0.2, 0.35, 0.5, 0.65, 0.8, 0.3, 0.6], &[7], Device::Cpu)
                    .unwrap(),
            );
        let y = on(
            Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0], &[7], Device::Cpu).unwrap(),
        );
        grad_check(
            |x: &[Tensor]| Trainer::scaled_batch_loss(&x[0], &x[1], LossKind::Guarded, 0.5),
            &[out, y],
            7,
            4,
        )
        .unwrap_or_else(|e| panic!("grad_check loss on {d}: {e}"));
    }
}
