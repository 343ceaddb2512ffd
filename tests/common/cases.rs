//! The cases of the conformance matrix's table (tests/conformance.rs): every op on
//! contiguous, permuted, broadcast, offset, 0-d, zero-size and large layouts. Shared by the
//! native tests and the browser tests (web/tests/browser.rs), so both run the same table.

use super::*;
use minitorch::{BinaryOp, Layout, ReduceOp, UnaryOp};

/// The layouts every map (and copy) runs on: (description, layout).
pub fn unary_layouts() -> Vec<(&'static str, Layout)> {
    vec![
        ("contiguous", Layout::contiguous(&[3, 4, 5])),
        ("contiguous at an offset", at_offset(&[3, 4, 5], 7)),
        ("permuted", permuted(&[4, 5, 3], &[1, 2, 0])),
        ("transposed at an offset", {
            let l = at_offset(&[6, 7], 5);
            l.permute(&[1, 0]).unwrap()
        }),
        ("broadcast (stride 0)", broadcast(&[4, 1], &[3, 4, 5])),
        ("size 1", Layout::contiguous(&[1])),
        (
            "size-1 dims with odd strides",
            Layout::new(vec![1, 3, 1], vec![100, 1, 7], 2).unwrap(),
        ),
        ("0-d", Layout::contiguous(&[])),
        ("zero-size", Layout::contiguous(&[3, 0, 2])),
        ("zero-size 1-d", Layout::contiguous(&[0])),
        ("large contiguous (1M)", Layout::contiguous(&[1024, 1025])),
        ("large transposed (1M)", permuted(&[1024, 1025], &[1, 0])),
    ]
}

/// The layout pairs every zip runs on.
pub fn binary_layouts() -> Vec<(&'static str, Layout, Layout)> {
    let s = [3, 4, 5];
    vec![
        ("contiguous", Layout::contiguous(&s), Layout::contiguous(&s)),
        ("offsets", at_offset(&s, 3), at_offset(&s, 11)),
        (
            "permuted x contiguous",
            permuted(&s, &[2, 0, 1]),
            Layout::contiguous(&s),
        ),
        (
            "contiguous x broadcast row",
            Layout::contiguous(&s),
            broadcast(&[5], &s),
        ),
        (
            "broadcast x broadcast",
            broadcast(&[3, 1, 5], &s),
            broadcast(&[4, 1], &s),
        ),
        (
            "permuted x broadcast column",
            permuted(&s, &[1, 2, 0]),
            broadcast(&[3, 1, 1], &s),
        ),
        ("size 1", Layout::contiguous(&[1]), Layout::contiguous(&[1])),
        ("0-d", Layout::contiguous(&[]), Layout::contiguous(&[])),
        (
            "zero-size",
            Layout::contiguous(&[3, 0, 2]),
            broadcast(&[1, 2], &[3, 0, 2]),
        ),
        (
            "large contiguous (1M)",
            Layout::contiguous(&[1024, 1025]),
            Layout::contiguous(&[1024, 1025]),
        ),
        (
            "large transposed x broadcast (1M)",
            permuted(&[1024, 1025], &[1, 0]),
            broadcast(&[1025], &[1024, 1025]),
        ),
    ]
}

