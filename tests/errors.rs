//! Every misuse returns its error (never a panic), and the error names the operation and
//! the shapes involved.

use minitorch::layout::Layout;
use minitorch::{BinaryOp, Device, Error, ReduceOp, Result, Scalar, Tensor, UnaryOp};

fn t(shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|i| i as f32 + 1.0).collect(), shape, Device::Cpu).unwrap()
}

/// Assert a `Shape` error of `op` whose message contains every string of `parts`.
fn expect_shape<T: std::fmt::Debug>(what: &str, r: Result<T>, op: &str, parts: &[&str]) {
    match r {
        Err(e @ Error::Shape { .. }) => {
            let Error::Shape { op: got_op, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*got_op, op, "{what}: wrong op in {e}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(op),
                "{what}: message {msg:?} does not name {op}"
            );
            for p in parts {
                assert!(
                    msg.contains(p),
                    "{what}: message {msg:?} does not contain {p:?}"
                );
            }
        }
        other => panic!("{what}: expected a {op} shape error, got {other:?}"),
    }
}

#[test]
fn shapes_that_do_not_broadcast() {
    let a = t(&[5, 7, 5, 1]);
    let b = t(&[1, 5, 1, 5]);
    let shapes = ["(5, 7, 5, 1)", "(1, 5, 1, 5)"];
    expect_shape("add", a.add(&b), "add", &shapes);
    expect_shape("mul", a.mul(&b), "mul", &shapes);
    expect_shape("lt", a.lt(&b), "lt", &shapes);
    expect_shape("eq", a.eq(&b), "eq", &shapes);
    expect_shape("is_close", a.is_close(&b), "is_close", &shapes);
    expect_shape("operator +", &a + &b, "add", &shapes);
    expect_shape("operator *", &a * &b, "mul", &shapes);
    // gt, sub and div are built from lt, add and mul, but their errors name the op the
    // user called, with the operands in the user's order.
    let in_order = ["(5, 7, 5, 1) and (1, 5, 1, 5)"];
    expect_shape("gt", a.gt(&b), "gt", &in_order);
    expect_shape("sub", a.sub(&b), "sub", &in_order);
    expect_shape("div", a.div(&b), "div", &in_order);
    expect_shape("operator -", &a - &b, "sub", &in_order);
    expect_shape("operator /", &a / &b, "div", &in_order);

    let a = t(&[5, 2]);
    let b = t(&[5]);
    expect_shape("add (5,2) (5,)", a.add(&b), "add", &["(5, 2)", "(5,)"]);
    expect_shape("add (5,) (5,2)", b.add(&a), "add", &["(5,)", "(5, 2)"]);
    expect_shape(
        "shape_broadcast",
        minitorch::layout::shape_broadcast(&[5, 2], &[5]),
        "broadcast",
        &["(5, 2)", "(5,)"],
    );
}

#[test]
fn matmul_shape_errors() {
    expect_shape(
        "inner dims",
        t(&[2, 3]).matmul(&t(&[4, 5])),
        "matmul",
        &["(2, 3)", "(4, 5)", "inner"],
    );
    expect_shape(
        "batched inner dims",
        t(&[2, 3, 4]).matmul(&t(&[2, 3, 4])),
        "matmul",
        &["(2, 3, 4)"],
    );
    expect_shape(
        "batch dims",
        t(&[2, 3, 4]).matmul(&t(&[3, 4, 5])),
        "matmul",
        &["(2, 3, 4)", "(3, 4, 5)", "batch"],
    );
    expect_shape(
        "1-d operand",
        t(&[3]).matmul(&t(&[3, 4])),
        "matmul",
        &["(3,)", "(3, 4)"],
    );
    expect_shape(
        "1-d operand",
        t(&[2, 3]).matmul(&t(&[3])),
        "matmul",
        &["(2, 3)", "(3,)"],
    );
}

#[test]
fn invalid_permutations() {
    let x = t(&[2, 3, 4]);
    for bad in [&[0, 0, 1][..], &[0, 1], &[0, 1, 3], &[2, 1, 0, 3], &[]] {
        expect_shape(
            &format!("permute {bad:?}"),
            x.permute(bad),
            "permute",
            &["(2, 3, 4)", "permutation"],
        );
    }
    expect_shape("transpose 1-d", t(&[3]).transpose(), "transpose", &["(3,)"]);
}

