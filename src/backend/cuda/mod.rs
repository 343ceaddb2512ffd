//! The CUDA backend (MiniTorch's `cuda_ops.py`, tasks 3.3 and 3.4) on NVIDIA GPUs through
//! cudarc, with the kernels of `cuda/` compiled by NVRTC when the backend is created.
//!
//! - Nothing CUDA is needed to build: cudarc loads libcuda and libnvrtc at run time. Their
//!   presence is checked before any call ([`runtime::driver_library_present`]), so a
//!   machine without them gets [`Error::DeviceUnavailable`] saying what is missing and
//!   where it was looked for, never a panic. NVRTC is the one that matches the driver
//!   ([`nvrtc`]), and every kernel is compiled, loaded and one run before the backend is
//!   returned, so a broken driver/NVRTC pair is `DeviceUnavailable` at selection time.
//! - Every transfer and launch goes to one stream, in order, and nothing waits for the GPU
//!   until a download (or [`Backend::synchronize`]): a chain of ops costs launches, not
//!   round trips. Kernel metadata is a by-value kernel parameter, so a launch uploads
//!   nothing.
//! - Device memory is reused through a size-class cache ([`pool`]).
//!
//! Kernel files, entry points and launch shapes are in [`kernels`] (the metadata words and
//! the kernel choice by shape are shared with wgpu: `gpu::meta`, `gpu::plan`); the
//! generated kernels in [`generated`]; choosing NVRTC in [`nvrtc`]; driver, NVRTC and
//! module loading in [`runtime`].

use std::sync::{Arc, OnceLock};

use cudarc::driver::{sys as dsys, LaunchConfig, PushKernelArg};

use super::gpu::plan::{self, ReducePlan};
use super::gpu::{self, meta};
use super::{
    check, fused as fusion, Backend, BinaryOp, Device, Outputs, ReduceOp, Storage, UnaryOp,
};
use crate::error::{Error, Result};
use crate::layout::Layout;

pub mod generated;
pub mod kernels;
pub mod nvrtc;
pub mod pool;
pub mod runtime;

use kernels::{Family, Meta};
pub use pool::CudaBuffer;
use pool::Pool;
pub use runtime::Runtime;

// SAFETY: `Meta` is `#[repr(C)]` plain u32 words, the layout of `struct Meta` in
// cuda/indexing.cuh.
unsafe impl cudarc::driver::DeviceRepr for Meta {}

/// Name used in errors.
const NAME: &str = "cuda";

