//! Module 0: the scalar operators and list helpers (MiniTorch's `test_operators.py`).

use minitorch::autodiff::central_difference;
use minitorch::operators::*;
use proptest::prelude::*;

/// MiniTorch's `assert_close`: |a - b| within 1e-2 absolute plus 1e-2 relative.
fn assert_close(a: f64, b: f64) {
    assert!(
        (a - b).abs() <= 1e-2 + 1e-2 * b.abs(),
        "{a} and {b} are not close"
    );
}

/// Values in the course's "small floats" range.
fn small() -> impl Strategy<Value = f64> {
    -100.0f64..100.0
}

#[test]
fn same_as_plain_arithmetic() {
    for &(x, y) in &[(1.5, -2.25), (0.0, 3.0), (-7.0, -7.0), (1e3, 1e-3)] {
        assert_eq!(mul(x, y), x * y);
        assert_eq!(add(x, y), x + y);
        assert_eq!(neg(x), -x);
        assert_eq!(max(x, y), if x > y { x } else { y });
        assert_eq!(id(x), x);
        if x != 0.0 {
            assert_eq!(inv(x), 1.0 / x);
        }
        assert_eq!(eq(x, y), if x == y { 1.0 } else { 0.0 });
        assert_eq!(lt(x, y), if x < y { 1.0 } else { 0.0 });
    }
}

#[test]
fn sigmoid_known_values_and_stability() {
    assert_eq!(sigmoid(0.0f64), 0.5);
    assert_close(sigmoid(1.0f64), 1.0 / (1.0 + (-1.0f64).exp()));
    // The stable form gives exact limits instead of NaN for huge arguments.
    assert_eq!(sigmoid(-1000.0f64), 0.0);
    assert_eq!(sigmoid(1000.0f64), 1.0);
    assert_eq!(sigmoid(-200.0f32), 0.0);
    assert_eq!(sigmoid(200.0f32), 1.0);
    assert!(!sigmoid(-1e30f64).is_nan() && !sigmoid(1e30f64).is_nan());
}

#[test]
fn log_exp_inv_known_values() {
    assert_eq!(log(1.0f64), 0.0);
    assert!((log(std::f64::consts::E) - 1.0).abs() < 1e-15);
    assert_eq!(exp(0.0f64), 1.0);
    assert!((exp(1.0f64) - std::f64::consts::E).abs() < 1e-15);
    assert_eq!(inv(4.0f64), 0.25);
    assert_eq!(inv(-0.5f32), -2.0);
}

#[test]
fn is_close_uses_the_course_tolerance() {
    assert_eq!(is_close(1.0f64, 1.005), 1.0);
    assert_eq!(is_close(1.0f64, 0.995), 1.0);
    assert_eq!(is_close(1.0f64, 1.02), 0.0);
    assert_eq!(is_close(-3.0f32, -3.011), 0.0);
    assert_eq!(is_close(5.0f32, 5.0), 1.0);
}

