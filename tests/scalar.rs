//! Module 1: scalar autodiff (MiniTorch's `test_scalar.py` and `test_autodiff.py`).

use minitorch::autodiff::{central_difference, topological_sort, Variable};
use minitorch::scalar::{Context, Derivatives, ScalarFunction};
use minitorch::{Error, Scalar};
use proptest::prelude::*;

/// MiniTorch's tolerances for derivative checks.
const RTOL: f64 = 1e-2;
const ATOL: f64 = 1e-2;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= ATOL + RTOL * b.abs()
}

type ScalarFn = fn(&[Scalar]) -> Scalar;

/// Backpropagate through `f` at `vals` and compare every input's derivative with the
/// central difference of the same function evaluated on constants.
fn derivative_check(
    name: &str,
    f: ScalarFn,
    vals: &[f64],
) -> std::result::Result<(), TestCaseError> {
    let leaves: Vec<Scalar> = vals.iter().map(|&v| Scalar::new(v)).collect();
    let out = f(&leaves);
    out.backward()
        .map_err(|e| TestCaseError::fail(format!("{name}: backward failed: {e}")))?;
    let eval = |v: &[f64]| f(&v.iter().map(|&x| Scalar::constant(x)).collect::<Vec<_>>()).value();
    for (i, x) in leaves.iter().enumerate() {
        let analytic = x
            .derivative()
            .ok_or_else(|| TestCaseError::fail(format!("{name}: input {i} got no derivative")))?;
        let numeric = central_difference(eval, vals, i, 1e-6);
        prop_assert!(
            close(analytic, numeric),
            "{} at {:?}: input {} derivative {} vs central difference {}",
            name,
            vals,
            i,
            analytic,
            numeric
        );
    }
    Ok(())
}

// ----- the course's MathTest functions, on scalars -----------------------------------------

fn one_arg() -> Vec<(&'static str, ScalarFn)> {
    vec![
        ("neg", |x| -&x[0]),
        ("add_constant", |x| 5.0 + &x[0]),
        ("sub_constant", |x| &x[0] - 5.0),
        ("mult_constant", |x| 5.0 * &x[0]),
        ("div_constant", |x| &x[0] / 5.0),
        ("square", |x| &x[0] * &x[0]),
        ("cube", |x| &x[0] * &x[0] * &x[0]),
        ("sig", |x| x[0].sigmoid()),
        // The course's log(x + 100000) and exp(x - 200) cannot fail here: their derivatives
        // (1e-5 and below e^-100) are under the 1e-2 tolerance everywhere. These shifted
        // forms have derivatives of order 1 over the inputs' range.
        ("log", |x| (&x[0] * &x[0] / 100.0 + 0.25).log()),
        ("relu", |x| (&x[0] + 5.5).relu()),
        ("exp", |x| (&x[0] / 25.0 + 1.0).exp()),
        ("exp_small", |x| (&x[0] / 10.0).exp()),
        ("explog", |x| {
            (&x[0] * &x[0] / 100.0 + 0.25).log() + (&x[0] / 25.0 + 1.0).exp()
        }),
        ("inv", |x| 1.0 / (&x[0] + 3.5)),
        ("inv_method", |x| (&x[0] + 3.5).inv()),
        ("complex", |x| {
            (((&x[0] * 10.0 + 7.0).relu() * 6.0 + 5.0).relu() * 10.0)
                .sigmoid()
                .log()
                / 50.0
        }),
    ]
}

fn two_arg() -> Vec<(&'static str, ScalarFn)> {
    vec![
        ("add2", |x| &x[0] + &x[1]),
        ("sub2", |x| &x[0] - &x[1]),
        ("mul2", |x| &x[0] * &x[1]),
        ("div2", |x| &x[0] / (&x[1] + 5.5)),
        ("gt2", |x| (&x[0] + 1.2).gt(&x[1])),
        ("lt2", |x| (&x[0] + 1.2).lt(&x[1])),
        ("eq2", |x| x[0].eq(&x[1] + 5.5)),
        ("mixed", |x| {
            (&x[0] * &x[1]).sigmoid() * (&x[1] - &x[0]).exp() / 100.0
        }),
    ]
}

