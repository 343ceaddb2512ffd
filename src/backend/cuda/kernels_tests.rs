//! Unit tests of `kernels.rs`: entry-point slots, metadata words, launch shapes.

use super::*;

fn words(m: &Meta, n: usize) -> Vec<u32> {
    m.words(n).to_vec()
}

#[test]
fn entry_points_follow_op_names() {
    let map = Family::Map.entry_points();
    assert_eq!(map[map_slot(UnaryOp::Neg, false)], "map_neg");
    assert_eq!(map[map_slot(UnaryOp::Exp, true)], "map_exp_contiguous");
    let zip = Family::Zip.entry_points();
    assert_eq!(
        zip[zip_slot(BinaryOp::SigmoidBack, false)],
        "zip_sigmoid_back"
    );
    assert_eq!(
        zip[zip_slot(BinaryOp::IsClose, true)],
        "zip_is_close_contiguous"
    );
    let red = Family::Reduce.entry_points();
    assert_eq!(
        red[reduce_slot(ReduceOp::Max, true)],
        "reduce_max_contiguous"
    );
    assert_eq!(
        red[reduce_plan_slot(ReduceOp::Prod, false, ReducePlan::Serial)],
        "reduce_serial_prod"
    );
    assert_eq!(
        red[reduce_plan_slot(ReduceOp::Sum, true, ReducePlan::Serial)],
        "reduce_serial_sum_contiguous"
    );
    assert_eq!(
        red[reduce_plan_slot(ReduceOp::Sum, true, ReducePlan::Tree)],
        "reduce_sum_contiguous"
    );
    assert_eq!(
        Family::Matmul.entry_points()[MATMUL_FAST_SLOT],
        "matmul_fast"
    );
}

#[test]
fn sources_name_their_entry_points() {
    // Every op of the enums has an instantiation line in its file.
    for op in UnaryOp::ALL {
        assert!(Family::Map
            .source()
            .contains(&format!("MAP_ENTRY({},", op.name())));
    }
    for op in BinaryOp::ALL {
        assert!(Family::Zip
            .source()
            .contains(&format!("ZIP_ENTRY({},", op.name())));
    }
    for op in ReduceOp::ALL {
        assert!(Family::Reduce
            .source()
            .contains(&format!("REDUCE_ENTRY({},", op.name())));
    }
    assert!(Family::Matmul.source().contains("matmul("));
    assert!(HEADERS[0]
        .1
        .contains(&format!("#define META_WORDS {META_WORDS}")));
    assert!(HEADERS[0]
        .1
        .contains(&format!("#define MAX_DIMS {MAX_DIMS}")));
    assert!(HEADERS[0].1.contains(&format!("#define BLOCK {BLOCK}")));
}

#[test]
fn map_meta_layout() {
    let l = Layout::contiguous(&[2, 3]);
    let (m, contig) = map_meta(&l).unwrap();
    assert!(contig);
    // Contiguous dims merge into one.
    assert_eq!(words(&m, 5), vec![6, 1, 0, 6, 1]);
    // Transposed: [3, 2] with strides [1, 3], offset 1.
    let t = Layout::new(vec![3, 2], vec![1, 3], 1).unwrap();
    let (m, contig) = map_meta(&t).unwrap();
    assert!(!contig);
    assert_eq!(words(&m, 7), vec![6, 2, 1, 3, 2, 1, 3]);
    assert!(m.0[7..].iter().all(|&w| w == 0));
}

#[test]
fn zip_meta_layout_with_broadcast() {
    let a = Layout::contiguous(&[4, 3]);
    let b = Layout::new(vec![4, 3], vec![0, 1], 2).unwrap();
    let (m, contig) = zip_meta(&a, &b).unwrap();
    assert!(!contig);
    assert_eq!(words(&m, 10), vec![12, 2, 0, 2, 4, 3, 3, 1, 0, 1]);
}

#[test]
fn merge_dims_keeps_order() {
    let (s, st) = merge_dims(&[2, 1, 3, 4], &[&[12, 99, 4, 1], &[0, 5, 4, 1]]);
    assert_eq!(s, vec![2, 12]);
    assert_eq!(st, vec![vec![12, 1], vec![0, 1]]);
    let (s, st) = merge_dims(&[1, 1], &[&[7, 7]]);
    assert!(s.is_empty() && st[0].is_empty());
}

