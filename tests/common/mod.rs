//! The conformance harness: which backends are present (the columns of the matrix), test
//! data, per-op tolerances, and the element-by-element comparison with the CPU backend.
//!
//! See tests/conformance.rs for the tolerance table.

#![allow(dead_code)]

pub mod cases;

use std::io::Write;
use std::sync::{Arc, OnceLock};

use minitorch::backend::check::extent;
use minitorch::executor::block_on;
use minitorch::{Backend, BinaryOp, Device, Layout, ReduceOp, UnaryOp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Environment variable listing backends that must be present (`cpu,wgpu`).
pub const REQUIRE_ENV: &str = "MINITORCH_REQUIRE_BACKENDS";

/// Write straight to the process's stderr: libtest captures `eprintln!`, not this, so
/// skips are visible in a plain `cargo test`.
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Whether `MINITORCH_REQUIRE_BACKENDS` lists `device` (by its exact name: `cuda` does not
/// require `cuda-emu`).
pub fn required(device: Device) -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| {
        v.split(',')
            .any(|d| Device::parse(d.trim()).is_ok_and(|d| d == device))
    })
}

/// Print that `what` skips `device` because of `why`, or fail when the device is required.
pub fn skip_or_fail(device: Device, what: &str, why: &str) {
    assert!(
        !required(device),
        "{REQUIRE_ENV} requires {device} but it is not present ({what}): {why}"
    );
    note(&format!("SKIPPED: {what} on {device}: {why}"));
}

/// Kernel launches `device`'s backend has counted so far (wgpu's dispatches, CUDA's
/// launches), or why it cannot count.
pub fn launches(device: Device) -> Result<u64, String> {
    match device {
        #[cfg(feature = "wgpu")]
        Device::Wgpu => minitorch::backend::wgpu::WgpuBackend::global()
            .map(|b| b.runtime().stats().dispatches)
            .map_err(|e| e.to_string()),
        #[cfg(feature = "cuda")]
        Device::Cuda => minitorch::backend::cuda::CudaBackend::global()
            .map(|b| b.launches())
            .map_err(|e| e.to_string()),
        #[cfg(feature = "cuda")]
        Device::CudaEmu => minitorch::backend::cuda::CudaBackend::emulated()
            .map(|b| b.launches())
            .map_err(|e| e.to_string()),
        d => Err(format!(
            "{d} counts no launches, or was built without its feature"
        )),
    }
}

/// One present backend: a column of the matrix.
pub struct Column {
    /// Its device.
    pub device: Device,
    /// The backend.
    pub backend: Arc<dyn Backend>,
}

/// Every present backend (the CPU included: it checks the harness against itself).
/// Absent ones are printed as `SKIPPED: backend X not present (reason)` once per process;
/// one listed in `MINITORCH_REQUIRE_BACKENDS` fails every test instead.
pub fn columns() -> &'static [Column] {
    static COLUMNS: OnceLock<Vec<Column>> = OnceLock::new();
    COLUMNS.get_or_init(|| {
        let required: Vec<Device> = std::env::var(REQUIRE_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Device::parse(s).unwrap_or_else(|e| panic!("{REQUIRE_ENV}: {e}")))
            .collect();
        let mut present = Vec::new();
        let mut missing = Vec::new();
        for device in Device::ALL {
            let reason = if !device.is_compiled() {
                format!("built without the `{}` feature", device.name())
            } else {
                match device.backend() {
                    Ok(backend) => {
                        note(&format!(
                            "conformance: backend {device} present: {}",
                            backend.describe()
                        ));
                        present.push(Column { device, backend });
                        continue;
                    }
                    Err(e) => e.to_string(),
                }
            };
            note(&format!("SKIPPED: backend {device} not present ({reason})"));
            if required.contains(&device) {
                missing.push(format!("{device} ({reason})"));
            }
        }
        if !missing.is_empty() {
            panic!(
                "{REQUIRE_ENV} requires backends that are not present: {}",
                missing.join(", ")
            );
        }
        present
    })
}

/// The reference backend.
pub fn cpu() -> Arc<dyn Backend> {
    Device::Cpu
        .backend()
        .expect("the CPU backend is always present")
}

// ----- test data ---------------------------------------------------------------------