/// The inputs where a function's central difference is meaningless: near a kink, a jump
/// or a pole (within 1e-3 of it).
fn near_kink(name: &str, v: &[f64]) -> bool {
    let near = |x: f64| x.abs() < 1e-3;
    match name {
        "relu" => near(v[0] + 5.5),
        "inv" | "inv_method" => near(v[0] + 3.5),
        "complex" => near(v[0] * 10.0 + 7.0) || near((v[0] * 10.0 + 7.0).max(0.0) * 6.0 + 5.0),
        "div2" => near(v[1] + 5.5),
        "gt2" | "lt2" => near(v[0] + 1.2 - v[1]),
        "eq2" => near(v[0] - v[1] - 5.5),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn one_arg_derivatives(x in -100.0f64..100.0) {
        for (name, f) in one_arg() {
            if near_kink(name, &[x]) {
                continue;
            }
            derivative_check(name, f, &[x])?;
        }
    }

    #[test]
    fn two_arg_derivatives(x in -100.0f64..100.0, y in -100.0f64..100.0) {
        for (name, f) in two_arg() {
            if near_kink(name, &[x, y]) {
                continue;
            }
            derivative_check(name, f, &[x, y])?;
        }
    }

    /// Each scalar function on its own, where it is smooth, against central differences.
    #[test]
    fn every_function_alone(x in 0.05f64..20.0, y in 0.05f64..20.0, neg_x in prop::bool::ANY) {
        let x = if neg_x { -x } else { x };
        derivative_check("Add", |v| &v[0] + &v[1], &[x, y])?;
        derivative_check("Mul", |v| &v[0] * &v[1], &[x, y])?;
        derivative_check("Inv", |v| v[0].inv(), &[x])?;
        derivative_check("Neg", |v| v[0].neg(), &[x])?;
        derivative_check("Sigmoid", |v| v[0].sigmoid(), &[x])?;
        derivative_check("ReLU", |v| v[0].relu(), &[x])?;
        derivative_check("Log", |v| v[0].log(), &[y])?;
        derivative_check("Exp", |v| v[0].exp(), &[x])?;
        derivative_check("LT", |v| v[0].lt(&v[1]), &[x, x + 1.0])?;
        derivative_check("EQ", |v| v[0].eq(&v[1]), &[x, x + 1.0])?;
        derivative_check("Sub", |v| &v[0] - &v[1], &[x, y])?;
        derivative_check("Div", |v| &v[0] / &v[1], &[x, y])?;
    }

    /// Forward values agree with plain f64 arithmetic.
    #[test]
    fn forward_values(x in -50.0f64..50.0, y in 0.1f64..50.0) {
        let (a, b) = (Scalar::new(x), Scalar::new(y));
        prop_assert_eq!((&a + &b).value(), x + y);
        prop_assert_eq!((&a - &b).value(), x + -y);
        prop_assert_eq!((&a * &b).value(), x * y);
        prop_assert!(((&a / &b).value() - x / y).abs() <= 1e-12 * (x / y).abs().max(1.0));
        prop_assert_eq!((-&a).value(), -x);
        prop_assert_eq!(b.log().value(), y.ln());
        prop_assert_eq!(a.exp().value(), x.exp());
        prop_assert_eq!(a.relu().value(), x.max(0.0));
        prop_assert!((a.sigmoid().value() - 1.0 / (1.0 + (-x).exp())).abs() < 1e-12);
        prop_assert_eq!(a.lt(&b).value(), if x < y { 1.0 } else { 0.0 });
        prop_assert_eq!(a.gt(&b).value(), if x > y { 1.0 } else { 0.0 });
        prop_assert_eq!(a.eq(&a).value(), 1.0);
        prop_assert_eq!(a.eq(x + 1.0).value(), 0.0);
    }
}

// ----- chain rule and backpropagation (the course's test_autodiff cases) ----------------

/// The course's `Function1`: x + y + 10, derivative (d, d).
struct Function1;
impl ScalarFunction for Function1 {
    const NAME: &'static str = "Function1";
    fn forward(_: &mut Context, x: &[f64]) -> f64 {
        x[0] + x[1] + 10.0
    }
    fn backward(_: &Context, d: f64) -> Derivatives {
        vec![d, d]
    }
}

/// The course's `Function2`: x * y + x, derivative (d (y + 1), d x).
struct Function2;
impl ScalarFunction for Function2 {
    const NAME: &'static str = "Function2";
    fn forward(ctx: &mut Context, x: &[f64]) -> f64 {
        ctx.save_for_backward(&[x[0], x[1]]);
        x[0] * x[1] + x[0]
    }
    fn backward(ctx: &Context, d: f64) -> Derivatives {
        let s = ctx.saved_values();
        vec![d * (s[1] + 1.0), d * s[0]]
    }
}

#[test]
fn custom_function_forward_and_history() {
    let x = Scalar::new(2.0);
    let y = Function1::apply(&[&Scalar::constant(3.0), &x]);
    assert_eq!(y.value(), 15.0);
    assert_eq!(y.function_name(), Some("Function1"));
    assert!(!y.is_leaf());
    assert_eq!(y.parents().len(), 2);
    // Results of constants only are constants with no history.
    let c = Function1::apply(&[&Scalar::constant(1.0), &Scalar::constant(2.0)]);
    assert_eq!(c.value(), 13.0);
    assert!(c.is_constant());
    assert_eq!(c.function_name(), None);
}

#[test]
fn chain_rule_gives_each_input_its_derivative() {
    let x = Scalar::new(0.0);
    let c = Scalar::constant(10.0);
    let y = Function2::apply(&[&x, &c]);
    let back = y.chain_rule(&5.0).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].0.unique_id(), x.unique_id());
    assert_eq!(back[0].1, 5.0 * (10.0 + 1.0));
    assert_eq!(back[1].0.unique_id(), c.unique_id());
    assert_eq!(back[1].1, 5.0 * 0.0);
    // A leaf has no function: nothing to chain.
    assert!(x.chain_rule(&1.0).unwrap().is_empty());
    // Mul keeps both inputs in order.
    let a = Scalar::new(3.0);
    let b = Scalar::new(-4.0);
    let m = &a * &b;
    let back = m.chain_rule(&2.0).unwrap();
    assert_eq!(back[0].1, 2.0 * -4.0);
    assert_eq!(back[1].1, 2.0 * 3.0);
}

