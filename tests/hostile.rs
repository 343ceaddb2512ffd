//! The hostile user: bad input through the public API on every present backend. Every
//! case asserts an `Err` (or the right value) and none may panic: each runs under
//! `catch_unwind`, so a panic is reported as that case's failure. The first test keeps
//! the repro table of issue 10 (rows 1-14) as regression tests, row by row.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{columns, ulp_diff};
use minitorch::nn::Parameter;
use minitorch::optim::Sgd;
use minitorch::{Device, Error, Layout, Result, Tensor};

/// Run `f`; a panic becomes an error message naming the case.
fn guard<T>(case: &str, f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{case}: panicked: {msg}")
    })
}

/// Collects failures so that one test reports every broken case.
#[derive(Default)]
struct Report(Vec<String>);

impl Report {
    /// `f` must return `Err` (and not panic).
    fn err<T: std::fmt::Debug>(&mut self, case: &str, f: impl FnOnce() -> Result<T>) {
        match guard(case, f) {
            Ok(Err(_)) => {}
            Ok(Ok(v)) => self
                .0
                .push(format!("{case}: expected an error, got Ok({v:?})")),
            Err(p) => self.0.push(p),
        }
    }

    /// `f` must return `Err` whose message contains `part`.
    fn err_with<T: std::fmt::Debug>(
        &mut self,
        case: &str,
        part: &str,
        f: impl FnOnce() -> Result<T>,
    ) {
        match guard(case, f) {
            Ok(Err(e)) if e.to_string().contains(part) => {}
            Ok(Err(e)) => self
                .0
                .push(format!("{case}: error {e} does not say {part:?}")),
            Ok(Ok(v)) => self
                .0
                .push(format!("{case}: expected an error, got Ok({v:?})")),
            Err(p) => self.0.push(p),
        }
    }

