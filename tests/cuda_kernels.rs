//! Every kernel file in `cuda/` compiles on its own with NVRTC, with `cuda/` as its include
//! path, to PTX and to CUBIN, for every architecture the backend supports with each NVRTC
//! major version, and defines every entry point the backend loads:
//! - NVRTC 12 (PyPI `nvidia-cuda-nvrtc-cu12`): sm_60 (Pascal), sm_75, sm_80, sm_89, sm_90;
//! - NVRTC 13 (PyPI `nvidia-cuda-nvrtc`): sm_75, sm_80, sm_86, sm_89, sm_90, sm_100, sm_120.
//!
//! Needs no GPU and no driver, only the libraries: `MINITORCH_NVRTC12` / `MINITORCH_NVRTC13`
//! name them by path (`.ci/run` installs both with `scripts/install-nvrtc.sh 12` and `13`),
//! else `libnvrtc.so.12` / `.13` are looked up on the loader path. A missing one prints
//! SKIPPED, unless MINITORCH_REQUIRE_NVRTC=1 (every version) or a list such as `12,13`.

/// Whether NVRTC `major` must be present (MINITORCH_REQUIRE_NVRTC=1 or a list of majors).
/// Print a skip to the process's stderr (libtest does not capture it), or fail when the
/// skipped check is required.
fn skip(msg: &str, required: bool, requirement: &str) {
    use std::io::Write;
    assert!(!required, "required by {requirement} but skipped: {msg}");
    let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
}

/// The CPU emulation of the kernels (it needs a C++17 compiler) is required wherever
/// NVRTC is (`MINITORCH_REQUIRE_NVRTC`): both check the CUDA kernels without a GPU.
fn emulation_required() -> bool {
    nvrtc_required()
}

/// The CUDA backend itself is required when `MINITORCH_REQUIRE_BACKENDS` lists cuda.
fn cuda_required() -> bool {
    std::env::var("MINITORCH_REQUIRE_BACKENDS")
        .is_ok_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("cuda")))
}

fn nvrtc_required_for(major: i32) -> bool {
    std::env::var("MINITORCH_REQUIRE_NVRTC").is_ok_and(|v| {
        v.trim() == "1"
            || v.split(',')
                .any(|m| m.trim().parse::<i32>().is_ok_and(|m| m == major))
    })
}

