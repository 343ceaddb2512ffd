//! The generated kernels on wgpu (fused programs, and `map` / `zip` as one-op programs):
//! one WGSL kernel per distinct program and variant ([`sources::wgsl_generated`]),
//! compiled once and cached with its bind group layout (inputs, outputs, metadata), then
//! dispatched through the runtime's batch like every other kernel. What to launch is
//! decided in [`crate::backend::gpu::generated`].

use std::sync::{Arc, OnceLock};

use super::pool::PooledBuffer;
use super::runtime::{storage_entry, Runtime, NAME};
use super::{buffer, meta_words, WgpuBackend};
use crate::backend::fused::{self, Program, Variant};
use crate::backend::gpu::cache::KernelCache;
use crate::backend::gpu::generated::{GeneratedKernels, GeneratedLaunch};
use crate::backend::gpu::meta::MetaWords;
use crate::backend::gpu::sources;
use crate::backend::Storage;
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

impl GeneratedKernels for Runtime {
    type Buffer = PooledBuffer;

    fn meta_words(&self, op: &'static str) -> MetaWords {
        meta_words(op)
    }

    fn alloc(&self, op: &'static str, len: usize) -> Result<PooledBuffer> {
        Runtime::alloc(self, op, len)
    }

    fn wrap_buffer(&self, buf: PooledBuffer, len: usize) -> Storage {
        WgpuBackend::wrap(buf, len)
    }

    fn launch_generated(&self, l: &GeneratedLaunch<'_, PooledBuffer>) -> Result<()> {
        let k = kernel(self, l.program, l.variant, l.inputs.len() + l.outputs.len())?;
        // Bindings: inputs, outputs, then the metadata.
        let ins = l
            .inputs
            .iter()
            .map(|x| buffer(x))
            .collect::<Result<SmallVec<[_; 4]>>>()?;
        let outs: SmallVec<[&wgpu::Buffer; 2]> = l.outputs.iter().map(|o| o.raw()).collect();
        let groups = self.groups_1d(l.op, l.size.div_ceil(256))?;
        self.dispatch_bound(
            l.op,
            &k.pipeline,
            &k.layout,
            groups,
            &ins,
            &outs,
            l.meta.words(),
        )
    }

    fn matmul_primitive(
        &self,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
    ) -> Result<Storage> {
        super::matmul::matmul(self, a, al, b, bl)
    }
}
