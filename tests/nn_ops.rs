//! Module 4, tasks 4.3 and 4.4: the course's `test_nn.py` cases (pooling, max, softmax,
//! log_softmax, dropout) ported, plus tie and NaN rules, stability at the ends of f32,
//! losses against f64 loops written here, the dropout generator's rates, and bad input.
//!
//! The device is the CPU unless `MINITORCH_TEST_DEVICE` names another (`wgpu`, `cuda`).

use minitorch::tensor::grad_check::grad_check;
use minitorch::tensor::Reduction;
use minitorch::{Device, Error, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn device() -> Device {
    match std::env::var("MINITORCH_TEST_DEVICE") {
        Ok(s) => Device::parse(&s).expect("MINITORCH_TEST_DEVICE"),
        Err(_) => Device::Cpu,
    }
}

fn t(data: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(data, shape, device()).unwrap()
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-5.0f32..5.0)).collect()
}

fn close(a: f32, b: f64) -> bool {
    (a as f64 - b).abs() <= 1e-5 + 1e-5 * b.abs()
}

#[test]
fn course_avgpool() {
    for seed in 0..5 {
        let v = random(16, seed);
        let x = t(v.clone(), &[1, 1, 4, 4]);
        let at = |i: usize, j: usize| v[i * 4 + j] as f64;
        for (k, want) in [
            ([2, 2], (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0),
            ([2, 1], (at(0, 0) + at(1, 0)) / 2.0),
            ([1, 2], (at(0, 0) + at(0, 1)) / 2.0),
        ] {
            let out = x.avgpool2d(k).unwrap();
            assert_eq!(out.shape(), [1, 1, 4 / k[0], 4 / k[1]]);
            assert!(close(out.get(&[0, 0, 0, 0]).unwrap(), want), "{k:?}");
        }
        grad_check(|a| a[0].avgpool2d([2, 2]), &[x], 10, seed).unwrap();
    }
}

#[test]
fn course_maxpool() {
    for seed in 0..5 {
        let v = random(16, seed);
        let x = t(v.clone(), &[1, 1, 4, 4]);
        let at = |i: usize, j: usize| v[i * 4 + j];
        for (k, want) in [
            ([2, 2], at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1))),
            ([2, 1], at(0, 0).max(at(1, 0))),
            ([1, 2], at(0, 0).max(at(0, 1))),
        ] {
            let out = x.maxpool2d(k).unwrap();
            assert_eq!(out.get(&[0, 0, 0, 0]).unwrap(), want, "{k:?}");
        }
        grad_check(|a| a[0].maxpool2d([2, 2]), &[x], 10, seed).unwrap();
    }
}

#[test]
fn tile_lays_each_window_along_the_last_dimension() {
    let x = t((0..2 * 4 * 6).map(|v| v as f32).collect(), &[1, 2, 4, 6]);
    let tiled = x.tile([2, 3]).unwrap();
    assert_eq!(tiled.shape(), [1, 2, 2, 2, 6]);
    // Channel 1, window (1, 0): rows 2-3, columns 0-2 of the second 4x6 plane.
    let base = 24.0 + 2.0 * 6.0;
    let want: Vec<f32> = [0.0, 1.0, 2.0, 6.0, 7.0, 8.0]
        .iter()
        .map(|d| base + d)
        .collect();
    for (k, w) in want.iter().enumerate() {
        assert_eq!(tiled.get(&[0, 1, 1, 0, k as isize]).unwrap(), *w);
    }
}

#[test]
fn maxpool_gives_each_window_gradient_to_its_first_maximum() {
    // A flat window: PyTorch's rule sends the gradient to one position, not four.
    let x = t(vec![1.0; 16], &[1, 1, 4, 4]).requires_grad_(true);
    x.maxpool2d([2, 2])
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = x.grad().unwrap().to_vec().unwrap();
    assert_eq!(g.iter().sum::<f32>(), 4.0);
    for (i, &v) in g.iter().enumerate() {
        let (r, c) = (i / 4, i % 4);
        assert_eq!(v, if r % 2 == 0 && c % 2 == 0 { 1.0 } else { 0.0 }, "{i}");
    }
    // The course's max keeps its rule: every tied maximum gets the whole gradient.
    let y = t(vec![2.0, 2.0], &[1, 2]).requires_grad_(true);
    y.max(1).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(y.grad().unwrap().to_vec().unwrap(), [1.0, 1.0]);
}

