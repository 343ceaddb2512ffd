//! The matmul paths against a naive f64 reference: every micro-kernel and row kernel
//! (forced, so the AVX2 and portable kernels run on an AVX-512 machine too), packed and
//! in-place B, serial and 2-D parallel splits, odd sizes, transposed / strided / offset /
//! broadcast-batch operands, sizes 0 and 1, subnormal, NaN and infinite inputs.

use super::*;
use crate::layout::Layout;

/// A deterministic value stream in [-1, 1) with a few exact zeros.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// How an operand `[batch, r, c]` is laid out in its storage.
#[derive(Clone, Copy, Debug)]
enum Form {
    /// Row-major, offset 0.
    Contiguous,
    /// Stored as `[batch, c, r]` and transposed.
    Transposed,
    /// Every other column of a twice-as-wide matrix, starting at offset 3.
    Strided,
    /// One matrix broadcast over the batch (batch stride 0).
    BroadcastBatch,
}

/// Storage and layout of a `[batch, r, c]` operand in `form`.
fn operand(batch: usize, r: usize, c: usize, form: Form, seed: u64) -> (Vec<f32>, Layout) {
    let shape = vec![batch, r, c];
    let (len, strides, offset) = match form {
        Form::Contiguous => (batch * r * c, vec![r * c, c, 1], 0),
        Form::Transposed => (batch * r * c, vec![r * c, 1, r], 0),
        Form::Strided => (3 + batch * r * c * 2, vec![r * c * 2, c * 2, 2], 3),
        Form::BroadcastBatch => (r * c, vec![0, c, 1], 0),
    };
    let layout = Layout::new(shape, strides, offset).unwrap();
    (values(len, seed), layout)
}

/// The product in f64 and, per element, the error bound `k eps sum |a b| + k MIN_POSITIVE`
/// (the floor lets a matmul flush subnormals, as the numeric rule allows).
fn reference(
    a: &[f32],
    al: &Layout,
    b: &[f32],
    bl: &Layout,
    (batch, n, k, m): (usize, usize, usize, usize),
) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0.0; batch * n * m];
    let mut bound = vec![0.0; batch * n * m];
    for z in 0..batch {
        for i in 0..n {
            for j in 0..m {
                let (mut s, mut sa) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let x = a[al.position(&[z, i, p])] as f64;
                    let y = b[bl.position(&[z, p, j])] as f64;
                    s += x * y;
                    sa += (x * y).abs();
                }
                out[(z * n + i) * m + j] = s;
                bound[(z * n + i) * m + j] = (k as f64 + 2.0) * f32::EPSILON as f64 * sa
                    + k as f64 * f32::MIN_POSITIVE as f64;
            }
        }
    }
    (out, bound)
}

fn check_case(dims: (usize, usize, usize, usize), fa: Form, fb: Form, opts: &Options) {
    let (batch, n, k, m) = dims;
    let (a, al) = operand(batch, n, k, fa, (n * 31 + k) as u64);
    let (b, bl) = operand(batch, k, m, fb, (k * 17 + m) as u64);
    let mut out = vec![f32::NAN; batch * n * m];
    batched_into_with(&mut out, &a, &al, &b, &bl, dims, opts);
    let what = format!("{opts:?} dims {dims:?} A {fa:?} B {fb:?}");
    assert_matches_reference(&out, (&a, &al), (&b, &bl), dims, &what);
}

/// Every element of `out` within the f64 reference's bound (see [`reference`]).
fn assert_matches_reference(
    out: &[f32],
    (a, al): (&[f32], &Layout),
    (b, bl): (&[f32], &Layout),
    dims: (usize, usize, usize, usize),
    what: &str,
) {
    let (want, bound) = reference(a, al, b, bl, dims);
    for (idx, ((&got, &w), &tol)) in out.iter().zip(&want).zip(&bound).enumerate() {
        assert!(
            (got as f64 - w).abs() <= tol,
            "{what}: element {idx} = {got}, want {w} (tol {tol})"
        );
    }
}

/// Every kernel this CPU can run; prints SKIPPED for the others.
fn kernels() -> Vec<Kernel> {
    let all = [Kernel::Avx512, Kernel::Avx2, Kernel::Portable];
    all.into_iter()
        .filter(|k| {
            let ok = k.is_available();
            if !ok {
                println!("SKIPPED kernel {}: this CPU lacks it", k.name());
            }
            ok
        })
        .collect()
}

