//! Code generation: the WGSL and CUDA C kernel of a fused [`Program`], side by side, from
//! the op table's expressions (`op_table.rs`). Three variants: elementwise over strided or
//! contiguous inputs, and a matmul whose result goes through the program. Both languages
//! read the metadata `gpu/meta.rs` writes, through named offsets (`rank`, `off`, `st`,
//! `pa`).

use std::fmt::Write;

use crate::backend::fused::{Node, Program};

/// The GPU languages kernels are generated in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// WGSL (wgpu); `log_f`, `exp_f` and `sigmoid_f` come from shaders/math.wgsl.
    Wgsl,
    /// CUDA C (NVRTC); `log_f`, `exp_f` and `sigmoid_f` come from cuda/math.cuh.
    Cuda,
}

/// The body of a generated kernel for one element: `let`s of every node, in `lang`.
/// `load(i)` is the expression of input `i`'s element, `param(i)` of parameter `i`.
/// Node `k` is the variable `v{k}`.
pub fn body(
    lang: Lang,
    p: &Program,
    load: impl Fn(usize) -> String,
    param: impl Fn(usize) -> String,
) -> String {
    let mut s = String::new();
    let decl = match lang {
        Lang::Wgsl => "let",
        Lang::Cuda => "const float",
    };
    for (k, n) in p.nodes().iter().enumerate() {
        let e = match *n {
            Node::Input(i) => load(i),
            Node::Param(i) => param(i),
            Node::Const(bits) => match lang {
                Lang::Wgsl => format!("bitcast<f32>({bits}u)"),
                Lang::Cuda => format!("__int_as_float({:#010x})", bits),
            },
            Node::Unary(op, a) => match lang {
                Lang::Wgsl => op.wgsl(&format!("v{a}")),
                Lang::Cuda => op.cuda(&format!("v{a}")),
            },
            Node::Binary(op, a, b) => {
                let (a, b) = (format!("v{a}"), format!("v{b}"));
                match lang {
                    Lang::Wgsl => op.wgsl(&a, &b),
                    Lang::Cuda => op.cuda(&a, &b),
                }
            }
        };
        let _ = writeln!(s, "    {decl} v{k} = {e};");
    }
    s
}

/// Which kernel to generate for a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Elementwise, every input read through its strides (`fused`).
    Strided,
    /// Elementwise, every input contiguous: element `i` at `offset + i` (`fused`).
    Contiguous,
    /// A matmul whose result goes through the program (input 0: the product) before it is
    /// stored (`fused_matmul`): one thread per result element, a plain loop over k (no
    /// shared memory, no barriers: at the sizes it serves, launch and barrier costs
    /// dominate; larger products use the tiled primitive matmul, see
    /// [`FUSED_MATMUL_MAX_WORK`](crate::backend::fused::FUSED_MATMUL_MAX_WORK)).
    Matmul,
}

impl Variant {
    /// Every variant.
    pub const ALL: [Variant; 3] = [Variant::Strided, Variant::Contiguous, Variant::Matmul];
}

/// Entry point of the generated kernel of `variant`.
pub fn entry_point(variant: Variant) -> &'static str {
    match variant {
        Variant::Strided | Variant::Contiguous => "fused",
        Variant::Matmul => "fused_matmul",
    }
}