/// Value ranges for inputs, chosen per op so results stay finite and meaningful.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// Uniform in [-3, 3].
    General,
    /// Uniform in [-20, 20] (exp, sigmoid: exercises the |x|-dependent error bound).
    Wide,
    /// Uniform in [0.05, 8] (log).
    Positive,
    /// +-[0.1, 8] (inv and the divisions of log_back, inv_back).
    NonZero,
    /// Multiples of 0.25 in [-2, 2]: ties for lt, eq, is_close and max.
    Ties,
    /// +-[0.5, 1.5] (short products).
    NearOne,
    /// +-[0.999, 1.001] (products over long dimensions stay finite).
    Tight,
}

/// `n` values of `domain` from `seed`.
pub fn data(n: usize, domain: Domain, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let signed = |lo: f32, hi: f32, rng: &mut ChaCha8Rng| {
        let v = rng.random_range(lo..hi);
        if rng.random::<bool>() {
            v
        } else {
            -v
        }
    };
    (0..n)
        .map(|_| match domain {
            Domain::General => rng.random_range(-3.0..3.0),
            Domain::Wide => rng.random_range(-20.0..20.0),
            Domain::Positive => rng.random_range(0.05..8.0),
            Domain::NonZero => signed(0.1, 8.0, &mut rng),
            Domain::Ties => rng.random_range(-8i32..=8) as f32 * 0.25,
            Domain::NearOne => signed(0.5, 1.5, &mut rng),
            Domain::Tight => signed(0.999, 1.001, &mut rng),
        })
        .collect()
}

/// Values with exact, well-defined results for the exact ops (no subnormals: a GPU may
/// flush them to zero, which WGSL allows).
pub const SPECIALS: [f32; 10] = [
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    f32::MAX,
    -f32::MAX,
    1e-20,
    1.0,
    -1.0,
];

/// Overwrite the first storage positions with [`SPECIALS`].
pub fn with_specials(mut v: Vec<f32>) -> Vec<f32> {
    for (d, s) in v.iter_mut().zip(SPECIALS) {
        *d = s;
    }
    v
}

/// The domain of a unary op's input.
pub fn unary_domain(op: UnaryOp) -> Domain {
    match op {
        UnaryOp::Log | UnaryOp::Sqrt => Domain::Positive,
        UnaryOp::Inv => Domain::NonZero,
        UnaryOp::Exp | UnaryOp::Sigmoid | UnaryOp::Tanh => Domain::Wide,
        _ => Domain::General,
    }
}

/// The domains of a binary op's inputs.
pub fn binary_domains(op: BinaryOp) -> (Domain, Domain) {
    match op {
        BinaryOp::Lt | BinaryOp::Eq | BinaryOp::IsClose => (Domain::Ties, Domain::Ties),
        BinaryOp::LogBack | BinaryOp::InvBack => (Domain::NonZero, Domain::General),
        BinaryOp::SigmoidBack => (Domain::Wide, Domain::General),
        BinaryOp::ReluBack => (Domain::Ties, Domain::General),
        _ => (Domain::General, Domain::General),
    }
}

/// True for the ops whose results must be bit-identical (they get special values too).
pub fn unary_exact(op: UnaryOp) -> bool {
    matches!(op, UnaryOp::Neg | UnaryOp::Id | UnaryOp::Relu)
}

/// True for the binary ops whose results must be bit-identical.
pub fn binary_exact(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Add
            | BinaryOp::Mul
            | BinaryOp::Lt
            | BinaryOp::Eq
            | BinaryOp::IsClose
            | BinaryOp::ReluBack
    )
}

// ----- ops and cases -----------------------------------------------------------------

/// A backend operation under test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `Backend::map`.
    Map(UnaryOp),
    /// `Backend::zip`.
    Zip(BinaryOp),
    /// `Backend::reduce` over a dimension.
    Reduce(ReduceOp, usize),
    /// `Backend::matmul`.
    Matmul,
    /// `Backend::copy` (permute + contiguous, view).
    Copy,
    /// `Backend::pad` (zero padding with dilation, for convolution).
    Pad(&'static minitorch::backend::pad::PadSpec),
    /// `Backend::uniform`: `len` values of the generator's draw `key` (no inputs).
    Uniform(usize, [u32; 2]),
}

impl Op {
    /// Printable name: `map exp`, `reduce sum dim 1`, ...
    pub fn name(&self) -> String {
        match self {
            Op::Map(u) => format!("map {}", u.name()),
            Op::Zip(b) => format!("zip {}", b.name()),
            Op::Reduce(r, d) => format!("reduce {} dim {d}", r.name()),
            Op::Matmul => "matmul".into(),
            Op::Copy => "copy".into(),
            Op::Pad(p) => format!("pad to {:?} lo {:?} step {:?}", p.out_shape, p.lo, p.step),
            Op::Uniform(n, _) => format!("uniform x {n}"),
        }
    }
}