#[test]
fn backprop_one_step() {
    let var = Scalar::new(0.0);
    let var2 = Function1::apply(&[&Scalar::constant(0.0), &var]);
    var2.backward_with(5.0).unwrap();
    assert_eq!(var.derivative(), Some(5.0));
}

#[test]
fn backprop_two_steps() {
    let var = Scalar::new(0.0);
    let var2 = Function1::apply(&[&Scalar::constant(0.0), &var]);
    let var3 = Function1::apply(&[&Scalar::constant(0.0), &var2]);
    var3.backward_with(5.0).unwrap();
    assert_eq!(var.derivative(), Some(5.0));
}

#[test]
fn backprop_diamond() {
    // var1 feeds two functions whose results meet again: its derivative is the sum.
    let var1 = Scalar::new(0.0);
    let var2 = Function1::apply(&[&Scalar::constant(0.0), &var1]);
    let var3 = Function1::apply(&[&Scalar::constant(0.0), &var1]);
    let var4 = Function1::apply(&[&var2, &var3]);
    var4.backward_with(5.0).unwrap();
    assert_eq!(var1.derivative(), Some(10.0));
}

#[test]
fn backprop_diamond_after_a_step() {
    let var0 = Scalar::new(0.0);
    let var1 = Function1::apply(&[&Scalar::constant(0.0), &var0]);
    let var2 = Function1::apply(&[&Scalar::constant(0.0), &var1]);
    let var3 = Function1::apply(&[&Scalar::constant(0.0), &var1]);
    let var4 = Function1::apply(&[&var2, &var3]);
    var4.backward_with(5.0).unwrap();
    assert_eq!(var0.derivative(), Some(10.0));
    // Intermediate results are not leaves and keep no derivative.
    assert_eq!(var1.derivative(), None);
}

