//! Every kernel source the GPU backends compile: the hand-written families of `shaders/`
//! (WGSL) and `cuda/` (CUDA C), embedded at build time so a binary needs no source tree,
//! and the kernels generated from the op table and from fused programs
//! ([`crate::backend::fused`]). [`all_kernels`] lists each kernel variant as one
//! self-contained source (CUDA headers inlined), which `examples/dump_kernels.rs` writes
//! to files so a student can read, or compile with their own NVRTC, the kernel that ran.

use crate::backend::fused::{self, Program, Variant};
use crate::backend::{BinaryOp, ReduceOp, UnaryOp};

/// `shaders/indexing.wgsl`: positions from indices and strides, in front of every kernel.
pub const WGSL_INDEXING: &str = include_str!("../../../shaders/indexing.wgsl");
/// `shaders/math.wgsl`: the transcendental functions of the op table (log, exp, sigmoid,
/// tanh within 2 ULP), in front of every generated kernel.
pub const WGSL_MATH: &str = include_str!("../../../shaders/math.wgsl");
/// `shaders/reduce.wgsl`: the reduce family, `OPNAME` replaced by a [`ReduceOp`] name.
pub const WGSL_REDUCE: &str = include_str!("../../../shaders/reduce.wgsl");
/// `shaders/matmul.wgsl`: the tiled matmul family (`matmul`, `matmul_fast`).
pub const WGSL_MATMUL: &str = include_str!("../../../shaders/matmul.wgsl");
/// `shaders/pad.wgsl`: zero padding with dilation (`pad_any`), the convolution family.
pub const WGSL_PAD: &str = include_str!("../../../shaders/pad.wgsl");
/// `shaders/random.wgsl`: the counter-based generator (`random_uniform`).
pub const WGSL_RANDOM: &str = include_str!("../../../shaders/random.wgsl");

/// The headers every CUDA kernel includes, as `(include name, source)`.
pub const CUDA_HEADERS: [(&str, &str); 2] = [
    ("indexing.cuh", include_str!("../../../cuda/indexing.cuh")),
    ("math.cuh", include_str!("../../../cuda/math.cuh")),
];
/// `cuda/reduce.cu`: the reduce family, every op instantiated.
pub const CUDA_REDUCE: &str = include_str!("../../../cuda/reduce.cu");
/// `cuda/matmul.cu`: the tiled matmul family (`matmul`, `matmul_fast`).
pub const CUDA_MATMUL: &str = include_str!("../../../cuda/matmul.cu");
/// `cuda/pad.cu`: zero padding with dilation (`pad_any`), the convolution family.
pub const CUDA_PAD: &str = include_str!("../../../cuda/pad.cu");
/// `cuda/random.cu`: the counter-based generator (`random_uniform`).
pub const CUDA_RANDOM: &str = include_str!("../../../cuda/random.cu");

/// First line of the block of `shaders/reduce.wgsl` and `cuda/reduce.cu` generated from
/// the reduce table.
const REDUCE_BLOCK_BEGIN: &str = "// BEGIN reduce table:";
/// Last line of that block.
const REDUCE_BLOCK_END: &str = "// END reduce table";

fn reduce_block_header() -> String {
    format!(
        "{REDUCE_BLOCK_BEGIN} one entry per row of src/backend/op_table.rs, written by\n\
         // src/backend/gpu/sources.rs (MINITORCH_UPDATE_SOURCES=1 cargo test --lib gpu::sources).\n"
    )
}

/// The reduce family's op definitions in WGSL, generated from the reduce table:
/// `identity_<op>()` and `combine_<op>(acc, v)` for every row (the block at the end of
/// `shaders/reduce.wgsl`, which the entry points `reduce_OPNAME` call).
pub fn reduce_ops_wgsl() -> String {
    let mut out = reduce_block_header();
    for op in ReduceOp::ALL {
        let n = op.name();
        out += &format!(
            "fn identity_{n}() -> f32 {{\n    return {};\n}}\n\
             fn combine_{n}(acc: f32, v: f32) -> f32 {{\n    return {};\n}}\n",
            op.wgsl_identity(),
            op.wgsl_combine("acc", "v")
        );
    }
    out + REDUCE_BLOCK_END + "\n"
}

