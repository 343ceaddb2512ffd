//! Module 2 tensor data: index arithmetic, broadcasting, permute and view rules
//! (MiniTorch's `test_tensor_data.py`).

use std::collections::HashSet;

use minitorch::layout::{
    broadcast_index, index_to_position, shape_broadcast, shape_size, strides_from_shape, to_index,
    StridedCursor,
};
use minitorch::{Error, Layout};
use proptest::prelude::*;

/// Random shapes of rank 1 to 4 with dimensions 1 to 6.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=6, 1..=4)
}

/// A shape and a permutation of its dimensions.
fn shape_and_order() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape().prop_flat_map(|s| {
        let n = s.len();
        (Just(s), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
    })
}

/// Every multi-index of `shape`, in row-major order, enumerated independently of
/// `to_index` (an odometer).
fn all_indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    if shape.contains(&0) {
        return out;
    }
    let mut idx = vec![0; shape.len()];
    loop {
        out.push(idx.clone());
        let mut d = shape.len();
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

#[test]
fn strides_known_values() {
    assert_eq!(strides_from_shape(&[2, 3, 4]).to_vec(), vec![12, 4, 1]);
    assert_eq!(strides_from_shape(&[5]).to_vec(), vec![1]);
    assert_eq!(strides_from_shape(&[4, 1, 3]).to_vec(), vec![3, 3, 1]);
    assert_eq!(strides_from_shape(&[]).to_vec(), Vec::<usize>::new());
    assert_eq!(shape_size(&[2, 3, 4]), 24);
    assert_eq!(shape_size(&[]), 1);
    assert_eq!(shape_size(&[3, 0]), 0);
}

#[test]
fn shape_broadcast_course_cases() {
    let ok = |a: &[usize], b: &[usize], want: &[usize]| {
        assert_eq!(
            shape_broadcast(a, b).unwrap().to_vec(),
            want,
            "{a:?} with {b:?}"
        );
        assert_eq!(
            shape_broadcast(b, a).unwrap().to_vec(),
            want,
            "{b:?} with {a:?}"
        );
    };
    ok(&[1], &[5, 5], &[5, 5]);
    ok(&[5, 5], &[1], &[5, 5]);
    ok(&[1, 5, 5], &[5, 5], &[1, 5, 5]);
    ok(&[5, 1, 5, 1], &[1, 5, 1, 5], &[5, 5, 5, 5]);
    ok(&[2, 5], &[5], &[2, 5]);
    ok(&[3, 1], &[1, 4], &[3, 4]);
    ok(&[], &[2, 3], &[2, 3]);
    for (a, b) in [(vec![5, 7, 5, 1], vec![1, 5, 1, 5]), (vec![5, 2], vec![5])] {
        for (x, y) in [(&a, &b), (&b, &a)] {
            match shape_broadcast(x, y) {
                Err(
                    e @ Error::Shape {
                        op: "broadcast", ..
                    },
                ) => {
                    let msg = e.to_string();
                    let fmt = |s: &[usize]| {
                        let inner: Vec<String> = s.iter().map(|d| d.to_string()).collect();
                        if s.len() == 1 {
                            format!("({},)", inner[0])
                        } else {
                            format!("({})", inner.join(", "))
                        }
                    };
                    assert!(
                        msg.contains(&fmt(x)) && msg.contains(&fmt(y)),
                        "message {msg:?}"
                    );
                }
                other => panic!("{x:?} with {y:?} should not broadcast, got {other:?}"),
            }
        }
    }
}

#[test]
fn permute_validity() {
    let l = Layout::contiguous(&[2, 3, 4]);
    let p = l.permute(&[2, 0, 1]).unwrap();
    assert_eq!(p.shape(), &[4, 2, 3]);
    assert_eq!(p.strides(), &[1, 12, 4]);
    assert_eq!(p.offset(), 0);
    for bad in [&[0, 1][..], &[0, 1, 1], &[0, 1, 3], &[0, 1, 2, 3], &[]] {
        match l.permute(bad) {
            Err(Error::Shape { op: "permute", .. }) => {}
            other => panic!("permute {bad:?} should fail, got {other:?}"),
        }
    }
}

#[test]
fn is_contiguous_rules() {
    assert!(Layout::contiguous(&[2, 3, 4]).is_contiguous());
    assert!(Layout::contiguous(&[]).is_contiguous());
    let t = Layout::contiguous(&[2, 3]).permute(&[1, 0]).unwrap();
    assert!(!t.is_contiguous());
    // Size-1 dimensions may have any stride.
    assert!(Layout::new(vec![2, 1, 3], vec![3, 99, 1], 5)
        .unwrap()
        .is_contiguous());
    assert!(Layout::contiguous(&[1, 4])
        .permute(&[1, 0])
        .unwrap()
        .is_contiguous());
    // A broadcast (stride 0) dimension of size > 1 is not contiguous.
    let b = Layout::contiguous(&[1, 3]).broadcast_to(&[4, 3]).unwrap();
    assert_eq!(b.strides(), &[0, 1]);
    assert!(!b.is_contiguous());
    // Gaps are not contiguous.
    assert!(!Layout::new(vec![2, 3], vec![6, 2], 0)
        .unwrap()
        .is_contiguous());
}

#[test]
fn view_rules() {
    let l = Layout::new(vec![2, 6], vec![6, 1], 7).unwrap();
    let v = l.view(&[3, 4]).unwrap();
    assert_eq!(v.shape(), &[3, 4]);
    assert_eq!(v.strides(), &[4, 1]);
    assert_eq!(v.offset(), 7, "a view keeps the offset");
    assert_eq!(l.view(&[12]).unwrap().strides(), &[1]);
    assert_eq!(l.view(&[1, 12, 1]).unwrap().size(), 12);
    match l.view(&[5, 2]) {
        Err(Error::Shape { op: "view", .. }) => {}
        other => panic!("wrong element count should fail, got {other:?}"),
    }
    let t = l.permute(&[1, 0]).unwrap();
    match t.view(&[12]) {
        Err(e @ Error::Shape { op: "view", .. }) => assert!(e.to_string().contains("contiguous")),
        other => panic!("view of a non-contiguous layout should fail, got {other:?}"),
    }
}

#[test]
fn layout_new_checks_rank() {
    assert!(matches!(
        Layout::new(vec![2, 3], vec![1], 0),
        Err(Error::Shape { op: "layout", .. })
    ));
}

#[test]
fn broadcast_to_rules() {
    let l = Layout::new(vec![3, 1], vec![1, 1], 2).unwrap();
    let b = l.broadcast_to(&[2, 3, 4]).unwrap();
    assert_eq!(b.shape(), &[2, 3, 4]);
    assert_eq!(b.strides(), &[0, 1, 0]);
    assert_eq!(b.offset(), 2);
    for bad in [&[3][..], &[2, 4], &[3, 4, 2]] {
        assert!(
            matches!(
                l.broadcast_to(bad),
                Err(Error::Shape {
                    op: "broadcast",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn checked_position_errors() {
    let l = Layout::contiguous(&[2, 3]);
    assert_eq!(l.checked_position(&[1, 2]).unwrap(), 5);
    for bad in [&[2, 0][..], &[0, 3], &[-1, 0], &[0], &[0, 0, 0]] {
        match l.checked_position(bad) {
            Err(Error::Index {
                op: "index", index, ..
            }) => assert_eq!(index, bad),
            other => panic!("index {bad:?} should fail, got {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// to_index hits every index once and index_to_position inverts it (contiguous
    /// strides).
    #[test]
    fn to_index_round_trip(shape in shape()) {
        let strides = strides_from_shape(&shape);
        let size = shape_size(&shape);
        let expected = all_indices(&shape);
        prop_assert_eq!(expected.len(), size);
        let mut seen = HashSet::new();
        let mut index = vec![0; shape.len()];
        for (ord, want) in expected.iter().enumerate() {
            to_index(ord, &shape, &mut index);
            prop_assert!(index.iter().zip(&shape).all(|(i, d)| i < d), "{:?} in {:?}", index, shape);
            prop_assert_eq!(&index, want, "row-major order");
            prop_assert_eq!(index_to_position(&index, &strides), ord);
            prop_assert!(seen.insert(index.clone()), "index {:?} hit twice", index);
        }
        prop_assert_eq!(seen.len(), size);
    }

    /// strides_from_shape is row-major: last stride 1, each stride the product of the
    /// dimensions after it.
    #[test]
    fn strides_are_row_major(shape in shape()) {
        let s = strides_from_shape(&shape);
        prop_assert_eq!(s.len(), shape.len());
        for i in 0..shape.len() {
            prop_assert_eq!(s[i], shape[i + 1..].iter().product::<usize>());
        }
    }

    /// A permuted layout addresses every storage position exactly once, and reads the
    /// element of the original at the permuted index.
    #[test]
    fn permute_positions((shape, order) in shape_and_order(), offset in 0usize..5) {
        let l = Layout::new(shape.clone(), strides_from_shape(&shape), offset).unwrap();
        let p = l.permute(&order).unwrap();
        prop_assert_eq!(p.size(), l.size());
        let mut positions = HashSet::new();
        for idx in all_indices(p.shape()) {
            // Index `idx` of the permuted layout is index `orig` of the original with
            // orig[order[i]] = idx[i].
            let mut orig = vec![0; shape.len()];
            for (i, &o) in order.iter().enumerate() {
                orig[o] = idx[i];
            }
            prop_assert_eq!(p.position(&idx), l.position(&orig));
            positions.insert(p.position(&idx));
        }
        let want: HashSet<usize> = (offset..offset + l.size()).collect();
        prop_assert_eq!(positions, want);
        let identity = order.iter().enumerate().all(|(i, &o)| i == o || shape[o] == 1);
        if identity {
            prop_assert!(p.is_contiguous());
        }
        // Permuting back gives the original.
        let mut inverse = vec![0; order.len()];
        for (i, &o) in order.iter().enumerate() {
            inverse[o] = i;
        }
        prop_assert_eq!(p.permute(&inverse).unwrap(), l);
    }

    /// Broadcasting a shape with some dimensions set to 1 and leading ones dropped back to
    /// the full shape; broadcast_index agrees with the stride-0 layout.
    #[test]
    fn broadcast_index_agrees_with_broadcast_layout(
        big in shape(),
        ones in prop::collection::vec(prop::bool::ANY, 4),
        drop in 0usize..4,
    ) {
        let drop = drop.min(big.len() - 1);
        let small: Vec<usize> = big[drop..]
            .iter()
            .zip(&ones)
            .map(|(&d, &one)| if one { 1 } else { d })
            .collect();
        prop_assert_eq!(shape_broadcast(&small, &big).unwrap().to_vec(), big.clone());
        prop_assert_eq!(shape_broadcast(&big, &small).unwrap().to_vec(), big.clone());
        let sl = Layout::contiguous(&small);
        let bl = sl.broadcast_to(&big).unwrap();
        let mut out = vec![0; small.len()];
        for idx in all_indices(&big) {
            broadcast_index(&idx, &big, &small, &mut out);
            for (k, (&o, &d)) in out.iter().zip(&small).enumerate() {
                let expect = if d == 1 { 0 } else { idx[drop + k] };
                prop_assert_eq!(o, expect);
            }
            prop_assert_eq!(bl.position(&idx), sl.position(&out));
        }
    }

    /// Two shapes broadcast exactly when every aligned pair is equal or has a 1.
    #[test]
    fn shape_broadcast_rule(a in prop::collection::vec(1usize..=3, 0..=4), b in prop::collection::vec(1usize..=3, 0..=4)) {
        let n = a.len().max(b.len());
        let pad = |s: &[usize]| {
            let mut v = vec![1; n - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (pa, pb) = (pad(&a), pad(&b));
        let ok = pa.iter().zip(&pb).all(|(x, y)| x == y || *x == 1 || *y == 1);
        match shape_broadcast(&a, &b) {
            Ok(s) => {
                prop_assert!(ok);
                let want: Vec<usize> = pa.iter().zip(&pb).map(|(x, y)| *x.max(y)).collect();
                prop_assert_eq!(s.to_vec(), want.clone());
                prop_assert_eq!(shape_broadcast(&b, &a).unwrap().to_vec(), want);
            }
            Err(e) => {
                prop_assert!(!ok, "{:?} and {:?} should broadcast", a, b);
                let is_broadcast_error = matches!(e, Error::Shape { op: "broadcast", .. });
                prop_assert!(is_broadcast_error);
            }
        }
    }

    /// The odometer cursor visits the same positions as to_index + position, from any
    /// start, on permuted, broadcast and offset layouts.
    #[test]
    fn strided_cursor_agrees((shape, order) in shape_and_order(), offset in 0usize..7, bcast in 1usize..=3, start_frac in 0.0f64..1.0) {
        let base = Layout::new(shape.clone(), strides_from_shape(&shape), offset).unwrap();
        let permuted = base.permute(&order).unwrap();
        let mut big = vec![bcast];
        big.extend_from_slice(permuted.shape());
        let broadcast = permuted.broadcast_to(&big).unwrap();
        for l in [&base, &permuted, &broadcast] {
            let size = l.size();
            let start = ((size as f64) * start_frac) as usize;
            let mut cur = StridedCursor::new(l, start);
            let mut index = vec![0; l.dims()];
            for ord in start..size {
                to_index(ord, l.shape(), &mut index);
                prop_assert_eq!(cur.pos(), l.position(&index), "ordinal {} of {:?}", ord, l);
                cur.advance();
            }
        }
    }

    /// view keeps the elements in order: ordinal i reads the same position before and
    /// after.
    #[test]
    fn view_keeps_element_order(shape in shape(), offset in 0usize..5, split in 0usize..4) {
        let l = Layout::new(shape.clone(), strides_from_shape(&shape), offset).unwrap();
        let size = l.size();
        // Some other factorisation of the size.
        let divisors: Vec<usize> = (1..=size).filter(|&d| size.is_multiple_of(d)).collect();
        let d = divisors[split % divisors.len()];
        let v = l.view(&[d, size / d]).unwrap();
        let (mut i1, mut i2) = (vec![0; l.dims()], vec![0; 2]);
        for ord in 0..size {
            to_index(ord, l.shape(), &mut i1);
            to_index(ord, v.shape(), &mut i2);
            prop_assert_eq!(l.position(&i1), v.position(&i2));
        }
    }
}
