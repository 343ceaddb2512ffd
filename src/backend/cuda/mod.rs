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
//! - The same host code drives the emulated device `cuda-emu` ([`emulator`]): everything
//!   differs only behind the [`device`] seam (allocation, copies, module load, launch).
//!
//! Kernel files, entry points and launch shapes are in [`kernels`] (the metadata words and
//! the kernel choice by shape are shared with wgpu: `gpu::meta`, `gpu::plan`); the
//! generated kernels in [`generated`]; choosing NVRTC in [`nvrtc`]; driver, NVRTC and
//! module loading in [`runtime`]; the seam in [`device`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::gpu::cache::KernelCache;
use super::gpu::plan::{self, ReducePlan};
use super::gpu::{self, meta};
use super::{
    check, fused as fusion, Backend, BinaryOp, Device, Outputs, ReduceOp, Storage, UnaryOp,
};
use crate::error::{Error, Result};
use crate::layout::Layout;

pub mod device;
pub mod emulator;
pub mod generated;
pub mod kernels;
pub mod nvrtc;
pub mod pool;
pub mod runtime;

use device::{Gpu, Launch, Module};
use kernels::{Family, Meta, HEADERS};
pub use pool::CudaBuffer;
use pool::Pool;
use runtime::NvrtcSource;
pub use runtime::Runtime;