#[test]
fn reduce_meta_layout() {
    let l = Layout::contiguous(&[2, 3, 4]);
    let (m, contig, out) = reduce_meta(&l, 1).unwrap();
    assert!(contig);
    assert_eq!(out, 8);
    assert_eq!(words(&m, 12), vec![8, 3, 0, 1, 3, 4, 2, 1, 4, 12, 4, 1]);
    // Permuted input: strided kernel, reduce stride is the dim's own stride.
    let p = Layout::new(vec![3, 2], vec![1, 3], 0).unwrap();
    let (m, contig, out) = reduce_meta(&p, 0).unwrap();
    assert!(!contig);
    assert_eq!(out, 2);
    assert_eq!(words(&m, 10), vec![2, 2, 0, 0, 3, 1, 1, 2, 1, 3]);
    // Empty reduced dim: out count stays, length 0.
    let e = Layout::contiguous(&[2, 0]);
    let (m, _, out) = reduce_meta(&e, 1).unwrap();
    assert_eq!(out, 2);
    assert_eq!(m.0[4], 0);
}

#[test]
fn matmul_meta_layout() {
    // a: [2, 3, 4] contiguous; b: [2, 4, 5] broadcast over batch (stride 0).
    let a = Layout::contiguous(&[2, 3, 4]);
    let b = Layout::new(vec![2, 4, 5], vec![0, 5, 1], 0).unwrap();
    let (m, d) = matmul_meta(&a, &b).unwrap();
    assert_eq!(
        d,
        MatmulDims {
            batch: 2,
            n: 3,
            k: 4,
            m: 5
        }
    );
    assert_eq!(
        words(&m, 14),
        vec![2, 3, 4, 5, 1, 0, 0, 4, 1, 5, 1, 2, 12, 0]
    );
    assert_eq!(matmul_grid(&d), (1, 1, 2));
    assert!(!matmul_fast(&m));
}

#[test]
fn matmul_fast_only_for_whole_aligned_tiles() {
    let fast = |a: &Layout, b: &Layout| {
        let (m, _) = matmul_meta(a, b).unwrap();
        matmul_fast(&m)
    };
    let a = Layout::contiguous(&[2, 256, 64]);
    let b = Layout::contiguous(&[2, 64, 128]);
    assert!(fast(&a, &b));
    // Broadcast B over the batch (stride 0) is still aligned.
    let bb = Layout::new(vec![2, 64, 128], vec![0, 128, 1], 4).unwrap();
    assert!(fast(&a, &bb));
    // An offset that breaks float4 alignment.
    let bo = Layout::new(vec![2, 64, 128], vec![0, 128, 1], 2).unwrap();
    assert!(!fast(&a, &bo));
    // Transposed A, a ragged edge, a k off the step.
    let at = Layout::new(vec![2, 256, 64], vec![256 * 64, 1, 256], 0).unwrap();
    assert!(!fast(&at, &b));
    assert!(!fast(
        &Layout::contiguous(&[200, 64]),
        &Layout::contiguous(&[64, 128])
    ));
    assert!(!fast(
        &Layout::contiguous(&[128, 12]),
        &Layout::contiguous(&[12, 128])
    ));
    let d = MatmulDims {
        batch: 70_000,
        n: 256,
        k: 8,
        m: 384,
    };
    assert_eq!(matmul_fast_grid(&d), (3, 2, GRID_YZ_MAX));
}

#[test]
fn launch_shapes_respect_limits() {
    assert_eq!(elementwise_grid(0, 132), 1);
    assert_eq!(elementwise_grid(1000, 132), 4);
    assert_eq!(elementwise_grid(1 << 30, 132), 132 * 16);
    assert_eq!(reduce_grid(10), 10);
    assert_eq!(reduce_grid(1 << 28), REDUCE_GRID_MAX);
    let d = MatmulDims {
        batch: 100_000,
        n: 5_000_000,
        k: 1,
        m: 70,
    };
    assert_eq!(matmul_grid(&d), (2, GRID_YZ_MAX, GRID_YZ_MAX));
    for f in Family::ALL {
        assert!(shared_bytes(f) <= 48 * 1024);
    }
}

#[test]
fn u32_limits_are_errors() {
    let big = Layout::new(vec![2], vec![1 << 32], 0).unwrap();
    assert!(map_meta(&big).is_err());
    // 17 broadcast dimensions merge into one.
    let deep = Layout::new(vec![2; 17], vec![0; 17], 0).unwrap();
    assert!(map_meta(&deep).is_ok());
    // 17 dimensions in column-major order cannot merge.
    let deep = Layout::new(
        vec![2; 17],
        (0..17).map(|d| 1 << d).collect::<Vec<usize>>(),
        0,
    )
    .unwrap();
    assert!(map_meta(&deep).is_err());
}