#[test]
fn view_errors() {
    let x = t(&[2, 3]);
    expect_shape("wrong count", x.view(&[5]), "view", &["(2, 3)", "(5,)"]);
    expect_shape(
        "wrong count",
        x.view(&[2, 2, 2]),
        "view",
        &["(2, 3)", "(2, 2, 2)"],
    );
    let xt = x.transpose().unwrap();
    expect_shape(
        "non-contiguous",
        xt.view(&[6]),
        "view",
        &["(3, 2)", "(6,)", "contiguous"],
    );
    // After contiguous() the same view works.
    assert_eq!(xt.contiguous().unwrap().view(&[6]).unwrap().shape(), &[6]);
}

#[test]
fn backward_errors() {
    let x = t(&[2, 3]).requires_grad_(true);
    let y = x.exp().unwrap();
    match y.backward() {
        Err(e @ Error::Autodiff { op: "backward", .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("[2, 3]") || msg.contains("(2, 3)"),
                "message {msg:?}"
            );
            assert!(msg.contains("one-element"), "message {msg:?}");
        }
        other => panic!("backward of a (2, 3) tensor should fail, got {other:?}"),
    }
    // With a gradient of the right shape it works; of the wrong shape it does not.
    y.backward_with(&t(&[2, 3])).unwrap();
    expect_shape(
        "gradient shape",
        y.backward_with(&t(&[3, 2])),
        "backward",
        &["(2, 3)", "(3, 2)"],
    );
    // Nothing to differentiate.
    let c = t(&[1]);
    assert!(matches!(
        c.backward(),
        Err(Error::Autodiff { op: "backward", .. })
    ));
    // Scalars: backward of a constant.
    let s = Scalar::constant(2.0) * 3.0;
    assert!(matches!(
        s.backward(),
        Err(Error::Autodiff { op: "backward", .. })
    ));
}

