//! Module 4, tasks 4.1 and 4.2: conv1d and conv2d against a direct f64 loop (written here)
//! forward and backward, the course's hand-computed cases (`test_conv.py`), central
//! difference checks on odd sizes, strides, asymmetric padding, permuted inputs, batch 1,
//! one and many channels and kernels as large as the input, and bad input.
//!
//! The device is the CPU unless `MINITORCH_TEST_DEVICE` names another (`wgpu`, `cuda`).

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas

use minitorch::tensor::grad_check::grad_check;
use minitorch::{Device, Error, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn device() -> Device {
    match std::env::var("MINITORCH_TEST_DEVICE") {
        Ok(s) => Device::parse(&s).expect("MINITORCH_TEST_DEVICE"),
        Err(_) => Device::Cpu,
    }
}

fn t(data: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(data, shape, device()).unwrap()
}

fn random(shape: &[usize], seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect()
}

/// Direct 2-D convolution in f64: x [B,C,H,W], w [O,C,KH,KW], b [O].
struct Conv {
    x: Vec<usize>,
    w: Vec<usize>,
    stride: [usize; 2],
    pad: [(usize, usize); 2],
}

impl Conv {
    fn out_hw(&self) -> [usize; 2] {
        let mut o = [0; 2];
        for d in 0..2 {
            o[d] = (self.x[2 + d] + self.pad[d].0 + self.pad[d].1 - self.w[2 + d]) / self.stride[d]
                + 1;
        }
        o
    }

    /// The input position (or None: padding) read by output (oh, ow) at kernel (i, j).
    fn src(&self, oh: usize, ow: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let h = (oh * self.stride[0] + i) as i64 - self.pad[0].0 as i64;
        let w = (ow * self.stride[1] + j) as i64 - self.pad[1].0 as i64;
        (h >= 0 && w >= 0 && (h as usize) < self.x[2] && (w as usize) < self.x[3])
            .then_some((h as usize, w as usize))
    }

    /// out, and the gradients of sum(out * g) for x, w, b.
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        g: &[f32],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let [bn, c, hh, ww] = [self.x[0], self.x[1], self.x[2], self.x[3]];
        let [o, _, kh, kw] = [self.w[0], self.w[1], self.w[2], self.w[3]];
        let [oh, ow] = self.out_hw();
        let mut out = vec![0.0; bn * o * oh * ow];
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; o]);
        for n in 0..bn {
            for co in 0..o {
                for p in 0..oh {
                    for q in 0..ow {
                        let oi = ((n * o + co) * oh + p) * ow + q;
                        let gv = g[oi] as f64;
                        let mut acc = b.get(co).copied().unwrap_or(0.0) as f64;
                        db[co] += gv;
                        for ci in 0..c {
                            for i in 0..kh {
                                for j in 0..kw {
                                    if let Some((h, v)) = self.src(p, q, i, j) {
                                        let xi = ((n * c + ci) * hh + h) * ww + v;
                                        let wi = ((co * c + ci) * kh + i) * kw + j;
                                        acc += x[xi] as f64 * w[wi] as f64;
                                        dx[xi] += gv * w[wi] as f64;
                                        dw[wi] += gv * x[xi] as f64;
                                    }
                                }
                            }
                        }
                        out[oi] = acc;
                    }
                }
            }
        }
        (out, dx, dw, db)
    }
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-4 + 1e-4 * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Forward and all three gradients against the direct loop. `permute_input` feeds the
/// input as a permuted (non-contiguous) view of the same values.
fn check(case: &Conv, bias: bool, permute_input: bool, seed: u64) {
    let xs = random(&case.x, seed);
    let ws = random(&case.w, seed + 1);
    let bs = if bias {
        random(&[case.w[0]], seed + 2)
    } else {
        vec![]
    };
    let [oh, ow] = case.out_hw();
    let out_shape = [case.x[0], case.w[0], oh, ow];
    let gs = random(&out_shape, seed + 3);
    let (want, dx, dw, db) = case.run(&xs, &ws, &bs, &gs);

    let x = if permute_input {
        // Store as [B, H, W, C] and permute back to [B, C, H, W].
        let [bn, c, h, w] = [case.x[0], case.x[1], case.x[2], case.x[3]];
        let mut nhwc = vec![0.0; xs.len()];
        for n in 0..bn {
            for ci in 0..c {
                for i in 0..h {
                    for j in 0..w {
                        nhwc[((n * h + i) * w + j) * c + ci] = xs[((n * c + ci) * h + i) * w + j];
                    }
                }
            }
        }
        let p = t(nhwc, &[bn, h, w, c]).permute(&[0, 3, 1, 2]).unwrap();
        assert!(c == 1 || !p.is_contiguous());
        p.detach().requires_grad_(true)
    } else {
        t(xs.clone(), &case.x).requires_grad_(true)
    };
    let w = t(ws, &case.w).requires_grad_(true);
    let b = bias.then(|| t(bs, &[case.w[0]]).requires_grad_(true));
    let out = x.conv2d(&w, b.as_ref(), case.stride, case.pad).unwrap();
    assert_eq!(out.shape(), out_shape);
    let what = format!(
        "x {:?} w {:?} stride {:?} pad {:?}",
        case.x, case.w, case.stride, case.pad
    );
    assert_close(&out.to_vec().unwrap(), &want, &format!("{what}: forward"));
    out.backward_with(&t(gs, &out_shape)).unwrap();
    assert_close(
        &x.grad().unwrap().to_vec().unwrap(),
        &dx,
        &format!("{what}: dx"),
    );
    assert_close(
        &w.grad().unwrap().to_vec().unwrap(),
        &dw,
        &format!("{what}: dw"),
    );
    if let Some(b) = b {
        assert_close(
            &b.grad().unwrap().to_vec().unwrap(),
            &db,
            &format!("{what}: db"),
        );
    }
}

