//! The generated kernels on CUDA (fused programs, and `map` / `zip` as one-op programs):
//! one CUDA C kernel per distinct program and variant ([`fused::cuda_source`], the twin
//! of the WGSL one), compiled with NVRTC once and cached, launched on the backend's stream
//! with the metadata and scalar parameters by value (nothing is uploaded per launch).
//! What to launch is decided in [`crate::backend::gpu::generated`].

use std::sync::Arc;

use super::device::Module;
use super::kernels::{self, Meta, HEADERS};
use super::runtime::NvrtcSource;
use super::{CudaBackend, CudaBuffer};
use crate::backend::fused::{self, Program, ProgramBuilder, Variant};
use crate::backend::gpu::generated::{GeneratedKernels, GeneratedLaunch};
use crate::backend::gpu::meta::MetaWords;
use crate::backend::{Backend, Storage, UnaryOp};
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
    meta: &Meta,
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

impl GeneratedKernels for CudaBackend {
    type Buffer = CudaBuffer;

    fn meta_words(&self, op: &'static str) -> MetaWords {
        kernels::meta_words(op)
    }

    fn alloc(&self, _op: &'static str, len: usize) -> Result<CudaBuffer> {
        self.pool.alloc(len)
    }

    fn wrap_buffer(&self, buf: CudaBuffer, _len: usize) -> Storage {
        self.wrap(buf)
    }

    fn launch_generated(&self, l: &GeneratedLaunch<'_, CudaBuffer>) -> Result<()> {
        let k = kernel(self, l.program, l.variant)?;
        // Parameters: outputs, inputs, then the metadata by value.
        let mut ptrs: SmallVec<[u64; 8]> = l.outputs.iter().map(|o| o.ptr()).collect();
        for x in l.inputs {
            ptrs.push(self.buffer(x)?.ptr());
        }
        launch(
            self,
            l.op,
            &k,
            l.variant,
            l.size,
            &ptrs,
            &Meta::from_words(l.meta),
        )
    }

    fn matmul_primitive(
        &self,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
    ) -> Result<Storage> {
        self.matmul(a, al, b, bl)
    }
}