#[test]
fn diamond_with_real_functions() {
    // a = 2x, b = a * a, z = a + b = 2x + 4x^2: dz/dx = 2 + 8x; a is used twice.
    let x = Scalar::new(1.5);
    let a = &x * 2.0;
    let b = &a * &a;
    let z = &a + &b;
    z.backward().unwrap();
    assert_eq!(z.value(), 3.0 + 9.0);
    assert_eq!(x.derivative(), Some(2.0 + 8.0 * 1.5));

    // x * y used twice: z = (x y) + sigmoid(x y).
    let x = Scalar::new(0.3);
    let y = Scalar::new(-0.7);
    let p = &x * &y;
    let z = &p + p.sigmoid();
    z.backward().unwrap();
    let s = 1.0 / (1.0 + (0.21f64).exp());
    let dz_dp = 1.0 + s * (1.0 - s);
    assert!((x.derivative().unwrap() - dz_dp * -0.7).abs() < 1e-12);
    assert!((y.derivative().unwrap() - dz_dp * 0.3).abs() < 1e-12);
}

#[test]
fn same_variable_on_both_sides() {
    let x = Scalar::new(3.0);
    let y = &x * &x;
    y.backward().unwrap();
    assert_eq!(x.derivative(), Some(6.0));
    let x = Scalar::new(3.0);
    let y = &x - &x;
    y.backward().unwrap();
    assert_eq!(x.derivative(), Some(0.0));
    let x = Scalar::new(3.0);
    let y = &x / &x;
    y.backward().unwrap();
    assert!(x.derivative().unwrap().abs() < 1e-15);
}

#[test]
fn topological_sort_orders_outputs_before_inputs() {
    let x = Scalar::new(1.0);
    let y = Scalar::new(2.0);
    let a = &x * &y;
    let b = a.exp();
    let c = &a + &b;
    let d = c.log() + 1.0;
    let order = topological_sort(&d);
    let pos = |s: &Scalar| {
        order
            .iter()
            .position(|o| o.unique_id() == s.unique_id())
            .unwrap_or_else(|| panic!("{s:?} missing from the order"))
    };
    assert_eq!(pos(&d), 0, "the root comes first");
    // Every node appears once.
    let mut ids: Vec<usize> = order.iter().map(|s| s.unique_id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), order.len());
    // Every node comes before its (non-constant) parents.
    for (i, node) in order.iter().enumerate() {
        for p in node.parents() {
            if !p.is_constant() {
                assert!(pos(&p) > i, "{p:?} must come after {node:?}");
            }
        }
    }
    assert!(pos(&a) > pos(&b) && pos(&b) > pos(&c));
    assert!(pos(&x) > pos(&a) && pos(&y) > pos(&a));
    // Constants (the 1.0) are left out.
    assert!(order.iter().all(|s| !s.is_constant()));
}

#[test]
fn derivatives_accumulate_until_zero_grad() {
    let x = Scalar::new(2.0);
    let y = &x * 3.0;
    y.backward().unwrap();
    y.backward().unwrap();
    assert_eq!(x.derivative(), Some(6.0));
    x.zero_grad();
    assert_eq!(x.derivative(), None);
    y.backward_with(-1.0).unwrap();
    assert_eq!(x.derivative(), Some(-3.0));
}