    /// `f` must return `Ok(values)` with `check(values)` true.
    fn ok(
        &mut self,
        case: &str,
        f: impl FnOnce() -> Result<Vec<f32>>,
        check: impl Fn(&[f32]) -> bool,
    ) {
        match guard(case, f) {
            Ok(Ok(v)) if check(&v) => {}
            Ok(Ok(v)) => self.0.push(format!("{case}: wrong value {v:?}")),
            Ok(Err(e)) => self.0.push(format!("{case}: unexpected error {e}")),
            Err(p) => self.0.push(p),
        }
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} hostile cases failed:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

fn devices() -> Vec<Device> {
    columns().iter().map(|c| c.device).collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Within `ulps` of the f64 value rounded to f32.
fn near(got: f32, want: f64, ulps: u64) -> bool {
    let w = want as f32;
    got == w || (got.is_finite() && w.is_finite() && ulp_diff(got, w) <= ulps)
}

#[test]
fn repro_table_of_issue_10() {
    let mut r = Report::default();
    let huge = (1usize << 63) + 1;
    for d in devices() {
        let v = |data: Vec<f32>, shape: &[usize]| Tensor::from_vec(data, shape, d);
        // 1: a view whose element count wraps.
        r.err(&format!("{d} row 1 view"), || {
            v(vec![1.0; 6], &[6])?.view(&[6, huge, huge])?.sum(1)
        });
        // 2: a matmul result of 2^66 elements; a layout of the shape of row 1.
        r.err(&format!("{d} row 2 matmul"), || {
            Tensor::zeros(&[1 << 33, 0], d)?.matmul(&Tensor::zeros(&[0, 1 << 33], d)?)
        });
        r.err(&format!("{d} row 2 layout"), || {
            Layout::new(
                vec![6, huge, huge],
                vec![huge.wrapping_mul(huge), huge, 1],
                0,
            )
        });
        // 3: capacity overflow.
        r.err(&format!("{d} row 3 zeros"), || {
            Tensor::zeros(&[usize::MAX, 2], d)
        });
        r.err(&format!("{d} row 3 full"), || {
            Tensor::full(&[1 << 62], 1.0, d)
        });
        // 4: 4 TiB: an error, not an abort.
        r.err(&format!("{d} row 4 zeros"), || Tensor::zeros(&[1 << 40], d));
        r.err(&format!("{d} row 4 rand"), || {
            Tensor::rand(&[1 << 40], 0, d)
        });
        // 5: max propagates NaN, and its gradient goes to the NaN.
        for data in [vec![5.0, 1.0, f32::NAN, 2.0], vec![1.0, 2.0, f32::NAN]] {
            let n = data.len();
            r.ok(
                &format!("{d} row 5 max {data:?}"),
                || v(data.clone(), &[n])?.max(0)?.to_vec(),
                |m| m.len() == 1 && m[0].is_nan(),
            );
            r.ok(
                &format!("{d} row 5 max backward {data:?}"),
                || {
                    let x = v(data.clone(), &[n])?.requires_grad_(true);
                    x.max(0)?.backward()?;
                    x.grad().expect("a gradient").to_vec()
                },
                |g| {
                    g.iter()
                        .zip(&data)
                        .all(|(g, x)| *g == if x.is_nan() { 1.0 } else { 0.0 })
                },
            );
        }
        // 6, 7: log of a subnormal and near 1, within 2 ULP.
        for (x, want) in [
            (1e-40f32, (1e-40f32 as f64).ln()),
            (0.99999183, (0.99999183f32 as f64).ln()),
        ] {
            r.ok(
                &format!("{d} rows 6-7 log({x:e})"),
                || v(vec![x], &[1])?.log()?.to_vec(),
                |g| near(g[0], want, 2),
            );
        }
        // 8, 9: a seed on another device is an error before anything changes, and the
        // earlier gradient is kept.
        let other = if d == Device::Cpu {
            devices().into_iter().find(|&o| o != Device::Cpu)
        } else {
            Some(Device::Cpu)
        };
        r.ok(
            &format!("{d} rows 8-9 backward seeds"),
            || {
                let x = v(vec![1.0, 2.0, 3.0], &[3])?.requires_grad_(true);
                x.neg()?.backward_with(&Tensor::ones(&[3], d)?)?;
                if let Some(o) = other {
                    let bad = x.neg()?.backward_with(&Tensor::ones(&[3], o)?);
                    assert!(matches!(bad, Err(Error::DeviceMismatch { .. })), "{bad:?}");
                }
                let wrong_shape = x.neg()?.backward_with(&Tensor::ones(&[4], d)?);
                assert!(wrong_shape.is_err());
                let g = x.grad().expect("the first gradient is kept");
                assert_eq!(g.device(), d);
                g.to_vec()
            },
            |g| g == [-1.0, -1.0, -1.0],
        );
        // 10: non-finite hyperparameters.
        for (what, lr, momentum, wd) in [
            ("lr NaN", f32::NAN, 0.0, 0.0),
            ("lr inf", f32::INFINITY, 0.0, 0.0),
            ("momentum NaN", 0.1, f32::NAN, 0.0),
            ("weight decay inf", 0.1, 0.0, f32::NEG_INFINITY),
        ] {
            r.ok(
                &format!("{d} row 10 sgd {what}"),
                || {
                    let p = Parameter::new(v(vec![1.0, 2.0], &[2])?.requires_grad_(true));
                    p.value().sum(0)?.backward()?;
                    let mut sgd = Sgd::new(vec![p.clone()], lr)
                        .with_momentum(momentum)
                        .with_weight_decay(wd);
                    assert!(sgd.step().is_err(), "step with {what} must fail");
                    if momentum == 0.0 && wd == 0.0 {
                        assert!(Sgd::try_new(vec![p.clone()], lr).is_err());
                    }
                    p.value().to_vec()
                },
                |p| p == [1.0, 2.0],
            );
        }
        // 12: layouts whose positions overflow, and a layout past its storage.
        r.err(&format!("{d} row 12 offset"), || {
            Layout::new(vec![1], vec![1], usize::MAX)
        });
        r.err(&format!("{d} row 12 stride"), || {
            Layout::new(vec![2], vec![usize::MAX], 0)
        });
        r.err(&format!("{d} row 12 get past the storage"), || {
            let t = v(vec![1.0; 4], &[4])?;
            let l = Layout::new(vec![2], vec![1 << 40], 0)?;
            Tensor::from_storage(t.storage().clone(), l, t.backend().clone()).get(&[1])
        });
        r.err(&format!("{d} row 12 neg past the storage"), || {
            let t = v(vec![1.0; 4], &[4])?;
            let l = Layout::new(vec![3], vec![1], 2)?;
            Tensor::from_storage(t.storage().clone(), l, t.backend().clone()).neg()
        });
        // 13: inv and sigmoid gradients where the naive formulas underflow or cancel.
        r.ok(
            &format!("{d} row 13 inv backward at 1e-30"),
            || {
                let x = v(vec![1e-30], &[1])?.requires_grad_(true);
                x.inv()?.backward_with(&v(vec![1e-30], &[1])?)?;
                x.grad().expect("grad").to_vec()
            },
            |g| near(g[0], -1e30, 4),
        );
        r.ok(
            &format!("{d} row 13 sigmoid backward at 17"),
            || {
                let x = v(vec![17.0], &[1])?.requires_grad_(true);
                x.sigmoid()?.backward()?;
                x.grad().expect("grad").to_vec()
            },
            |g| {
                let s = 1.0 / (1.0 + (-17f64).exp());
                near(g[0], s * (1.0 - s), 8)
            },
        );
    }
    // 11: errors name the op the user called (tests/errors.rs checks the messages).
    for d in devices() {
        let a = Tensor::zeros(&[2, 3], d).unwrap();
        let b = Tensor::zeros(&[4], d).unwrap();
        r.err_with(&format!("{d} row 11 gt"), "gt", || a.gt(&b));
        r.err_with(&format!("{d} row 11 sub"), "sub", || a.sub(&b));
        r.err_with(&format!("{d} row 11 div"), "div", || a.div(&b));
        r.err_with(&format!("{d} row 11 all_dim"), "all_dim", || a.all_dim(9));
    }
    r.finish();
}

/// Row 14: a dropped graph's buffers can be given back, and the pool keeps no more
/// than its cap.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_pool_can_be_trimmed_and_capped() {
    use minitorch::backend::wgpu::WgpuBackend;
    let Some(col) = columns().iter().find(|c| c.device == Device::Wgpu) else {
        common::note("SKIPPED: wgpu pool trim: backend wgpu not present");
        return;
    };
    let b = WgpuBackend::global().unwrap();
    let pool = &b.runtime().pool;
    {
        let mut x = Tensor::ones(&[64], Device::Wgpu)
            .unwrap()
            .requires_grad_(true);
        let leaf = x.clone();
        for _ in 0..2000 {
            x = x.mul_scalar(1.0).unwrap();
        }
        x.sum(0).unwrap().backward().unwrap();
        assert_eq!(leaf.grad().unwrap().to_vec().unwrap(), vec![1.0; 64]);
    }
    col.backend.synchronize().unwrap();
    col.backend
        .download(&col.backend.full(1, 0.0).unwrap())
        .unwrap();
    let cap = pool.cap();
    assert!(pool.stats().cached_buffers <= cap.1, "{:?}", pool.stats());
    col.backend.trim_pool();
    assert_eq!(pool.stats().cached_buffers, 0, "{:?}", pool.stats());
    // A small cap is honoured (other tests share the pool: restore it after).
    pool.set_cap(1 << 20, 8);
    let keep: Vec<Tensor> = (0..32)
        .map(|_| Tensor::ones(&[300], Device::Wgpu).unwrap())
        .collect();
    drop(keep);
    col.backend
        .download(&col.backend.full(1, 0.0).unwrap())
        .unwrap();
    assert!(pool.stats().cached_buffers <= 8, "{:?}", pool.stats());
    pool.set_cap(cap.0, cap.1);
}

/// The rest of the public API's misuse: zero sizes, 0-d, bad broadcasts, views and
/// permutes, out-of-range dims and indices, device mixing, bad safetensors.
#[test]
fn misuse_is_an_error_or_the_right_value() {
    let mut r = Report::default();
    for d in devices() {
        let t = |shape: &[usize]| {
            let n = shape.iter().product();
            Tensor::from_vec((0..n).map(|i| i as f32 - 2.0).collect(), shape, d)
        };
        // Zero sizes work and give empty (or identity) results.
        r.ok(
            &format!("{d} exp of (0, 3)"),
            || t(&[0, 3])?.exp()?.to_vec(),
            |v| v.is_empty(),
        );
        r.ok(
            &format!("{d} add (0, 3) + (3,)"),
            || t(&[0, 3])?.add(&t(&[3])?)?.to_vec(),
            |v| v.is_empty(),
        );
        r.ok(
            &format!("{d} sum over an empty dim"),
            || t(&[2, 0])?.sum(1)?.to_vec(),
            |v| v == [0.0, 0.0],
        );
        r.ok(
            &format!("{d} prod over an empty dim"),
            || t(&[2, 0])?.prod(1)?.to_vec(),
            |v| v == [1.0, 1.0],
        );
        r.ok(
            &format!("{d} max over an empty dim"),
            || t(&[2, 0])?.max(1)?.to_vec(),
            |v| v == [f32::NEG_INFINITY; 2],
        );
        r.ok(
            &format!("{d} matmul k = 0"),
            || t(&[2, 0])?.matmul(&t(&[0, 3])?)?.to_vec(),
            |v| v == [0.0; 6],
        );
        r.ok(
            &format!("{d} matmul n = 0"),
            || t(&[0, 2])?.matmul(&t(&[2, 3])?)?.to_vec(),
            |v| v.is_empty(),
        );
        r.ok(
            &format!("{d} mean of nothing is NaN"),
            || t(&[0])?.mean_all()?.to_vec(),
            |v| v[0].is_nan(),
        );
        r.ok(
            &format!("{d} backward through a zero-size tensor"),
            || {
                let x = t(&[0, 3])?.requires_grad_(true);
                x.exp()?.sum_all()?.backward()?;
                x.grad().expect("grad").to_vec()
            },
            |v| v.is_empty(),
        );
        // 0-d tensors.
        r.ok(
            &format!("{d} 0-d item"),
            || Ok(vec![t(&[])?.item()?]),
            |v| v == [-2.0],
        );
        r.err(&format!("{d} 0-d sum(0)"), || t(&[])?.sum(0));
        r.err(&format!("{d} 0-d transpose"), || t(&[])?.transpose());
        r.ok(
            &format!("{d} 0-d view as (1, 1)"),
            || t(&[])?.view(&[1, 1])?.to_vec(),
            |v| v == [-2.0],
        );
        r.err(&format!("{d} 0-d get with an index"), || t(&[])?.get(&[0]));
        r.ok(
            &format!("{d} 0-d get"),
            || Ok(vec![t(&[])?.get(&[])?]),
            |v| v == [-2.0],
        );
        r.err(&format!("{d} item of 2 elements"), || t(&[2])?.item());
        r.err(&format!("{d} backward of a non-scalar"), || {
            t(&[2])?.requires_grad_(true).exp()?.backward()
        });
        r.err(&format!("{d} backward without history"), || {
            t(&[1])?.backward()
        });
        // Bad broadcasts and matmuls.
        r.err(&format!("{d} add (2, 3) + (2,)"), || {
            t(&[2, 3])?.add(&t(&[2])?)
        });
        r.err(&format!("{d} eq (4, 2, 3) (3, 3)"), || {
            t(&[4, 2, 3])?.eq(&t(&[3, 3])?)
        });
        r.err(&format!("{d} matmul inner"), || {
            t(&[2, 3])?.matmul(&t(&[2, 3])?)
        });
        r.err(&format!("{d} matmul 1-d"), || t(&[3])?.matmul(&t(&[3, 1])?));
        r.err(&format!("{d} matmul batch"), || {
            t(&[2, 2, 3])?.matmul(&t(&[3, 3, 1])?)
        });
        r.err(&format!("{d} broadcast to 2^80"), || {
            Tensor::zeros(&[1 << 40, 1, 0], d)?.add(&Tensor::zeros(&[1, 1 << 40, 0], d)?)
        });
        // Views and permutes.
        r.err(&format!("{d} view size"), || t(&[2, 3])?.view(&[4]));
        r.err(&format!("{d} view non-contiguous"), || {
            t(&[2, 3])?.transpose()?.view(&[6])
        });
        r.err(&format!("{d} view overflowing"), || {
            t(&[2])?.view(&[usize::MAX, 2, 0])
        });
        r.err(&format!("{d} permute repeat"), || {
            t(&[2, 3])?.permute(&[0, 0])
        });
        r.err(&format!("{d} permute range"), || {
            t(&[2, 3])?.permute(&[0, 2])
        });
        r.err(&format!("{d} permute length"), || t(&[2, 3])?.permute(&[0]));
        r.err(&format!("{d} permute huge index"), || {
            t(&[2, 3])?.permute(&[usize::MAX, 0])
        });
        // Dims and indices.
        for dim in [2, 9, usize::MAX] {
            r.err(&format!("{d} sum dim {dim}"), || t(&[2, 3])?.sum(dim));
            r.err(&format!("{d} max dim {dim}"), || t(&[2, 3])?.max(dim));
            r.err(&format!("{d} mean dim {dim}"), || t(&[2, 3])?.mean(dim));
            r.err(&format!("{d} prod dim {dim}"), || t(&[2, 3])?.prod(dim));
        }
        for idx in [
            &[2isize, 0][..],
            &[0, 3],
            &[-1, 0],
            &[0],
            &[0, 0, 0],
            &[isize::MAX, 0],
            &[isize::MIN, 0],
        ] {
            r.err(&format!("{d} get {idx:?}"), || t(&[2, 3])?.get(idx));
        }
        r.ok(
            &format!("{d} get [1, 2]"),
            || Ok(vec![t(&[2, 3])?.get(&[1, 2])?]),
            |v| v == [3.0],
        );
        // Construction.
        r.err(&format!("{d} from_vec length"), || {
            Tensor::from_vec(vec![1.0; 5], &[2, 3], d)
        });
        r.err(&format!("{d} from_vec overflowing shape"), || {
            Tensor::from_vec(vec![], &[usize::MAX, usize::MAX, 0], d)
        });
        r.ok(
            &format!("{d} special values round-trip"),
            || {
                let s = vec![f32::NAN, f32::INFINITY, -0.0, 1e-45, -1e-40, f32::MAX];
                t(&[])?; // the device works
                Tensor::from_vec(s, &[6], d)?.to_vec()
            },
            |v| same_bits(v, &[f32::NAN, f32::INFINITY, -0.0, 1e-45, -1e-40, f32::MAX]),
        );
    }
    // Device mixing.
    let present = devices();
    for &a in &present {
        for &b in &present {
            if a == b {
                continue;
            }
            let x = Tensor::ones(&[3], a).unwrap();
            let y = Tensor::ones(&[3], b).unwrap();
            for (what, res) in [
                ("add", x.add(&y)),
                ("sub", x.sub(&y)),
                ("mul", x.mul(&y)),
                ("div", x.div(&y)),
                ("lt", x.lt(&y)),
                ("gt", x.gt(&y)),
                ("eq", x.eq(&y)),
                ("is_close", x.is_close(&y)),
            ] {
                match res {
                    Err(Error::DeviceMismatch { op, .. }) if op == what => {}
                    other => r.0.push(format!(
                        "{a} {what} {b}: expected DeviceMismatch naming {what}, got {other:?}"
                    )),
                }
            }
            let m = Tensor::ones(&[3, 3], a).unwrap();
            r.err(&format!("{a} matmul {b}"), || {
                m.matmul(&Tensor::ones(&[3, 3], b)?)
            });
        }
    }
    r.finish();
}

/// Truncated, corrupt and mismatched safetensors files are errors that leave the module
/// as it was.
#[test]
fn bad_safetensors_files() {
    use minitorch::nn::{load_safetensors, save_safetensors, Linear, Module};
    use rand::SeedableRng;
    let mut r = Report::default();
    let dir = std::env::temp_dir().join(format!("minitorch-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let layer = Linear::new(3, 2, &mut rng, Device::Cpu).unwrap();
    let good = dir.join("good.safetensors");
    save_safetensors(&layer, &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let before = layer.weights.value().to_vec().unwrap();
    let write = |name: &str, b: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    let cases = [
        ("empty", write("empty", &[])),
        ("truncated header", write("trunc_head", &bytes[..4])),
        (
            "truncated data",
            write("trunc_data", &bytes[..bytes.len() - 3]),
        ),
        (
            "huge header length",
            write("huge", &{
                let mut b = bytes.clone();
                b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                b
            }),
        ),
        ("garbage", write("garbage", &[0xff; 64])),
        ("missing file", dir.join("does-not-exist")),
    ];
    for (what, path) in &cases {
        r.err(what, || load_safetensors(&layer, path));
    }
    let other = Linear::new(4, 2, &mut rng, Device::Cpu).unwrap();
    let wrong = dir.join("wrong.safetensors");
    save_safetensors(&other, &wrong).unwrap();
    r.err("wrong shapes", || load_safetensors(&layer, &wrong));
    r.ok(
        "module unchanged",
        || layer.weights.value().to_vec(),
        |v| v == before.as_slice(),
    );
    assert_eq!(layer.parameters().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
    r.finish();
}

/// Every public constructor above the tensors (nn, datasets, train, the fused program
/// builder) with sizes no machine holds: an error naming the setting, checked before
/// anything is allocated (an allocation of terabytes would abort the process).
#[test]
fn constructors_above_tensors_refuse_impossible_sizes() {
    use minitorch::backend::fused::ProgramBuilder;
    use minitorch::datasets::{DatasetKind, Graph};
    use minitorch::nn::{Linear, Network};
    use minitorch::train::{self, ScalarTrainer, TrainConfig, Trainer};
    use rand::SeedableRng;

    let mut r = Report::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let big = 1usize << 20;
    for device in devices() {
        let d = device;
        r.err_with(
            &format!("{d}: Linear::new(2^20, 2^20)"),
            "in_size 1048576 x out_size 1048576 needs 4 TiB for the weights",
            || Linear::new(big, big, &mut rng, d).map(|_| ()),
        );
        r.err_with(
            &format!("{d}: Linear::new(usize::MAX, 2)"),
            "Linear::new",
            || Linear::new(usize::MAX, 2, &mut rng, d).map(|_| ()),
        );
        r.err_with(
            &format!("{d}: Network::new(2^20)"),
            "Network::new: hidden 1048576 needs 4 TiB for layer2.weights; this machine has",
            || Network::new(big, &mut rng, d).map(|_| ()),
        );
        r.err_with(
            &format!("{d}: Network::new(usize::MAX)"),
            "hidden 18446744073709551615 needs",
            || Network::new(usize::MAX, &mut rng, d).map(|_| ()),
        );
        let config = |f: &dyn Fn(&mut TrainConfig)| {
            let mut c = TrainConfig {
                device: d,
                ..TrainConfig::default()
            };
            f(&mut c);
            c
        };
        for (what, part, c) in [
            (
                "hidden 2^20",
                "train: hidden 1048576 needs 4 TiB for layer2.weights",
                config(&|c| c.hidden = big),
            ),
            (
                "points 10^12",
                "train: points 1000000000000 needs",
                config(&|c| c.points = 1_000_000_000_000),
            ),
            (
                "epochs 10^14",
                "train: epochs 100000000000000 needs",
                config(&|c| c.epochs = 100_000_000_000_000),
            ),
            (
                "epochs usize::MAX",
                "epochs 18446744073709551615 needs",
                config(&|c| c.epochs = usize::MAX),
            ),
            (
                "batch x hidden",
                "one batch's activations",
                config(&|c| {
                    c.hidden = 30_000;
                    c.points = 100_000;
                    c.batch = 100_000;
                }),
            ),
            (
                "odd spiral",
                "even number of points",
                config(&|c| {
                    c.dataset = DatasetKind::Spiral;
                    c.points = 7;
                }),
            ),
            ("lr NaN", "learning rate", config(&|c| c.lr = f32::NAN)),
        ] {
            r.err_with(&format!("{d}: validate {what}"), part, || c.validate());
            r.err_with(&format!("{d}: Trainer::new {what}"), part, || {
                Trainer::new(c.clone()).map(|_| ())
            });
            r.err_with(&format!("{d}: ScalarTrainer::new {what}"), part, || {
                ScalarTrainer::new(c.clone()).map(|_| ())
            });
        }
        // A configuration changed after it was checked: run's own records still refuse.
        r.err_with(
            &format!("{d}: run with epochs changed to 10^14"),
            "epochs 100000000000000 needs",
            || {
                let mut t = Trainer::new(config(&|c| c.epochs = 1))?;
                t.config.epochs = 100_000_000_000_000;
                train::run(&mut t, 1, |_| {}).map(|_| ())
            },
        );
    }
    for kind in DatasetKind::ALL {
        r.err_with(
            &format!("Graph::new({kind}, 10^12)"),
            "dataset: points 1000000000000 needs",
            || Graph::new(kind, 1_000_000_000_000, 0).map(|_| ()),
        );
        r.err_with(&format!("Graph::new({kind}, usize::MAX)"), "needs", || {
            Graph::new(kind, usize::MAX, 0).map(|_| ())
        });
        r.err(&format!("Graph::new({kind}, 0)"), || {
            Graph::new(kind, 0, 0).map(|_| ())
        });
    }
    // The fused program builder: an index no call can bind builds a program every call
    // rejects (no overflow in the builder), on every backend.
    for (what, input, param) in [
        ("input usize::MAX", usize::MAX, 0),
        ("param usize::MAX", 0, usize::MAX),
    ] {
        let mut b = ProgramBuilder::new();
        let (x, p) = (b.input(input), b.param(param));
        let y = b.mul(x, p);
        let program = guard(what, || b.build(&[y]));
        let Ok(program) = program else {
            r.0.push(program.err().unwrap());
            continue;
        };
        for d in devices() {
            r.err_with(&format!("{d}: fused with {what}"), "fused program", || {
                let t = Tensor::ones(&[3], d)?;
                Tensor::fused(&program, &[&t], &[1.0]).map(|_| ())
            });
        }
    }
    // A program with no output.
    let empty = {
        let mut b = ProgramBuilder::new();
        b.input(0);
        b.build(&[])
    };
    for d in devices() {
        r.err_with(&format!("{d}: fused with no output"), "no output", || {
            let t = Tensor::ones(&[3], d)?;
            Tensor::fused(&empty, &[&t], &[]).map(|_| ())
        });
    }
    r.finish();
}