const SHAPES: &[(usize, usize, usize, usize)] = &[
    (1, 1, 1, 1),
    (1, 1, 7, 1),
    (1, 1, 300, 45),
    // One row: the row kernels, outputs in registers and streamed (deep and wide).
    (1, 1, 10, 100),
    (3, 1, 33, 200),
    (2, 1, 5, 129),
    (1, 1, 21, 77),
    (1, 1, 40, 300),
    (2, 13, 17, 33),
    (1, 12, 5, 32),
    (1, 25, 9, 64),
    (3, 10, 100, 100),
    (1, 50, 260, 70),
    (2, 7, 513, 3),
];

const FORMS: &[(Form, Form)] = &[
    (Form::Contiguous, Form::Contiguous),
    (Form::Transposed, Form::Contiguous),
    (Form::Contiguous, Form::Transposed),
    (Form::Strided, Form::Strided),
    (Form::Transposed, Form::BroadcastBatch),
    (Form::BroadcastBatch, Form::Contiguous),
];

#[test]
fn every_kernel_and_path_matches_f64_reference() {
    for kernel in kernels() {
        for (pack_a, pack_b, swap) in [
            (Some(true), Some(true), Some(false)),
            (Some(false), Some(false), None),
            (Some(true), Some(false), None),
            (Some(false), Some(true), Some(false)),
            (None, None, None),
        ] {
            for (parallel, block) in [
                (Some(false), None),
                (Some(true), Some((1, 1))),
                (None, None),
            ] {
                // B packed up front and inside each task (where it is packed at all).
                let in_task: &[_] = if pack_b == Some(false) {
                    &[None]
                } else {
                    &[Some(false), Some(true)]
                };
                for &pack_b_in_task in in_task {
                    for row in [Some(false), None] {
                        let opts = Options {
                            kernel,
                            pack_a,
                            pack_b,
                            pack_b_in_task,
                            swap,
                            parallel,
                            block,
                            row,
                        };
                        for &dims in SHAPES {
                            for &(fa, fb) in FORMS {
                                check_case(dims, fa, fb, &opts);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn automatic_split_on_large_skinny_and_square_products() {
    // Sizes where the automatic plan goes parallel and cuts columns (skinny) or rows.
    for dims in [
        (1, 10, 300, 1000),
        (1, 1, 1000, 600),
        (1, 1, 2000, 1000),
        (1, 200, 300, 130),
    ] {
        for &(fa, fb) in &FORMS[..3] {
            check_case(dims, fa, fb, &Options::auto());
        }
    }
    let threads = rayon::current_num_threads();
    let s = split(1, 10, 1000, 1000, (1000, 1));
    if threads > 1 {
        assert!(s.parallel && s.tasks >= threads, "{s:?}");
        assert!(
            s.col_blocks >= threads,
            "skinny products split columns: {s:?}"
        );
        assert!(!s.pack_b, "a 10-row product reads B in place: {s:?}");
    } else {
        println!("SKIPPED split checks: rayon has one thread");
    }
    let t = split(1, 300, 1000, 1000, (1, 1000));
    assert!(t.pack_b && !t.swapped, "a transposed B is packed: {t:?}");
    let u = split(1, 10, 1000, 1000, (1, 1000));
    assert!(u.swapped && u.pack_b && !u.pack_a, "(B^T A^T)^T: {u:?}");
    // One row of A: the row kernel, serial up to ROW_PARALLEL_MIN_FLOPS, then columns
    // split among the threads.
    let r = split(1, 1, 2000, 1000, (1000, 1));
    assert!(
        r.row && !r.pack_a && !r.pack_b && r.rows_per_task == 1 && !r.parallel,
        "{r:?}"
    );
    let huge = split(1, 1, 1 << 13, 1 << 13, (1 << 13, 1));
    if threads > 1 {
        assert!(huge.parallel && huge.col_blocks >= threads, "{huge:?}");
    }
    let tiny = split(1, 1, 10, 100, (100, 1));
    assert!(tiny.row && !tiny.parallel && tiny.tasks == 1, "{tiny:?}");
    let strided = split(1, 1, 10, 100, (200, 2));
    assert!(!strided.row, "B's rows not contiguous: {strided:?}");
}

#[test]
fn zero_sizes_give_zeros_or_nothing() {
    let opts = Options::auto();
    for dims in [
        (1, 0, 3, 4),
        (1, 3, 0, 4),
        (1, 3, 4, 0),
        (0, 3, 4, 5),
        (2, 5, 0, 1),
    ] {
        let (batch, n, k, m) = dims;
        let al = Layout::contiguous(&[batch, n, k]);
        let bl = Layout::contiguous(&[batch, k, m]);
        let (a, b) = (values(al.size(), 1), values(bl.size(), 2));
        let mut out = vec![f32::NAN; batch * n * m];
        batched_into_with(&mut out, &a, &al, &b, &bl, dims, &opts);
        assert!(out.iter().all(|&v| v == 0.0), "{dims:?}: {out:?}");
    }
}

#[test]
fn nan_and_inf_propagate_and_padding_stays_out() {
    for kernel in kernels() {
        let opts = Options {
            kernel,
            ..Options::auto()
        };
        // 3 x 4 @ 4 x 5: row 1 of A has an infinity, B column 2 a NaN.
        let (n, k, m) = (3, 4, 5);
        let mut a = values(n * k, 3);
        let mut b = values(k * m, 4);
        a[k + 1] = f32::INFINITY;
        b[2 * m + 2] = f32::NAN;
        let (al, bl) = (
            Layout::contiguous(&[1, n, k]),
            Layout::contiguous(&[1, k, m]),
        );
        let mut out = vec![0.0; n * m];
        batched_into_with(&mut out, &a, &al, &b, &bl, (1, n, k, m), &opts);
        for i in 0..n {
            for j in 0..m {
                let v = out[i * m + j];
                if j == 2 || (i == 1 && b[m + j] == 0.0) {
                    assert!(v.is_nan(), "{kernel:?} ({i},{j}) = {v}");
                } else if i == 1 {
                    assert!(v.is_infinite() || v.is_nan(), "{kernel:?} ({i},{j}) = {v}");
                } else {
                    assert!(v.is_finite(), "{kernel:?} ({i},{j}) = {v}");
                }
            }
        }
    }
}

#[test]
fn subnormal_inputs_flush_or_are_exact_and_thread_state_is_restored() {
    let tiny = f32::MIN_POSITIVE / 8.0; // subnormal
    assert!(tiny != 0.0 && !tiny.is_normal());
    for kernel in kernels() {
        let opts = Options {
            kernel,
            parallel: Some(false),
            ..Options::auto()
        };
        // Subnormal A times normal B, plus one normal row to check nothing else changes;
        // one row alone takes the row kernel.
        for n in [3, 1] {
            let (k, m) = (40, 20);
            let mut a = vec![tiny; n * k];
            for v in a.iter_mut().skip(2 * k) {
                *v = 0.5;
            }
            let b = vec![1.0f32; k * m];
            let (al, bl) = (
                Layout::contiguous(&[1, n, k]),
                Layout::contiguous(&[1, k, m]),
            );
            #[cfg(target_arch = "x86_64")]
            let before = mxcsr();
            let mut out = vec![f32::NAN; n * m];
            batched_into_with(&mut out, &a, &al, &b, &bl, (1, n, k, m), &opts);
            #[cfg(target_arch = "x86_64")]
            assert_eq!(mxcsr(), before, "MXCSR restored on the calling thread");
            for (i, row) in out.chunks(m).enumerate() {
                for &v in row {
                    if i < 2 {
                        let exact = tiny * k as f32;
                        assert!(v == 0.0 || v == exact, "{kernel:?}: {v} (exact {exact})");
                    } else {
                        assert_eq!(v, 0.5 * k as f32);
                    }
                }
            }
            // The caller's arithmetic still produces subnormals after the matmul.
            let x = std::hint::black_box(f32::MIN_POSITIVE);
            assert!(
                x * std::hint::black_box(0.5f32) != 0.0,
                "caller's FTZ left set"
            );
        }
    }
}

#[test]
fn plan_cuts_many_rows_by_rows_and_batches_first() {
    let threads = rayon::current_num_threads();
    if threads < 2 {
        println!("SKIPPED: rayon has one thread");
        return;
    }
    let s = split(8, 64, 64, 64, (64, 1));
    assert!(s.parallel && s.tasks >= 8, "{s:?}");
    let sq = split(1, 1024, 1024, 1024, (1024, 1));
    assert!(sq.parallel && sq.tasks >= 2 * threads, "{sq:?}");
    assert!(
        sq.pack_b && sq.rows_per_task <= MC && sq.cols_per_task <= NC,
        "{sq:?}"
    );
    let small = split(1, 4, 4, 4, (4, 1));
    assert!(!small.parallel && small.tasks == 1, "{small:?}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn worker_threads_get_their_mxcsr_back_after_a_parallel_matmul() {
    let before: Vec<u32> = rayon::broadcast(|_| mxcsr());
    let opts = Options {
        parallel: Some(true),
        block: Some((1, 1)),
        ..Options::auto()
    };
    // Subnormal inputs, many small tasks on every worker.
    check_case((4, 30, 40, 70), Form::Contiguous, Form::Contiguous, &opts);
    let tiny = vec![f32::MIN_POSITIVE / 4.0; 30 * 40];
    let (al, bl) = (
        Layout::contiguous(&[1, 30, 40]),
        Layout::contiguous(&[1, 40, 70]),
    );
    let mut out = vec![0.0; 30 * 70];
    batched_into_with(
        &mut out,
        &tiny,
        &al,
        &values(40 * 70, 9),
        &bl,
        (1, 30, 40, 70),
        &opts,
    );
    let after: Vec<u32> = rayon::broadcast(|_| mxcsr());
    assert_eq!(before, after, "MXCSR of rayon's threads changed");
    assert!(
        after.iter().all(|v| v & MXCSR_DAZ_FTZ == 0),
        "DAZ/FTZ left set: {after:x?}"
    );
}

/// A window view `[C, KH, KW | B, OH, OW]` over a `[C, B, H, W]` tensor stored at offset 5
/// with stride `st`: a convolution's columns, `C*KH*KW` rows by `B*OH*OW` columns.
fn window(
    c: usize,
    b: usize,
    hw: (usize, usize),
    k: (usize, usize),
    st: usize,
) -> (Vec<f32>, crate::backend::MatrixView) {
    let (h, w) = hw;
    let (oh, ow) = ((h - k.0) / st + 1, (w - k.1) / st + 1);
    let data = values(5 + c * b * h * w, (c * 7 + h * 3 + w) as u64);
    let (sc, sb) = (b * h * w, h * w);
    let l = Layout::new(
        vec![c, k.0, k.1, b, oh, ow],
        vec![sc, w, 1, sb, st * w, st],
        5,
    )
    .unwrap();
    (data, crate::backend::MatrixView::new(l, 3).unwrap())
}

/// The view's matrix written out by the layout's own positions (not the offsets under
/// test), contiguous `[rows, cols]`.
fn dense(data: &[f32], v: &crate::backend::MatrixView) -> Vec<f32> {
    let l = v.layout();
    let mut idx = vec![0; l.dims()];
    (0..l.size())
        .map(|i| {
            crate::layout::to_index(i, l.shape(), &mut idx);
            data[l.position(&idx)]
        })
        .collect()
}

/// One gathered product's case: A (storage, operand, dense copy, its layout), B the same,
/// and `(n, k, m)`.
type Run<'t> = (
    &'t [f32],
    Operand<'t>,
    &'t [f32],
    &'t Layout,
    &'t [f32],
    Operand<'t>,
    &'t [f32],
    &'t Layout,
    (usize, usize, usize),
);

#[test]
fn gathered_operands_match_f64_reference() {
    // Windows with runs shorter and longer than a 16-lane group, stride 1 and 2, depths
    // below and above one KC block.
    let cases = [
        window(3, 2, (7, 9), (2, 3), 2),
        window(2, 3, (20, 21), (3, 3), 1),
        window(40, 2, (12, 11), (3, 3), 1),
        window(1, 1, (3, 3), (3, 3), 1),
    ];
    // A gathered A packed, read in place through its rows (where the kernel can), or as
    // its runs decide.
    let choices = [
        (Some(false), None),
        (Some(true), Some(true)),
        (Some(true), Some(false)),
    ];
    for kernel in kernels() {
        for (parallel, pack_a) in choices {
            let opts = Options {
                kernel,
                parallel,
                pack_a,
                ..Options::auto()
            };
            for (data, v) in &cases {
                let (rows, cols) = v.offsets();
                let t = v.transpose();
                let (trows, tcols) = t.offsets();
                let g = Operand::Gathered {
                    rows: &rows,
                    cols: &cols,
                };
                let gt = Operand::Gathered {
                    rows: &trows,
                    cols: &tcols,
                };
                let (r, c) = (v.rows(), v.cols());
                // (A strided, B gathered), (A gathered, B strided), both gathered, and B
                // gathered with short runs along its rows (the transposed window).
                let (x, xl) = operand(1, 13, r, Form::Transposed, 3);
                let (y, yl) = operand(1, r, 7, Form::Strided, 4);
                let wide = Layout::contiguous(&[1, r, c]);
                let tall = Layout::contiguous(&[1, c, r]);
                let (vd, td) = (dense(data, v), dense(data, &t));
                let (z, zl) = operand(1, 13, c, Form::Contiguous, 5);
                let runs: [Run; 4] = [
                    (
                        &x,
                        Operand::Strided(&xl),
                        &x,
                        &xl,
                        data,
                        g,
                        &vd,
                        &wide,
                        (13, r, c),
                    ),
                    (
                        data,
                        gt,
                        &td,
                        &tall,
                        &y,
                        Operand::Strided(&yl),
                        &y,
                        &yl,
                        (c, r, 7),
                    ),
                    (data, gt, &td, &tall, data, g, &vd, &wide, (c, r, c)),
                    // B the transposed window: short runs along its rows.
                    (
                        &z,
                        Operand::Strided(&zl),
                        &z,
                        &zl,
                        data,
                        gt,
                        &td,
                        &tall,
                        (13, c, r),
                    ),
                ];
                for (a, ao, ad, adl, b, bo, bd, bdl, (n, k, m)) in runs {
                    let mut out = vec![f32::NAN; n * m];
                    gathered_into(&mut out, (a, ao), (b, bo), (n, k, m), &opts, None);
                    let what = format!("{opts:?} {:?} ({n} x {k} x {m})", v.layout());
                    assert_matches_reference(&out, (ad, adl), (bd, bdl), (1, n, k, m), &what);
                }
            }
        }
    }
}

#[test]
fn deep_products_split_along_the_depth_match_reference_on_any_thread_count() {
    // Small outputs over a depth of several slices (a weight gradient's shape): gathered
    // B with short runs, gathered A, and strided operands; the same bits on 1 and 3
    // threads.
    let (data, v) = window(2, 7, (30, 26), (3, 3), 1);
    let t = v.transpose();
    let ((rows, cols), (trows, tcols)) = (v.offsets(), t.offsets());
    let (r, c) = (v.rows(), v.cols());
    assert!(c >= 2 * SPLIT_K_DEPTH, "depth {c} splits");
    let g = Operand::Gathered {
        rows: &rows,
        cols: &cols,
    };
    let gt = Operand::Gathered {
        rows: &trows,
        cols: &tcols,
    };
    let (z, zl) = operand(1, 13, c, Form::Contiguous, 8);
    let (y, yl) = operand(1, c, 5, Form::Transposed, 9);
    let (wide, tall) = (
        Layout::contiguous(&[1, r, c]),
        Layout::contiguous(&[1, c, r]),
    );
    let (vd, td) = (dense(&data, &v), dense(&data, &t));
    let z2 = Layout::new(vec![13, c], vec![c, 1], 0).unwrap();
    let y2 = Layout::new(vec![c, 5], vec![1, c], 0).unwrap();
    let runs: [Run; 3] = [
        (
            &z,
            Operand::Strided(&z2),
            &z,
            &zl,
            &data,
            gt,
            &td,
            &tall,
            (13, c, r),
        ),
        (
            &data,
            g,
            &vd,
            &wide,
            &y,
            Operand::Strided(&y2),
            &y,
            &yl,
            (r, c, 5),
        ),
        (
            &z,
            Operand::Strided(&z2),
            &z,
            &zl,
            &y,
            Operand::Strided(&y2),
            &y,
            &yl,
            (13, c, 5),
        ),
    ];
    for kernel in kernels() {
        for (a, ao, ad, adl, b, bo, bd, bdl, (n, k, m)) in runs {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut out = vec![f32::NAN; n * m];
                let opts = Options {
                    kernel,
                    ..Options::auto()
                };
                pool.install(|| gathered_into(&mut out, (a, ao), (b, bo), (n, k, m), &opts, None));
                out
            };
            let (one, three) = (run(1), run(3));
            assert_eq!(
                one, three,
                "{kernel:?} ({n} x {k} x {m}) on 1 and 3 threads"
            );
            let what = format!("{kernel:?} ({n} x {k} x {m})");
            assert_matches_reference(&one, (ad, adl), (bd, bdl), (1, n, k, m), &what);
        }
    }
}