#[test]
fn constants_get_no_derivative() {
    let x = Scalar::new(2.0);
    let c = Scalar::constant(4.0);
    let off = Scalar::new(5.0).requires_grad_(false);
    assert!(c.is_constant() && off.is_constant() && !x.is_constant());
    let y = &x * &c + &off;
    y.backward().unwrap();
    assert_eq!(x.derivative(), Some(4.0));
    assert_eq!(c.derivative(), None);
    assert_eq!(off.derivative(), None);
    // detach cuts the graph.
    let x = Scalar::new(2.0);
    let z = (&x * &x).detach() * &x;
    z.backward().unwrap();
    assert_eq!(x.derivative(), Some(4.0));
    // A computation on constants only records nothing and cannot be backpropagated.
    let k = &c * 2.0 + 1.0;
    assert!(k.is_constant());
    assert!(matches!(
        k.backward(),
        Err(Error::Autodiff { op: "backward", .. })
    ));
}

#[test]
fn operator_overloads_cover_every_combination() {
    let a = Scalar::new(3.0);
    let b = Scalar::new(-2.0);
    // (expression, value, d/da, d/db)
    let cases: Vec<(Scalar, f64, f64, f64)> = vec![
        (&a + &b, 1.0, 1.0, 1.0),
        (a.clone() + b.clone(), 1.0, 1.0, 1.0),
        (a.clone() + &b, 1.0, 1.0, 1.0),
        (&a + b.clone(), 1.0, 1.0, 1.0),
        (&a + 1.5, 4.5, 1.0, 0.0),
        (a.clone() + 1.5, 4.5, 1.0, 0.0),
        (1.5 + &a, 4.5, 1.0, 0.0),
        (1.5 + a.clone(), 4.5, 1.0, 0.0),
        (&a - &b, 5.0, 1.0, -1.0),
        (a.clone() - b.clone(), 5.0, 1.0, -1.0),
        (&a - 1.0, 2.0, 1.0, 0.0),
        (1.0 - &a, -2.0, -1.0, 0.0),
        (10.0 - a.clone(), 7.0, -1.0, 0.0),
        (&a * &b, -6.0, -2.0, 3.0),
        (a.clone() * &b, -6.0, -2.0, 3.0),
        (&a * 4.0, 12.0, 4.0, 0.0),
        (4.0 * &a, 12.0, 4.0, 0.0),
        (&a / &b, -1.5, -0.5, -3.0 / 4.0),
        (a.clone() / b.clone(), -1.5, -0.5, -3.0 / 4.0),
        (&a / 2.0, 1.5, 0.5, 0.0),
        (6.0 / &a, 2.0, -6.0 / 9.0, 0.0),
        (-&a, -3.0, -1.0, 0.0),
        (-a.clone(), -3.0, -1.0, 0.0),
        (a.add(&b), 1.0, 1.0, 1.0),
        (a.sub(2.0), 1.0, 1.0, 0.0),
        (a.mul(&b), -6.0, -2.0, 3.0),
        (a.div(&b), -1.5, -0.5, -0.75),
        (a.lt(&b), 0.0, 0.0, 0.0),
        (a.gt(&b), 1.0, 0.0, 0.0),
        (a.eq(3.0), 1.0, 0.0, 0.0),
        (b.relu(), 0.0, 0.0, 0.0),
        (a.relu(), 3.0, 1.0, 0.0),
    ];
    for (i, (expr, value, da, db)) in cases.into_iter().enumerate() {
        a.zero_grad();
        b.zero_grad();
        assert!(
            (expr.value() - value).abs() < 1e-12,
            "case {i}: value {}",
            expr.value()
        );
        expr.backward().unwrap();
        let got_a = a.derivative().unwrap_or(0.0);
        let got_b = b.derivative().unwrap_or(0.0);
        assert!((got_a - da).abs() < 1e-12, "case {i}: d/da {got_a} vs {da}");
        assert!((got_b - db).abs() < 1e-12, "case {i}: d/db {got_b} vs {db}");
    }
}

