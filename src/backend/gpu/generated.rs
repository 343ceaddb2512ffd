//! Running the generated kernels, the same on wgpu and CUDA: `map` and `zip` as the op
//! table's one-op programs, `fused` programs, and `matmul_fused` (one generated matmul with
//! its epilogue, or past [`FUSED_MATMUL_MAX_WORK`] the tiled primitive then the epilogue).
//! This file makes every decision (checks, variant, metadata, sizes); a backend implements
//! [`GeneratedKernels`]: it allocates, gets the compiled kernel and launches it.

use smallvec::SmallVec;

use super::meta::{self, MetaWords};
use crate::backend::fused::{self, Program, Variant, FUSED_MATMUL_MAX_WORK};
use crate::backend::{check, BinaryOp, Outputs, Storage, UnaryOp};
use crate::error::Result;
use crate::layout::Layout;

/// What a GPU backend does to run a generated kernel.
pub trait GeneratedKernels {
    /// A fresh device buffer of the backend.
    type Buffer;

    /// An empty metadata builder for a launch of `op` (the backend's word limit).
    fn meta_words(&self, op: &'static str) -> MetaWords;

    /// A fresh buffer of `len` floats (errors name `op`).
    fn alloc(&self, op: &'static str, len: usize) -> Result<Self::Buffer>;

    /// `buf`, holding `len` floats, as a storage.
    fn wrap_buffer(&self, buf: Self::Buffer, len: usize) -> Storage;

    /// One launch of a generated kernel (compiled and cached on first use), ordering
    /// its buffers as the backend's generated kernels declare them.
    fn launch_generated(&self, launch: &GeneratedLaunch<'_, Self::Buffer>) -> Result<()>;

    /// The tiled primitive matmul (a `matmul_fused` too large for one generated kernel).
    fn matmul_primitive(
        &self,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
    ) -> Result<Storage>;
}

/// One launch of the kernel of `program` as `variant`, one thread per element of `size`:
/// it reads `inputs`, writes `outputs` and takes `meta`.
pub struct GeneratedLaunch<'a, Buffer> {
    /// The op, for errors.
    pub op: &'static str,
    /// The program whose kernel runs.
    pub program: &'a Program,
    /// Which of its kernels.
    pub variant: Variant,
    /// Threads (result elements).
    pub size: usize,
    /// The inputs, in the program's order (for a matmul: a, b, then the epilogue's).
    pub inputs: &'a [&'a Storage],
    /// The fresh outputs.
    pub outputs: &'a [&'a Buffer],
    /// The metadata words.
    pub meta: &'a MetaWords,
}

/// `program` over `inputs` as one launch; one storage per output.
pub fn fused<B: GeneratedKernels>(
    be: &B,
    program: &Program,
    inputs: &[(&Storage, &Layout)],
    params: &[f32],
) -> Result<Outputs> {
    check::fused(program, inputs, params)?;
    elementwise(be, "fused", program, inputs, params)
}

/// `map`: `op` on every element of `x` read through `layout`, as the op table's one-op
/// program; errors name `name` (`copy` is `map` with `id`).
pub fn map<B: GeneratedKernels>(
    be: &B,
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
pub fn zip<B: GeneratedKernels>(
    be: &B,
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

/// A checked elementwise call of `program` as one launch (errors name `op`): the
/// contiguous variant when every input is contiguous, else the strided one.
fn elementwise<B: GeneratedKernels>(
    be: &B,
    op: &'static str,
    program: &Program,
    inputs: &[(&Storage, &Layout)],
    params: &[f32],
) -> Result<Outputs> {
    let shape = inputs[0].1.shape();
    let size = inputs[0].1.size();
    let outs = (0..program.outputs().len())
        .map(|_| be.alloc(op, size))
        .collect::<Result<SmallVec<[_; 2]>>>()?;
    if size > 0 {
        let layouts: SmallVec<[&Layout; 4]> = inputs.iter().map(|(_, l)| *l).collect();
        for l in &layouts {
            meta::check_positions(op, l)?;
        }
        let variant = if layouts.iter().all(|l| l.is_contiguous()) {
            Variant::Contiguous
        } else {
            Variant::Strided
        };
        let mut words = be.meta_words(op);
        meta::elementwise_meta(shape, &layouts, params, |what, v| words.push(what, v))?;
        let ins: SmallVec<[&Storage; 4]> = inputs.iter().map(|(x, _)| *x).collect();
        let out_refs: SmallVec<[&B::Buffer; 2]> = outs.iter().collect();
        be.launch_generated(&GeneratedLaunch {
            op,
            program,
            variant,
            size,
            inputs: &ins,
            outputs: &out_refs,
            meta: &words,
        })?;
    }
    Ok(outs.into_iter().map(|o| be.wrap_buffer(o, size)).collect())
}

/// `epilogue(a @ b, extra...)` as one launch of a generated matmul; past
/// [`FUSED_MATMUL_MAX_WORK`] two, the tiled primitive and the epilogue as a `fused`
/// kernel (the tiled kernel's speed).
#[allow(clippy::too_many_arguments)]
pub fn matmul_fused<B: GeneratedKernels>(
    be: &B,
    a: &Storage,
    al: &Layout,
    b: &Storage,
    bl: &Layout,
    epilogue: &Program,
    extra: &[(&Storage, &Layout)],
    params: &[f32],
) -> Result<Storage> {
    const OP: &str = "matmul_fused";
    let ((batch, n, k, m), shape) = check::matmul_fused(a, al, b, bl, epilogue, extra, params)?;
    let size = batch * n * m;
    if size.saturating_mul(k) > FUSED_MATMUL_MAX_WORK {
        let product = be.matmul_primitive(a, al, b, bl)?;
        return fused::then_epilogue(&product, &shape, extra, |ins| {
            fused(be, epilogue, ins, params)
        });
    }
    let out = be.alloc(OP, size)?;
    if size > 0 {
        // The same checks (u32 sizes and positions) as the primitive matmul.
        meta::matmul_sizes(OP, al, bl)?;
        let mut words = be.meta_words(OP);
        let layouts: SmallVec<[&Layout; 4]> = extra.iter().map(|(_, l)| *l).collect();
        meta::matmul_meta(al, bl, (n, k, m), &shape, &layouts, params, |what, v| {
            words.push(what, v)
        })?;
        let mut ins: SmallVec<[&Storage; 4]> = smallvec::smallvec![a, b];
        ins.extend(extra.iter().map(|(x, _)| *x));
        be.launch_generated(&GeneratedLaunch {
            op: OP,
            program: epilogue,
            variant: Variant::Matmul,
            size,
            inputs: &ins,
            outputs: &[&out],
            meta: &words,
        })?;
    }
    Ok(be.wrap_buffer(out, size))
}