/// The CUDA backend: storage is a [`CudaBuffer`] on the device, which is a GPU or the
/// emulated device ([`device::Gpu`]).
pub struct CudaBackend {
    gpu: Arc<Gpu>,
    pool: Arc<Pool>,
    /// The kernel files, compiled and loaded on first use (a failure is remembered).
    families: [OnceLock<Result<Module>>; Family::ALL.len()],
    /// The generated kernels, one per program and variant.
    generated: KernelCache<Module>,
    /// Kernel launches so far, counted like wgpu's dispatches.
    launches: AtomicU64,
    /// Which entry points have run: a bit per slot of each kernel file, then one per
    /// generated variant (see [`CudaBackend::entry_points_run`]).
    ran: [AtomicU64; Family::ALL.len() + 1],
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("gpu", &self.gpu)
            .finish()
    }
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

    /// The process-wide emulated CUDA device (`cuda-emu`, see [`emulator`]), created on
    /// first call: the same backend code, its kernels compiled for the host CPU. Without a
    /// C++ compiler this is [`Error::DeviceUnavailable`].
    pub fn emulated() -> Result<Arc<CudaBackend>> {
        static B: OnceLock<Result<Arc<CudaBackend>>> = OnceLock::new();
        B.get_or_init(|| {
            let emu = emulator::Emulator::new()?;
            CudaBackend::on(Gpu::Emulated(emu)).map(Arc::new)
        })
        .clone()
    }

    /// A backend on GPU `ordinal` (prefer [`CudaBackend::global`]: one per process). It
    /// compiles and loads every kernel file and a representative generated kernel, and runs
    /// one small kernel with a readback before returning, so a driver, NVRTC or GPU that
    /// cannot run the kernels is an [`Error::DeviceUnavailable`] here (and `auto` falls
    /// back), not at the first op.
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        CudaBackend::on(Gpu::Driver(Runtime::new(ordinal)?))
    }

    /// A backend on `gpu`, self-tested.
    fn on(gpu: Gpu) -> Result<CudaBackend> {
        let gpu = Arc::new(gpu);
        // Cache up to half the device memory of freed buffers.
        let pool = Pool::new(gpu.clone(), (gpu.total_mem() / 2).max(1 << 28));
        let backend = CudaBackend {
            gpu,
            pool,
            families: Default::default(),
            generated: KernelCache::default(),
            launches: AtomicU64::new(0),
            ran: Default::default(),
        };
        backend.self_test().map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default();
            let on = match &*backend.gpu {
                Gpu::Driver(rt) => rt.device_name.clone(),
                Gpu::Emulated(_) => "the emulated device".to_string(),
            };
            Error::DeviceUnavailable {
                device: backend.gpu.name(),
                msg: format!(
                    "the kernels do not run on {on}: {}\n{msg}",
                    first.chars().take(160).collect::<String>()
                ),
            }
        })?;
        Ok(backend)
    }

    /// Load every kernel file and a generated kernel (the kind every layer, loss and
    /// optimiser step uses), then compute `-x` for x = [0, 1, 2] and read it back.
    fn self_test(&self) -> Result<()> {
        self.warm_up()?;
        generated::warm_up(self)?;
        let x = self.upload(&[0.0, 1.0, 2.0])?;
        let y = self.map(UnaryOp::Neg, &x, &Layout::contiguous(&[3]))?;
        let got = self.download(&y)?;
        if got != [-0.0, -1.0, -2.0] {
            return Err(Error::backend(
                self.gpu.name(),
                "self-test",
                format!("neg([0, 1, 2]) gave {got:?}"),
            ));
        }
        Ok(())
    }

    /// The driver runtime (context, stream, device facts and versions); an error on the
    /// emulated device, which has none.
    pub fn runtime(&self) -> Result<&Runtime> {
        match &*self.gpu {
            Gpu::Driver(rt) => Ok(rt),
            Gpu::Emulated(_) => Err(Error::DeviceUnavailable {
                device: "cuda-emu",
                msg: "the emulated CUDA device has no driver runtime (this needs an NVIDIA GPU)"
                    .into(),
            }),
        }
    }

    /// What runs the kernels: the GPU or the emulation.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Kernel launches of this backend so far (every kernel, primitive or generated), for
    /// counting launches per training step.
    pub fn launches(&self) -> u64 {
        self.launches.load(Ordering::Relaxed)
    }

    /// Every entry point this backend can launch, as `file:entry` (`reduce.cu:reduce_sum`,
    /// `fused.cu:fused_matmul`; the generated ones by variant), and whether it has run.
    /// Tests use it to show that every kernel ran at least once.
    pub fn entry_points_run(&self) -> Vec<(String, bool)> {
        let mut all = Vec::new();
        for f in Family::ALL {
            let bits = self.ran[f.index()].load(Ordering::Relaxed);
            for (slot, e) in f.entry_points().into_iter().enumerate() {
                all.push((format!("{}:{e}", f.file_name()), bits >> slot & 1 == 1));
            }
        }
        let bits = self.ran[Family::ALL.len()].load(Ordering::Relaxed);
        for (i, v) in fusion::Variant::ALL.iter().enumerate() {
            all.push((
                format!(
                    "{}:{} ({v:?})",
                    generated::FILE_NAME,
                    fusion::entry_point(*v)
                ),
                bits >> i & 1 == 1,
            ));
        }
        all
    }

    /// Note that entry `slot` of `family` (`None`: the generated `variant`) ran.
    fn note_run(&self, family: Option<Family>, slot: usize) {
        let i = family.map_or(Family::ALL.len(), Family::index);
        self.ran[i].fetch_or(1 << slot.min(63), Ordering::Relaxed);
    }

    /// Generated kernels compiled and loaded so far.
    pub fn generated_kernels(&self) -> usize {
        self.generated.len()
    }

    /// The buffer of a storage of this backend.
    pub fn buffer<'a>(&self, x: &'a Storage) -> Result<&'a CudaBuffer> {
        x.downcast::<CudaBuffer>(self.gpu.name())
    }

    /// Compile and load every kernel file (done by [`CudaBackend::new`]; cached after).
    pub fn warm_up(&self) -> Result<()> {
        Family::ALL
            .iter()
            .try_for_each(|&f| self.family(f).map(|_| ()))
    }

    /// The kernels of `family`, compiled and loaded on first use.
    fn family(&self, family: Family) -> Result<&Module> {
        self.families[family.index()]
            .get_or_init(|| {
                let program = NvrtcSource {
                    name: family.file_name(),
                    source: family.source(),
                    headers: &HEADERS,
                    include_dirs: &[],
                };
                self.gpu.load(&program, &family.entry_points())
            })
            .as_ref()
            .map_err(|e| e.clone())
    }

    fn wrap(&self, buf: CudaBuffer) -> Storage {
        let n = buf.len();
        Storage::new(buf, n, self.gpu.device())
    }

    /// Launch `module`'s function `slot` on `grid` x `block` with `ptrs` and `meta`.
    #[allow(clippy::too_many_arguments)]
    fn launch_module(
        &self,
        op: &'static str,
        module: &Module,
        slot: usize,
        grid: (u32, u32, u32),
        block: u32,
        ptrs: &[u64],
        meta: &Meta,
    ) -> Result<()> {
        let launch = Launch {
            grid,
            block: (block, 1, 1),
            shared_bytes: 0,
            ptrs,
            meta,
        };
        // SAFETY: the argument list matches the kernel's signature (float pointers, then
        // Meta by value); the metadata was built from layouts checked to lie inside their
        // storages, and the output buffer holds the result's element count.
        unsafe { self.gpu.launch(op, &module.funcs[slot], &launch) }?;
        self.launches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        op: &'static str,
        family: Family,
        slot: usize,
        grid: (u32, u32, u32),
        block: u32,
        ptrs: &[u64],
        meta: &Meta,
    ) -> Result<()> {
        let module = self.family(family)?;
        self.launch_module(op, module, slot, grid, block, ptrs, meta)?;
        self.note_run(Some(family), slot);
        Ok(())
    }

    fn elementwise_grid(&self, size: usize) -> (u32, u32, u32) {
        (kernels::elementwise_grid(size, self.gpu.sm_count()), 1, 1)
    }
}