/// One input: storage contents and the layout the op reads them through.
#[derive(Clone, Debug)]
pub struct Input {
    /// Storage contents.
    pub data: Vec<f32>,
    /// How the op reads them.
    pub layout: Layout,
    /// Use the storage of this earlier input instead (one buffer bound twice).
    pub same_as: Option<usize>,
}

impl Input {
    /// Storage just large enough for `layout`, filled from `domain`.
    pub fn new(layout: Layout, domain: Domain, seed: u64) -> Input {
        let n = extent(&layout);
        Input {
            data: data(n, domain, seed),
            layout,
            same_as: None,
        }
    }

    /// The same input with [`SPECIALS`] at the start of its storage.
    pub fn specials(mut self) -> Input {
        self.data = with_specials(self.data);
        self
    }
}

/// A row of the matrix: an op on inputs, described for failure messages.
#[derive(Clone, Debug)]
pub struct Case {
    /// The op.
    pub op: Op,
    /// Layout description (contiguous, permuted, broadcast, ...).
    pub desc: String,
    /// The inputs.
    pub inputs: Vec<Input>,
}

impl Case {
    /// A case.
    pub fn new(op: Op, desc: impl Into<String>, inputs: Vec<Input>) -> Case {
        Case {
            op,
            desc: desc.into(),
            inputs,
        }
    }