#[test]
fn index_errors() {
    let x = t(&[2, 3]);
    assert_eq!(x.get(&[1, 2]).unwrap(), 6.0);
    let cases: [(&[isize], &str); 6] = [
        (&[2, 0], "out of range"),
        (&[0, 3], "out of range"),
        (&[-1, 0], "negative"),
        (&[0, -2], "negative"),
        (&[0], "expected 2 indices"),
        (&[0, 0, 0], "expected 2 indices"),
    ];
    for (idx, words) in cases {
        match x.get(idx) {
            Err(e @ Error::Index { op: "index", .. }) => {
                let Error::Index { index, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(index, idx);
                let msg = e.to_string();
                assert!(
                    msg.contains("(2, 3)") && msg.contains(words),
                    "message {msg:?}"
                );
            }
            other => panic!("get {idx:?} should fail, got {other:?}"),
        }
    }
    // A permuted view checks against its own shape.
    let xt = x.transpose().unwrap();
    assert_eq!(xt.get(&[2, 1]).unwrap(), 6.0);
    assert!(matches!(xt.get(&[1, 2]), Err(Error::Index { .. })));
}

#[test]
fn reduce_dim_out_of_range() {
    let x = t(&[2, 3]);
    expect_shape("sum", x.sum(2), "sum", &["(2, 3)", "dimension 2"]);
    expect_shape("mean", x.mean(5), "mean", &["(2, 3)", "dimension 5"]);
    expect_shape("max", x.max(2), "max", &["(2, 3)"]);
    expect_shape("prod", x.prod(3), "prod", &["(2, 3)"]);
    expect_shape("all_dim", x.all_dim(2), "all_dim", &["(2, 3)"]);
}

#[test]
fn construction_errors() {
    expect_shape(
        "from_vec",
        Tensor::from_vec(vec![1.0; 5], &[2, 3], Device::Cpu),
        "from_vec",
        &["(2, 3)", "5 values"],
    );
    expect_shape("item", t(&[2]).item(), "item", &["(2,)"]);
    expect_shape(
        "layout",
        Layout::new(vec![2, 3], vec![1], 0),
        "layout",
        &["(2, 3)"],
    );
    match Device::parse("tpu") {
        Err(e @ Error::Invalid { op: "device", .. }) => assert!(e.to_string().contains("tpu")),
        other => panic!("parse tpu should fail, got {other:?}"),
    }
}

/// Misuse of the backend trait itself is an error too (a GPU kernel would read out of
/// bounds otherwise).
#[test]
fn backend_contract_errors() {
    let b = Device::Cpu.backend().unwrap();
    let x = b.upload(&[1.0; 6]).unwrap();
    let l23 = Layout::contiguous(&[2, 3]);
    let l32 = Layout::contiguous(&[3, 2]);
    expect_shape(
        "zip shapes",
        b.zip(BinaryOp::Add, &x, &l23, &x, &l32),
        "zip",
        &["(2, 3)", "(3, 2)"],
    );
    expect_shape(
        "reduce dim",
        b.reduce(ReduceOp::Sum, &x, &l23, 2),
        "reduce",
        &["(2, 3)"],
    );
    let past = Layout::new(vec![2, 3], vec![3, 1], 1).unwrap();
    expect_shape(
        "map past the end",
        b.map(UnaryOp::Exp, &x, &past),
        "map",
        &["(2, 3)", "past the storage"],
    );
    expect_shape(
        "copy past the end",
        b.copy(&x, &Layout::contiguous(&[7])),
        "copy", // the CPU copy names itself (it was map(Id) before)
        &["(7,)"],
    );
    expect_shape(
        "matmul inner",
        b.matmul(&x, &l23, &x, &l23),
        "matmul",
        &["(2, 3)"],
    );
    let l123 = Layout::contiguous(&[1, 2, 3]);
    expect_shape(
        "matmul rank",
        b.matmul(&x, &l123, &x, &l32),
        "matmul",
        &["(1, 2, 3)", "(3, 2)"],
    );
    // A tensor over a too-short storage fails on use instead of reading past the end.
    let bad = Tensor::from_storage(x.clone(), Layout::contiguous(&[3, 3]), b.clone());
    assert!(matches!(bad.to_vec(), Err(Error::Shape { .. })));
    assert!(matches!(bad.exp(), Err(Error::Shape { .. })));
}

#[cfg(not(feature = "wgpu"))]
#[test]
fn wgpu_not_compiled() {
    feature_error(Device::Wgpu, "wgpu");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_not_compiled() {
    feature_error(Device::Cuda, "cuda");
    feature_error(Device::CudaEmu, "cuda");
}

#[cfg(any(not(feature = "wgpu"), not(feature = "cuda")))]
fn feature_error(d: Device, feature: &str) {
    assert!(!d.is_compiled());
    for r in [
        d.backend().map(|_| ()),
        Tensor::zeros(&[2], d).map(|_| ()),
        Tensor::from_vec(vec![1.0], &[1], d).map(|_| ()),
        t(&[2]).to_device(d).map(|_| ()),
    ] {
        match r {
            Err(e @ Error::FeatureNotCompiled { .. }) => {
                let Error::FeatureNotCompiled { device, feature: f } = &e else {
                    unreachable!()
                };
                assert_eq!((*device, *f), (d.name(), feature));
                assert!(
                    e.to_string().contains(&format!("--features {feature}")),
                    "{e}"
                );
            }
            other => panic!("{d} without its feature should fail, got {other:?}"),
        }
    }
}

/// With a GPU feature compiled in, that device either works (a round trip returns the
/// values) or says why it cannot run here (DeviceUnavailable naming it): never a
/// missing-feature error. (CI also runs this file without features, for the tests above.)
#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[test]
fn compiled_devices_work_or_say_why() {
    for d in [Device::Wgpu, Device::Cuda, Device::CudaEmu]
        .into_iter()
        .filter(|d| d.is_compiled())
    {
        match d.backend() {
            Ok(_) => {
                let t = Tensor::from_vec(vec![1.5, -2.0], &[2], d).unwrap();
                assert_eq!(t.to_vec().unwrap(), vec![1.5, -2.0], "{d} round trip");
                assert_eq!(t.device(), d);
            }
            Err(e @ Error::DeviceUnavailable { .. }) => {
                let Error::DeviceUnavailable { device, msg } = &e else {
                    unreachable!()
                };
                assert_eq!(*device, d.to_string(), "{e}");
                assert!(!msg.is_empty(), "{d}: unavailable without a reason");
                // Every entry point says the same, as an error.
                assert!(matches!(
                    Tensor::zeros(&[2], d),
                    Err(Error::DeviceUnavailable { .. })
                ));
            }
            Err(other) => {
                panic!("{d} is compiled in: expected it to work or be unavailable, got {other:?}")
            }
        }
    }
}
