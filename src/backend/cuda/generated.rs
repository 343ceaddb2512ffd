//! Fused programs on CUDA: one CUDA C kernel generated per distinct program and variant
//! ([`fused::cuda_source`], the twin of the WGSL one),
//! compiled with NVRTC once and cached, launched on the backend's stream with the
//! metadata and scalar parameters by value (nothing is uploaded per launch).

use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaFunction, CudaModule, LaunchConfig, PushKernelArg};

use super::kernels::{self, Meta, MetaBuilder, HEADERS};
use super::runtime::NvrtcSource;
use super::{count_launch, CudaBackend, NAME};
use crate::backend::fused::{self, Program, Variant, FUSED_MATMUL_MAX_WORK};
use crate::backend::gpu::cache::KernelCache;
use crate::backend::Backend;
use crate::backend::{check, BinaryOp, Outputs, Storage, UnaryOp};

use crate::error::{Error, Result};
use crate::layout::Layout;
use smallvec::SmallVec;

/// A loaded generated kernel (the module is kept alive with its function).
struct Loaded {
    func: CudaFunction,
    _module: Arc<CudaModule>,
}

/// The kernels loaded so far (the process has one CUDA context).
fn cache() -> &'static KernelCache<Loaded> {
    static C: OnceLock<KernelCache<Loaded>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// The NVRTC program name of a generated kernel (NVRTC logs say `fused.cu(12)`).
pub const FILE_NAME: &str = "fused.cu";

/// The kernel of `p` and `variant`, compiled and loaded on first use.
fn kernel(be: &CudaBackend, p: &Program, variant: Variant) -> Result<Arc<Loaded>> {
    cache().get_or_build(p, variant, || load(be, p, variant))
}

/// Compile and load the kernel of `p` and `variant`.
fn load(be: &CudaBackend, p: &Program, variant: Variant) -> Result<Loaded> {
    let rt = be.runtime();
    let source = fused::cuda_source(p, variant);
    let program = NvrtcSource {
        name: FILE_NAME,
        source: &source,
        headers: &HEADERS,
        include_dirs: &[],
    };
    let (module, _) = rt.load_program(&program)?;
    let entry = fused::entry_point(variant);
    let func = module.load_function(entry).map_err(|e| {
        Error::backend(NAME, "fused", format!("entry point {entry} not found: {e}"))
    })?;
    Ok(Loaded {
        func,
        _module: module,
    })
}

fn launch(
    be: &CudaBackend,
    op: &'static str,
    k: &Loaded,
    cfg: LaunchConfig,
    ptrs: &[u64],
    meta: &Meta,
) -> Result<()> {
    let mut b = be.runtime().stream.launch_builder(&k.func);
    for p in ptrs {
        b.arg(p);
    }
    b.arg(meta);
    // SAFETY: the argument list matches the generated kernel's signature (outputs, inputs,
    // then Meta by value); every layout was checked to lie inside its storage and each
    // output holds the result's element count.
    unsafe { b.launch(cfg) }
        .map_err(|e| Error::backend(NAME, op, format!("kernel launch failed: {e}")))?;
    count_launch();
    Ok(())
}

/// `program` over `inputs` as one launch; one storage per output.
pub fn fused(
    be: &CudaBackend,
    program: &Program,
    inputs: &[(&Storage, &Layout)],
    params: &[f32],
) -> Result<Outputs> {
    check::fused(program, inputs, params)?;
    elementwise(be, "fused", program, inputs, params)
}

/// `map`: `op` on every element of `x` read through `layout`, as the op table's one-op
/// program; errors name `name` (`copy` is `map` with `id`).
pub fn map(
    be: &CudaBackend,
    name: &'static str,
    op: UnaryOp,
    x: &Storage,
    layout: &Layout,
) -> Result<Storage> {
    check::fits(name, x, layout)?;
    let mut out = elementwise(be, name, Program::of_unary(op), &[(x, layout)], &[])?;
    Ok(out.remove(0))
}