    fn shapes(&self) -> String {
        self.inputs
            .iter()
            .map(|i| {
                format!(
                    "{:?} strides {:?} offset {}",
                    i.layout.shape(),
                    i.layout.strides(),
                    i.layout.offset()
                )
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

/// Run `op` on `backend`: upload, launch, download.
pub fn run(backend: &dyn Backend, op: Op, inputs: &[Input]) -> minitorch::Result<Vec<f32>> {
    block_on("run", "run_async", run_async(backend, op, inputs))
}

/// [`run`] as a future (the browser tests await the download).
pub async fn run_async(
    backend: &dyn Backend,
    op: Op,
    inputs: &[Input],
) -> minitorch::Result<Vec<f32>> {
    let mut st = Vec::new();
    for i in inputs {
        let s = match i.same_as {
            Some(j) => st.get(j).cloned().expect("same_as names an earlier input"),
            None => backend.upload(&i.data)?,
        };
        st.push(s);
    }
    let l = |k: usize| &inputs[k].layout;
    let out = match op {
        Op::Map(u) => backend.map(u, &st[0], l(0))?,
        Op::Zip(b) => backend.zip(b, &st[0], l(0), &st[1], l(1))?,
        Op::Reduce(r, d) => backend.reduce(r, &st[0], l(0), d)?,
        Op::Matmul => backend.matmul(&st[0], l(0), &st[1], l(1))?,
        Op::Copy => backend.copy(&st[0], l(0))?,
        Op::Pad(p) => backend.pad(&st[0], l(0), p)?,
        Op::Uniform(n, key) => backend.uniform(n, key)?,
    };
    backend.download_async(&out).await
}

// ----- tolerances --------------------------------------------------------------------

/// What one element may differ by: accepted when within `ulps` units in the last place
/// of the CPU value, or within `abs`. `Bound::EXACT` means bit-identical.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// Units in the last place.
    pub ulps: f64,
    /// Absolute difference.
    pub abs: f64,
    /// For exact bounds: +0 and -0 count as equal (max reductions pick either zero).
    pub any_zero: bool,
}

/// Whether `got` is a zero of the sign of the subnormal `want`: what a GPU that flushes
/// subnormal results of plain arithmetic gives (accepted for the ops documented to
/// flush, see tests/conformance.rs).
pub fn flushed(got: f32, want: f32) -> bool {
    want.is_subnormal() && got == 0.0 && got.is_sign_negative() == want.is_sign_negative()
}

impl Bound {
    /// Bit-identical (NaN matches NaN).
    pub const EXACT: Bound = Bound {
        ulps: 0.0,
        abs: 0.0,
        any_zero: false,
    };

    /// Within `ulps` ULPs.
    pub fn ulps(ulps: f64) -> Bound {
        Bound {
            ulps,
            abs: 0.0,
            any_zero: false,
        }
    }

    /// Within `abs`.
    pub fn abs(abs: f64) -> Bound {
        Bound {
            ulps: 0.0,
            abs,
            any_zero: false,
        }
    }

    fn is_exact(&self) -> bool {
        self.ulps == 0.0 && self.abs == 0.0
    }

    /// Composite results (chains of ops, gradients, training): relative `rel` of
    /// max(1, |cpu value|).
    pub fn composite(rel: f64, want: f32) -> Bound {
        Bound::abs(rel * (want.abs() as f64).max(1.0))
    }
}

/// f32::EPSILON (2^-23) as f64.
pub const EPS: f64 = f32::EPSILON as f64;

/// Distance in units in the last place between two finite floats (the library's one
/// definition, `minitorch::accuracy::ulp_distance`).
pub fn ulp_diff(a: f32, b: f32) -> u64 {
    minitorch::accuracy::ulp_distance(a, b)
}

/// Whether `got` is within `b` of `want`.
pub fn within(got: f32, want: f32, b: Bound) -> bool {
    if got.is_nan() || want.is_nan() {
        return got.is_nan() && want.is_nan();
    }
    // WGSL lets a GPU flush subnormal results to zero, and SwiftShader in Chromium does:
    // allowed in the browser tests only. Natively every backend keeps subnormals (matmul's
    // own flush rule is checked in tests/conformance.rs).
    if cfg!(target_arch = "wasm32") && flushed(got, want) {
        return true;
    }
    if b.is_exact() {
        return got.to_bits() == want.to_bits() || (b.any_zero && got == want);
    }
    if got == want {
        return true;
    }
    if !got.is_finite() || !want.is_finite() {
        return false;
    }
    ulp_diff(got, want) as f64 <= b.ulps || ((got - want).abs() as f64) <= b.abs
}

/// The bound of a unary op at input `x` (see the table in tests/conformance.rs).
pub fn unary_bound(op: UnaryOp, _x: f32) -> Bound {
    match op {
        UnaryOp::Neg | UnaryOp::Id | UnaryOp::Relu => Bound::EXACT,
        // Every backend is within 2 ULP of the correctly rounded result (tests/accuracy.rs),
        // so two backends are within 4 of each other.
        UnaryOp::Exp | UnaryOp::Sigmoid | UnaryOp::Log | UnaryOp::Tanh => Bound::ulps(4.0),
        UnaryOp::Inv => Bound::ulps(4.0),
        // CUDA's __fsqrt_rn is correctly rounded; WGSL allows sqrt a small error.
        UnaryOp::Sqrt => Bound::ulps(2.0),
    }
}

/// The bound of a binary op at inputs `(x, d)`.
pub fn binary_bound(op: BinaryOp, _x: f32, _d: f32) -> Bound {
    match op {
        BinaryOp::LogBack => Bound::ulps(4.0),
        // Two divisions: -(d / x) / x.
        BinaryOp::InvBack => Bound::ulps(8.0),
        // d s(x) s(-x): two sigmoids (4 ULP apart each) and two products.
        BinaryOp::SigmoidBack => Bound::ulps(10.0),
        _ => Bound::EXACT,
    }
}

/// The elements an input layout addresses, in row-major order (read on the CPU).
pub fn gather(input: &Input) -> Vec<f32> {
    let alone = Input {
        same_as: None,
        ..input.clone()
    };
    run(cpu().as_ref(), Op::Copy, &[alone]).expect("cpu gather")
}

/// Per-element bounds of `case` (whose CPU result is `want`).
pub fn bounds(case: &Case, want: &[f32]) -> Vec<Bound> {
    let abs_inputs = || -> Vec<Input> {
        case.inputs
            .iter()
            .map(|i| Input {
                data: i.data.iter().map(|v| v.abs()).collect(),
                ..i.clone()
            })
            .collect()
    };
    // Sums, products and matmul: n * eps * (the op on absolute values): the worst-case
    // rounding bound of n terms in any order (gamma_n, for both results).
    let by_terms = |terms: usize| -> Vec<Bound> {
        let scale = run(cpu().as_ref(), case.op, &abs_inputs()).expect("cpu scale");
        scale
            .iter()
            .map(|s| Bound::abs(terms as f64 * EPS * *s as f64))
            .collect()
    };
    match case.op {
        Op::Map(u) => gather(&case.inputs[0])
            .iter()
            .map(|&x| unary_bound(u, x))
            .collect(),
        Op::Zip(b) => {
            let (xs, ds) = (gather(&case.inputs[0]), gather(&case.inputs[1]));
            xs.iter()
                .zip(&ds)
                .map(|(&x, &d)| binary_bound(b, x, d))
                .collect()
        }
        Op::Reduce(ReduceOp::Max, _) => vec![
            Bound {
                any_zero: true,
                ..Bound::EXACT
            };
            want.len()
        ],
        Op::Reduce(_, d) => by_terms(case.inputs[0].layout.shape()[d]),
        Op::Matmul => {
            let s = case.inputs[0].layout.shape();
            by_terms(s[s.len() - 1])
        }
        Op::Copy | Op::Pad(_) | Op::Uniform(..) => vec![Bound::EXACT; want.len()],
    }
}

// ----- comparison --------------------------------------------------------------------

/// Compare `got` from `backend` with the CPU's `want`, element by element. The message
/// names the op, shapes, layout, backend, element index and both values.
pub fn compare(
    what: &str,
    shapes: &str,
    desc: &str,
    backend: Device,
    got: &[f32],
    want: &[f32],
    bound: impl Fn(usize) -> Bound,
) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what} on {backend}: shapes {shapes} ({desc}): {} elements, cpu gives {}",
            got.len(),
            want.len()
        ));
    }
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| !within(got[i], want[i], bound(i)))
        .collect();
    if let Some(&i) = bad.first() {
        let b = bound(i);
        return Err(format!(
            "{what} on {backend}: shapes {shapes} ({desc}): element {i} of {}: {backend} gives {:e} \
             (bits {:#010x}), cpu gives {:e} (bits {:#010x}), {} ULPs apart; allowed {} ULPs or {:e} \
             absolute{}; {} of {} elements differ",
            got.len(),
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits(),
            if got[i].is_finite() && want[i].is_finite() { ulp_diff(got[i], want[i]) } else { u64::MAX },
            b.ulps,
            b.abs,
            if b.is_exact() { " (exact op: bit-identical)" } else { "" },
            bad.len(),
            got.len()
        ));
    }
    Ok(())
}