/// Kernel launches of this process, counted like wgpu's dispatches (for benchmarks).
static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count_launch() {
    LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The CUDA backend: storage is a [`CudaBuffer`] on the device.
#[derive(Debug)]
pub struct CudaBackend {
    rt: Runtime,
    pool: Arc<Pool>,
}

fn launch_err(op: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error {
    move |e| Error::backend(NAME, op, format!("kernel launch failed: {e}"))
}

impl CudaBackend {
    /// The process-wide CUDA backend on GPU `MINITORCH_CUDA_DEVICE` (default 0), created on
    /// first call. Without a usable driver, NVRTC or GPU this is
    /// [`Error::DeviceUnavailable`] (also remembered, so later calls return at once).
    pub fn global() -> Result<Arc<CudaBackend>> {
        static B: OnceLock<Result<Arc<CudaBackend>>> = OnceLock::new();
        B.get_or_init(|| {
            let ordinal = match std::env::var("MINITORCH_CUDA_DEVICE") {
                Ok(s) => s.trim().parse::<usize>().map_err(|_| {
                    Error::invalid(
                        "cuda",
                        format!("MINITORCH_CUDA_DEVICE={s:?} is not a device number"),
                    )
                })?,
                Err(_) => 0,
            };
            CudaBackend::new(ordinal).map(Arc::new)
        })
        .clone()
    }

    /// A backend on GPU `ordinal` (prefer [`CudaBackend::global`]: one per process). It
    /// compiles and loads every kernel file and runs one small kernel with a readback
    /// before returning, so a driver, NVRTC or GPU that cannot run the kernels is an
    /// [`Error::DeviceUnavailable`] here (and `auto` falls back), not at the first op.
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        let rt = Runtime::new(ordinal)?;
        // Cache up to half the device memory of freed buffers.
        let pool = Pool::new(rt.stream.clone(), (rt.total_mem / 2).max(1 << 28));
        let backend = CudaBackend { rt, pool };
        backend.self_test().map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default();
            Error::DeviceUnavailable {
                device: NAME,
                msg: format!(
                    "the kernels do not run on {}: {}\n{msg}",
                    backend.rt.device_name,
                    first.chars().take(160).collect::<String>()
                ),
            }
        })?;
        Ok(backend)
    }

    /// Load every kernel file, then compute `-x` for x = [0, 1, 2] and read it back.
    fn self_test(&self) -> Result<()> {
        self.warm_up()?;
        let x = self.upload(&[0.0, 1.0, 2.0])?;
        let y = self.map(UnaryOp::Neg, &x, &Layout::contiguous(&[3]))?;
        let got = self.download(&y)?;
        if got != [-0.0, -1.0, -2.0] {
            return Err(Error::backend(
                NAME,
                "self-test",
                format!("neg([0, 1, 2]) gave {got:?}"),
            ));
        }
        Ok(())
    }

    /// The runtime: context, stream, device facts and versions.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Kernel launches so far (every kernel, primitive or fused), for counting launches
    /// per training step.
    pub fn launches(&self) -> u64 {
        LAUNCHES.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The buffer of a storage of this backend.
    pub fn buffer<'a>(&self, x: &'a Storage) -> Result<&'a CudaBuffer> {
        x.downcast::<CudaBuffer>(NAME)
    }

    /// Compile and load every kernel file (done by [`CudaBackend::new`]; cached after).
    pub fn warm_up(&self) -> Result<()> {
        Family::ALL
            .iter()
            .try_for_each(|&f| self.rt.kernels(f).map(|_| ()))
    }

    fn wrap(buf: CudaBuffer) -> Storage {
        let n = buf.len();
        Storage::new(buf, n, Device::Cuda)
    }

    fn launch(
        &self,
        op: &'static str,
        family: Family,
        slot: usize,
        cfg: LaunchConfig,
        ptrs: &[u64],
        meta: &Meta,
    ) -> Result<()> {
        let kernels = self.rt.kernels(family)?;
        let func = &kernels.funcs[slot];
        let mut b = self.rt.stream.launch_builder(func);
        for p in ptrs {
            b.arg(p);
        }
        b.arg(meta);
        // SAFETY: the argument list matches the kernel's signature (float pointers, then
        // Meta by value); the metadata was built from layouts checked to lie inside their
        // storages, and the output buffer holds the result's element count.
        unsafe { b.launch(cfg) }.map_err(launch_err(op))?;
        count_launch();
        Ok(())
    }

    fn elementwise_cfg(&self, size: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (kernels::elementwise_grid(size, self.rt.sm_count), 1, 1),
            block_dim: (kernels::BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

impl Backend for CudaBackend {
    fn device(&self) -> Device {
        Device::Cuda
    }

    fn describe(&self) -> String {
        self.rt.describe()
    }

    fn full(&self, len: usize, value: f32) -> Result<Storage> {
        let buf = self.pool.alloc(len)?;
        if len > 0 {
            self.rt.ctx.bind_to_thread().map_err(launch_err("full"))?;
            // SAFETY: the buffer holds at least `len` f32 values; the memset is queued on
            // the backend's stream like every other use of the buffer.
            unsafe {
                dsys::cuMemsetD32Async(buf.ptr(), value.to_bits(), len, self.rt.stream.cu_stream())
                    .result()
            }
            .map_err(|e| Error::backend(NAME, "full", format!("memset failed: {e}")))?;
        }
        Ok(Self::wrap(buf))
    }

    fn upload(&self, data: &[f32]) -> Result<Storage> {
        let mut buf = self.pool.alloc(data.len())?;
        if let Some(dst) = buf.slice_mut() {
            // From pageable memory the driver stages `data` before returning, so the copy
            // needs no synchronisation.
            self.rt.stream.memcpy_htod(data, dst).map_err(|e| {
                Error::backend(NAME, "upload", format!("copy to the device failed: {e}"))
            })?;
        }
        Ok(Self::wrap(buf))
    }

    fn download(&self, x: &Storage) -> Result<Vec<f32>> {
        let buf = self.buffer(x)?;
        let mut out = vec![0.0f32; buf.len()];
        if let Some(src) = buf.slice() {
            let view = src.slice(0..buf.len());
            self.rt.stream.memcpy_dtoh(&view, &mut out).map_err(|e| {
                Error::backend(NAME, "download", format!("copy to the host failed: {e}"))
            })?;
        }
        self.synchronize()?;
        Ok(out)
    }

    fn map(&self, op: UnaryOp, x: &Storage, layout: &Layout) -> Result<Storage> {
        gpu::generated::map(self, "map", op, x, layout)
    }

    fn zip(
        &self,
        op: BinaryOp,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
    ) -> Result<Storage> {
        gpu::generated::zip(self, op, a, al, b, bl)
    }

    fn reduce(&self, op: ReduceOp, x: &Storage, layout: &Layout, dim: usize) -> Result<Storage> {
        check::reduce(x, layout, dim)?;
        let mut words = kernels::meta_words("reduce");
        let launch = meta::reduce_meta("reduce", layout, dim, |what, v| words.push(what, v))?;
        let out_size = launch.out_size;
        let out = self.pool.alloc(out_size)?;
        if out_size > 0 {
            // An empty reduced dimension reads nothing: the kernel writes the identity.
            let xb = self.buffer(x)?;
            let cfg = match launch.plan {
                ReducePlan::Serial => self.elementwise_cfg(out_size),
                ReducePlan::Tree => LaunchConfig {
                    grid_dim: (kernels::reduce_grid(out_size), 1, 1),
                    block_dim: (kernels::BLOCK, 1, 1),
                    shared_mem_bytes: 0,
                },
            };
            self.launch(
                "reduce",
                Family::Reduce,
                kernels::reduce_plan_slot(op, launch.contiguous, launch.plan),
                cfg,
                &[out.ptr(), xb.ptr()],
                &Meta::from_words(&words),
            )?;
        }
        Ok(Self::wrap(out))
    }

    fn matmul(&self, a: &Storage, al: &Layout, b: &Storage, bl: &Layout) -> Result<Storage> {
        check::matmul(a, al, b, bl)?;
        let mut words = kernels::meta_words("matmul");
        let dims = meta::tiled_matmul_meta("matmul", al, bl, |what, v| words.push(what, v))?;
        let out = self.pool.alloc(dims.out_size())?;
        if dims.out_size() > 0 {
            let (ab, bb) = (self.buffer(a)?, self.buffer(b)?);
            let caps = (
                kernels::GRID_X_MAX,
                kernels::GRID_YZ_MAX,
                kernels::GRID_YZ_MAX,
            );
            let launch = plan::matmul_launch(words.words(), &dims, caps);
            let cfg = LaunchConfig {
                grid_dim: launch.grid,
                block_dim: (kernels::MATMUL_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            self.launch(
                "matmul",
                Family::Matmul,
                if launch.fast {
                    kernels::MATMUL_FAST_SLOT
                } else {
                    0
                },
                cfg,
                &[out.ptr(), ab.ptr(), bb.ptr()],
                &Meta::from_words(&words),
            )?;
        }
        Ok(Self::wrap(out))
    }

    fn copy(&self, x: &Storage, layout: &Layout) -> Result<Storage> {
        gpu::generated::map(self, "map", UnaryOp::Id, x, layout)
    }

    fn pad(&self, x: &Storage, layout: &Layout, spec: &super::pad::PadSpec) -> Result<Storage> {
        check::pad(x, layout, spec)?;
        let size = crate::layout::shape_size(&spec.out_shape);
        let out = self.pool.alloc(size)?;
        if size > 0 {
            let mut words = kernels::meta_words("pad");
            meta::pad_meta(layout, spec, |what, v| words.push(what, v))?;
            let xb = self.buffer(x)?;
            self.launch(
                "pad",
                Family::Pad,
                0,
                self.elementwise_cfg(size),
                &[out.ptr(), xb.ptr()],
                &Meta::from_words(&words),
            )?;
        }
        Ok(Self::wrap(out))
    }

    fn uniform(&self, len: usize, key: [u32; 2]) -> Result<Storage> {
        let out = self.pool.alloc(len)?;
        if len > 0 {
            let mut words = kernels::meta_words("uniform");
            meta::random_meta(len, key, |what, v| words.push(what, v))?;
            self.launch(
                "uniform",
                Family::Random,
                0,
                self.elementwise_cfg(len),
                &[out.ptr()],
                &Meta::from_words(&words),
            )?;
        }
        Ok(Self::wrap(out))
    }

    fn synchronize(&self) -> Result<()> {
        self.rt.stream.synchronize().map_err(|e| {
            Error::backend(
                NAME,
                "synchronize",
                format!("a queued kernel or copy failed: {e}"),
            )
        })
    }

    fn trim_pool(&self) {
        self.pool.trim();
    }

    fn fused(
        &self,
        program: &fusion::Program,
        inputs: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<Outputs> {
        gpu::generated::fused(self, program, inputs, params)
    }

    fn matmul_fused(
        &self,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
        epilogue: &fusion::Program,
        extra: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<Storage> {
        gpu::generated::matmul_fused(self, a, al, b, bl, epilogue, extra, params)
    }
}