/// The WGSL of `p` as a `variant` kernel: the bindings are the inputs (`in{j}`; for the
/// matmul `ma`, `mb`, then the epilogue's inputs 1..), the outputs (`out{j}`), then `md`.
/// `prelude` is shaders/indexing.wgsl (global_linear, strided_position) followed by
/// shaders/math.wgsl (log_f, exp_f, sigmoid_f).
pub fn wgsl_source(p: &Program, variant: Variant, prelude: &str) -> String {
    let mut s = String::from(prelude);
    s.push_str("\n// Generated from a fused program (src/backend/fused.rs).\n");
    let mut binding = 0;
    let mut bind = |s: &mut String, name: String, rw: bool| {
        let access = if rw { "read_write" } else { "read" };
        let _ = writeln!(
            s,
            "@group(0) @binding({binding}) var<storage, {access}> {name}: array<f32>;"
        );
        binding += 1;
    };
    let first = match variant {
        Variant::Matmul => {
            bind(&mut s, "ma".into(), false);
            bind(&mut s, "mb".into(), false);
            1
        }
        _ => 0,
    };
    for j in first..p.inputs() {
        bind(&mut s, format!("in{j}"), false);
    }
    for j in 0..p.outputs().len() {
        bind(&mut s, format!("out{j}"), true);
    }
    let _ = writeln!(
        s,
        "@group(0) @binding({binding}) var<storage, read> md: array<u32>;\n"
    );
    // Inputs with a layout (all but the matmul's product) are numbered from `first`.
    let nl = p.inputs() - first;
    let param = |j: usize| format!("bitcast<f32>(md[pa + {j}u])");
    let stores: String = (0..p.outputs().len())
        .map(|j| format!("    out{j}[i] = v{};\n", p.outputs()[j]))
        .collect();
    let header = |e: &str| {
        format!(
            "    let rank = md[{e}1u];\n    let off = {e}2u + rank;\n    let st = off + {nl}u;\n    let pa = st + {nl}u * rank;\n"
        )
    };
    match variant {
        Variant::Strided | Variant::Contiguous => {
            let contiguous = variant == Variant::Contiguous;
            let load = |j: usize| {
                if contiguous {
                    format!("in{j}[md[off + {j}u] + i]")
                } else {
                    format!(
                        "in{j}[strided_position(i, rank, 2u, st + {j}u * rank, md[off + {j}u])]"
                    )
                }
            };
            let _ = write!(
                s,
                "@compute @workgroup_size(256)\nfn fused(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,\n         @builtin(local_invocation_index) lid: u32) {{\n    let i = global_linear(wg, nwg, lid);\n    if (i >= md[0]) {{\n        return;\n    }}\n{}{}{}}}\n",
                header(""),
                body(Lang::Wgsl, p, load, param),
                stores
            );
        }
        Variant::Matmul => {
            let load = |j: usize| {
                if j == 0 {
                    "acc".to_string()
                } else {
                    format!(
                        "in{j}[strided_position(i, rank, e + 2u, st + {}u * rank, md[off + {}u])]",
                        j - 1,
                        j - 1
                    )
                }
            };
            let _ = write!(
                s,
                r#"@compute @workgroup_size(256)
fn fused_matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {{
    let i = global_linear(wg, nwg, lid);
    let e = 10u + 3u * md[3];
    if (i >= md[e]) {{
        return;
    }}
    let n = md[0];
    let k = md[1];
    let m = md[2];
    let br = md[3];
    let col = i % m;
    let row = (i / m) % n;
    let z = i / (m * n);
    let a_row = strided_position(z, br, 10u, 10u + br, md[4]) + row * md[6];
    let b_col = strided_position(z, br, 10u, 10u + 2u * br, md[5]) + col * md[9];
    var acc = 0.0;
    for (var q = 0u; q < k; q = q + 1u) {{
        acc = acc + ma[a_row + q * md[7]] * mb[b_col + q * md[8]];
    }}
{}{}{}}}
"#,
                header("e + "),
                body(Lang::Wgsl, p, load, param),
                stores
            );
        }
    }
    s
}