impl Backend for CudaBackend {
    fn device(&self) -> Device {
        self.gpu.device()
    }

    fn describe(&self) -> String {
        self.gpu.describe()
    }

    fn is_emulated(&self) -> bool {
        matches!(*self.gpu, Gpu::Emulated(_))
    }

    fn full(&self, len: usize, value: f32) -> Result<Storage> {
        let buf = self.pool.alloc(len)?;
        if let Some(m) = buf.memory() {
            self.gpu.memset32(m, value.to_bits(), len)?;
        }
        Ok(self.wrap(buf))
    }

    fn upload(&self, data: &[f32]) -> Result<Storage> {
        let mut buf = self.pool.alloc(data.len())?;
        if let Some(m) = buf.memory_mut() {
            self.gpu.upload(data, m)?;
        }
        Ok(self.wrap(buf))
    }

    fn download(&self, x: &Storage) -> Result<Vec<f32>> {
        let buf = self.buffer(x)?;
        let mut out = vec![0.0f32; buf.len()];
        match buf.memory() {
            Some(m) => self.gpu.download(m, &mut out)?,
            None => self.synchronize()?,
        }
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
            let grid = match launch.plan {
                ReducePlan::Serial => self.elementwise_grid(out_size),
                ReducePlan::Tree => (kernels::reduce_grid(out_size), 1, 1),
            };
            self.launch(
                "reduce",
                Family::Reduce,
                kernels::reduce_plan_slot(op, launch.contiguous, launch.plan),
                grid,
                kernels::BLOCK,
                &[out.ptr(), xb.ptr()],
                &Meta::from_words(&words),
            )?;
        }
        Ok(self.wrap(out))
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
            self.launch(
                "matmul",
                Family::Matmul,
                if launch.fast {
                    kernels::MATMUL_FAST_SLOT
                } else {
                    0
                },
                launch.grid,
                kernels::MATMUL_THREADS,
                &[out.ptr(), ab.ptr(), bb.ptr()],
                &Meta::from_words(&words),
            )?;
        }
        Ok(self.wrap(out))
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
                self.elementwise_grid(size),
                kernels::BLOCK,
                &[out.ptr(), xb.ptr()],
                &Meta::from_words(&words),
            )?;
        }
        Ok(self.wrap(out))
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
                self.elementwise_grid(len),
                kernels::BLOCK,
                &[out.ptr()],
                &Meta::from_words(&words),
            )?;
        }
        Ok(self.wrap(out))
    }

    fn synchronize(&self) -> Result<()> {
        self.gpu.synchronize()
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