#[test]
fn conv2d_matches_direct_loop_forward_and_backward() {
    let cases = [
        // (x, w, stride, pad)
        ([1, 1, 4, 4], [1, 1, 2, 2], [1, 1], [(0, 0), (0, 0)]),
        ([2, 3, 7, 5], [4, 3, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        ([2, 3, 7, 5], [4, 3, 3, 2], [2, 3], [(1, 1), (0, 2)]),
        ([3, 2, 9, 8], [5, 2, 3, 3], [2, 2], [(0, 0), (0, 0)]),
        // The course's padding: zeros past the bottom/right edge, output as large as input.
        ([2, 2, 6, 6], [3, 2, 2, 4], [1, 1], [(0, 1), (0, 3)]),
        // Kernel as large as the input; padding larger than the kernel.
        ([1, 2, 3, 4], [2, 2, 3, 4], [1, 1], [(0, 0), (0, 0)]),
        ([1, 1, 3, 3], [1, 1, 2, 2], [1, 1], [(3, 2), (2, 3)]),
        // Many channels, odd sizes, batch 1, stride larger than the kernel.
        ([1, 17, 5, 6], [9, 17, 1, 3], [3, 2], [(0, 1), (2, 0)]),
        ([4, 1, 11, 13], [1, 1, 5, 4], [2, 1], [(2, 2), (1, 2)]),
        // Enough images that the CPU's input gradient splits them among several tasks
        // (two 30x31 images each), the last one short.
        ([9, 2, 30, 31], [3, 2, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        // Enough output channels for the CPU's direct forward (AVX-512): tiles across
        // rows ("same" convolutions, a plane of 91, panels of 9 + 8), and tiles of one
        // row (a height stride, asymmetric padding).
        ([2, 5, 7, 13], [17, 5, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        ([3, 3, 6, 9], [8, 3, 2, 4], [1, 1], [(0, 1), (0, 3)]),
        ([2, 4, 9, 30], [9, 4, 3, 5], [2, 1], [(0, 2), (2, 1)]),
    ];
    for (k, (x, w, stride, pad)) in cases.into_iter().enumerate() {
        let case = Conv {
            x: x.to_vec(),
            w: w.to_vec(),
            stride,
            pad,
        };
        for bias in [false, true] {
            check(&case, bias, false, 100 * k as u64);
        }
        check(&case, true, true, 100 * k as u64 + 50);
    }
}

#[test]
fn course_conv1d_simple() {
    // test_conv1d_simple: out[i] = sum_k x[i+k] w[k], zeros past the end.
    let x = t(vec![0.0, 1.0, 2.0, 3.0], &[1, 1, 4]);
    let w = t(vec![1.0, 2.0, 3.0], &[1, 1, 3]);
    let out = x.conv1d(&w, None, 1, (0, 2)).unwrap();
    assert_eq!(out.shape(), [1, 1, 4]);
    assert_eq!(
        out.to_vec().unwrap(),
        [
            0.0 * 1.0 + 1.0 * 2.0 + 2.0 * 3.0,
            1.0 * 1.0 + 2.0 * 2.0 + 3.0 * 3.0,
            2.0 * 1.0 + 3.0 * 2.0,
            3.0 * 1.0
        ]
    );
}

#[test]
fn course_conv2_sum_backward() {
    // test_conv2: a 4x4 ramp, a 2x2 kernel of ones, course padding; sum().backward().
    let row = [0.0, 1.0, 2.0, 3.0];
    let x = t(row.repeat(4), &[1, 1, 4, 4]).requires_grad_(true);
    let w = t(vec![1.0; 4], &[1, 1, 2, 2]).requires_grad_(true);
    let out = x.conv2d(&w, None, [1, 1], [(0, 1), (0, 1)]).unwrap();
    // out[i][j] = x[i][j] + x[i][j+1] + x[i+1][j] + x[i+1][j+1] with zeros past the edge.
    let want = [
        2.0, 6.0, 10.0, 6.0, //
        2.0, 6.0, 10.0, 6.0, //
        2.0, 6.0, 10.0, 6.0, //
        1.0, 3.0, 5.0, 3.0,
    ];
    assert_eq!(out.to_vec().unwrap(), want);
    out.sum_all().unwrap().backward().unwrap();
    // Each input element is read by as many windows as cover it: 1 at the top-left
    // corner, 4 inside.
    let gx = x.grad().unwrap().to_vec().unwrap();
    assert_eq!(gx[0], 1.0);
    assert_eq!(gx[5], 4.0);
    assert_eq!(gx[15], 4.0);
    // dw[i][j] = sum of the inputs tap (i, j) reads: all 4 rows for i = 0, rows 1-3 for
    // i = 1; columns 0-3 (sum 6) for j = 0, columns 1-3 (also 6) for j = 1.
    assert_eq!(
        w.grad().unwrap().to_vec().unwrap(),
        [24.0, 24.0, 18.0, 18.0]
    );
    grad_check(
        |a| a[0].conv2d(&a[1], None, [1, 1], [(0, 1), (0, 1)]),
        &[x, w],
        20,
        1,
    )
    .unwrap();
}

#[test]
fn course_grad_checks() {
    // test_conv1d, test_conv1d_channel, test_conv, test_conv_batch, test_conv_channel.
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[1, 1, 6], &[1, 1, 4]),
        (&[2, 2, 6], &[3, 2, 2]),
        (&[1, 1, 6, 6], &[1, 1, 2, 4]),
        (&[2, 1, 6, 6], &[1, 1, 2, 4]),
        (&[2, 2, 6, 6], &[3, 2, 2, 4]),
    ];
    for (k, (xs, ws)) in shapes.into_iter().enumerate() {
        let x = t(random(xs, k as u64), xs);
        let w = t(random(ws, 10 + k as u64), ws);
        let r = if xs.len() == 3 {
            grad_check(
                |a| a[0].conv1d(&a[1], None, 1, (0, ws[2] - 1)),
                &[x, w],
                20,
                k as u64,
            )
        } else {
            grad_check(
                |a| a[0].conv2d(&a[1], None, [1, 1], [(0, ws[2] - 1), (0, ws[3] - 1)]),
                &[x, w],
                20,
                k as u64,
            )
        };
        r.unwrap_or_else(|e| panic!("x {xs:?} w {ws:?}: {e}"));
    }
}

#[test]
fn conv1d_with_bias_stride_and_padding_grad_check() {
    let x = t(random(&[3, 2, 9], 7), &[3, 2, 9]);
    let w = t(random(&[4, 2, 3], 8), &[4, 2, 3]);
    let b = t(random(&[4], 9), &[4]);
    let out = x.conv1d(&w, Some(&b), 2, (1, 1)).unwrap();
    assert_eq!(out.shape(), [3, 4, 5]);
    grad_check(
        |a| a[0].conv1d(&a[1], Some(&a[2]), 2, (1, 1)),
        &[x, w, b],
        30,
        3,
    )
    .unwrap();
}

#[test]
fn conv_special_values_propagate() {
    // An inf or NaN in the input reaches exactly the outputs whose windows read it.
    let mut xs = vec![1.0f32; 16];
    xs[0] = f32::INFINITY;
    xs[15] = f32::NAN;
    let x = t(xs, &[1, 1, 4, 4]);
    let w = t(vec![1.0; 4], &[1, 1, 2, 2]);
    let out = x
        .conv2d(&w, None, [1, 1], [(0, 0), (0, 0)])
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(out[0], f32::INFINITY);
    assert!(out[8].is_nan());
    assert_eq!(out[4], 4.0);
    // Large finite values stay finite where the sum fits.
    let x = t(vec![1e38; 4], &[1, 1, 2, 2]);
    let w = t(vec![0.5; 4], &[1, 1, 2, 2]);
    let v = x
        .conv2d(&w, None, [1, 1], [(0, 0), (0, 0)])
        .unwrap()
        .item()
        .unwrap();
    assert_eq!(v, 2e38);
}

fn shape_err(r: minitorch::Result<Tensor>, op: &str, needle: &str) {
    match r {
        Err(e @ Error::Shape { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with(op), "{msg}");
            assert!(msg.contains(needle), "{msg} should say {needle}");
        }
        Err(e) => panic!("expected a shape error from {op}, got {e}"),
        Ok(t) => panic!("expected an error from {op}, got shape {:?}", t.shape()),
    }
}

#[test]
fn conv_bad_input_is_an_error_naming_op_and_shapes() {
    let x = t(vec![0.0; 16], &[1, 1, 4, 4]);
    let w = t(vec![0.0; 9], &[1, 1, 3, 3]);
    let w2 = t(vec![0.0; 18], &[1, 2, 3, 3]);
    let z = [(0, 0), (0, 0)];
    shape_err(x.conv2d(&w2, None, [1, 1], z), "conv2d", "channels");
    shape_err(
        x.view(&[1, 16]).unwrap().conv2d(&w, None, [1, 1], z),
        "conv2d",
        "(1, 16)",
    );
    shape_err(x.conv2d(&w, None, [0, 1], z), "conv2d", "stride");
    let big = t(vec![0.0; 25], &[1, 1, 5, 5]);
    shape_err(x.conv2d(&big, None, [1, 1], z), "conv2d", "does not fit");
    shape_err(
        x.conv2d(&w, None, [1, 1], [(usize::MAX, 0), (0, 0)]),
        "conv2d",
        "overflows",
    );
    let b = t(vec![0.0; 2], &[2]);
    shape_err(x.conv2d(&w, Some(&b), [1, 1], z), "conv2d", "bias");
    shape_err(x.conv1d(&w, None, 1, (0, 0)), "conv1d", "[B, Cin, W]");
    let x1 = t(vec![0.0; 4], &[1, 1, 4]);
    let w1 = t(vec![0.0; 5], &[1, 1, 5]);
    shape_err(x1.conv1d(&w1, None, 1, (0, 0)), "conv1d", "does not fit");
    shape_err(
        x1.conv1d(&w1.view(&[1, 1, 5]).unwrap(), None, 0, (0, 4)),
        "conv1d",
        "stride",
    );
}

#[test]
fn backend_pad_rejects_bad_specs_on_every_backend() {
    use minitorch::backend::pad::PadSpec;
    use minitorch::Layout;
    for d in Device::ALL {
        let Ok(b) = d.backend() else {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: {d} not present");
            continue;
        };
        let x = b.upload(&[1.0; 6]).unwrap();
        let l = Layout::contiguous(&[2, 3]);
        let spec = |out: &[usize], lo: &[i64], step: &[usize]| PadSpec {
            out_shape: out.into(),
            lo: lo.into(),
            step: step.into(),
        };
        for (s, needle) in [
            (spec(&[2], &[0], &[1]), "every input dimension"),
            (spec(&[2, 3], &[0, 0], &[1, 0]), "step 0"),
            (spec(&[2, 3], &[0, 1 << 40], &[1, 1]), "out of range"),
            (spec(&[2, 1 << 40], &[0, 0], &[1, 1]), "below 2^31"),
        ] {
            let e = b.pad(&x, &l, &s).unwrap_err().to_string();
            assert!(e.starts_with("pad") && e.contains(needle), "{d}: {e}");
        }
        let past = Layout::new(vec![2, 3], vec![3, 1], 4).unwrap();
        let e = b
            .pad(&x, &past, &spec(&[2, 3], &[0, 0], &[1, 1]))
            .unwrap_err();
        assert!(e.to_string().contains("reaches past"), "{d}: {e}");
    }
}

/// Layers chained as in a network: the second convolution reads the first's output (a
/// channel-major view, not batch-major storage), each activation takes its derivative
/// from that output, and a batch-major flattening (`contiguous` then `view`) follows;
/// the same for conv1d.
#[test]
fn chained_layers_grad_check() {
    use minitorch::Activation;
    // Small, so the f32 central differences stay within grad_check's tolerance.
    let x = t(random(&[2, 2, 4, 3], 31), &[2, 2, 4, 3]);
    let w1 = t(random(&[3, 2, 2, 2], 32), &[3, 2, 2, 2]);
    let b1 = t(random(&[3], 33), &[3]);
    let w2 = t(random(&[2, 3, 2, 2], 34), &[2, 3, 2, 2]);
    let b2 = t(random(&[2], 35), &[2]);
    grad_check(
        |a| {
            let same = [(1, 1), (1, 1)];
            let h = a[0].conv2d_act(&a[1], Some(&a[2]), [1, 1], same, Activation::Sigmoid)?;
            let h = h.conv2d(&a[3], Some(&a[4]), [2, 1], [(0, 1), (1, 0)])?;
            let n = h.shape()[0];
            h.contiguous()?.view(&[n, h.size() / n])
        },
        &[x, w1, b1, w2, b2],
        20,
        3,
    )
    .unwrap();
    let x = t(random(&[2, 2, 6], 41), &[2, 2, 6]);
    let w1 = t(random(&[3, 2, 3], 42), &[3, 2, 3]);
    let w2 = t(random(&[2, 3, 2], 43), &[2, 3, 2]);
    grad_check(
        |a| {
            a[0].conv1d(&a[1], None, 1, (1, 1))?
                .conv1d(&a[2], None, 2, (0, 1))
        },
        &[x, w1, w2],
        20,
        4,
    )
    .unwrap();
}

#[test]
fn cpu_input_gradient_matches_the_transposed_convolution() {
    // The CPU's col2im input gradient against the default every other backend runs (the
    // transposed convolution from the primitives), on strides, asymmetric padding and
    // several tasks' worth of images.
    use minitorch::backend::conv2d::{self, ConvGeometry};
    use minitorch::backend::cpu::CpuBackend;
    use minitorch::backend::Backend;
    let cpu = CpuBackend;
    for (k, (x, w, stride, pad)) in [
        ([5, 3, 12, 9], [4, 3, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        ([3, 2, 11, 10], [5, 2, 3, 2], [2, 3], [(0, 2), (1, 0)]),
        ([7, 1, 40, 50], [2, 1, 5, 4], [1, 2], [(2, 1), (0, 3)]),
        // Enough input channels and wide enough rows for the direct transposed convolution
        // (AVX-512): rows of two tiles, a height stride, asymmetric and wide padding, a
        // channel tile left part empty.
        ([3, 13, 9, 29], [5, 13, 3, 5], [2, 1], [(0, 2), (2, 1)]),
        ([2, 8, 12, 60], [9, 8, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        ([2, 30, 5, 28], [4, 30, 5, 6], [1, 1], [(0, 0), (4, 4)]),
        // Stride 1 with the output as wide as the input: tiles of 32 positions across
        // rows (a 14-wide map, a plane of 91, padding all on one side).
        ([2, 12, 14, 14], [5, 12, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        ([2, 10, 7, 13], [3, 10, 5, 3], [1, 1], [(4, 0), (0, 2)]),
    ]
    .into_iter()
    .enumerate()
    {
        let g = ConvGeometry::new("test", &x, &w, stride, pad).unwrap();
        let go = cpu
            .upload(&random(&[g.cout, g.b, g.oh, g.ow], 70 + k as u64))
            .unwrap();
        let wt = cpu.upload(&random(&w, 80 + k as u64)).unwrap();
        let (ours, ol) = cpu.conv2d_input_grad(&go, &wt, &g).unwrap();
        let (theirs, tl) = conv2d::input_grad(&cpu, &go, &wt, &g).unwrap();
        assert_eq!(ol.shape(), tl.shape());
        let (a, b) = (
            cpu.copy(&ours, &ol).unwrap(),
            cpu.copy(&theirs, &tl).unwrap(),
        );
        let (a, b) = (cpu.download(&a).unwrap(), cpu.download(&b).unwrap());
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!(
                (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                "case {k}, element {i}: {p} vs {q}"
            );
        }
    }
    // A gradient smaller than the geometry says is an error, not a read past its end.
    let g = ConvGeometry::new(
        "test",
        &[2, 3, 8, 8],
        &[4, 3, 3, 3],
        [1, 1],
        [(1, 1), (1, 1)],
    )
    .unwrap();
    let short = cpu.upload(&[0.0; 10]).unwrap();
    let wt = cpu.upload(&random(&[4, 3, 3, 3], 1)).unwrap();
    assert!(cpu.conv2d_input_grad(&short, &wt, &g).is_err());
}

/// One 2-D convolution's forward through the CPU backend and through the composition
/// every other backend runs, with `program` as the epilogue (input 1 the bias).
fn cpu_forward_pair(
    x: &[f32],
    xl: &minitorch::Layout,
    w: &[f32],
    bias: &[f32],
    g: &minitorch::backend::conv2d::ConvGeometry,
    program: &minitorch::backend::fused::Program,
) -> (Vec<f32>, Vec<f32>) {
    use minitorch::backend::conv2d;
    use minitorch::backend::cpu::CpuBackend;
    use minitorch::backend::Backend;
    let cpu = CpuBackend;
    let (xs, ws, bs) = (
        cpu.upload(x).unwrap(),
        cpu.upload(w).unwrap(),
        cpu.upload(bias).unwrap(),
    );
    let m = g.b * g.oh * g.ow;
    let bl = minitorch::Layout::new(vec![g.cout, m], vec![1, 0], 0).unwrap();
    let extra = [(&bs, &bl)];
    let extra = &extra[..program.inputs() - 1];
    let params = [0.25f32];
    let params = &params[..program.params()];
    let (ours, cols) = cpu
        .conv2d(&xs, xl, &ws, g, program, extra, params, true)
        .unwrap();
    let (theirs, their_cols) =
        conv2d::forward(&cpu, &xs, xl, &ws, g, program, extra, params, true).unwrap();
    // The columns the weight gradient reads: the same source values through one view.
    let (cols, their_cols) = (cols.unwrap(), their_cols.unwrap());
    assert_eq!(cols.view, their_cols.view);
    let bits = |s: &minitorch::backend::Storage| -> Vec<u32> {
        cpu.download(s)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(
        bits(&cols.src),
        bits(&their_cols.src),
        "the columns' source"
    );
    let (none, no_cols) = cpu
        .conv2d(&xs, xl, &ws, g, program, extra, params, false)
        .unwrap();
    assert!(no_cols.is_none());
    assert_eq!(
        bits(&none),
        bits(&ours),
        "the same forward without the columns"
    );
    (cpu.download(&ours).unwrap(), cpu.download(&theirs).unwrap())
}

#[test]
fn cpu_forward_matches_the_composed_convolution() {
    // The CPU's forward (a direct convolution where it applies) against the columns and
    // one matmul, with each kind of epilogue: none, bias, bias and relu, bias and
    // sigmoid, and a general program (through the interpreter, on each finished run).
    use minitorch::backend::conv2d::ConvGeometry;
    use minitorch::backend::fused::{Program, ProgramBuilder};
    use minitorch::backend::{BinaryOp, UnaryOp};
    let bias_act = |act: Option<UnaryOp>| {
        let mut p = ProgramBuilder::new();
        let (z, b) = (p.input(0), p.input(1));
        let mut y = p.add(z, b);
        if let Some(op) = act {
            y = p.unary(op, y);
        }
        p.build(&[y])
    };
    let general = {
        // z * param * bias: not the bias-and-activation shape.
        let mut p = ProgramBuilder::new();
        let (z, b, k) = (p.input(0), p.input(1), p.param(0));
        let zk = p.binary(BinaryOp::Mul, z, k);
        let y = p.binary(BinaryOp::Mul, zk, b);
        p.build(&[y])
    };
    let programs = [
        Program::identity(),
        bias_act(None),
        bias_act(Some(UnaryOp::Relu)),
        bias_act(Some(UnaryOp::Sigmoid)),
        general,
    ];
    for (k, (x, w, stride, pad)) in [
        // Tiles across rows: a 28x28 "same" layer, 64 channels in panels of 13 and 12.
        ([3, 6, 28, 28], [64, 6, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        // The course's padding; a plane of 5x7 (one short tile); a 1x1 kernel.
        ([2, 3, 5, 7], [9, 3, 2, 4], [1, 1], [(0, 1), (0, 3)]),
        ([2, 8, 4, 33], [10, 8, 1, 1], [1, 1], [(0, 0), (0, 0)]),
        // Tiles of one row: a height stride, rows of two tiles, padding wider than the
        // kernel, an output narrower than the input.
        ([2, 4, 9, 60], [9, 4, 3, 5], [2, 1], [(0, 2), (2, 1)]),
        ([1, 2, 6, 30], [8, 2, 3, 3], [1, 1], [(4, 4), (0, 0)]),
        // Paths the direct forward leaves to the product: a width stride, few channels,
        // short rows.
        ([2, 3, 8, 9], [9, 3, 3, 3], [1, 2], [(1, 1), (1, 1)]),
        ([2, 3, 8, 9], [4, 3, 3, 3], [1, 1], [(1, 1), (1, 1)]),
        ([2, 3, 6, 14], [9, 3, 3, 3], [2, 1], [(1, 1), (1, 1)]),
    ]
    .into_iter()
    .enumerate()
    {
        let g = ConvGeometry::new("test", &x, &w, stride, pad).unwrap();
        let xs = random(&x, 90 + k as u64);
        let ws = random(&w, 95 + k as u64);
        let bias = random(&[g.cout], 99 + k as u64);
        // Channel-major through a permuted view of the batch-major input, and contiguous
        // channel-major with an offset and a gap between channels.
        let [bn, c, h, wd] = x;
        let batch_major = minitorch::Layout::contiguous(&x)
            .permute(&[1, 0, 2, 3])
            .unwrap();
        let gap = 5;
        let mut padded = vec![f32::NAN; 3 + c * (bn * h * wd + gap)];
        for ci in 0..c {
            for n in 0..bn {
                for i in 0..h * wd {
                    padded[3 + ci * (bn * h * wd + gap) + n * h * wd + i] =
                        xs[(n * c + ci) * h * wd + i];
                }
            }
        }
        let gapped = minitorch::Layout::new(
            vec![c, bn, h, wd],
            vec![bn * h * wd + gap, h * wd, wd, 1],
            3,
        )
        .unwrap();
        for (src, xl) in [(&xs, &batch_major), (&padded, &gapped)] {
            for (j, program) in programs.iter().enumerate() {
                let (ours, theirs) = cpu_forward_pair(src, xl, &ws, &bias, &g, program);
                assert_eq!(ours.len(), theirs.len());
                for (i, (p, q)) in ours.iter().zip(&theirs).enumerate() {
                    assert!(
                        (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                        "case {k}, program {j}, element {i}: {p} vs {q}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_infinite_weight_reaches_only_the_outputs_it_touches() {
    // The CPU's direct forward leaves masked lanes (the padding) out of its sums, as the
    // plain loops do: an infinite weight makes an output infinite, never NaN at an edge.
    // (The product over padded columns multiplies the padding's zeros: NaN there.)
    #[cfg(target_arch = "x86_64")]
    let direct = std::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let direct = false;
    if !direct {
        eprintln!("skipped: this CPU has no AVX-512F, so the direct forward does not run");
        return;
    }
    use minitorch::backend::conv2d::ConvGeometry;
    use minitorch::backend::fused::Program;
    let (x, w) = ([2, 3, 6, 28], [9, 3, 3, 3]);
    let pad = [(1, 1), (1, 1)];
    let g = ConvGeometry::new("test", &x, &w, [1, 1], pad).unwrap();
    let xs = vec![1.0f32; x.iter().product()];
    let mut ws = vec![0.5f32; w.iter().product()];
    ws[0] = f32::INFINITY;
    let xl = minitorch::Layout::contiguous(&x)
        .permute(&[1, 0, 2, 3])
        .unwrap();
    let (ours, _) = cpu_forward_pair(&xs, &xl, &ws, &[], &g, &Program::identity());
    let case = Conv {
        x: x.to_vec(),
        w: w.to_vec(),
        stride: [1, 1],
        pad,
    };
    let want = case.run(&xs, &ws, &[], &vec![0.0; ours.len()]).0;
    // `ours` is channel-major [Cout, B, OH, OW], the loops' result batch-major.
    let plane = g.oh * g.ow;
    for (i, &o) in ours.iter().enumerate() {
        let (co, n, p) = (i / (g.b * plane), i / plane % g.b, i % plane);
        let v = want[(n * g.cout + co) * plane + p];
        assert_eq!(
            (o.is_nan(), o.is_infinite()),
            (v.is_nan(), v.is_infinite()),
            "element {i}: {o} vs {v}"
        );
        if v.is_finite() {
            assert!(
                (o as f64 - v).abs() <= 1e-4 * (1.0 + v.abs()),
                "element {i}"
            );
        }
    }
    assert!(ours.iter().any(|v| v.is_infinite()) && ours.iter().any(|v| v.is_finite()));
}

#[test]
fn conv_with_an_empty_dimension_runs_and_sums_nothing() {
    // No images, no input channels (the output is the bias alone), no output channels:
    // 28-wide rows and 8+ output channels take the CPU's direct forward; every path gives
    // the right shapes and values, forward and backward, and never panics.
    for (x, w) in [
        ([0, 3, 28, 28], [8, 3, 3, 3]),
        ([2, 0, 28, 28], [9, 0, 3, 3]),
        ([2, 3, 28, 28], [0, 3, 3, 3]),
        ([2, 0, 28, 28], [3, 0, 3, 3]),
    ] {
        let xt = t(random(&x, 1), &x).requires_grad_(true);
        let wt = t(random(&w, 2), &w).requires_grad_(true);
        let bias = random(&[w[0]], 3);
        let b = t(bias.clone(), &[w[0]]).requires_grad_(true);
        let same = [(1, 1), (1, 1)];
        let out = xt
            .conv2d_act(&wt, Some(&b), [1, 1], same, minitorch::Activation::Relu)
            .unwrap();
        assert_eq!(out.shape(), [x[0], w[0], 28, 28]);
        let v = out.to_vec().unwrap();
        let plane = 28 * 28;
        for (i, &o) in v.iter().enumerate() {
            // Without input channels each output is relu(bias).
            let co = i / plane % w[0];
            assert_eq!(
                x[1], 0,
                "{x:?} {w:?}: only a sum of nothing has values to check"
            );
            assert_eq!(o, bias[co].max(0.0), "{x:?} {w:?}: element {i}");
        }
        out.sum_all().unwrap().backward().unwrap();
        assert_eq!(xt.grad().unwrap().shape(), x);
        assert_eq!(wt.grad().unwrap().shape(), w);
        let db = b.grad().unwrap().to_vec().unwrap();
        for (co, &g) in db.iter().enumerate() {
            let want = if x[1] == 0 && bias[co] > 0.0 {
                (x[0] * plane) as f32
            } else {
                0.0
            };
            assert_eq!(g, want, "{x:?} {w:?}: bias gradient {co}");
        }
    }
}
