//! The zip path for a broadcast operand that repeats one block (a scalar, a bias row),
//! on either side, against an element-by-element reference through the layouts.

use super::*;
use crate::layout::StridedCursor;

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7 + seed * 13) % 29) as f32 - 14.0) / 7.0)
        .collect()
}

/// `shape` broadcast from `small` (right-aligned, as the tensor layer does), with an offset.
fn broadcast(small: &[usize], shape: &[usize]) -> (Vec<f32>, Layout) {
    let inner = Layout::contiguous(small);
    let offset = 2;
    let l = Layout::new(inner.shape().to_vec(), inner.strides().to_vec(), offset)
        .unwrap()
        .broadcast_to(shape)
        .unwrap();
    (values(offset + inner.size(), small.len()), l)
}

#[test]
fn repeated_block_operands_match_the_strided_reference() {
    let cpu = CpuBackend;
    let shape = [3, 4, 5];
    let full = Layout::contiguous(&shape);
    let xs = values(full.size(), 1);
    for small in [&[1][..], &[5], &[4, 5], &[1, 5], &[3, 1, 5], &[4, 1]] {
        let (ys, yl) = broadcast(small, &shape);
        for op in [BinaryOp::Add, BinaryOp::Lt, BinaryOp::InvBack] {
            for swap in [false, true] {
                let (sa, la, sb, lb) = if swap {
                    (&ys, &yl, &xs, &full)
                } else {
                    (&xs, &full, &ys, &yl)
                };
                let got = cpu
                    .zip(
                        op,
                        &cpu.upload(sa).unwrap(),
                        la,
                        &cpu.upload(sb).unwrap(),
                        lb,
                    )
                    .and_then(|s| cpu.download(&s))
                    .unwrap();
                let mut cur_a = StridedCursor::new(la, 0);
                let mut cur_b = StridedCursor::new(lb, 0);
                for (i, g) in got.iter().enumerate() {
                    let want = op.apply(sa[cur_a.pos()], sb[cur_b.pos()]);
                    assert!(
                        g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                        "{op:?} {small:?} swap {swap}: element {i} = {g}, want {want}"
                    );
                    cur_a.advance();
                    cur_b.advance();
                }
            }
        }
    }
    // A row-broadcast B is recognised; a transposed one is not (it takes the strided walk).
    assert_eq!(broadcast_period(&broadcast(&[5], &shape).1), Some(5));
    assert_eq!(broadcast_period(&broadcast(&[1], &shape).1), Some(1));
    let t = Layout::contiguous(&[5, 4]).permute(&[1, 0]).unwrap();
    assert_eq!(broadcast_period(&t), None);
}

#[test]
fn large_scalar_zip_runs_in_parallel_chunks_and_matches() {
    let cpu = CpuBackend;
    let n = PARALLEL_MIN * 3 + 7;
    let full = Layout::contiguous(&[n]);
    let xs = values(n, 3);
    let (ys, yl) = broadcast(&[1], &[n]);
    let got = cpu
        .zip(
            BinaryOp::Mul,
            &cpu.upload(&xs).unwrap(),
            &full,
            &cpu.upload(&ys).unwrap(),
            &yl,
        )
        .and_then(|s| cpu.download(&s))
        .unwrap();
    let y = ys[yl.offset()];
    for (g, x) in got.iter().zip(&xs) {
        assert_eq!(g.to_bits(), (x * y).to_bits());
    }
}

#[test]
fn strided_runs_visit_every_position_in_order() {
    // Short and long innermost rows, 2 to 6 dimensions, stride-0 and permuted dimensions,
    // every start and length over a few elements (partial blocks at both ends).
    let layouts = [
        Layout::new(vec![3, 5, 2, 3, 2, 2], vec![360, 24, 12, 0, 1, 0], 7).unwrap(),
        Layout::new(vec![3, 5, 2, 2, 3, 2], vec![120, 24, 12, 2, 4, 1], 0).unwrap(),
        Layout::new(vec![4, 3], vec![1, 4], 2).unwrap(),
        Layout::new(vec![2, 3, 20], vec![60, 20, 1], 0).unwrap(),
        Layout::new(vec![5, 7, 3], vec![1, 5, 35], 1).unwrap(),
        Layout::new(vec![1, 2, 1], vec![9, 3, 4], 0).unwrap(),
    ];
    for l in &layouts {
        let size = l.size();
        let mut idx = vec![0; l.dims()];
        let want: Vec<usize> = (0..size)
            .map(|o| {
                crate::layout::to_index(o, l.shape(), &mut idx);
                l.position(&idx)
            })
            .collect();
        for start in 0..size.min(40) {
            for len in [0, 1, 5, 13, size - start] {
                let len = len.min(size - start);
                let mut got = vec![usize::MAX; len];
                strided_runs(l, start, len, |i, p, s, n| {
                    for k in 0..n {
                        assert_eq!(got[i + k], usize::MAX, "{l:?} visited twice");
                        got[i + k] = p + k * s;
                    }
                });
                assert_eq!(got, want[start..start + len], "{l:?} from {start}, {len}");
            }
        }
    }
}

#[test]
fn long_single_reductions_agree_on_any_thread_count() {
    // A sum of everything in fixed pieces: the same bits on 1 and 3 threads, close to the
    // f64 sum; max keeps the NaN rule and the position of the largest value.
    let n = 5 * REDUCE_PIECE / 2 + 7;
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.0)
        .collect();
    let l = Layout::new(vec![1, n], vec![n, 1], 0).unwrap();
    let run = |threads: usize, op: ReduceOp, v: &[f32]| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| reduce_impl(op, v, &l, 1)[0])
    };
    let (one, three) = (run(1, ReduceOp::Sum, &v), run(3, ReduceOp::Sum, &v));
    assert_eq!(one.to_bits(), three.to_bits());
    let exact: f64 = v.iter().map(|&x| x as f64).sum();
    let mag: f64 = v.iter().map(|&x| (x as f64).abs()).sum();
    assert!((one as f64 - exact).abs() <= 1e-6 * mag, "{one} vs {exact}");
    let mut w = v.clone();
    w[n - 3] = 1e6;
    assert_eq!(run(2, ReduceOp::Max, &w), 1e6);
    w[REDUCE_PIECE + 1] = f32::NAN;
    assert!(run(2, ReduceOp::Max, &w).is_nan());
}