#[test]
fn list_helpers_known_values() {
    assert_eq!(sum::<f64>(&[]), 0.0);
    assert_eq!(prod::<f64>(&[]), 1.0);
    assert_eq!(sum(&[1.0, 2.0, 3.5]), 6.5);
    assert_eq!(prod(&[2.0, -3.0, 0.5]), -3.0);
    assert_eq!(neg_list(&[1.0, -2.0, 0.0]), vec![-1.0, 2.0, -0.0]);
    assert_eq!(add_lists(&[1.0, 2.0], &[10.0, 20.0]), vec![11.0, 22.0]);
    // zip_with stops at the shorter list.
    assert_eq!(add_lists(&[1.0, 2.0, 3.0], &[10.0]), vec![11.0]);
    assert_eq!(map(|x: f64| x * x, &[1.0, -3.0]), vec![1.0, 9.0]);
    assert_eq!(zip_with(max, &[1.0, 5.0], &[4.0, 2.0]), vec![4.0, 5.0]);
    assert_eq!(reduce(max, f64::NEG_INFINITY, &[3.0, 9.0, -1.0]), 9.0);
    assert_eq!(reduce(max, f64::NEG_INFINITY, &[]), f64::NEG_INFINITY);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn sigmoid_properties(x in small()) {
        let s = sigmoid(x);
        prop_assert!((0.0..=1.0).contains(&s));
        assert_close(1.0 - s, sigmoid(-x));
        // Exact symmetry too where both sides are representable.
        prop_assert!((1.0 - s - sigmoid(-x)).abs() < 1e-12);
        prop_assert!(sigmoid(x + 1.0) >= s, "sigmoid is increasing");
        if x.abs() < 30.0 {
            prop_assert!(sigmoid(x + 0.5) > s, "strictly increasing away from saturation");
            prop_assert!((s - 1.0 / (1.0 + (-x).exp())).abs() < 1e-12);
        }
        // The f32 version agrees with the f64 one.
        prop_assert!((sigmoid(x as f32) as f64 - s).abs() < 1e-6);
    }

    #[test]
    fn relu_and_relu_back(x in small(), d in small()) {
        prop_assert_eq!(relu(x), if x > 0.0 { x } else { 0.0 });
        prop_assert!(relu(x) >= 0.0);
        prop_assert_eq!(relu_back(x, d), if x > 0.0 { d } else { 0.0 });
    }

    #[test]
    fn lt_eq_max_properties(x in small(), y in small(), z in small()) {
        prop_assert_eq!(lt(x, y) + lt(y, x) + eq(x, y), 1.0, "exactly one of <, >, ==");
        prop_assert_eq!(eq(x, x), 1.0);
        prop_assert_eq!(lt(x, x), 0.0);
        prop_assert_eq!(lt(x - 1.0, x), 1.0);
        prop_assert_eq!(eq(x, y), eq(y, x), "eq is symmetric");
        // Transitive.
        if lt(x, y) == 1.0 && lt(y, z) == 1.0 {
            prop_assert_eq!(lt(x, z), 1.0);
        }
        prop_assert_eq!(max(x - 1.0, x), x);
        prop_assert_eq!(max(x, x - 1.0), x);
        prop_assert_eq!(max(x + 1.0, x), x + 1.0);
        prop_assert!(max(x, y) >= x && max(x, y) >= y);
    }

    #[test]
    fn arithmetic_laws(x in small(), y in small(), z in small()) {
        // Distributive, up to rounding.
        assert_close(mul(z, add(x, y)), add(mul(z, x), mul(z, y)));
        prop_assert_eq!(add(x, y), add(y, x));
        prop_assert_eq!(mul(x, y), mul(y, x));
        prop_assert_eq!(neg(neg(x)), x);
        prop_assert_eq!(add(x, neg(x)), 0.0);
        prop_assert_eq!(id(x), x);
        if x.abs() > 1e-3 {
            assert_close(mul(x, inv(x)), 1.0);
        }
        prop_assert_eq!(is_close(x, x + 0.001), 1.0);
        prop_assert_eq!(is_close(x, x + 0.1), 0.0);
    }

    #[test]
    fn log_exp_inverse(x in 0.01f64..100.0) {
        assert_close(exp(log(x)), x);
        assert_close(log(exp(x.min(10.0))), x.min(10.0));
    }

    /// The `*_back` functions are d * f'(x): compare with central differences.
    #[test]
    fn backs_match_central_difference(x in 0.1f64..50.0, d in -10.0f64..10.0, sign in prop::bool::ANY) {
        let eps = 1e-6;
        let numeric = |f: fn(f64) -> f64, at: f64| central_difference(|v: &[f64]| f(v[0]), &[at], 0, eps);
        assert_close(log_back(x, d), d * numeric(log, x));
        let xi = if sign { x } else { -x };
        assert_close(inv_back(xi, d), d * numeric(inv, xi));
        let xs = if sign { x } else { -x } / 5.0;
        assert_close(sigmoid_back(xs, d), d * numeric(sigmoid, xs));
        // Away from the kink at 0.
        assert_close(relu_back(xi, d), d * numeric(relu, xi));
        // Closed forms too.
        prop_assert!((log_back(x, d) - d / x).abs() <= 1e-12 * (d / x).abs().max(1.0));
        prop_assert!((inv_back(xi, d) + d / (xi * xi)).abs() <= 1e-12 * (d / (xi * xi)).abs().max(1.0));
    }

    #[test]
    fn list_laws(
        a in prop::collection::vec(small(), 0..20),
        b in prop::collection::vec(small(), 0..20),
    ) {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        // sum(a) + sum(b) == sum(add_lists(a, b)), up to rounding.
        assert_close(sum(a) + sum(b), sum(&add_lists(a, b)));
        let direct: f64 = a.iter().sum();
        prop_assert!((sum(a) - direct).abs() < 1e-9);
        let p: f64 = a.iter().map(|x| x / 50.0).product();
        let scaled = map(|x| x / 50.0, a);
        prop_assert!((prod(&scaled) - p).abs() <= 1e-12 * p.abs().max(1.0));
        let neg = neg_list(a);
        prop_assert_eq!(neg.len(), n);
        for (x, y) in a.iter().zip(&neg) {
            prop_assert_eq!(*y, -*x);
        }
        for ((x, y), z) in a.iter().zip(b).zip(add_lists(a, b)) {
            prop_assert_eq!(z, x + y);
        }
        prop_assert_eq!(sum(&neg), -sum(a));
    }
}
