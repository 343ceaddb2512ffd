//! The generated kernels on CUDA (fused programs, and `map` / `zip` as one-op programs):
//! one CUDA C kernel per distinct program and variant ([`fused::cuda_source`], the twin
//! of the WGSL one), compiled with NVRTC once and cached, launched on the backend's stream
//! with the metadata and scalar parameters by value (nothing is uploaded per launch).
//! What to launch is decided in [`crate::backend::gpu::generated`].

use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaFunction, CudaModule, LaunchConfig, PushKernelArg};

use super::kernels::{self, Meta, HEADERS};
use super::runtime::NvrtcSource;
use super::{count_launch, CudaBackend, CudaBuffer, NAME};
use crate::backend::fused::{self, Program, Variant};
use crate::backend::gpu::cache::KernelCache;
use crate::backend::gpu::generated::{GeneratedKernels, GeneratedLaunch};
use crate::backend::gpu::meta::MetaWords;
use crate::backend::{Backend, Storage};
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

impl GeneratedKernels for CudaBackend {
    type Buffer = CudaBuffer;

    fn meta_words(&self, op: &'static str) -> MetaWords {
        kernels::meta_words(op)
    }

    fn alloc(&self, _op: &'static str, len: usize) -> Result<CudaBuffer> {
        self.pool.alloc(len)
    }

    fn wrap_buffer(&self, buf: CudaBuffer, _len: usize) -> Storage {
        CudaBackend::wrap(buf)
    }

    fn launch_generated(&self, l: &GeneratedLaunch<'_, CudaBuffer>) -> Result<()> {
        let k = kernel(self, l.program, l.variant)?;
        // Parameters: outputs, inputs, then the metadata by value.
        let mut ptrs: SmallVec<[u64; 8]> = l.outputs.iter().map(|o| o.ptr()).collect();
        for x in l.inputs {
            ptrs.push(self.buffer(x)?.ptr());
        }
        let cfg = self.elementwise_cfg(l.size);
        launch(self, l.op, &k, cfg, &ptrs, &Meta::from_words(l.meta))
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