#[test]
fn maxpool_reads_strided_inputs_and_follows_the_nan_rule() {
    // A permuted input (a convolution's output is one) against the same values contiguous,
    // forward and backward, with an odd batch and channel count and 3x2 windows.
    let v = random(3 * 5 * 6 * 4, 21);
    let base = t(v, &[5, 3, 6, 4]).requires_grad_(true);
    let x = base.permute(&[1, 0, 2, 3]).unwrap();
    let xc = x.contiguous().unwrap().detach().requires_grad_(true);
    let weights = t(random(3 * 5 * 2 * 2, 22), &[3, 5, 2, 2]);
    let run = |x: &Tensor| {
        let y = x.maxpool2d([3, 2]).unwrap();
        y.mul(&weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        y.to_vec().unwrap()
    };
    assert_eq!(run(&x), run(&xc));
    let g = base.grad().unwrap().permute(&[1, 0, 2, 3]).unwrap();
    assert_eq!(
        g.contiguous().unwrap().to_vec().unwrap(),
        xc.grad().unwrap().to_vec().unwrap()
    );
    // Each window's whole gradient sits at its maximum (checked by hand).
    let xv = xc.to_vec().unwrap();
    let gv = xc.grad().unwrap().to_vec().unwrap();
    let wv = weights.to_vec().unwrap();
    for (o, &wgt) in wv.iter().enumerate() {
        let (bc, oh, ow) = (o / 4, o / 2 % 2, o % 2);
        let cells: Vec<usize> = (0..3)
            .flat_map(|i| (0..2).map(move |j| bc * 24 + (oh * 3 + i) * 4 + ow * 2 + j))
            .collect();
        let best = cells
            .iter()
            .copied()
            .fold(cells[0], |b, c| if xv[c] > xv[b] { c } else { b });
        for &c in &cells {
            assert_eq!(gv[c], if c == best { wgt } else { 0.0 }, "window {o}");
        }
    }
    // A NaN is the maximum, and the first NaN takes the gradient.
    let n = f32::NAN;
    let x = t(vec![1.0, n, 3.0, n], &[1, 1, 2, 2]).requires_grad_(true);
    let y = x.maxpool2d([2, 2]).unwrap();
    assert!(y.to_vec().unwrap()[0].is_nan());
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), [0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn cpu_pools_match_the_composed_defaults() {
    // The CPU's direct max pool against the primitives' composition every other backend
    // runs, on ties, NaN, infinities and a permuted input, forward and backward.
    use minitorch::backend::cpu::CpuBackend;
    use minitorch::backend::pool2d::{self, Windows};
    use minitorch::backend::Backend;
    use minitorch::Layout;
    let cpu = CpuBackend;
    // W = 36: rows of 18 two-wide windows, more than one 16-lane step of the CPU's
    // vector path.
    let mut v = random(2 * 3 * 6 * 36, 5);
    for (i, x) in v.iter_mut().enumerate() {
        match i % 11 {
            0 => *x = 1.0,
            1 => *x = 1.0,
            3 if i % 3 == 0 => *x = f32::NAN,
            5 => *x = f32::INFINITY,
            7 => *x = f32::NEG_INFINITY,
            _ => {}
        }
    }
    let x = cpu.upload(&v).unwrap();
    // [B=2, C=3, H=6, W=36] stored as [C, B, H, W].
    let l = Layout::contiguous(&[3, 2, 6, 36])
        .permute(&[1, 0, 2, 3])
        .unwrap();
    for kernel in [[2, 2], [3, 2], [3, 1], [1, 4], [6, 4], [2, 9]] {
        let w = Windows::new("test", l.shape(), kernel).unwrap();
        let (m, f) = cpu.max_pool2d(&x, &l, &w).unwrap();
        let (dm, df) = pool2d::max_pool2d(&cpu, &x, &l, &w).unwrap();
        let bits = |s: &minitorch::backend::Storage| -> Vec<u32> {
            cpu.download(s)
                .unwrap()
                .iter()
                .map(|v| if v.is_nan() { 1 } else { v.to_bits() })
                .collect()
        };
        assert_eq!(bits(&m), bits(&dm), "{kernel:?} maxima");
        assert_eq!(
            cpu.download(&f).unwrap(),
            cpu.download(&df).unwrap(),
            "{kernel:?} first"
        );
        let go = cpu.upload(&random(w.count(), 6)).unwrap();
        let gl = Layout::contiguous(&w.out_shape());
        let gx = cpu.max_pool2d_backward(&go, &gl, &f, &w).unwrap();
        let dgx = pool2d::max_pool2d_backward(&cpu, &go, &gl, &df, &w).unwrap();
        assert_eq!(
            cpu.download(&gx).unwrap(),
            cpu.download(&dgx).unwrap(),
            "{kernel:?} grad"
        );
        // The average pool: the CPU's one pass against the copy, sum and scale.
        let (a, da) = (
            cpu.avg_pool2d(&x, &l, &w).unwrap(),
            pool2d::avg_pool2d(&cpu, &x, &l, &w).unwrap(),
        );
        assert_eq!(bits(&a), bits(&da), "{kernel:?} means");
        let (ga, dga) = (
            cpu.avg_pool2d_backward(&go, &gl, &w).unwrap(),
            pool2d::avg_pool2d_backward(&cpu, &go, &gl, &w).unwrap(),
        );
        assert_eq!(bits(&ga), bits(&dga), "{kernel:?} mean gradients");
    }
    // A gradient that is not the output's shape is an error, not a wrong answer.
    let w = Windows::new("test", l.shape(), [2, 2]).unwrap();
    let (_, f) = cpu.max_pool2d(&x, &l, &w).unwrap();
    let bad = Layout::contiguous(&[2, 3, 3, 3]);
    assert!(cpu.max_pool2d_backward(&x, &bad, &f, &w).is_err());
}

#[test]
fn course_max_over_each_dimension() {
    // test_max (a TODO in the course): max over every dim of a [2, 3, 4] tensor, values and
    // gradients (distinct values, so no ties), and argmax agrees.
    let v = random(24, 9);
    let x = t(v.clone(), &[2, 3, 4]);
    let shape = [2usize, 3, 4];
    for dim in 0..3 {
        let m = x.max(dim).unwrap();
        let a = x.argmax(dim).unwrap();
        let (mv, av) = (m.to_vec().unwrap(), a.to_vec().unwrap());
        let mut out_shape = shape;
        out_shape[dim] = 1;
        for o in 0..mv.len() {
            let idx = [
                o / (out_shape[1] * out_shape[2]),
                o / out_shape[2] % out_shape[1],
                o % out_shape[2],
            ];
            let mut best = (f32::NEG_INFINITY, 0);
            for k in 0..shape[dim] {
                let mut i = idx;
                i[dim] = k;
                let val = v[(i[0] * 3 + i[1]) * 4 + i[2]];
                if val > best.0 {
                    best = (val, k);
                }
            }
            assert_eq!(mv[o], best.0);
            assert_eq!(av[o], best.1 as f32);
        }
        grad_check(|a| a[0].max(dim), std::slice::from_ref(&x), 10, dim as u64).unwrap();
    }
}

#[test]
fn argmax_takes_the_first_maximum_and_the_first_nan() {
    let x = t(
        vec![1.0, 3.0, 3.0, 0.0, f32::NAN, 5.0, f32::NAN, 2.0],
        &[2, 4],
    );
    assert_eq!(x.argmax(1).unwrap().to_vec().unwrap(), [1.0, 0.0]);
    let y = t(
        vec![f32::NEG_INFINITY, f32::NEG_INFINITY, f32::INFINITY, 7.0],
        &[4],
    );
    assert_eq!(y.argmax(0).unwrap().to_vec().unwrap(), [2.0]);
    assert_eq!(
        t(vec![f32::NEG_INFINITY; 3], &[3])
            .argmax(0)
            .unwrap()
            .to_vec()
            .unwrap(),
        [0.0]
    );
}

#[test]
fn course_softmax_and_log_softmax() {
    for seed in 0..5 {
        let x = t(random(16, seed), &[1, 1, 4, 4]);
        let q = x.softmax(3).unwrap();
        assert!(close(q.sum(3).unwrap().get(&[0, 0, 0, 0]).unwrap(), 1.0));
        let q1 = x.softmax(1).unwrap();
        assert!(close(q1.sum(1).unwrap().get(&[0, 0, 0, 0]).unwrap(), 1.0));
        let q2 = x.log_softmax(3).unwrap().exp().unwrap();
        for (a, b) in q.to_vec().unwrap().iter().zip(q2.to_vec().unwrap()) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
        grad_check(|a| a[0].softmax(2), std::slice::from_ref(&x), 10, seed).unwrap();
        grad_check(|a| a[0].log_softmax(2), &[x], 10, seed).unwrap();
    }
}

#[test]
fn softmax_is_stable_up_to_f32_max() {
    let m = f32::MAX;
    let x = t(vec![m, m, -m, 0.0], &[1, 4]);
    assert_eq!(
        x.softmax(1).unwrap().to_vec().unwrap(),
        [0.5, 0.5, 0.0, 0.0]
    );
    let l = x.log_softmax(1).unwrap().to_vec().unwrap();
    assert!(close(l[0], -(2f64).ln()) && close(l[1], -(2f64).ln()));
    assert_eq!(l[2], f32::NEG_INFINITY);
    assert_eq!(l[3], -m);
    // A NaN in a row makes the row NaN (as PyTorch).
    let n = t(vec![1.0, f32::NAN], &[1, 2])
        .softmax(1)
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(n.iter().all(|v| v.is_nan()));
}

/// log-sum-exp cross-entropy in f64.
fn ce_ref(x: &[f32], c: usize, labels: &[u32]) -> Vec<f64> {
    x.chunks(c)
        .zip(labels)
        .map(|(row, &l)| {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
            let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            m + s.ln() - row[l as usize] as f64
        })
        .collect()
}

#[test]
fn cross_entropy_and_nll_loss_match_f64() {
    let (n, c) = (7, 5);
    let v = random(n * c, 3);
    let labels = [0u32, 4, 2, 2, 1, 3, 0];
    let per = ce_ref(&v, c, &labels);
    let x = t(v, &[n, c]);
    let sum: f64 = per.iter().sum();
    let ce_sum = x
        .cross_entropy(&labels, Reduction::Sum)
        .unwrap()
        .item()
        .unwrap();
    let ce_mean = x
        .cross_entropy(&labels, Reduction::Mean)
        .unwrap()
        .item()
        .unwrap();
    assert!(
        close(ce_sum, sum) && close(ce_mean, sum / n as f64),
        "{ce_sum} {ce_mean} {sum}"
    );
    let nll = x
        .log_softmax(1)
        .unwrap()
        .nll_loss(&labels, Reduction::Mean)
        .unwrap()
        .item()
        .unwrap();
    assert!(close(nll, sum / n as f64));
    // Gradient: softmax - one_hot, over n for the mean.
    grad_check(
        |a| a[0].cross_entropy(&labels, Reduction::Mean),
        std::slice::from_ref(&x),
        20,
        1,
    )
    .unwrap();
    // Labels from an index tensor.
    let lt = t(labels.iter().map(|&l| l as f32).collect(), &[n]);
    assert_eq!(lt.labels().unwrap(), labels);
    // Extreme logits stay finite where the answer is.
    let e = t(vec![f32::MAX, -f32::MAX], &[1, 2]);
    assert_eq!(
        e.cross_entropy(&[0], Reduction::Sum)
            .unwrap()
            .item()
            .unwrap(),
        0.0
    );
    assert_eq!(
        e.cross_entropy(&[1], Reduction::Sum)
            .unwrap()
            .item()
            .unwrap(),
        f32::INFINITY
    );
}

#[test]
fn binary_cross_entropy_matches_f64_and_clamps_logs() {
    let p = [0.1f32, 0.5, 0.9, 0.99];
    let y = [0.0f32, 1.0, 1.0, 0.0];
    let want: f64 = p
        .iter()
        .zip(&y)
        .map(|(&p, &y)| -(y as f64 * (p as f64).ln() + (1.0 - y as f64) * (1.0 - p as f64).ln()))
        .sum::<f64>()
        / 4.0;
    let pt = t(p.to_vec(), &[4]);
    let yt = t(y.to_vec(), &[4]);
    let got = pt
        .binary_cross_entropy(&yt, Reduction::Mean)
        .unwrap()
        .item()
        .unwrap();
    assert!((got as f64 - want).abs() < 1e-4, "{got} vs {want}");
    grad_check(
        |a| a[0].binary_cross_entropy(&yt, Reduction::Sum),
        &[pt],
        4,
        2,
    )
    .unwrap();
    // p = 0 with y = 1: PyTorch's clamp gives 100, not inf or NaN.
    let edge =
        t(vec![0.0, 1.0], &[2]).binary_cross_entropy(&t(vec![1.0, 1.0], &[2]), Reduction::Sum);
    assert_eq!(edge.unwrap().item().unwrap(), 100.0);
}

#[test]
fn course_dropout() {
    let x = t(random(60, 4), &[3, 4, 5]);
    let xv = x.to_vec().unwrap();
    // p = 0 keeps everything; p = 1 drops everything; ignore (evaluation) is the identity.
    assert_eq!(
        x.dropout_unscaled(0.0, true, 1, 0)
            .unwrap()
            .to_vec()
            .unwrap(),
        xv
    );
    assert!(x
        .dropout_unscaled(1.0, true, 1, 0)
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    assert_eq!(
        x.dropout_unscaled(1.0, false, 1, 0)
            .unwrap()
            .to_vec()
            .unwrap(),
        xv
    );
    assert!(x
        .dropout(1.0, true, 1, 0)
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
}

#[test]
fn dropout_rate_scale_and_determinism() {
    let n = 100_000;
    let x = t(vec![1.0; n], &[n]);
    for p in [0.1f32, 0.25, 0.5, 0.9] {
        let v = x.dropout(p, true, 7, 3).unwrap().to_vec().unwrap();
        let dropped = v.iter().filter(|&&e| e == 0.0).count() as f64 / n as f64;
        // 5 standard deviations of a binomial proportion.
        let sd = ((p * (1.0 - p)) as f64 / n as f64).sqrt();
        assert!(
            (dropped - p as f64).abs() < 5.0 * sd,
            "p {p}: dropped {dropped}"
        );
        let kept = 1.0 / (1.0 - p);
        assert!(v.iter().all(|&e| e == 0.0 || e == kept), "p {p}");
        // Same seed and counter: same mask; another counter: another mask.
        assert_eq!(x.dropout(p, true, 7, 3).unwrap().to_vec().unwrap(), v);
        assert_ne!(x.dropout(p, true, 7, 4).unwrap().to_vec().unwrap(), v);
    }
    // Gradient: the mask times the scale.
    let x = t(random(50, 5), &[5, 10]);
    grad_check(|a| a[0].dropout(0.3, true, 11, 0), &[x], 20, 3).unwrap();
}

#[test]
fn rand_is_the_counter_based_generator() {
    let r = Tensor::rand(&[1000], 42, device())
        .unwrap()
        .to_vec()
        .unwrap();
    let key = minitorch::backend::random::key(42, 0);
    for (i, &v) in r.iter().enumerate() {
        assert_eq!(v, minitorch::backend::random::uniform(key, i as u64));
        assert!((0.0..1.0).contains(&v));
    }
    let mean = r.iter().map(|&v| v as f64).sum::<f64>() / 1000.0;
    assert!((mean - 0.5).abs() < 0.05, "{mean}");
}

fn err_says(r: minitorch::Result<Tensor>, op: &str, needle: &str) {
    match r {
        Err(e @ Error::Shape { .. }) => {
            let m = e.to_string();
            assert!(m.starts_with(op) && m.contains(needle), "{m}");
        }
        Err(e) => panic!("{op}: unexpected error {e}"),
        Ok(t) => panic!("{op}: expected an error, got {:?}", t.shape()),
    }
}

#[test]
fn bad_input_is_an_error_naming_the_op() {
    let x = t(vec![0.0; 12], &[1, 1, 3, 4]);
    err_says(x.avgpool2d([2, 2]), "avgpool2d", "divide");
    err_says(x.maxpool2d([0, 2]), "maxpool2d", "divide");
    err_says(
        x.view(&[3, 4]).unwrap().tile([1, 1]),
        "tile",
        "[B, C, H, W]",
    );
    err_says(x.softmax(4), "softmax", "out of range");
    err_says(x.argmax(7), "argmax", "out of range");
    let s = t(vec![0.0; 6], &[2, 3]);
    err_says(
        s.cross_entropy(&[0, 3], Reduction::Mean),
        "cross_entropy",
        "label 3",
    );
    err_says(
        s.cross_entropy(&[0], Reduction::Mean),
        "cross_entropy",
        "N labels",
    );
    err_says(
        s.nll_loss(&[0, 9], Reduction::Sum),
        "nll_loss",
        "out of range",
    );
    err_says(s.dropout(1.5, true, 0, 0), "dropout", "outside [0, 1]");
    err_says(s.dropout(-0.1, true, 0, 0), "dropout", "outside [0, 1]");
    err_says(s.dropout(f32::NAN, true, 0, 0), "dropout", "outside [0, 1]");
    err_says(
        s.binary_cross_entropy(&x, Reduction::Sum),
        "binary_cross_entropy",
        "one shape",
    );
    assert!(t(vec![0.5, -1.0], &[2]).labels().is_err());
}