/// The reduce family's ops in CUDA C, generated from the reduce table: a struct with
/// `identity()` and `combine(acc, v)` and the `REDUCE_ENTRY` line of its four entry points
/// for every row (the block at the end of `cuda/reduce.cu`).
pub fn reduce_ops_cuda() -> String {
    let mut out = reduce_block_header();
    for op in ReduceOp::ALL {
        let n = op.name();
        let ty: String = n
            .split('_')
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .collect();
        out += &format!(
            "struct Op{ty} {{\n    \
             __device__ static float identity() {{ return {}; }}\n    \
             __device__ static float combine(float acc, float v) {{ return {}; }}\n\
             }};\nREDUCE_ENTRY({n}, Op{ty})\n",
            op.cuda_identity(),
            op.cuda_combine("acc", "v")
        );
    }
    out + REDUCE_BLOCK_END + "\n"
}

/// The WGSL of a hand-written `template` for `op`: the indexing snippet, then the template
/// with its `OPNAME` placeholder replaced (one pipeline per op, no branch on the op).
pub fn wgsl_family(template: &str, op: &str) -> String {
    format!("{WGSL_INDEXING}\n\n{}", template.replace("OPNAME", op))
}

/// The WGSL of the generated kernel of `p` as `variant`, with its prelude (indexing, math).
pub fn wgsl_generated(p: &Program, variant: Variant) -> String {
    fused::wgsl_source(p, variant, &format!("{WGSL_INDEXING}\n{WGSL_MATH}"))
}

/// `src` with every `#include "<header>"` of [`CUDA_HEADERS`] replaced by the header's text
/// (each once: the headers are `#pragma once`), so it compiles on its own.
pub fn cuda_inline_headers(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 8192);
    inline_headers(src, &mut [false; CUDA_HEADERS.len()], &mut out);
    out
}

/// [`cuda_inline_headers`] of `src` into `out`, sharing the record of headers already
/// inlined (`done`) with the headers it includes.
fn inline_headers(src: &str, done: &mut [bool], out: &mut String) {
    for line in src.lines() {
        let header = CUDA_HEADERS
            .iter()
            .position(|(name, _)| line.trim() == format!("#include \"{name}\""));
        match header {
            Some(h) if done[h] => {}
            Some(h) => {
                done[h] = true;
                inline_headers(CUDA_HEADERS[h].1, done, out);
            }
            None if line.trim() == "#pragma once" => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

/// One kernel variant as a self-contained source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSource {
    /// File name: `<what>.wgsl` or `<what>.cu`.
    pub file: String,
    /// The source.
    pub source: String,
}

/// The variants the GPU backends generate for a program: elementwise (strided and
/// contiguous), and for a matmul epilogue also the generated matmul.
fn variants(epilogue: bool) -> &'static [Variant] {
    if epilogue {
        &[Variant::Matmul, Variant::Strided, Variant::Contiguous]
    } else {
        &[Variant::Strided, Variant::Contiguous]
    }
}

fn variant_name(v: Variant) -> &'static str {
    match v {
        Variant::Strided => "strided",
        Variant::Contiguous => "contiguous",
        Variant::Matmul => "matmul",
    }
}