/// The CUDA C of `p` as a `variant` kernel (the twin of [`wgsl_source`]): parameters are
/// the outputs (`out{j}`), the inputs (`in{j}`; for the matmul `ma`, `mb`, then the
/// epilogue's inputs 1..), then the metadata by value. Includes `indexing.cuh` and
/// `math.cuh`.
pub fn cuda_source(p: &Program, variant: Variant) -> String {
    let mut s = String::from(
        "// Generated from a fused program (src/backend/fused.rs).\n#include \"indexing.cuh\"\n#include \"math.cuh\"\n\n",
    );
    let first = if variant == Variant::Matmul { 1 } else { 0 };
    let nl = p.inputs() - first;
    let mut args: Vec<String> = (0..p.outputs().len())
        .map(|j| format!("float* __restrict__ out{j}"))
        .collect();
    if variant == Variant::Matmul {
        args.push("const float* __restrict__ ma".into());
        args.push("const float* __restrict__ mb".into());
    }
    args.extend((first..p.inputs()).map(|j| format!("const float* in{j}")));
    // GRID_CONSTANT (indexing.cuh): `__grid_constant__` from sm_70, nothing below.
    args.push("const GRID_CONSTANT Meta meta".into());
    let param = |j: usize| format!("__int_as_float(meta.w[pa + {j}])");
    let stores: String = (0..p.outputs().len())
        .map(|j| format!("    out{j}[i] = v{};\n", p.outputs()[j]))
        .collect();
    let header = |e: &str| {
        format!(
            "    const u32 rank = meta.w[{e}1];\n    const u32* shape = &meta.w[{e}2];\n    const u32 off = {e}2 + rank;\n    const u32 st = off + {nl};\n    const u32 pa = st + {nl} * rank;\n    (void)shape;\n    (void)pa;\n"
        )
    };
    match variant {
        Variant::Strided | Variant::Contiguous => {
            let contiguous = variant == Variant::Contiguous;
            let load = |j: usize| {
                if contiguous {
                    format!("in{j}[meta.w[off + {j}] + i]")
                } else {
                    format!("in{j}[strided_position((u32)i, shape, &meta.w[st + {j} * rank], rank, meta.w[off + {j}])]")
                }
            };
            let body = body(Lang::Cuda, p, load, param).replace("\n    ", "\n        ");
            let stores = stores.replace("    out", "        out");
            let _ = write!(
                s,
                "extern \"C\" __global__ void __launch_bounds__(BLOCK) fused({}) {{\n    const u32 size = meta.w[0];\n{}    for (u64 i = grid_start(); i < size; i += grid_stride()) {{\n    {}{}    }}\n}}\n",
                args.join(", "),
                header(""),
                body,
                stores
            );
        }
        Variant::Matmul => {
            let load = |j: usize| {
                if j == 0 {
                    "acc".to_string()
                } else {
                    format!(
                        "in{j}[strided_position(i, shape, &meta.w[st + {} * rank], rank, meta.w[off + {}])]",
                        j - 1,
                        j - 1
                    )
                }
            };
            let body = body(Lang::Cuda, p, load, param).replace("\n    ", "\n        ");
            let stores = stores.replace("    out", "        out");
            let _ = write!(
                s,
                r#"extern "C" __global__ void __launch_bounds__(BLOCK) fused_matmul({}) {{
    const u32 n = meta.w[0];
    const u32 k = meta.w[1];
    const u32 m = meta.w[2];
    const u32 br = meta.w[3];
    const u32 e = 10 + 3 * br;
    const u32 size = meta.w[e];
{}    for (u64 i64 = grid_start(); i64 < size; i64 += grid_stride()) {{
        const u32 i = (u32)i64;
        const u32 col = i % m;
        const u32 row = (i / m) % n;
        const u32 z = i / (m * n);
        const u32 a_row = strided_position(z, &meta.w[10], &meta.w[10 + br], br, meta.w[4]) + row * meta.w[6];
        const u32 b_col = strided_position(z, &meta.w[10], &meta.w[10 + 2 * br], br, meta.w[5]) + col * meta.w[9];
        float acc = 0.0f;
        for (u32 q = 0; q < k; ++q) {{
            acc = __fadd_rn(acc, __fmul_rn(ma[a_row + q * meta.w[7]], mb[b_col + q * meta.w[8]]));
        }}
    {}{}    }}
}}
"#,
                args.join(", "),
                header("e + "),
                body,
                stores
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fused::tests::loss;

    #[test]
    fn generated_bodies_name_every_node() {
        let p = loss();
        let w = body(Lang::Wgsl, &p, |i| format!("in{i}"), |i| format!("P{i}"));
        let c = body(Lang::Cuda, &p, |i| format!("in{i}"), |i| format!("P{i}"));
        assert_eq!(w.lines().count(), p.nodes().len());
        assert!(w.contains("log_f(") && c.contains("log_f(") && c.contains("__fmul_rn"));
        assert!(c.contains("__int_as_float(0xbf800000)"), "{c}");
    }
}
