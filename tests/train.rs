//! Training (issue: modules, SGD, datasets, the train loop): losses fall on every dataset,
//! datasets follow their formulas, save/load round-trips, bad input gives clear errors.

use minitorch::datasets::{DatasetKind, Graph};
use minitorch::nn::{load_safetensors, save_safetensors, Linear, Module, Network, Parameter};
use minitorch::optim::Sgd;
use minitorch::train::{self, Epochs, LossKind, ScalarTrainer, TrainConfig, Trainer};
use minitorch::{Device, Error, Tensor};
use rand::SeedableRng;

fn config(dataset: DatasetKind) -> TrainConfig {
    TrainConfig {
        dataset,
        hidden: 16,
        epochs: 30,
        ..TrainConfig::default()
    }
}

#[test]
fn loss_falls_on_every_dataset() {
    for kind in DatasetKind::ALL {
        // The course's network (hidden 100), 40 epochs: every loss falls by at least 10%.
        let mut t = Trainer::new(TrainConfig {
            dataset: kind,
            epochs: 40,
            ..TrainConfig::default()
        })
        .unwrap();
        let first = t.epoch().unwrap();
        let mut last = first;
        for _ in 0..39 {
            last = t.epoch().unwrap();
        }
        assert!(last.is_finite(), "{kind}: loss {last}");
        assert!(
            last < first * 0.9,
            "{kind}: loss went from {first} to {last}"
        );
    }
}

#[test]
fn default_run_learns_simple() {
    let mut t = Trainer::new(TrainConfig {
        epochs: 150,
        ..TrainConfig::default()
    })
    .unwrap();
    let s = train::run(&mut t, 50, |_| {}).unwrap();
    assert!(s.correct >= 48, "{}/{}", s.correct, s.total);
    assert_eq!(s.losses.len(), 150);
    assert_eq!(s.epoch_times.len(), 150);
}

#[test]
fn datasets_are_deterministic_and_follow_their_formulas() {
    for kind in DatasetKind::ALL {
        let a = Graph::new(kind, 50, 7).unwrap();
        let b = Graph::new(kind, 50, 7).unwrap();
        assert_eq!(a, b, "{kind}");
        assert_eq!(a.len(), 50);
        if kind != DatasetKind::Spiral {
            let c = Graph::new(kind, 50, 8).unwrap();
            assert_ne!(a.x, c.x, "{kind}: another seed gives other points");
        }
        for (p, &y) in a.x.iter().zip(&a.y) {
            let (x1, x2) = (p[0], p[1]);
            let expect = match kind {
                DatasetKind::Simple => x1 < 0.5,
                DatasetKind::Diag => x1 + x2 < 0.5,
                DatasetKind::Split => !(0.2..=0.8).contains(&x1),
                DatasetKind::Xor => (x1 < 0.5) != (x2 < 0.5),
                DatasetKind::Circle => (x1 - 0.5) * (x1 - 0.5) + (x2 - 0.5) * (x2 - 0.5) > 0.1,
                DatasetKind::Spiral => continue,
            };
            assert_eq!(y, if expect { 1.0 } else { 0.0 }, "{kind} at {p:?}");
            assert!((0.0..1.0).contains(&x1) && (0.0..1.0).contains(&x2));
        }
    }
    // Spiral: the course's formula, first half label 0, second half label 1.
    let s = Graph::new(DatasetKind::Spiral, 50, 0).unwrap();
    let t = 10.0 * 5.0 / 25.0;
    assert!((s.x[0][0] - (t * f64::cos(t) / 20.0 + 0.5)).abs() < 1e-12);
    assert!((s.x[0][1] - (t * f64::sin(t) / 20.0 + 0.5)).abs() < 1e-12);
    assert!((s.x[25][0] - (-t * f64::sin(-t) / 20.0 + 0.5)).abs() < 1e-12);
    assert!((s.x[25][1] - (-t * f64::cos(-t) / 20.0 + 0.5)).abs() < 1e-12);
    assert_eq!(&s.y[..25], &[0.0; 25]);
    assert_eq!(&s.y[25..], &[1.0; 25]);
}

#[test]
fn named_parameters_are_dotted_and_modes_recurse() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let net = Network::new(4, &mut rng, Device::Cpu).unwrap();
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "layer1.weights",
            "layer1.bias",
            "layer2.weights",
            "layer2.bias",
            "layer3.weights",
            "layer3.bias"
        ]
    );
    assert!(net.is_training() && net.layer2.is_training());
    net.eval();
    assert!(!net.is_training() && !net.layer2.is_training());
    net.train();
    assert!(net.layer3.is_training());
}

#[test]
fn linear_init_matches_the_course() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let l = Linear::new(20, 30, &mut rng, Device::Cpu).unwrap();
    let w = l.weights.value().to_vec().unwrap();
    assert_eq!(l.weights.value().shape(), &[20, 30]);
    assert!(w.iter().all(|&v| (-0.5..0.5).contains(&v)));
    assert!(w.iter().any(|&v| v < -0.3) && w.iter().any(|&v| v > 0.3));
    assert_eq!(l.bias.value().to_vec().unwrap(), vec![0.1; 30]);
}