/// Every kernel the GPU backends can launch, as self-contained sources: the hand-written
/// families (reduce per op, matmul), `map` and `zip` for every row of the op table, and
/// the generated kernels of `programs` (`(name, program, is a matmul epilogue)`), each in
/// WGSL and CUDA C, one file per variant.
pub fn all_kernels(programs: &[(String, Program, bool)]) -> Vec<KernelSource> {
    let mut out = Vec::new();
    let mut both = |stem: String, p: &Program, v: Variant| {
        out.push(KernelSource {
            file: format!("{stem}.wgsl"),
            source: wgsl_generated(p, v),
        });
        out.push(KernelSource {
            file: format!("{stem}.cu"),
            source: cuda_inline_headers(&fused::cuda_source(p, v)),
        });
    };
    for op in UnaryOp::ALL {
        for &v in variants(false) {
            both(
                format!("map_{}_{}", op.name(), variant_name(v)),
                Program::of_unary(op),
                v,
            );
        }
    }
    for op in BinaryOp::ALL {
        for &v in variants(false) {
            both(
                format!("zip_{}_{}", op.name(), variant_name(v)),
                Program::of_binary(op),
                v,
            );
        }
    }
    for (name, p, epilogue) in programs {
        for &v in variants(*epilogue) {
            both(format!("fused_{name}_{}", variant_name(v)), p, v);
        }
    }
    for op in ReduceOp::ALL {
        out.push(KernelSource {
            file: format!("reduce_{}.wgsl", op.name()),
            source: wgsl_family(WGSL_REDUCE, op.name()),
        });
    }
    out.push(KernelSource {
        file: "reduce.cu".into(),
        source: cuda_inline_headers(CUDA_REDUCE),
    });
    out.push(KernelSource {
        file: "matmul.wgsl".into(),
        source: wgsl_family(WGSL_MATMUL, ""),
    });
    out.push(KernelSource {
        file: "matmul.cu".into(),
        source: cuda_inline_headers(CUDA_MATMUL),
    });
    for (name, wgsl, op, cuda) in [
        ("pad", WGSL_PAD, "any", CUDA_PAD),
        ("random", WGSL_RANDOM, "uniform", CUDA_RANDOM),
    ] {
        out.push(KernelSource {
            file: format!("{name}.wgsl"),
            source: wgsl_family(wgsl, op),
        });
        out.push(KernelSource {
            file: format!("{name}.cu"),
            source: cuda_inline_headers(cuda),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block generated from the reduce table in a reduce kernel file's `source`, from its
    /// first line to its last (None when the markers are missing).
    fn reduce_block(source: &str) -> Option<&str> {
        let begin = source.find(REDUCE_BLOCK_BEGIN)?;
        let end = begin + source[begin..].find(REDUCE_BLOCK_END)? + REDUCE_BLOCK_END.len() + 1;
        source.get(begin..end)
    }

    /// Both reduce kernel files hold the block the reduce table generates. With
    /// MINITORCH_UPDATE_SOURCES=1 a stale block is rewritten instead (then rebuild: the
    /// sources are embedded).
    #[test]
    fn reduce_files_hold_the_reduce_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let update = std::env::var_os("MINITORCH_UPDATE_SOURCES").is_some();
        for (file, embedded, want) in [
            ("shaders/reduce.wgsl", WGSL_REDUCE, reduce_ops_wgsl()),
            ("cuda/reduce.cu", CUDA_REDUCE, reduce_ops_cuda()),
        ] {
            let path = root.join(file);
            let on_disk = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                on_disk, embedded,
                "{file}: rebuild, the embedded copy is stale"
            );
            let got = reduce_block(&on_disk)
                .unwrap_or_else(|| panic!("{file}: no `{REDUCE_BLOCK_BEGIN}` block"));
            if got != want && update {
                std::fs::write(&path, on_disk.replace(got, &want)).unwrap();
                continue;
            }
            assert_eq!(
                got, want,
                "{file}: the block generated from the reduce table is stale; rerun this test with MINITORCH_UPDATE_SOURCES=1"
            );
        }
    }

    #[test]
    fn every_kernel_is_self_contained_and_named_once() {
        let epilogue = {
            let mut b = fused::ProgramBuilder::new();
            let (x, y) = (b.input(0), b.input(1));
            let z = b.add(x, y);
            let r = b.unary(UnaryOp::Tanh, z);
            b.build(&[r])
        };
        let all = all_kernels(&[("tanh_epilogue".into(), epilogue, true)]);
        let mut names: Vec<&str> = all.iter().map(|k| k.file.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "two kernels share a file name");
        // map and zip per op and variant, the epilogue's three variants, in two languages;
        // reduce per op in WGSL, one reduce.cu, matmul, pad and random in both.
        let generated = 2 * (UnaryOp::ALL.len() + BinaryOp::ALL.len()) + 3;
        assert_eq!(n, 2 * generated + ReduceOp::ALL.len() + 7);
        for k in &all {
            assert!(
                !k.source.contains("OPNAME"),
                "{}: a placeholder left",
                k.file
            );
            if k.file.ends_with(".cu") {
                assert!(!k.source.contains("#include \""), "{}: an include", k.file);
                assert_eq!(
                    k.source.matches("#define GRID_CONSTANT").count(),
                    2,
                    "{}",
                    k.file
                );
                assert!(!k.source.contains("const __grid_constant__"), "{}", k.file);
            }
        }
        let tanh = all
            .iter()
            .find(|k| k.file == "map_tanh_strided.cu")
            .unwrap();
        assert!(tanh.source.contains("tanh_f(v0)") && tanh.source.contains("float tanh_f("));
    }
}