/// `zip`: `op` on element pairs of `a` and `b` (layouts of one shape), as the op table's
/// one-op program.
pub fn zip(
    be: &CudaBackend,
    op: BinaryOp,
    a: &Storage,
    al: &Layout,
    b: &Storage,
    bl: &Layout,
) -> Result<Storage> {
    check::zip(a, al, b, bl)?;
    let mut out = elementwise(be, "zip", Program::of_binary(op), &[(a, al), (b, bl)], &[])?;
    Ok(out.remove(0))
}

/// A checked elementwise call of `program` as one launch (errors name `op`).
fn elementwise(
    be: &CudaBackend,
    op: &'static str,
    program: &Program,
    inputs: &[(&Storage, &Layout)],
    params: &[f32],
) -> Result<Outputs> {
    let shape = inputs[0].1.shape();
    let size = inputs[0].1.size();
    let outs = (0..program.outputs().len())
        .map(|_| be.pool.alloc(size))
        .collect::<Result<Vec<_>>>()?;
    if size > 0 {
        for (_, l) in inputs {
            kernels::check_elementwise(op, l)?;
        }
        let variant = if inputs.iter().all(|(_, l)| l.is_contiguous()) {
            Variant::Contiguous
        } else {
            Variant::Strided
        };
        let layouts: SmallVec<[&Layout; 4]> = inputs.iter().map(|(_, l)| *l).collect();
        let mut meta = MetaBuilder::new(op);
        fused::elementwise_meta(shape, &layouts, params, |what, v| meta.push(what, v))?;
        let k = kernel(be, program, variant)?;
        let mut ptrs: SmallVec<[u64; 8]> = outs.iter().map(|o| o.ptr()).collect();
        for (x, _) in inputs {
            ptrs.push(be.buffer(x)?.ptr());
        }
        launch(be, op, &k, be.elementwise_cfg(size), &ptrs, &meta.finish())?;
    }
    Ok(outs.into_iter().map(CudaBackend::wrap).collect())
}

/// `epilogue(a @ b, extra...)` as one launch of a generated matmul (two launches, the
/// tiled primitive and the epilogue, past [`FUSED_MATMUL_MAX_WORK`]).
#[allow(clippy::too_many_arguments)]
pub fn matmul_fused(
    be: &CudaBackend,
    a: &Storage,
    al: &Layout,
    b: &Storage,
    bl: &Layout,
    epilogue: &Program,
    extra: &[(&Storage, &Layout)],
    params: &[f32],
) -> Result<Storage> {
    let ((batch, n, k, m), shape) = check::matmul_fused(a, al, b, bl, epilogue, extra, params)?;
    let size = batch * n * m;
    if size.saturating_mul(k) > FUSED_MATMUL_MAX_WORK {
        // Large: the tiled primitive, then the epilogue over its result.
        let product = be.matmul(a, al, b, bl)?;
        return fused::then_epilogue(&product, &shape, extra, |ins| {
            fused(be, epilogue, ins, params)
        });
    }
    let out = be.pool.alloc(size)?;
    if size > 0 {
        // The same checks (u32 positions, rank) as the primitive matmul.
        kernels::matmul_meta(al, bl)?;
        let mut meta = MetaBuilder::new("matmul_fused");
        let layouts: Vec<&Layout> = extra.iter().map(|(_, l)| *l).collect();
        fused::matmul_meta(al, bl, (n, k, m), &shape, &layouts, params, |what, v| {
            meta.push(what, v)
        })?;
        let kern = kernel(be, epilogue, Variant::Matmul)?;
        let mut ptrs = vec![out.ptr(), be.buffer(a)?.ptr(), be.buffer(b)?.ptr()];
        for (x, _) in extra {
            ptrs.push(be.buffer(x)?.ptr());
        }
        launch(
            be,
            "matmul_fused",
            &kern,
            be.elementwise_cfg(size),
            &ptrs,
            &meta.finish(),
        )?;
    }
    Ok(CudaBackend::wrap(out))
}
