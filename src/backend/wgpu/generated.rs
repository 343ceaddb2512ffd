//! Fused programs on wgpu: one WGSL kernel generated per distinct program and variant
//! ([`fused::wgsl_source`]), compiled once and cached
//! with its bind group layout (inputs, outputs, metadata), then dispatched through the
//! runtime's batch like every other kernel.

use std::sync::{Arc, OnceLock};

use super::runtime::{storage_entry, Runtime, NAME};
use super::{buffer, to_u32, WgpuBackend};
use crate::backend::fused::{self, Program, Variant, FUSED_MATMUL_MAX_WORK};
use crate::backend::gpu::cache::KernelCache;
use crate::backend::gpu::sources;
use crate::backend::{check, BinaryOp, Outputs, Storage, UnaryOp};

use crate::error::{Error, Result};
use crate::layout::Layout;
use smallvec::SmallVec;

/// A compiled generated kernel.
struct Compiled {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// The kernels compiled so far (the process has one wgpu runtime).
fn cache() -> &'static KernelCache<Compiled> {
    static C: OnceLock<KernelCache<Compiled>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// Number of generated kernels compiled so far.
pub fn compiled() -> usize {
    cache().len()
}

/// The kernel of `p` and `variant`, compiled on first use.
fn kernel(rt: &Runtime, p: &Program, variant: Variant, buffers: usize) -> Result<Arc<Compiled>> {
    cache().get_or_build(p, variant, || compile(rt, p, variant, buffers))
}

/// Compile the kernel of `p` and `variant`.
fn compile(rt: &Runtime, p: &Program, variant: Variant, buffers: usize) -> Result<Compiled> {
    let max = rt.limits.max_storage_buffers_per_shader_stage as usize;
    if buffers + 1 > max {
        return Err(Error::backend(
            NAME,
            "fused",
            format!(
                "a fused kernel of {buffers} tensors needs {} storage buffers; this device binds {max}",
                buffers + 1
            ),
        ));
    }
    let outputs = p.outputs().len();
    let inputs = buffers - outputs;
    let entries: Vec<_> = (0..buffers + 1)
        .map(|i| storage_entry(i as u32, i < inputs || i == buffers))
        .collect();
    let device = &rt.device;
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("minitorch fused"),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("minitorch fused"),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let entry = fused::entry_point(variant);
    let source = sources::wgsl_generated(p, variant);
    let pipeline = rt.compile_pipeline("fused", entry, source, &pipeline_layout)?;
    Ok(Compiled { pipeline, layout })
}

/// `program` over `inputs` as one dispatch; one storage per output.
pub fn fused(
    rt: &Runtime,
    program: &Program,
    inputs: &[(&Storage, &Layout)],
    params: &[f32],
) -> Result<Outputs> {
    check::fused(program, inputs, params)?;
    elementwise(rt, "fused", program, inputs, params)
}

/// `map`: `op` on every element of `x` read through `layout`, as the op table's one-op
/// program; errors name `name` (`copy` is `map` with `id`).
pub fn map(
    rt: &Runtime,
    name: &'static str,
    op: UnaryOp,
    x: &Storage,
    layout: &Layout,
) -> Result<Storage> {
    check::fits(name, x, layout)?;
    let mut out = elementwise(rt, name, Program::of_unary(op), &[(x, layout)], &[])?;
    Ok(out.remove(0))
}

/// `zip`: `op` on element pairs of `a` and `b` (layouts of one shape), as the op table's
/// one-op program.
pub fn zip(
    rt: &Runtime,
    op: BinaryOp,
    a: &Storage,
    al: &Layout,
    b: &Storage,
    bl: &Layout,
) -> Result<Storage> {
    check::zip(a, al, b, bl)?;
    let mut out = elementwise(rt, "zip", Program::of_binary(op), &[(a, al), (b, bl)], &[])?;
    Ok(out.remove(0))
}

/// A checked elementwise call of `program` as one dispatch (errors name `op`).
fn elementwise(
    rt: &Runtime,
    op: &'static str,
    program: &Program,
    inputs: &[(&Storage, &Layout)],
    params: &[f32],
) -> Result<Outputs> {
    let shape = inputs[0].1.shape();
    let size = inputs[0].1.size();
    let outs = (0..program.outputs().len())
        .map(|_| rt.alloc(op, size))
        .collect::<Result<Vec<_>>>()?;
    if size > 0 {
        let contiguous = inputs.iter().all(|(_, l)| l.is_contiguous());
        let variant = if contiguous {
            Variant::Contiguous
        } else {
            Variant::Strided
        };
        let k = kernel(rt, program, variant, inputs.len() + outs.len())?;
        let layouts: SmallVec<[&Layout; 4]> = inputs.iter().map(|(_, l)| *l).collect();
        let mut meta = Vec::new();
        fused::elementwise_meta(shape, &layouts, params, |what, v| {
            meta.push(to_u32(op, what, v)?);
            Ok(())
        })?;
        let ins = inputs
            .iter()
            .map(|(x, _)| buffer(x))
            .collect::<Result<SmallVec<[_; 4]>>>()?;
        let out_bufs: SmallVec<[&wgpu::Buffer; 2]> = outs.iter().map(|o| o.raw()).collect();
        let groups = rt.groups_1d(op, size.div_ceil(256))?;
        rt.dispatch_bound(op, &k.pipeline, &k.layout, groups, &ins, &out_bufs, &meta)?;
    }
    Ok(outs
        .into_iter()
        .map(|o| WgpuBackend::wrap(o, size))
        .collect())
}

/// `epilogue(a @ b, extra...)` as one dispatch of a generated matmul (two dispatches, the
/// tiled primitive and the epilogue, past [`FUSED_MATMUL_MAX_WORK`]).
#[allow(clippy::too_many_arguments)]
pub fn matmul_fused(
    rt: &Runtime,
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
        let product = super::matmul::matmul(rt, a, al, b, bl)?;
        return fused::then_epilogue(&product, &shape, extra, |ins| {
            fused(rt, epilogue, ins, params)
        });
    }
    let out = rt.alloc("matmul_fused", size)?;
    if size > 0 {
        let kern = kernel(rt, epilogue, Variant::Matmul, 2 + extra.len() + 1)?;
        let mut meta = Vec::new();
        let layouts: Vec<&Layout> = extra.iter().map(|(_, l)| *l).collect();
        fused::matmul_meta(al, bl, (n, k, m), &shape, &layouts, params, |what, v| {
            meta.push(to_u32("matmul_fused", what, v)?);
            Ok(())
        })?;
        let mut ins = vec![buffer(a)?, buffer(b)?];
        for (x, _) in extra {
            ins.push(buffer(x)?);
        }
        let groups = rt.groups_1d("matmul_fused", size.div_ceil(256))?;
        rt.dispatch_bound(
            "matmul_fused",
            &kern.pipeline,
            &kern.layout,
            groups,
            &ins,
            &[out.raw()],
            &meta,
        )?;
    }
    Ok(WgpuBackend::wrap(out, size))
}
