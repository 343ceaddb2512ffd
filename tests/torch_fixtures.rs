//! PyTorch reference values and gradients (tests/fixtures/module4.txt, written by
//! scripts/module4_fixtures.py with PyTorch; no PyTorch needed here): conv1d, conv2d
//! (symmetric, asymmetric and strided), avg and max pooling (ties included: PyTorch's
//! first-maximum rule), softmax, log_softmax, cross_entropy, and three Adam / AdamW steps.
//!
//! The device is the CPU unless `MINITORCH_TEST_DEVICE` names another (`wgpu`, `cuda`).

use std::collections::HashMap;

use minitorch::nn::Parameter;
use minitorch::optim::Adam;
use minitorch::tensor::Reduction;
use minitorch::{Device, Tensor};

fn device() -> Device {
    match std::env::var("MINITORCH_TEST_DEVICE") {
        Ok(s) => Device::parse(&s).expect("MINITORCH_TEST_DEVICE"),
        Err(_) => Device::Cpu,
    }
}

struct Fixtures(HashMap<String, (Vec<usize>, Vec<f32>)>);

impl Fixtures {
    fn load() -> Fixtures {
        let text = include_str!("fixtures/module4.txt");
        let mut m = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let mut parts = line.split('|');
            let name = parts.next().unwrap().to_string();
            let shape = parts.next().unwrap();
            let shape: Vec<usize> = if shape.is_empty() {
                vec![]
            } else {
                shape.split(',').map(|d| d.parse().unwrap()).collect()
            };
            let vals: Vec<f32> = parts
                .next()
                .unwrap()
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            assert_eq!(vals.len(), shape.iter().product::<usize>(), "{name}");
            m.insert(name, (shape, vals));
        }
        Fixtures(m)
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn vals(&self, name: &str) -> &[f32] {
        &self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("fixture {name}"))
            .1
    }

    fn ints(&self, name: &str) -> Vec<usize> {
        self.vals(name).iter().map(|&v| v as usize).collect()
    }

    fn tensor(&self, name: &str) -> Tensor {
        let (s, v) = self.0.get(name).unwrap_or_else(|| panic!("fixture {name}"));
        Tensor::from_vec(v.clone(), s, device()).unwrap()
    }
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
            "{what}[{i}]: got {g}, PyTorch {w}"
        );
    }
}

/// Inputs `name.in*` as leaves, out = f(inputs), then backward with `name.g`; compares the
/// output and every input gradient with PyTorch's.
fn check(fx: &Fixtures, name: &str, f: impl Fn(&[Tensor]) -> minitorch::Result<Tensor>) {
    let inputs: Vec<Tensor> = (0..)
        .map(|i| format!("{name}.in{i}"))
        .take_while(|n| fx.has(n))
        .map(|n| fx.tensor(&n).requires_grad_(true))
        .collect();
    let out = f(&inputs).unwrap();
    close(
        &out.to_vec().unwrap(),
        fx.vals(&format!("{name}.out")),
        &format!("{name} forward"),
    );
    out.backward_with(&fx.tensor(&format!("{name}.g"))).unwrap();
    for (i, x) in inputs.iter().enumerate() {
        let g = x.grad().expect("gradient").to_vec().unwrap();
        close(
            &g,
            fx.vals(&format!("{name}.grad{i}")),
            &format!("{name} gradient {i}"),
        );
    }
}

#[test]
fn conv1d_matches_pytorch() {
    let fx = Fixtures::load();
    for k in 0..2 {
        let name = format!("conv1d.{k}");
        let stride = fx.ints(&format!("{name}.stride"))[0];
        let p = fx.ints(&format!("{name}.pad"));
        check(&fx, &name, |a| {
            a[0].conv1d(&a[1], a.get(2), stride, (p[0], p[1]))
        });
    }
}

#[test]
fn conv2d_matches_pytorch() {
    let fx = Fixtures::load();
    for k in 0..4 {
        let name = format!("conv2d.{k}");
        let s = fx.ints(&format!("{name}.stride"));
        let p = fx.ints(&format!("{name}.pad"));
        check(&fx, &name, |a| {
            a[0].conv2d(&a[1], a.get(2), [s[0], s[1]], [(p[0], p[1]), (p[2], p[3])])
        });
    }
}

#[test]
fn pooling_matches_pytorch() {
    let fx = Fixtures::load();
    let k = fx.ints("avgpool2d.0.kernel");
    check(&fx, "avgpool2d.0", |a| a[0].avgpool2d([k[0], k[1]]));
    for name in ["maxpool2d.0", "maxpool2d.1"] {
        let k = fx.ints(&format!("{name}.kernel"));
        check(&fx, name, |a| a[0].maxpool2d([k[0], k[1]]));
    }
}

#[test]
fn softmax_log_softmax_cross_entropy_match_pytorch() {
    let fx = Fixtures::load();
    for k in 0..3 {
        let dim = fx.ints(&format!("softmax.{k}.dim"))[0];
        check(&fx, &format!("softmax.{k}"), |a| a[0].softmax(dim));
        check(&fx, &format!("log_softmax.{k}"), |a| a[0].log_softmax(dim));
    }
    let labels: Vec<u32> = fx
        .ints("cross_entropy.mean.labels")
        .iter()
        .map(|&l| l as u32)
        .collect();
    check(&fx, "cross_entropy.mean", |a| {
        a[0].cross_entropy(&labels, Reduction::Mean)
    });
    check(&fx, "cross_entropy.sum", |a| {
        a[0].cross_entropy(&labels, Reduction::Sum)
    });
}

#[test]
fn adam_and_adamw_steps_match_pytorch() {
    let fx = Fixtures::load();
    type Make = fn(Vec<Parameter>) -> Adam;
    let cases: [(&str, Make); 4] = [
        ("adam", |p| Adam::new(p, 1e-2)),
        ("adam_wd", |p| Adam::new(p, 1e-2).with_weight_decay(0.1)),
        ("adamw", |p| Adam::adamw(p, 1e-2)),
        ("adamw_betas", |p| {
            Adam::adamw(p, 3e-2)
                .with_betas(0.8, 0.99)
                .with_eps(1e-6)
                .with_weight_decay(0.05)
        }),
    ];
    for (name, make) in cases {
        let p = Parameter::new(fx.tensor(&format!("{name}.p0")));
        let mut opt = make(vec![p.clone()]);
        for s in 0..3 {
            // The stored gradient: d(sum(p * g))/dp = g.
            p.value()
                .mul(&fx.tensor(&format!("{name}.g{s}")))
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            opt.step().unwrap();
            close(
                &p.value().to_vec().unwrap(),
                fx.vals(&format!("{name}.p{}", s + 1)),
                &format!("{name} step {}", s + 1),
            );
        }
    }
}