pub fn unary_cases(ops: &[UnaryOp], layouts: &[(&'static str, Layout)], seed: u64) -> Vec<Case> {
    let mut cases = Vec::new();
    for &op in ops {
        for (k, (desc, l)) in layouts.iter().enumerate() {
            let mut input = Input::new(l.clone(), unary_domain(op), seed + k as u64);
            if unary_exact(op) {
                input = input.specials();
            }
            cases.push(Case::new(Op::Map(op), *desc, vec![input]));
        }
    }
    cases
}

/// Every map op on every unary layout.
pub fn map() -> Vec<Case> {
    unary_cases(&UnaryOp::ALL, &unary_layouts(), 100)
}

/// Every zip op on every layout pair, and on one storage bound as both inputs.
pub fn zip() -> Vec<Case> {
    let mut cases = Vec::new();
    for op in BinaryOp::ALL {
        let (da, db) = binary_domains(op);
        for (k, (desc, la, lb)) in binary_layouts().into_iter().enumerate() {
            let mut a = Input::new(la, da, 200 + k as u64);
            let mut b = Input::new(lb, db, 300 + k as u64);
            if binary_exact(op) {
                a = a.specials();
                b.data = with_specials(b.data.into_iter().rev().collect());
            }
            cases.push(Case::new(Op::Zip(op), desc, vec![a, b]));
        }
        // One buffer bound as both (read-only) inputs: x op x.
        let a = Input::new(permuted(&[4, 6], &[1, 0]), da, 400);
        let b = Input {
            same_as: Some(0),
            layout: Layout::new(vec![4, 6], vec![1, 4], 0).unwrap(),
            ..a.clone()
        };
        cases.push(Case::new(
            Op::Zip(op),
            "one storage as both inputs",
            vec![a, b],
        ));
    }
    cases
}

/// The domain of a reduction's input over `len` terms.
pub fn reduce_domain(op: ReduceOp, len: usize) -> Domain {
    match op {
        ReduceOp::Sum => Domain::General,
        ReduceOp::Prod if len > 64 => Domain::Tight,
        ReduceOp::Prod => Domain::NearOne,
        ReduceOp::Max if len > 1000 => Domain::General,
        ReduceOp::Max => Domain::Ties,
    }
}

/// Every reduce op over every dimension of the reduce layouts.
pub fn reduce() -> Vec<Case> {
    let s = [3, 4, 5];
    let mut layouts: Vec<(&str, Layout, Vec<usize>)> = vec![
        ("contiguous", Layout::contiguous(&s), vec![0, 1, 2]),
        ("offset", at_offset(&s, 9), vec![0, 2]),
        ("permuted", permuted(&[4, 5, 3], &[1, 2, 0]), vec![0, 1, 2]),
        (
            "broadcast (stride-0 reduced dim)",
            broadcast(&[4, 1], &s),
            vec![0, 1, 2],
        ),
        (
            "size-1 reduced dim",
            Layout::contiguous(&[3, 1, 5]),
            vec![1],
        ),
        ("size 1", Layout::contiguous(&[1]), vec![0]),
        (
            "empty reduced dim (identity)",
            Layout::contiguous(&[3, 0, 2]),
            vec![1],
        ),
        ("zero-size output", Layout::contiguous(&[0, 5]), vec![1, 0]),
        (
            "longer than a workgroup",
            Layout::contiguous(&[3, 300]),
            vec![0, 1],
        ),
        (
            "odd length, strided",
            Layout::contiguous(&[2, 257, 3]),
            vec![1],
        ),
        ("large 1-d (1M)", Layout::contiguous(&[1 << 20]), vec![0]),
        (
            "large 2-d (1M)",
            Layout::contiguous(&[1024, 1025]),
            vec![0, 1],
        ),
        (
            "large transposed (1M)",
            permuted(&[1024, 1025], &[1, 0]),
            vec![1],
        ),
    ];
    // Many outputs of one element each: more workgroups than one dimension of the grid
    // holds (65,535), so the launch is folded into two dimensions.
    layouts.push((
        "70k outputs (2-D grid)",
        Layout::contiguous(&[70_000, 2]),
        vec![1],
    ));
    let mut cases = Vec::new();
    for op in ReduceOp::ALL {
        for (k, (desc, l, dims)) in layouts.iter().enumerate() {
            for &d in dims {
                let input = Input::new(l.clone(), reduce_domain(op, l.shape()[d]), 500 + k as u64);
                cases.push(Case::new(Op::Reduce(op, d), *desc, vec![input]));
            }
        }
    }
    cases
}

/// `[..batch, n, k] @ [..batch, k, m]` with optional transposed storage.
pub fn mm_case(
    desc: &str,
    batch: &[usize],
    (n, k, m): (usize, usize, usize),
    ta: bool,
    tb: bool,
    seed: u64,
) -> Case {
    let r = batch.len() + 2;
    let mut sa = batch.to_vec();
    sa.extend([n, k]);
    let mut sb = batch.to_vec();
    sb.extend([k, m]);
    let mut order: Vec<usize> = (0..r).collect();
    order.swap(r - 2, r - 1);
    let la = if ta {
        permuted(&sa, &order)
    } else {
        Layout::contiguous(&sa)
    };
    let lb = if tb {
        permuted(&sb, &order)
    } else {
        Layout::contiguous(&sb)
    };
    Case::new(
        Op::Matmul,
        desc,
        vec![
            Input::new(la, Domain::General, seed),
            Input::new(lb, Domain::General, seed + 1),
        ],
    )
}

/// Matmul shapes, transposes, batches, broadcast batches and offsets.
pub fn matmul() -> Vec<Case> {
    let mut cases = vec![
        mm_case("1x1x1", &[], (1, 1, 1), false, false, 1),
        mm_case("small", &[], (2, 3, 4), false, false, 2),
        mm_case("one tile", &[], (64, 64, 64), false, false, 3),
        mm_case("tile edges", &[], (65, 17, 63), false, false, 4),
        mm_case("long k", &[], (1, 300, 1), false, false, 5),
        mm_case("k = 0 (zeros)", &[], (3, 0, 4), false, false, 6),
        mm_case("n = 0", &[], (0, 5, 3), false, false, 7),
        mm_case(
            "large 513x257 @ 257x129",
            &[],
            (513, 257, 129),
            false,
            false,
            8,
        ),
        mm_case(
            "large, both transposed",
            &[],
            (513, 257, 129),
            true,
            true,
            9,
        ),
        mm_case("transposed a", &[], (33, 70, 20), true, false, 10),
        mm_case("transposed b", &[], (33, 70, 20), false, true, 11),
        mm_case("batched", &[2, 3], (5, 7, 9), false, false, 12),
        mm_case("batched, transposed", &[4], (70, 9, 66), true, true, 13),
        // Whole 128x128 tiles, k a multiple of 8: the GPUs' matmul_fast path.
        mm_case(
            "fast path 128x24 @ 24x256",
            &[],
            (128, 24, 256),
            false,
            false,
            14,
        ),
        mm_case("fast path, batched", &[2], (256, 16, 128), false, false, 15),
    ];
    // Batch broadcasting: a has batch (1, 3) read as (2, 3); b is one matrix for all.
    let (n, k, m) = (6, 5, 7);
    let la = broadcast(&[1, 3, n, k], &[2, 3, n, k]);
    let lb = broadcast(&[k, m], &[2, 3, k, m]);
    cases.push(Case::new(
        Op::Matmul,
        "broadcast batch (stride 0)",
        vec![
            Input::new(la, Domain::General, 20),
            Input::new(lb, Domain::General, 21),
        ],
    ));
    // Operands at offsets inside larger storages.
    let la = at_offset(&[2, 10, 12], 13);
    let lb = Layout::new(vec![2, 12, 3], vec![50, 1, 12], 4).unwrap();
    cases.push(Case::new(
        Op::Matmul,
        "offsets and column-major b",
        vec![
            Input::new(la, Domain::General, 22),
            Input::new(lb, Domain::General, 23),
        ],
    ));
    cases
}

/// Copies (permute + contiguous) and views of every unary layout and a few more.
pub fn copy_and_view() -> Vec<Case> {
    let mut layouts = unary_layouts();
    layouts.push(("4-d permuted", permuted(&[2, 3, 4, 5], &[3, 1, 0, 2])));
    layouts.push((
        "view of an offset contiguous",
        at_offset(&[4, 6], 3).view(&[2, 12]).unwrap(),
    ));
    layouts.push((
        "view to 0-d",
        Layout::contiguous(&[1, 1]).view(&[]).unwrap(),
    ));
    let mut cases = Vec::new();
    for (k, (desc, l)) in layouts.into_iter().enumerate() {
        let input = Input::new(l, Domain::General, 600 + k as u64).specials();
        cases.push(Case::new(Op::Copy, desc, vec![input]));
    }
    cases
}

/// A pad spec that lives for the whole test run (cases are `Copy`).
fn spec(
    out_shape: &[usize],
    lo: &[i64],
    step: &[usize],
) -> &'static minitorch::backend::pad::PadSpec {
    Box::leak(Box::new(minitorch::backend::pad::PadSpec {
        out_shape: out_shape.into(),
        lo: lo.into(),
        step: step.into(),
    }))
}

/// The convolution family's pad on the layouts a convolution meets: a padded NCHW input,
/// a permuted (NHWC-stored) one, a gradient dilated by the stride and padded or cropped
/// for the transposed convolution, an offset broadcast input, 0-d, zero-size and large.
pub fn pad() -> Vec<Case> {
    let g = Domain::General;
    let c =
        |p, desc: &str, l: Layout, seed| Case::new(Op::Pad(p), desc, vec![Input::new(l, g, seed)]);
    vec![
        c(
            spec(&[2, 3, 7, 6], &[0, 0, 1, 1], &[1; 4]),
            "conv input, padding 1",
            Layout::contiguous(&[2, 3, 5, 4]),
            1,
        ),
        c(
            spec(&[2, 3, 7, 7], &[0, 0, 0, 2], &[1; 4]),
            "permuted input, asymmetric",
            permuted(&[2, 5, 4, 3], &[0, 3, 1, 2]),
            2,
        ),
        c(
            spec(&[2, 3, 11, 9], &[0, 0, -1, 2], &[1, 1, 3, 2]),
            "dilated and cropped gradient",
            Layout::contiguous(&[2, 3, 4, 3]),
            3,
        ),
        c(
            spec(&[3, 4, 9], &[1, 0, 4], &[1, 2, 1]),
            "broadcast at an offset",
            Layout::new(vec![3, 2, 5], vec![0, 5, 1], 4).unwrap(),
            4,
        ),
        c(
            spec(&[5], &[-2], &[1]),
            "1-d cropped at both ends",
            Layout::contiguous(&[9]),
            5,
        ),
        c(spec(&[], &[], &[]), "0-d", Layout::contiguous(&[]), 6),
        c(
            spec(&[3, 0, 2], &[1, 0, 0], &[1; 3]),
            "zero-size",
            Layout::contiguous(&[1, 0, 2]),
            7,
        ),
        c(
            spec(&[4, 0], &[0, 0], &[1; 2]),
            "zero-size input",
            Layout::contiguous(&[0, 3]),
            8,
        ),
        c(
            spec(&[8, 3, 130, 130], &[0, 0, 1, 1], &[1; 4]),
            "large (400K)",
            Layout::contiguous(&[8, 3, 128, 128]),
            9,
        ),
    ]
}

/// The counter-based generator: small, odd and large draws, and another key.
pub fn uniform() -> Vec<Case> {
    let key = |seed, counter| minitorch::backend::random::key(seed, counter);
    [
        (1, key(0, 0)),
        (1000, key(42, 0)),
        (4099, key(42, 1)),
        (1 << 20, key(7, 9)),
        (0, key(1, 1)),
    ]
    .into_iter()
    .map(|(n, k)| Case::new(Op::Uniform(n, k), format!("{n} values"), vec![]))
    .collect()
}