#[test]
fn sgd_step_moves_against_the_gradient() {
    let p = Parameter::new(Tensor::from_vec(vec![1.0, -2.0], &[2], Device::Cpu).unwrap());
    let loss = p.value().mul(&p.value()).unwrap().sum_all().unwrap(); // d/dp = 2p
    loss.backward().unwrap();
    let mut sgd = Sgd::new(vec![p.clone()], 0.1);
    sgd.step().unwrap();
    assert_eq!(p.value().to_vec().unwrap(), vec![1.0 - 0.2, -2.0 + 0.4]);
    // momentum: the second step adds momentum * previous update direction
    let p = Parameter::new(Tensor::from_vec(vec![1.0], &[1], Device::Cpu).unwrap());
    let mut sgd = Sgd::new(vec![p.clone()], 0.1)
        .with_momentum(0.5)
        .with_weight_decay(0.0);
    for _ in 0..2 {
        sgd.zero_grad();
        p.value()
            .mul_scalar(3.0)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap(); // grad 3
        sgd.step().unwrap();
    }
    // v1 = 3, p1 = 1 - 0.3 = 0.7; v2 = 0.5*3 + 3 = 4.5, p2 = 0.7 - 0.45 = 0.25
    assert!((p.value().item().unwrap() - 0.25).abs() < 1e-6);
}

#[test]
fn save_then_load_is_bit_identical() {
    let dir = std::env::temp_dir().join(format!("minitorch-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let mut t = Trainer::new(config(DatasetKind::Xor)).unwrap();
    for _ in 0..5 {
        t.epoch().unwrap();
    }
    save_safetensors(&t.model, &path).unwrap();
    let fresh = Trainer::new(TrainConfig {
        seed: 999,
        ..config(DatasetKind::Xor)
    })
    .unwrap();
    load_safetensors(&fresh.model, &path).unwrap();
    for ((n1, p1), (n2, p2)) in t
        .model
        .named_parameters()
        .into_iter()
        .zip(fresh.model.named_parameters())
    {
        assert_eq!(n1, n2);
        let (a, b) = (p1.value().to_vec().unwrap(), p2.value().to_vec().unwrap());
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{n1}"
        );
    }
    let pts = t.data.x.clone();
    let (pa, pb) = (t.predict(&pts).unwrap(), fresh.predict(&pts).unwrap());
    assert!(pa.iter().zip(&pb).all(|(x, y)| x.to_bits() == y.to_bits()));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = std::env::temp_dir().join(format!("minitorch-badfiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Trainer::new(config(DatasetKind::Simple)).unwrap();

    let missing = dir.join("nope.safetensors");
    let e = load_safetensors(&t.model, &missing).unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("nope.safetensors"),
        "{e}"
    );

    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"this is not a safetensors file").unwrap();
    let e = load_safetensors(&t.model, &corrupt).unwrap_err();
    assert!(
        e.to_string().contains("not a valid safetensors file"),
        "{e}"
    );

    // A file from a network with another hidden size: shapes do not fit.
    let other = Trainer::new(TrainConfig {
        hidden: 8,
        ..config(DatasetKind::Simple)
    })
    .unwrap();
    let small = dir.join("small.safetensors");
    save_safetensors(&other.model, &small).unwrap();
    let before = t.model.layer1.weights.value().to_vec().unwrap();
    let e = load_safetensors(&t.model, &small).unwrap_err();
    assert!(
        matches!(e, Error::Shape { .. }) && e.to_string().contains("layer1.weights"),
        "{e}"
    );
    assert_eq!(
        t.model.layer1.weights.value().to_vec().unwrap(),
        before,
        "a failed load changes nothing"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_settings_give_clear_errors() {
    let e = DatasetKind::parse("moons").unwrap_err();
    assert!(e.to_string().contains("unknown dataset \"moons\""), "{e}");
    let e = Trainer::new(TrainConfig {
        points: 0,
        ..TrainConfig::default()
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("points"), "{e}");
    for bad in [
        TrainConfig {
            batch: 0,
            ..TrainConfig::default()
        },
        TrainConfig {
            hidden: 0,
            ..TrainConfig::default()
        },
        TrainConfig {
            lr: -1.0,
            ..TrainConfig::default()
        },
        TrainConfig {
            lr: f32::NAN,
            ..TrainConfig::default()
        },
    ] {
        assert!(matches!(Trainer::new(bad), Err(Error::Invalid { .. })));
    }
    let e = Graph::new(DatasetKind::Spiral, 7, 0).unwrap_err();
    assert!(e.to_string().contains("even"), "{e}");
}

#[test]
fn scalar_engine_matches_tensor_engine_after_one_epoch() {
    for kind in [DatasetKind::Simple, DatasetKind::Xor] {
        let cfg = TrainConfig {
            dataset: kind,
            hidden: 12,
            epochs: 1,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(cfg.clone()).unwrap();
        let mut s = ScalarTrainer::new(cfg).unwrap();
        let (lt, ls) = (t.epoch().unwrap(), s.epoch().unwrap());
        assert!(
            ((lt - ls) / ls).abs() < 1e-4,
            "{kind}: tensor {lt} scalar {ls}"
        );
        assert_eq!(t.correct().unwrap(), Epochs::correct(&s).unwrap());
    }
}

#[test]
fn wide_network_does_not_reach_nan_with_the_guarded_loss() {
    let mut t = Trainer::new(TrainConfig {
        hidden: 1000,
        epochs: 3,
        dataset: DatasetKind::Xor,
        ..TrainConfig::default()
    })
    .unwrap();
    for _ in 0..3 {
        let l = t.epoch().unwrap();
        assert!(l.is_finite(), "loss {l}");
    }
    assert_eq!(t.config.loss, LossKind::Guarded);
}