#[test]
fn sub_and_div_are_built_from_add_neg_mul_inv() {
    let a = Scalar::new(1.0);
    let b = Scalar::new(2.0);
    let s = &a - &b;
    assert_eq!(s.function_name(), Some("Add"));
    assert_eq!(s.parents()[1].function_name(), Some("Neg"));
    let d = &a / &b;
    assert_eq!(d.function_name(), Some("Mul"));
    assert_eq!(d.parents()[1].function_name(), Some("Inv"));
    assert_eq!(a.gt(&b).function_name(), Some("LT"));
}

#[test]
fn sum_of_scalars() {
    let xs: Vec<Scalar> = (1..=4).map(|i| Scalar::new(i as f64)).collect();
    let s: Scalar = xs.iter().map(|x| x * x).sum();
    assert_eq!(s.value(), 1.0 + 4.0 + 9.0 + 16.0);
    s.backward().unwrap();
    for (i, x) in xs.iter().enumerate() {
        assert_eq!(x.derivative(), Some(2.0 * (i + 1) as f64));
    }
    let by_ref: Scalar = xs.iter().sum();
    assert_eq!(by_ref.value(), 10.0);
    let empty: Scalar = Vec::<Scalar>::new().into_iter().sum();
    assert_eq!(empty.value(), 0.0);
    assert!(empty.is_constant());
}

/// A small neuron of the scalar engine: sigmoid(w . x + b), checked against closed-form
/// derivatives.
#[test]
fn neuron_gradients_match_closed_form() {
    let xs = [0.5, -1.25, 2.0];
    let ws: Vec<Scalar> = [0.1, 0.4, -0.3].iter().map(|&w| Scalar::new(w)).collect();
    let b = Scalar::new(0.2);
    let z: Scalar = ws.iter().zip(xs).map(|(w, x)| w * x).sum::<Scalar>() + &b;
    let out = z.sigmoid();
    out.backward().unwrap();
    let zv: f64 = [0.1, 0.4, -0.3]
        .iter()
        .zip(xs)
        .map(|(w, x)| w * x)
        .sum::<f64>()
        + 0.2;
    let s = 1.0 / (1.0 + (-zv).exp());
    assert!((out.value() - s).abs() < 1e-12);
    for (w, x) in ws.iter().zip(xs) {
        assert!((w.derivative().unwrap() - s * (1.0 - s) * x).abs() < 1e-12);
    }
    assert!((b.derivative().unwrap() - s * (1.0 - s)).abs() < 1e-12);
}

/// A very long chain: backward is iterative, and dropping the graph must not overflow the
/// stack (the test thread has a small stack).
#[test]
fn deep_chain_backward_and_drop() {
    let x = Scalar::new(0.5);
    let n = 200_000;
    let mut y = Scalar::new(0.0);
    for _ in 0..n {
        y = &y + &x;
    }
    assert!((y.value() - 0.5 * n as f64).abs() < 1e-6);
    y.backward().unwrap();
    assert_eq!(x.derivative(), Some(n as f64));
    drop(y);
    // x is still usable after the graph is gone.
    assert_eq!((&x * 2.0).value(), 1.0);
}

#[test]
fn central_difference_of_known_functions() {
    let d = central_difference(|v| v[0] * v[0] * v[1], &[3.0, 2.0], 0, 1e-6);
    assert!((d - 12.0).abs() < 1e-5);
    let d = central_difference(|v| v[0] * v[0] * v[1], &[3.0, 2.0], 1, 1e-6);
    assert!((d - 9.0).abs() < 1e-5);
    let d = central_difference(|v| v[0].exp(), &[0.0], 0, 1e-6);
    assert!((d - 1.0).abs() < 1e-6);
}

#[test]
fn debug_output_names_the_function() {
    let x = Scalar::new(2.0);
    let y = x.log();
    assert_eq!(format!("{x}"), "Scalar(2)");
    assert!(format!("{y:?}").contains("Log"));
    assert_eq!(Scalar::from(1.5).value(), 1.5);
    assert!(Scalar::from(1.5).is_constant());
}