fn nvrtc_required() -> bool {
    nvrtc_required_for(12) || nvrtc_required_for(13)
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_kernels_compile_with_nvrtc() {
    assert!(
        !nvrtc_required(),
        "MINITORCH_REQUIRE_NVRTC is set but this test was built without the `cuda` feature; run it with `--features cuda`"
    );
    skip("cuda kernel compile test: built without the `cuda` feature (run `cargo test --features cuda --test cuda_kernels`)", false, "");
}

/// Open NVRTC `major` (from `MINITORCH_NVRTC<major>` or by its versioned name), or say
/// SKIPPED and return None.
#[cfg(feature = "cuda")]
fn open_nvrtc(major: i32) -> Option<minitorch::backend::cuda::nvrtc::Nvrtc> {
    use minitorch::backend::cuda::nvrtc::Nvrtc;
    let var = format!("MINITORCH_NVRTC{major}");
    let name = std::env::var(&var).unwrap_or_else(|_| format!("libnvrtc.so.{major}"));
    match Nvrtc::open(&name) {
        Ok(n) if n.version().0 == major => Some(n),
        Ok(n) => {
            panic!(
                "{var}/{name} is NVRTC {}.{}, not {major}.x",
                n.version().0,
                n.version().1
            )
        }
        Err(e) => {
            assert!(
                !nvrtc_required_for(major),
                "MINITORCH_REQUIRE_NVRTC asks for NVRTC {major} but it is unavailable: {e}"
            );
            skip(
                &format!("NVRTC {major} compile test: {e}\n(install: `export {var}=$(bash scripts/install-nvrtc.sh {major})/libnvrtc.so.{major}`)"),
                false,
                "",
            );
            None
        }
    }
}

/// Compile every `.cu` file with `nvrtc` for each of `archs`, to PTX and CUBIN, checking
/// the entry points; returns the failures.
#[cfg(feature = "cuda")]
fn compile_all(nvrtc: &minitorch::backend::cuda::nvrtc::Nvrtc, archs: &[i32]) -> Vec<String> {
    use std::path::{Path, PathBuf};

    use minitorch::backend::cuda::kernels::Family;
    use minitorch::backend::cuda::runtime::{NvrtcSource, Output};

    // MINITORCH_CUDA_DIR: where a GPU bundle (scripts/gpu-bundle.sh) keeps the sources.
    let dir = std::env::var_os("MINITORCH_CUDA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("cuda/ directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .cu files in {}", dir.display());
    // Every kernel file the backend embeds exists in cuda/ (and so is compiled below).
    for f in Family::ALL {
        assert!(
            files
                .iter()
                .any(|p| p.file_name().unwrap() == f.file_name()),
            "{} missing from cuda/",
            f.file_name()
        );
    }
    let (major, minor) = nvrtc.version();
    let supported = nvrtc.supported_archs();
    let check_one = |path: &PathBuf| -> Vec<String> {
        let mut failures = Vec::new();
        let name = path.file_name().unwrap().to_str().unwrap();
        let source = std::fs::read_to_string(path).expect("read kernel source");
        let family = Family::ALL.iter().find(|f| f.file_name() == name);
        if let Some(f) = family {
            assert_eq!(source, f.source(), "{name}: embedded source is stale");
        }
        let entries = family.map(|f| f.entry_points()).unwrap_or_default();
        let program = NvrtcSource {
            name,
            source: &source,
            headers: &[],
            include_dirs: &[dir.as_path()],
        };
        for &arch in archs {
            if !supported.contains(&arch) {
                failures.push(format!(
                    "NVRTC {major}.{minor} does not support sm_{arch} ({supported:?})"
                ));
                continue;
            }
            let started = std::time::Instant::now();
            for output in [Output::Ptx, Output::Cubin] {
                let image = match program.compile(nvrtc, arch, output) {
                    Ok(image) => image,
                    Err(e) => {
                        failures.push(e.to_string());
                        continue;
                    }
                };
                match output {
                    Output::Ptx => {
                        let ptx = String::from_utf8_lossy(&image);
                        if !ptx.contains(&format!(".target sm_{arch}")) {
                            failures.push(format!("{name}: PTX is not for sm_{arch}"));
                        }
                        for entry in &entries {
                            if !ptx.contains(&format!(".entry {entry}(")) {
                                failures.push(format!(
                                    "{name}: entry point {entry} missing from the compute_{arch} PTX"
                                ));
                            }
                        }
                    }
                    Output::Cubin => {
                        if !image.starts_with(b"\x7fELF") {
                            failures.push(format!("{name}: the sm_{arch} CUBIN is not ELF"));
                        }
                        for entry in &entries {
                            let sym = format!("{entry}\0");
                            if !image.windows(sym.len()).any(|w| w == sym.as_bytes()) {
                                failures.push(format!(
                                    "{name}: entry point {entry} missing from the sm_{arch} CUBIN"
                                ));
                            }
                        }
                    }
                }
            }
            println!(
                "{name}: NVRTC {major}.{minor} sm_{arch} PTX + CUBIN in {:.0} ms",
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        failures
    };
    // One thread per file: NVRTC compiles independent programs concurrently.
    std::thread::scope(|s| {
        let handles: Vec<_> = files.iter().map(|p| s.spawn(|| check_one(p))).collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("compile thread"))
            .collect()
    })
}

/// NVRTC 12 (the CUDA 12 drivers of Colab, Kaggle and most clusters): Pascal (sm_60, no
/// `__grid_constant__`) through Hopper.
#[cfg(feature = "cuda")]
#[test]
fn cuda_kernels_compile_with_nvrtc_12() {
    let Some(nvrtc) = open_nvrtc(12) else { return };
    let failures = compile_all(&nvrtc, &[60, 75, 80, 89, 90]);
    assert!(
        failures.is_empty(),
        "NVRTC 12 compile failures:\n{}",
        failures.join("\n")
    );
}

/// NVRTC 13 (starts at sm_75): Turing through Blackwell.
#[cfg(feature = "cuda")]
#[test]
fn cuda_kernels_compile_with_nvrtc_13() {
    let Some(nvrtc) = open_nvrtc(13) else { return };
    let failures = compile_all(&nvrtc, &[75, 80, 86, 89, 90, 100, 120]);
    assert!(
        failures.is_empty(),
        "NVRTC 13 compile failures:\n{}",
        failures.join("\n")
    );
}

/// The compile error names the file, the line and quotes the source line.
#[cfg(feature = "cuda")]
#[test]
fn nvrtc_errors_quote_the_source_line() {
    use minitorch::backend::cuda::runtime::{self, NvrtcSource, Output};

    let nvrtc = match runtime::load_nvrtc(None) {
        Ok((n, _)) => n,
        Err(e) => {
            assert!(
                !nvrtc_required(),
                "MINITORCH_REQUIRE_NVRTC is set but NVRTC is unavailable: {e}"
            );
            skip(&format!("NVRTC error test: {e}"), false, "");
            return;
        }
    };
    let program = NvrtcSource {
        name: "broken.cu",
        source: "#include \"indexing.cuh\"\nextern \"C\" __global__ void k(float* out) {\n    out[0] = undefined_name;\n}\n",
        headers: &minitorch::backend::cuda::kernels::HEADERS,
        include_dirs: &[],
    };
    let err = program
        .compile(&nvrtc, 90, Output::Ptx)
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.cu(3)"), "{err}");
    assert!(err.contains("out[0] = undefined_name;"), "{err}");
}

/// With no GPU the backend is a quick `DeviceUnavailable` error; with one, a few ops
/// (strided, broadcast, every kernel family, sizes off the tile edges) agree with the CPU.
#[cfg(feature = "cuda")]
#[test]
fn cuda_backend_is_unavailable_or_agrees_with_cpu() {
    use minitorch::{BinaryOp, Device, Error, Layout, ReduceOp, UnaryOp};

    let started = std::time::Instant::now();
    let gpu = match Device::Cuda.backend() {
        Ok(b) => b,
        Err(e) => {
            assert!(matches!(e, Error::DeviceUnavailable { .. }), "{e}");
            assert!(
                started.elapsed().as_secs() < 10,
                "giving up took {:?}",
                started.elapsed()
            );
            skip(
                &format!("cuda backend checks: {e}"),
                cuda_required(),
                "MINITORCH_REQUIRE_BACKENDS",
            );
            return;
        }
    };
    println!("cuda backend: {}", gpu.describe());
    let cpu = Device::Cpu.backend().unwrap();
    let data = |n: usize| {
        (0..n)
            .map(|i| ((i * 7919) % 113) as f32 / 29.0 - 1.7)
            .collect::<Vec<f32>>()
    };
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let ok =
                (x - y).abs() <= 1e-3 * (1.0 + y.abs()) || (x.is_nan() && y.is_nan()) || x == y;
            assert!(ok, "{what}: element {i}: cuda {x} vs cpu {y}");
        }
    };
    let (xa, xb) = (data(5 * 7 * 9), data(9 * 70));
    let (ga, gb) = (gpu.upload(&xa).unwrap(), gpu.upload(&xb).unwrap());
    let (ca, cb) = (cpu.upload(&xa).unwrap(), cpu.upload(&xb).unwrap());
    // A permuted view: [9, 7, 5] of the [5, 7, 9] storage, offset 0.
    let perm = Layout::new(vec![9, 7, 5], vec![1, 9, 63], 0).unwrap();
    for op in UnaryOp::ALL {
        let g = gpu.download(&gpu.map(op, &ga, &perm).unwrap()).unwrap();
        let c = cpu.download(&cpu.map(op, &ca, &perm).unwrap()).unwrap();
        close(&g, &c, op.name());
    }
    // zip of [5, 7, 9] with a broadcast row of b: [5, 7, 9] strides [0, 0, 1].
    let al = Layout::contiguous(&[5, 7, 9]);
    let bl = Layout::new(vec![5, 7, 9], vec![0, 0, 1], 3).unwrap();
    for op in BinaryOp::ALL {
        let g = gpu
            .download(&gpu.zip(op, &ga, &al, &gb, &bl).unwrap())
            .unwrap();
        let c = cpu
            .download(&cpu.zip(op, &ca, &al, &cb, &bl).unwrap())
            .unwrap();
        close(&g, &c, op.name());
    }
    for op in ReduceOp::ALL {
        for dim in 0..3 {
            for l in [&al, &perm] {
                let g = gpu.download(&gpu.reduce(op, &ga, l, dim).unwrap()).unwrap();
                let c = cpu.download(&cpu.reduce(op, &ca, l, dim).unwrap()).unwrap();
                close(&g, &c, op.name());
            }
        }
    }
    // Batched matmul [5, 7, 9] @ [5, 9, 70] with b broadcast over the batch.
    let bm = Layout::new(vec![5, 9, 70], vec![0, 70, 1], 0).unwrap();
    let g = gpu
        .download(&gpu.matmul(&ga, &al, &gb, &bm).unwrap())
        .unwrap();
    let c = cpu
        .download(&cpu.matmul(&ca, &al, &cb, &bm).unwrap())
        .unwrap();
    close(&g, &c, "matmul");
    let full = gpu.download(&gpu.full(1000, 2.5).unwrap()).unwrap();
    assert!(full.iter().all(|&v| v == 2.5));
}

/// The kernels run on the CPU under the library's emulation of CUDA (the cuda-emu
/// device's `cuda_host.hpp`: a block's threads as fibers, `__syncthreads` switching between
/// them, `__shared__` as static storage), compiled with the host C++ compiler, and agree with naive loops: reduce over lengths 0 to 1000 (more than one pass of 256 threads), matmul at sizes off
/// the tile edges, transposed inputs, broadcast batches, k = 0, and grids smaller than the
/// work (the grid-stride loops), and the math functions' ULP bounds. (map and zip are
/// generated kernels: `generated_fused_kernels_run_in_cpu_emulation` runs every op.) This
/// checks the kernels' logic where no GPU is available.
/// Skipped (with a message) when no C++ compiler is found.
#[test]
fn cuda_kernels_run_in_cpu_emulation() {
    // The generator's expected values come from the Rust reference.
    let key = minitorch::backend::random::key(42, 7);
    let want: Vec<String> = (0..1500u64)
        .map(|i| format!("{:e}f", minitorch::backend::random::uniform(key, i)))
        .collect();
    let source = format!(
        "{EMULATION_CPP}\nconst unsigned RANDOM_KEY[2] = {{{}u, {}u}};\nconst unsigned RANDOM_LEN = {};\nconst float RANDOM_WANT[] = {{{}}};\n",
        key[0],
        key[1],
        want.len(),
        want.join(", ")
    );
    let Some(run) = build_and_run(&source, "emu", "-ffp-contract=fast") else {
        return;
    };
    let out = String::from_utf8_lossy(&run.stdout);
    println!("{out}");
    assert!(
        run.status.success() && out.contains("\n0 failures"),
        "kernel emulation failed:\n{out}"
    );
}

/// Compile `source` (with `cuda/` and the emulation header on the include path and
/// `contract` as the FMA contraction flag) with the host C++ compiler and run it; None
/// (printed as SKIPPED, or a failure when required) without a compiler.
fn build_and_run(source: &str, name: &str, contract: &str) -> Option<std::process::Output> {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    let dir = std::env::var_os("MINITORCH_CUDA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda"));
    let compiler = ["c++", "g++", "clang++"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(compiler) = compiler else {
        skip(
            &format!("{name}: no C++ compiler (c++, g++ or clang++) found"),
            emulation_required(),
            "MINITORCH_REQUIRE_NVRTC",
        );
        return None;
    };
    let work = std::env::temp_dir().join(format!("minitorch-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let (src, exe) = (work.join(format!("{name}.cpp")), work.join(name));
    std::fs::write(&src, source).unwrap();
    let built = Command::new(compiler)
        .args([
            "-std=c++17",
            "-O1",
            contract,
            "-U_FORTIFY_SOURCE",
            "-x",
            "c++",
        ])
        .arg("-I")
        .arg(&dir)
        .arg("-I")
        .arg(emulator_dir())
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    if !built.status.success() {
        let err = String::from_utf8_lossy(&built.stderr);
        panic!("compiling the CPU emulation {name} failed:\n{err}\n{source}");
    }
    let run = Command::new(&exe).output().unwrap();
    let _ = std::fs::remove_dir_all(&work);
    Some(run)
}

/// The directory of the library's host emulation header (`cuda_host.hpp`).
fn emulator_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/backend/cuda/emulator")
}

/// Host C++ that emulates the CUDA features the kernels use and checks every kernel family
/// against naive loops (see `cuda_kernels_run_in_cpu_emulation`).
const EMULATION_CPP: &str = r##"// The kernels under the library's host emulation of CUDA (the cuda-emu device's
// src/backend/cuda/emulator/cuda_host.hpp: a block's threads as fibers, __syncthreads
// switching between them, __shared__ as function statics), launched from plain C++ here.
#include "cuda_host.hpp"
#include <cstdio>
#include <functional>
#include <vector>
inline void emu_launch(dim3 grid, dim3 block, std::function<void()> body) {
    emu::Launch l{{grid.x, grid.y, grid.z}, {block.x, block.y, block.z}, 0};
    int status = emu::run_grid(l, [](void* f) { (*static_cast<std::function<void()>*>(f))(); }, &body);
    if (status != emu::OK) { printf("FAIL launch status %d\n", status); std::exit(1); }
}
#include <cstdio>
#include <functional>
#include <string>
#include <algorithm>
#include <random>
#include <cassert>
#include "math.cuh"
#include "reduce.cu"
#include "matmul.cu"
#include "pad.cu"
#include "random.cu"
static int failures = 0;
static std::mt19937 rng(42);
std::vector<float> rnd(size_t n) { std::uniform_real_distribution<float> d(-2, 2); std::vector<float> v(n); for (auto& x : v) x = d(rng); return v; }
void check(const char* what, const std::vector<float>& got, const std::vector<float>& want, float tol = 1e-4f) {
    if (got.size() != want.size()) { printf("FAIL %s size\n", what); failures++; return; }
    for (size_t i = 0; i < got.size(); ++i) {
        float g = got[i], w = want[i];
        bool ok = (std::isnan(g) && std::isnan(w)) || g == w || std::fabs(g - w) <= tol * (1 + std::fabs(w));
        if (!ok) { printf("FAIL %s at %zu: %g vs %g\n", what, i, g, w); failures++; return; }
    }
    printf("ok   %s (%zu)\n", what, got.size());
}
struct L { std::vector<u32> shape, strides; u32 offset; };
u32 pos_of(const L& l, u32 ord) { u32 p = l.offset; for (int d = (int)l.shape.size() - 1; d >= 0; --d) { p += (ord % l.shape[d]) * l.strides[d]; ord /= l.shape[d]; } return p; }
u32 size_of(const std::vector<u32>& s) { u32 n = 1; for (auto d : s) n *= d; return n; }

void reduce_case(const char* name, std::vector<u32> shape, std::vector<u32> strides, u32 off, u32 dim, bool contig, int op) {
    u32 r = shape.size(); u32 extent = off + 1; for (u32 d = 0; d < r; ++d) if (shape[d]) extent += (shape[d] - 1) * strides[d];
    auto x = rnd(extent + 1);
    for (auto& v : x) v = 0.5f + 0.5f * std::fabs(v) ; // positive, prod stays finite-ish
    std::vector<u32> os = shape; os[dim] = 1; u32 out_n = size_of(os), len = shape[dim];
    Meta m{}; m.w[0] = out_n; m.w[1] = r; m.w[2] = off; m.w[3] = dim; m.w[4] = len;
    u32 inner = 1; for (u32 d = dim + 1; d < r; ++d) inner *= shape[d];
    m.w[5] = contig ? inner : strides[dim];
    for (u32 d = 0; d < r; ++d) { m.w[6 + d] = os[d]; m.w[6 + r + d] = strides[d]; }
    std::vector<float> out(out_n), want(out_n);
    L lo{os, strides, off};
    for (u32 o = 0; o < out_n; ++o) {
        u32 base = pos_of(lo, o);
        float acc = op == 0 ? 0.f : op == 1 ? 1.f : -INFINITY;
        for (u32 j = 0; j < len; ++j) { float v = x[base + j * strides[dim]]; acc = op == 0 ? acc + v : op == 1 ? acc * v : (acc > v ? acc : v); }
        want[o] = acc;
    }
    auto fn = [&] {
        if (op == 0) { if (contig) reduce_sum_contiguous(out.data(), x.data(), m); else reduce_sum(out.data(), x.data(), m); }
        if (op == 1) { if (contig) reduce_prod_contiguous(out.data(), x.data(), m); else reduce_prod(out.data(), x.data(), m); }
        if (op == 2) { if (contig) reduce_max_contiguous(out.data(), x.data(), m); else reduce_max(out.data(), x.data(), m); }
    };
    emu_launch({std::min(out_n, 3u) ? std::min(out_n, 3u) : 1}, {256}, fn);
    check(name, out, want, op == 1 ? 1e-3f : 1e-4f);
    // The same reduction with one thread per output (reduce_serial_*), on a grid smaller
    // than the outputs when there are more than 256 (the grid-stride loop).
    std::fill(out.begin(), out.end(), NAN);
    auto serial = [&] {
        if (op == 0) { if (contig) reduce_serial_sum_contiguous(out.data(), x.data(), m); else reduce_serial_sum(out.data(), x.data(), m); }
        if (op == 1) { if (contig) reduce_serial_prod_contiguous(out.data(), x.data(), m); else reduce_serial_prod(out.data(), x.data(), m); }
        if (op == 2) { if (contig) reduce_serial_max_contiguous(out.data(), x.data(), m); else reduce_serial_max(out.data(), x.data(), m); }
    };
    emu_launch({1}, {256}, serial);
    std::string serial_name = std::string(name) + " (serial)";
    check(serial_name.c_str(), out, want, op == 1 ? 1e-3f : 1e-4f);
}
void test_reduce() {
    reduce_case("reduce_sum contig dim1 len 300", {3, 300, 4}, {1200, 4, 1}, 0, 1, true, 0);
    reduce_case("reduce_sum contig dim2 len 1000", {2, 1000}, {1000, 1}, 5, 1, true, 0);
    reduce_case("reduce_max contig dim0", {7, 5}, {5, 1}, 0, 0, true, 2);
    reduce_case("reduce_prod contig dim0 len1", {1, 5}, {5, 1}, 1, 0, true, 1);
    reduce_case("reduce_sum strided permuted", {300, 3, 4}, {1, 1200, 300}, 2, 0, false, 0);
    reduce_case("reduce_max strided", {4, 513}, {1, 4}, 0, 1, false, 2);
    reduce_case("reduce_prod strided len 20", {20, 3}, {3, 1}, 0, 0, false, 1);
    reduce_case("reduce_sum empty dim", {4, 0}, {0, 1}, 0, 1, true, 0);
    reduce_case("reduce_max empty dim strided", {4, 0, 2}, {2, 1, 1}, 0, 1, false, 2);
    // Many outputs of a short dimension (the shape the serial kernel is for), odd sizes.
    reduce_case("reduce_sum contig dim0 [2, 1001]", {2, 1001}, {1001, 1}, 3, 0, true, 0);
    reduce_case("reduce_max strided dim1 [777, 3] transposed", {777, 3}, {1, 777}, 1, 1, false, 2);
    reduce_case("reduce_sum broadcast input [5, 300] stride 0", {5, 300}, {0, 1}, 0, 0, false, 0);
}
void matmul_case(const char* name, u32 batch, u32 n, u32 k, u32 mm, bool at, bool bt, bool bcast, dim3 grid_cap) {
    // a: [batch, n, k] (transposed storage if at), b: [batch, k, m] (transposed if bt); b batch-broadcast if bcast.
    u32 aoff = 3, boff = 5;
    u32 ars = at ? 1 : k, acs = at ? n : 1, abs_ = n * k;
    u32 brs = bt ? 1 : mm, bcs = bt ? k : 1, bbs = bcast ? 0 : k * mm;
    auto a = rnd(aoff + batch * n * k + 1), b = rnd(boff + (bcast ? 1 : batch) * k * mm + 1);
    Meta m{}; u32* w = m.w;
    w[0] = batch; w[1] = n; w[2] = k; w[3] = mm; w[4] = 1; w[5] = aoff; w[6] = boff; w[7] = ars; w[8] = acs; w[9] = brs; w[10] = bcs;
    w[11] = batch; w[12] = abs_; w[13] = bbs;
    std::vector<float> out((size_t)batch * n * mm, NAN), want(out.size());
    for (u32 z = 0; z < batch; ++z) for (u32 i = 0; i < n; ++i) for (u32 j = 0; j < mm; ++j) {
        double acc = 0; for (u32 q = 0; q < k; ++q) acc += (double)a[aoff + z * abs_ + i * ars + q * acs] * b[boff + z * bbs + q * brs + j * bcs];
        want[(size_t)z * n * mm + i * mm + j] = (float)acc;
    }
    dim3 grid{(mm + 63) / 64, std::min((n + 63) / 64, grid_cap.y), std::min(batch, grid_cap.z)};
    if (grid.x == 0) grid.x = 1; if (grid.y == 0) grid.y = 1; if (grid.z == 0) grid.z = 1;
    emu_launch(grid, {256}, [&] { matmul(out.data(), a.data(), b.data(), m); });
    check(name, out, want, 1e-4f);
}
void test_matmul() {
    matmul_case("matmul 1x1x1", 1, 1, 1, 1, false, false, false, {1, 65535, 65535});
    matmul_case("matmul 65x17x130", 1, 65, 17, 130, false, false, false, {1, 65535, 65535});
    matmul_case("matmul 64x64x64", 1, 64, 64, 64, false, false, false, {1, 65535, 65535});
    matmul_case("matmul 70x33x67 A^T", 1, 70, 33, 67, true, false, false, {1, 65535, 65535});
    matmul_case("matmul 70x33x67 B^T", 1, 70, 33, 67, false, true, false, {1, 65535, 65535});
    matmul_case("matmul batch 3 both T, B broadcast", 3, 20, 40, 12, true, true, true, {1, 65535, 65535});
    matmul_case("matmul k=0", 2, 5, 0, 6, false, false, false, {1, 65535, 65535});
    matmul_case("matmul y/z grid loops", 3, 150, 20, 8, false, false, true, {1, 1, 2});
}
// matmul_fast: row-major packed operands, whole 128 x 128 tiles, k a multiple of 8,
// offsets and batch strides multiples of 4 (what matmul_fast_applies admits).
void matmul_fast_case(const char* name, u32 batch, u32 n, u32 k, u32 mm, bool bcast, dim3 grid_cap) {
    u32 aoff = 4, boff = 8, abs_ = n * k, bbs = bcast ? 0 : k * mm;
    auto a = rnd(aoff + batch * n * k), b = rnd(boff + (bcast ? 1 : batch) * k * mm);
    Meta m{}; u32* w = m.w;
    w[0] = batch; w[1] = n; w[2] = k; w[3] = mm; w[4] = 1; w[5] = aoff; w[6] = boff; w[7] = k; w[8] = 1; w[9] = mm; w[10] = 1;
    w[11] = batch; w[12] = abs_; w[13] = bbs;
    std::vector<float> out((size_t)batch * n * mm, NAN), want(out.size());
    for (u32 z = 0; z < batch; ++z) for (u32 i = 0; i < n; ++i) for (u32 j = 0; j < mm; ++j) {
        double acc = 0; for (u32 q = 0; q < k; ++q) acc += (double)a[aoff + z * abs_ + i * k + q] * b[boff + z * bbs + q * mm + j];
        want[(size_t)z * n * mm + i * mm + j] = (float)acc;
    }
    dim3 grid{mm / 128, std::min(n / 128, grid_cap.y), std::min(batch, grid_cap.z)};
    emu_launch(grid, {256}, [&] { matmul_fast(out.data(), a.data(), b.data(), m); });
    check(name, out, want, 1e-4f);
}
void test_matmul_fast() {
    matmul_fast_case("matmul_fast 128x8x128", 1, 128, 8, 128, false, {1, 65535, 65535});
    matmul_fast_case("matmul_fast 256x40x384", 1, 256, 40, 384, false, {1, 65535, 65535});
    matmul_fast_case("matmul_fast batch 3, B broadcast, y/z grid loops", 3, 256, 16, 128, true, {1, 1, 2});
}
// ULP distance on the ordered-integer line (NaN matches NaN only).
long long ulp_dist(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : (1LL << 40);
    auto ord = [](float x) { int i; std::memcpy(&i, &x, 4); return i < 0 ? (long long)INT32_MIN - i : (long long)i; };
    long long d = ord(a) - ord(b);
    return d < 0 ? -d : d;
}
double sigmoid64(double x) { if (x >= 0) return 1 / (1 + std::exp(-x)); double e = std::exp(x); return e / (1 + e); }
// math.cuh's log, exp and sigmoid against f64 rounded to f32, on 2^20 inputs spread evenly
// over all bit patterns (every exponent, both signs, subnormals, inf, NaN) and 2^20 in
// [0.5, 2] (log near 1): at most 2 ULP, as shaders/math.wgsl on the wgpu backend.
void test_math() {
    long long worst[4] = {0, 0, 0, 0}; unsigned at[4] = {0, 0, 0, 0};
    auto one = [&](unsigned bits) {
        float x = __uint_as_float(bits);
        float got[4] = {log_f(x), exp_f(x), sigmoid_f(x), tanh_f(x)};
        float want[4] = {(float)std::log((double)x), (float)std::exp((double)x), (float)sigmoid64((double)x), (float)std::tanh((double)x)};
        for (int i = 0; i < 4; ++i) { long long d = ulp_dist(got[i], want[i]); if (d > worst[i]) { worst[i] = d; at[i] = bits; } }
    };
    for (unsigned i = 0; i < (1u << 20); ++i) one(i * 4096u + (i * 2654435761u >> 20));
    for (unsigned i = 0; i < (1u << 20); ++i) one(0x3f000000u + i * 8u + (i & 7u));
    one(0x7f800000u); one(0xff800000u); one(0x7fc00000u); one(0u); one(0x80000000u); one(1u); one(0x807fffffu);
    const char* names[4] = {"log", "exp", "sigmoid", "tanh"};
    for (int i = 0; i < 4; ++i) {
        bool ok = worst[i] <= 2;
        printf("%s math %s: max %lld ULP over 2^21 inputs (at bits 0x%08x)\n", ok ? "ok  " : "FAIL", names[i], worst[i], at[i]);
        if (!ok) failures++;
    }
}
// pad: the reference scatters each input element to lo + i * step (the kernel gathers).
void pad_case(const char* name, L l, std::vector<u32> out_shape, std::vector<int> lo, std::vector<u32> step, dim3 grid) {
    auto x = rnd(600);
    u32 r = (u32)l.shape.size(), n = size_of(out_shape), nin = size_of(l.shape);
    Meta m{}; m.w[0] = n; m.w[1] = r; m.w[2] = l.offset;
    for (u32 d = 0; d < r; ++d) { m.w[3 + d] = out_shape[d]; m.w[3 + r + d] = l.shape[d]; m.w[3 + 2 * r + d] = l.strides[d]; m.w[3 + 3 * r + d] = (u32)lo[d]; m.w[3 + 4 * r + d] = step[d]; }
    std::vector<float> out(n, -7.0f), want(n, 0.0f);
    for (u32 i = 0; i < nin; ++i) {
        u32 rem = i; long long o = 0; bool in = true; long long mul = 1;
        for (int d = (int)r - 1; d >= 0; --d) {
            long long idx = rem % l.shape[d]; rem /= l.shape[d];
            long long at = lo[d] + idx * (long long)step[d];
            if (at < 0 || at >= (long long)out_shape[d]) in = false;
            o += at * mul; mul *= out_shape[d];
        }
        if (in) want[o] = x[pos_of(l, i)];
    }
    emu_launch(grid, {256}, [&] { pad_any(out.data(), x.data(), m); });
    check(name, out, want, 0.0f);
}
void test_pad() {
    pad_case("pad conv input", L{{2, 3, 5, 4}, {60, 20, 4, 1}, 0}, {2, 3, 7, 6}, {0, 0, 1, 1}, {1, 1, 1, 1}, {2});
    pad_case("pad dilate and crop, permuted", L{{2, 3, 4, 5}, {1, 2, 30, 6}, 7}, {2, 3, 9, 8}, {0, 0, -1, 2}, {1, 1, 3, 2}, {1});
    pad_case("pad 1-d crop both ends", L{{9}, {2}, 1}, {5}, {-2}, {1}, {1});
}
extern const unsigned RANDOM_KEY[2];
extern const float RANDOM_WANT[];
extern const unsigned RANDOM_LEN;
void test_random() {
    std::vector<float> out(RANDOM_LEN);
    Meta m{}; m.w[0] = RANDOM_LEN; m.w[1] = 0; m.w[2] = RANDOM_KEY[0]; m.w[3] = RANDOM_KEY[1];
    emu_launch({2}, {256}, [&] { random_uniform(out.data(), m); });
    check("random_uniform vs backend::random::uniform", out, std::vector<float>(RANDOM_WANT, RANDOM_WANT + RANDOM_LEN), 0.0f);
}
int main() { test_reduce(); test_matmul(); test_matmul_fast(); test_math(); test_pad(); test_random(); printf("%d failures\n", failures); return failures != 0; }
"##;

// ----- generated (fused) kernels -------------------------------------------------------------

/// Programs whose generated kernels the tests below check: the course's loss, its
/// gradient, a two-output SGD step with momentum, and a linear layer's epilogue.
fn fused_programs() -> Vec<(&'static str, minitorch::backend::fused::Program)> {
    use minitorch::backend::fused::ProgramBuilder;
    use minitorch::UnaryOp;
    let loss = {
        let mut b = ProgramBuilder::new();
        let (out, y) = (b.input(0), b.input(1));
        let m1 = b.constant(-1.0);
        let oy = b.mul(out, y);
        let o1 = b.add(out, m1);
        let y1 = b.add(y, m1);
        let t = b.mul(o1, y1);
        let prob = b.add(oy, t);
        let guard = b.param(1);
        let pg = b.add(prob, guard);
        let log = b.unary(UnaryOp::Log, pg);
        let neg = b.unary(UnaryOp::Neg, log);
        let scale = b.param(0);
        let r = b.mul(neg, scale);
        b.build(&[r])
    };
    let grad = loss
        .gradient(0, &[0, 1])
        .expect("the loss is differentiable");
    let sgd = {
        let mut b = ProgramBuilder::new();
        let (p, g, v) = (b.input(0), b.input(1), b.input(2));
        let (lr, m) = (b.param(0), b.param(1));
        let vm = b.mul(v, m);
        let nv = b.add(vm, g);
        let st = b.mul(nv, lr);
        let np = b.add(p, st);
        b.build(&[np, nv])
    };
    let epilogue = {
        let mut b = ProgramBuilder::new();
        let (acc, bias) = (b.input(0), b.input(1));
        let z = b.add(acc, bias);
        let s = b.unary(UnaryOp::Sigmoid, z);
        b.build(&[s])
    };
    vec![
        ("loss", loss),
        ("loss gradient", grad),
        ("sgd momentum", sgd),
        ("linear sigmoid epilogue", epilogue),
    ]
}

/// The one-op programs `map` and `zip` run on the GPU backends: every row of the op table.
fn op_programs() -> Vec<(&'static str, minitorch::backend::fused::Program)> {
    use minitorch::backend::fused::Program;
    use minitorch::{BinaryOp, UnaryOp};
    let unary = UnaryOp::ALL
        .iter()
        .map(|&op| (op.name(), Program::of_unary(op).clone()));
    let binary = BinaryOp::ALL
        .iter()
        .map(|&op| (op.name(), Program::of_binary(op).clone()));
    unary.chain(binary).collect()
}

/// Compile every generated kernel variant with `nvrtc`: the fused programs for each of
/// `archs` to PTX and CUBIN, and the one-op programs of `map` and `zip` (every row of the
/// op table) for the first of `archs` to CUBIN; each defines its entry point. Returns the
/// failures.
#[cfg(feature = "cuda")]
fn compile_generated(nvrtc: &minitorch::backend::cuda::nvrtc::Nvrtc, archs: &[i32]) -> Vec<String> {
    use minitorch::backend::cuda::kernels::HEADERS;
    use minitorch::backend::cuda::runtime::{NvrtcSource, Output};
    use minitorch::backend::fused::{cuda_source, entry_point, Variant};

    let (major, minor) = nvrtc.version();
    let jobs: Vec<(&str, minitorch::backend::fused::Program, Variant, i32)> = {
        let mut jobs = Vec::new();
        for (name, p) in fused_programs() {
            let variants: &[Variant] = if name.contains("epilogue") {
                &[Variant::Matmul, Variant::Strided]
            } else {
                &[Variant::Strided, Variant::Contiguous]
            };
            for &v in variants {
                for &arch in archs {
                    jobs.push((name, p.clone(), v, arch));
                }
            }
        }
        // Every program of the catalog (the image network, softmax, the losses, Adam and
        // AdamW, the widest 8-in 8-out kernel), in each variant it runs as, every arch.
        let catalog = minitorch::kernel_catalog::representative_programs()
            .expect("the catalog's workloads run on the CPU");
        for (_, p, epilogue) in catalog {
            let variants: &[Variant] = if epilogue {
                &[Variant::Matmul]
            } else {
                &[Variant::Strided, Variant::Contiguous]
            };
            for &v in variants {
                for &arch in archs {
                    // PTX for every arch; CUBIN (ptxas) for the oldest and newest.
                    let name = if arch == archs[0] || Some(&arch) == archs.last() {
                        "catalog"
                    } else {
                        "catalog (PTX)"
                    };
                    jobs.push((name, p.clone(), v, arch));
                }
            }
        }
        for (name, p) in op_programs() {
            for v in [Variant::Strided, Variant::Contiguous] {
                jobs.push((name, p.clone(), v, archs[0]));
            }
        }
        jobs
    };
    let check_one =
        |(name, p, v, arch): &(&str, minitorch::backend::fused::Program, Variant, i32)| {
            let mut failures = Vec::new();
            let source = cuda_source(p, *v);
            if source.contains("__grid_constant__") {
                failures.push(format!(
                    "{name} {v:?}: a literal __grid_constant__ (use GRID_CONSTANT)"
                ));
            }
            let program = NvrtcSource {
                name: "fused.cu",
                source: &source,
                headers: &HEADERS,
                include_dirs: &[],
            };
            match program.compile(nvrtc, *arch, Output::Ptx) {
                Ok(image) => {
                    let ptx = String::from_utf8_lossy(&image);
                    if !ptx.contains(&format!(".entry {}(", entry_point(*v))) {
                        failures.push(format!("{name} {v:?} sm_{arch}: entry point missing"));
                    }
                }
                Err(e) => failures.push(format!("{name} {v:?} sm_{arch}: {e}\n{source}")),
            }
            if name.ends_with("(PTX)") {
                return failures;
            }
            if let Err(e) = program.compile(nvrtc, *arch, Output::Cubin) {
                failures.push(format!("{name} {v:?} sm_{arch} (CUBIN): {e}"));
            }
            failures
        };
    let start = std::time::Instant::now();
    // Two threads: NVRTC compiles are independent.
    let failures: Vec<String> = std::thread::scope(|s| {
        let (even, odd): (Vec<_>, Vec<_>) = jobs.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let hs: Vec<_> = [even, odd]
            .into_iter()
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .flat_map(|(_, j)| check_one(j))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("compile thread"))
            .collect()
    });
    println!(
        "NVRTC {major}.{minor}: {} generated kernels for {archs:?} in {:.1} s",
        jobs.len(),
        start.elapsed().as_secs_f64()
    );
    failures
}

/// Every generated kernel variant compiles with NVRTC 12, Pascal (sm_60, where
/// `__grid_constant__` does not exist) included.
#[cfg(feature = "cuda")]
#[test]
fn generated_fused_kernels_compile_with_nvrtc_12() {
    let Some(nvrtc) = open_nvrtc(12) else {
        return;
    };
    let failures = compile_generated(&nvrtc, &[60, 75, 80, 89, 90]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The self-contained sources `examples/dump_kernels.rs` writes (headers inlined) compile
/// alone with NVRTC 12 for Pascal (sm_60), the oldest target: hand-written families,
/// `map` and `zip` of every op-table row, and the generated fused kernels.
#[cfg(feature = "cuda")]
#[test]
fn dumped_kernels_compile_alone_with_nvrtc_12() {
    use minitorch::backend::cuda::runtime::{NvrtcSource, Output};
    use minitorch::backend::gpu::sources::all_kernels;

    let Some(nvrtc) = open_nvrtc(12) else {
        return;
    };
    let programs = minitorch::kernel_catalog::representative_programs()
        .expect("the catalog's workloads run on the CPU");
    let cu: Vec<_> = all_kernels(&programs)
        .into_iter()
        .filter(|k| k.file.ends_with(".cu"))
        .collect();
    assert!(cu.len() > 2 * 16, "{} CUDA sources", cu.len());
    let failures: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = cu
            .chunks(cu.len().div_ceil(2))
            .map(|part| {
                let nvrtc = &nvrtc;
                s.spawn(move || {
                    part.iter()
                        .filter_map(|k| {
                            let program = NvrtcSource {
                                name: &k.file,
                                source: &k.source,
                                headers: &[],
                                include_dirs: &[],
                            };
                            program
                                .compile(nvrtc, 60, Output::Ptx)
                                .err()
                                .map(|e| format!("{}: {e}", k.file))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("compile thread"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every generated kernel variant compiles with NVRTC 13 (starts at sm_75).
#[cfg(feature = "cuda")]
#[test]
fn generated_fused_kernels_compile_with_nvrtc() {
    let Some(nvrtc) = open_nvrtc(13) else {
        return;
    };
    let failures = compile_generated(&nvrtc, &[75, 80, 86, 89, 90, 100, 120]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The generated CUDA kernels run under the CPU emulation of
/// `cuda_kernels_run_in_cpu_emulation` and agree with `Program::eval` (elementwise, strided
/// with a transposed and a broadcast input, contiguous at offsets, two outputs; the fused
/// programs, and `map` / `zip` of every op-table row) and with a
/// naive matmul followed by the epilogue (batch of 2 with a broadcast operand, sizes off
/// the 16-tile edges). Skipped (with a message) without a C++ compiler.
#[test]
fn generated_fused_kernels_run_in_cpu_emulation() {
    use std::fmt::Write as _;

    use minitorch::backend::fused::{cuda_source, elementwise_meta, matmul_meta, Variant};
    use minitorch::Layout;

    let vals = |n: usize, seed: u32| -> Vec<f32> {
        // Deterministic values in (0.05, 0.95): valid probabilities, labels and weights.
        (0..n)
            .map(|i| {
                0.05 + 0.9 * (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32
                    / 1000.0
            })
            .collect()
    };
    let arr = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:?}f"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let meta_arr = |shape: &[usize], ls: &[&Layout], params: &[f32]| {
        let mut w = Vec::new();
        elementwise_meta(shape, ls, params, |_, v| {
            w.push(v as u32);
            Ok(())
        })
        .unwrap();
        w
    };
    let pos = |l: &Layout, ord: usize| -> usize {
        let mut idx = vec![0; l.dims()];
        minitorch::layout::to_index(ord, l.shape(), &mut idx);
        l.position(&idx)
    };

    let mut kernels = String::new();
    let mut main = String::new();
    let mut expected: Vec<(String, Vec<f32>)> = Vec::new();
    let mut programs = fused_programs();
    programs.extend(op_programs());
    for (k, (name, p)) in programs.iter().enumerate() {
        let matmul = name.contains("epilogue");
        let variants: &[Variant] = if matmul {
            &[Variant::Matmul]
        } else {
            &[Variant::Strided, Variant::Contiguous]
        };
        for (vi, &v) in variants.iter().enumerate() {
            let ns = format!("k{k}v{vi}");
            let src = cuda_source(p, v)
                .replace("#include \"indexing.cuh\"", "")
                .replace("#include \"math.cuh\"", "")
                .replace("extern \"C\" ", "");
            let _ = writeln!(kernels, "namespace {ns} {{\n{src}\n}}");
            let label = format!("{name} {v:?}");
            let params: Vec<f32> = (0..p.params()).map(|i| 0.5 + i as f32 * 0.25).collect();
            if !matmul {
                // Shape [5, 7]; input 0 transposed from a [7, 5] storage at offset 3, input 1
                // a broadcast row, the others contiguous at offset 2 (Contiguous: all at
                // offsets 1 + j).
                let shape = [5usize, 7];
                let layouts: Vec<Layout> = (0..p.inputs())
                    .map(|j| match (v, j) {
                        (Variant::Contiguous, _) => {
                            Layout::new(vec![5, 7], vec![7, 1], 1 + j).unwrap()
                        }
                        (_, 0) => Layout::new(vec![5, 7], vec![1, 5], 3).unwrap(),
                        (_, 1) => Layout::new(vec![5, 7], vec![0, 1], 0).unwrap(),
                        _ => Layout::new(vec![5, 7], vec![7, 1], 2).unwrap(),
                    })
                    .collect();
                let lrefs: Vec<&Layout> = layouts.iter().collect();
                let data: Vec<Vec<f32>> = (0..p.inputs())
                    .map(|j| vals(40, j as u32 * 7 + 1))
                    .collect();
                let meta = meta_arr(&shape, &lrefs, &params);
                let mut want = Vec::new();
                for o in 0..p.outputs().len() {
                    for i in 0..35 {
                        let ins: Vec<f32> = (0..p.inputs())
                            .map(|j| data[j][pos(&layouts[j], i)])
                            .collect();
                        want.push(p.eval(&ins, &params)[o]);
                    }
                }
                expected.push((label.clone(), want));
                let _ = writeln!(main, "  {{");
                for (j, d) in data.iter().enumerate() {
                    let _ = writeln!(main, "    static float in{j}[] = {{{}}};", arr(d));
                }
                let outs = p.outputs().len();
                let _ = writeln!(main, "    static float out[{}][35];", outs);
                let _ = writeln!(
                    main,
                    "    Meta m{{}}; u32 w[] = {{{}}}; for (size_t i = 0; i < sizeof(w) / 4; ++i) m.w[i] = w[i];",
                    meta.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
                );
                let args: Vec<String> = (0..outs)
                    .map(|o| format!("out[{o}]"))
                    .chain((0..p.inputs()).map(|j| format!("in{j}")))
                    .collect();
                let _ = writeln!(
                    main,
                    "    emu_launch({{1}}, {{16}}, [&] {{ {ns}::fused({}, m); }});",
                    args.join(", ")
                );
                let _ = writeln!(
                    main,
                    "    printf(\"%s\", \"{label}\"); for (int o = 0; o < {outs}; ++o) for (int i = 0; i < 35; ++i) printf(\" %.9g\", out[o][i]); printf(\"\\n\");\n  }}"
                );
            } else {
                let (batch, n, kk, m) = (2usize, 9usize, 13usize, 11usize);
                let a = vals(batch * n * kk, 3);
                let b = vals(kk * m, 5);
                let bias = vals(m, 9);
                let shape = [batch, n, m];
                let bl = Layout::new(vec![batch, n, m], vec![0, 0, 1], 0).unwrap();
                let mut meta: Vec<u32> = vec![
                    n as u32, kk as u32, m as u32, 1, 0, 0, kk as u32, 1, m as u32, 1,
                ];
                meta.extend([batch as u32, (n * kk) as u32, 0]);
                meta.extend(meta_arr(&shape, &[&bl], &params));
                // The library writes the same words (the hand-written ones pin the layout).
                let al = Layout::contiguous(&[batch, n, kk]);
                let bb = Layout::new(vec![batch, kk, m], vec![0, m, 1], 0).unwrap();
                let mut from_lib = Vec::new();
                matmul_meta(&al, &bb, (n, kk, m), &shape, &[&bl], &params, |_, v| {
                    from_lib.push(v as u32);
                    Ok(())
                })
                .unwrap();
                assert_eq!(
                    from_lib, meta,
                    "fused::matmul_meta: the words the kernel reads"
                );
                let mut want = Vec::new();
                for z in 0..batch {
                    for i in 0..n {
                        for j in 0..m {
                            let dot: f64 = (0..kk)
                                .map(|q| a[z * n * kk + i * kk + q] as f64 * b[q * m + j] as f64)
                                .sum();
                            want.push(p.eval(&[dot as f32, bias[j]], &params)[0]);
                        }
                    }
                }
                expected.push((label.clone(), want));
                let size = batch * n * m;
                let _ = writeln!(
                    main,
                    "  {{\n    static float a[] = {{{}}};\n    static float b[] = {{{}}};\n    static float bias[] = {{{}}};\n    static float out[{size}];",
                    arr(&a),
                    arr(&b),
                    arr(&bias)
                );
                let _ = writeln!(
                    main,
                    "    Meta m{{}}; u32 w[] = {{{}}}; for (size_t i = 0; i < sizeof(w) / 4; ++i) m.w[i] = w[i];",
                    meta.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
                );
                let _ = writeln!(
                    main,
                    "    emu_launch({{1}}, {{64}}, [&] {{ {ns}::fused_matmul(out, a, b, bias, m); }});\n    printf(\"%s\", \"{label}\"); for (int i = 0; i < {size}; ++i) printf(\" %.9g\", out[i]); printf(\"\\n\");\n  }}"
                );
            }
        }
    }
    let prelude_end = EMULATION_CPP
        .find("#include \"math.cuh\"")
        .expect("the emulation prelude");
    let source = format!(
        "{}\n#include \"indexing.cuh\"\n#include \"math.cuh\"\n{kernels}\nint main() {{\n{main}  return 0;\n}}\n",
        &EMULATION_CPP[..prelude_end]
    );
    let Some(run) = build_and_run(&source, "fused_emu", "-ffp-contract=off") else {
        return;
    };
    assert!(run.status.success(), "emulation failed");
    let out = String::from_utf8_lossy(&run.stdout);
    let mut checked = 0;
    for (label, want) in &expected {
        let line = out
            .lines()
            .find(|l| l.starts_with(label.as_str()))
            .unwrap_or_else(|| panic!("no output for {label}:\n{out}"));
        let got: Vec<f32> = line[label.len()..]
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(got.len(), want.len(), "{label}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{label}: element {i}: emulated kernel gives {g}, Program::eval {w}"
            );
        }
        println!("ok   {label} ({} values)", got.len());
        checked += 1;
    }
    // Two variants per program, one for the epilogue.
    assert_eq!(checked, 2 * programs.len() - 1);
}
