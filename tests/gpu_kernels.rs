//! The shape-chosen GPU kernels against the CPU on every present backend: reduce by one
//! thread per output and by a block tree (src/backend/gpu_plan.rs picks), and matmul by
//! the whole-tile fast kernel and the general one, including a batch beyond the 65,535
//! workgroups / blocks of one grid axis. Absent backends are skipped as in the conformance
//! matrix (`MINITORCH_REQUIRE_BACKENDS` makes them failures).

mod common;

use minitorch::backend::gpu_plan::{last_matmul_kernel, reduce_plan, ReducePlan};
use minitorch::{Backend, Layout, ReduceOp};

fn data(n: usize, seed: u64) -> Vec<f32> {
    // Positive values near 1 keep products finite; a different pattern per seed.
    (0..n)
        .map(|i| 0.75 + ((i as u64 * 7919 + seed * 104_729) % 1009) as f32 / 2018.0)
        .collect()
}

fn compare(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = g == w || (g - w).abs() <= rel * w.abs().max(1.0);
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

fn gpus() -> Vec<&'static common::Column> {
    let gpus: Vec<_> = common::columns()
        .iter()
        .filter(|c| c.device != minitorch::Device::Cpu)
        .collect();
    if gpus.is_empty() {
        // columns() has already failed if MINITORCH_REQUIRE_BACKENDS names a GPU backend.
        common::note("SKIPPED: gpu kernel tests: no GPU backend present");
    }
    gpus
}

fn reduce_on(b: &dyn Backend, op: ReduceOp, x: &[f32], l: &Layout, dim: usize) -> Vec<f32> {
    let s = b.upload(x).unwrap();
    b.download(&b.reduce(op, &s, l, dim).unwrap()).unwrap()
}

#[test]
fn reduce_every_plan_agrees_with_cpu() {
    let cpu = common::cpu();
    // (shape, strides, offset, dim): contiguous and transposed, short and long reduced
    // lengths, many and few outputs, odd sizes.
    let cases: Vec<(Vec<usize>, Vec<usize>, usize, usize)> = vec![
        (vec![2, 1001], vec![1001, 1], 3, 0), // serial, contiguous, many outputs
        (vec![2, 1001], vec![1001, 1], 0, 1), // tree, long rows
        (vec![777, 3], vec![1, 777], 1, 1),   // serial, transposed
        (vec![300, 1030], vec![1030, 1], 0, 0), // serial: non-innermost, 1030 outputs
        (vec![5, 3001], vec![1, 5], 0, 1),    // tree, strided
        (vec![65, 70, 3], vec![210, 3, 1], 2, 1), // tree: 195 outputs of 70
        (vec![4, 0, 3], vec![3, 3, 1], 0, 1), // empty reduced dimension
    ];
    let mut plans = Vec::new();
    for g in gpus() {
        for (shape, strides, offset, dim) in &cases {
            let l = Layout::new(shape.clone(), strides.clone(), *offset).unwrap();
            let need = offset
                + shape
                    .iter()
                    .zip(strides)
                    .map(|(&n, &s)| n.saturating_sub(1) * s)
                    .sum::<usize>()
                + 1;
            let x = data(need, *dim as u64 + 1);
            let outs: usize = shape.iter().product::<usize>() / shape[*dim].max(1);
            plans.push(reduce_plan(outs, shape[*dim], strides[*dim] == 1));
            for op in ReduceOp::ALL {
                let want = reduce_on(cpu.as_ref(), op, &x, &l, *dim);
                let got = reduce_on(g.backend.as_ref(), op, &x, &l, *dim);
                let rel = 2e-6 * shape[*dim].max(1) as f32;
                compare(
                    &got,
                    &want,
                    rel,
                    &format!("{} {op:?} {shape:?} dim {dim}", g.device),
                );
            }
        }
    }
    if !plans.is_empty() {
        assert!(plans.contains(&ReducePlan::Serial) && plans.contains(&ReducePlan::Tree));
    }
}

fn matmul_on(b: &dyn Backend, x: &[f32], xl: &Layout, y: &[f32], yl: &Layout) -> Vec<f32> {
    let (xs, ys) = (b.upload(x).unwrap(), b.upload(y).unwrap());
    b.download(&b.matmul(&xs, xl, &ys, yl).unwrap()).unwrap()
}

#[test]
fn matmul_fast_and_general_agree_with_cpu() {
    let cpu = common::cpu();
    // (a layout, b layout, whether the fast kernel applies)
    let cases = vec![
        // Whole tiles, packed, B broadcast over the batch at an aligned offset.
        (
            Layout::contiguous(&[2, 256, 64]),
            Layout::new(vec![2, 64, 384], vec![0, 384, 1], 4).unwrap(),
            true,
        ),
        (
            Layout::contiguous(&[128, 8]),
            Layout::contiguous(&[8, 128]),
            true,
        ),
        // Misaligned offset, ragged edge, transposed A: the general kernel.
        (
            Layout::contiguous(&[128, 16]),
            Layout::new(vec![16, 128], vec![128, 1], 2).unwrap(),
            false,
        ),
        (
            Layout::contiguous(&[130, 24]),
            Layout::contiguous(&[24, 129]),
            false,
        ),
        (
            Layout::new(vec![128, 32], vec![1, 128], 0).unwrap(),
            Layout::contiguous(&[32, 128]),
            false,
        ),
    ];
    for g in gpus() {
        for (al, bl, fast) in &cases {
            let x = data(minitorch::backend::check::extent(al), 1);
            let y = data(minitorch::backend::check::extent(bl), 2);
            let want = matmul_on(cpu.as_ref(), &x, al, &y, bl);
            let got = matmul_on(g.backend.as_ref(), &x, al, &y, bl);
            // The kernel the backend itself launched for this product.
            let want_kernel = if *fast { "matmul_fast" } else { "matmul" };
            assert_eq!(
                last_matmul_kernel(),
                Some(want_kernel),
                "{} chose the wrong kernel for {al:?} @ {bl:?}",
                g.device
            );
            let k = al.shape()[al.dims() - 1] as f32;
            compare(
                &got,
                &want,
                1e-6 * k,
                &format!("{} matmul {al:?} @ {bl:?}", g.device),
            );
        }
    }
}

/// A batch of 65,537 products: more than one grid axis holds, folded by the kernels.
#[test]
fn matmul_batch_beyond_one_grid_axis() {
    let cpu = common::cpu();
    let batch = 65_537;
    let al = Layout::contiguous(&[batch, 1, 3]);
    let bl = Layout::new(vec![batch, 3, 2], vec![6, 2, 1], 0).unwrap();
    let x = data(batch * 3, 3);
    let y = data(batch * 6, 4);
    for g in gpus() {
        let want = matmul_on(cpu.as_ref(), &x, &al, &y, &bl);
        let got = matmul_on(g.backend.as_ref(), &x, &al, &y, &bl);
        compare(&got, &want, 1e-6, &format!("{} batch {batch}", g.device));
    }
}