/// Run `case` on every present backend and compare each with the CPU.
pub fn check_case(case: &Case) -> Result<(), String> {
    block_on("check_case", "check_case_async", async {
        Ok(check_case_async(case).await)
    })
    .unwrap_or_else(|e| Err(e.to_string()))
}

/// [`check_case`] as a future (the browser tests await it).
pub async fn check_case_async(case: &Case) -> Result<(), String> {
    let cpu = cpu();
    let want = run(cpu.as_ref(), case.op, &case.inputs)
        .map_err(|e| format!("{} ({}) failed on the cpu: {e}", case.op.name(), case.desc))?;
    let bounds = bounds(case, &want);
    for col in columns() {
        let got = run_async(col.backend.as_ref(), case.op, &case.inputs)
            .await
            .map_err(|e| {
                format!(
                    "{} on {}: shapes {} ({}): error: {e}",
                    case.op.name(),
                    col.device,
                    case.shapes(),
                    case.desc
                )
            })?;
        compare(
            &case.op.name(),
            &case.shapes(),
            &case.desc,
            col.device,
            &got,
            &want,
            |i| bounds[i],
        )?;
    }
    Ok(())
}

/// Run every case; panic with all failures (first 20) at the end.
pub fn check_all(cases: &[Case]) {
    block_on("check_all", "check_all_async", async {
        check_all_async(cases).await;
        Ok(())
    })
    .expect("check_all")
}

/// [`check_all`] as a future (the browser tests await it).
pub async fn check_all_async(cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        if let Err(e) = check_case_async(c).await {
            failures.push(e);
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

// ----- layouts -----------------------------------------------------------------------

/// A contiguous layout of `shape` starting at `offset`.
pub fn at_offset(shape: &[usize], offset: usize) -> Layout {
    let c = Layout::contiguous(shape);
    Layout::new(c.shape().to_vec(), c.strides().to_vec(), offset).expect("same rank")
}

/// A layout of `shape` whose storage is laid out in another dimension order: dimension
/// `i` of the result is storage dimension `order[i]`.
pub fn permuted(shape: &[usize], order: &[usize]) -> Layout {
    let mut storage = vec![0; shape.len()];
    for (i, &o) in order.iter().enumerate() {
        storage[o] = shape[i];
    }
    let l = Layout::contiguous(&storage)
        .permute(order)
        .expect("a permutation");
    assert_eq!(l.shape(), shape);
    l
}

/// `small` (contiguous) read as `shape` with stride-0 broadcast dimensions.
pub fn broadcast(small: &[usize], shape: &[usize]) -> Layout {
    Layout::contiguous(small)
        .broadcast_to(shape)
        .expect("broadcastable")
}
