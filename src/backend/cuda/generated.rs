//! Fused programs on CUDA: one CUDA C kernel generated per distinct program and variant
//! ([`fused::cuda_source`], the twin of the WGSL one),
//! compiled with NVRTC once and cached, launched on the backend's stream with the
//! metadata and scalar parameters by value (nothing is uploaded per launch).

use std::sync::Arc;

use super::device::Module;
use super::kernels::{self, MetaBuilder, HEADERS};
use super::runtime::NvrtcSource;
use super::CudaBackend;
use crate::backend::fused::{self, Program, ProgramBuilder, Variant, FUSED_MATMUL_MAX_WORK};
use crate::backend::Backend;
use crate::backend::{check, BinaryOp, Outputs, Storage, UnaryOp};

use crate::error::Result;
use crate::layout::Layout;
use smallvec::SmallVec;

/// The program name of a generated kernel (NVRTC logs say `fused.cu(12)`).
pub const FILE_NAME: &str = "fused.cu";

/// The kernel of `p` and `variant`, compiled and loaded on first use.
fn kernel(be: &CudaBackend, p: &Program, variant: Variant) -> Result<Arc<Module>> {
    be.generated.get_or_build(p, variant, || {
        let source = fused::cuda_source(p, variant);
        let program = NvrtcSource {
            name: FILE_NAME,
            source: &source,
            headers: &HEADERS,
            include_dirs: &[],
        };
        be.gpu
            .load(&program, &[fused::entry_point(variant).to_string()])
    })
}

/// Compile and load a representative generated kernel: a linear layer's epilogue
/// (`relu(acc + bias)`) in the matmul variant, so a device or compiler that cannot build
/// the generated kernels fails when the backend is created.
pub(super) fn warm_up(be: &CudaBackend) -> Result<()> {
    let mut b = ProgramBuilder::new();
    let (acc, bias) = (b.input(0), b.input(1));
    let z = b.add(acc, bias);
    let r = b.unary(UnaryOp::Relu, z);
    kernel(be, &b.build(&[r]), Variant::Matmul).map(|_| ())
}

fn launch(
    be: &CudaBackend,
    op: &'static str,
    k: &Module,
    variant: Variant,
    size: usize,
    ptrs: &[u64],
    meta: &kernels::Meta,
) -> Result<()> {
    be.launch_module(
        op,
        k,
        0,
        be.elementwise_grid(size),
        kernels::BLOCK,
        ptrs,
        meta,
    )?;
    let slot = Variant::ALL.iter().position(|v| *v == variant).unwrap_or(0);
    be.note_run(None, slot);
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
        launch(be, op, &k, variant, size, &ptrs, &meta.finish())?;
    }
    Ok(outs.into_iter().map(|o| be.wrap(o)).collect())
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
            Variant::Matmul,
            size,
            &ptrs,
            &meta.finish(),
        )?;
    }
    Ok(be.wrap(out))
}
