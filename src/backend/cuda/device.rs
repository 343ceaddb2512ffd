//! The seam between the CUDA backend's host code and what executes it: an NVIDIA GPU
//! through the driver ([`Runtime`], cudarc), or the emulated device ([`Emulator`]) that
//! compiles the same kernels for the host CPU. Everything above it (metadata, grids, the
//! buffer pool, the kernel caches, argument lists) is one code path; the two differ only
//! in the five calls here: allocation, copies (`memset`, upload, download), module
//! loading and the launch.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{
    sys as dsys, CudaFunction, CudaModule, CudaSlice, DevicePtr, LaunchConfig, PushKernelArg,
};

use super::emulator::{EmuFunction, EmuLaunch, Emulator, HostMemory};
use super::kernels::Meta;
use super::runtime::{NvrtcSource, Output, Runtime};
use crate::backend::Device;
use crate::error::{Error, Result};

// SAFETY: `Meta` is `#[repr(C)]` plain u32 words, the layout of `struct Meta` in
// cuda/indexing.cuh.
unsafe impl cudarc::driver::DeviceRepr for Meta {}

/// What runs the kernels: a GPU through the driver, or the emulation on the host.
#[derive(Debug)]
pub enum Gpu {
    /// An NVIDIA GPU: driver context, stream and NVRTC.
    Driver(Runtime),
    /// The emulated device (`cuda-emu`).
    Emulated(Emulator),
}

/// A device allocation of f32.
#[derive(Debug)]
pub enum Memory {
    /// Memory on the GPU.
    Driver(CudaSlice<f32>),
    /// Host memory standing in for it.
    Host(HostMemory),
}

impl Memory {
    /// Elements allocated.
    pub fn len(&self) -> usize {
        match self {
            Memory::Driver(s) => s.len(),
            Memory::Host(h) => h.len(),
        }
    }

    /// True when nothing is allocated.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One kernel entry point of a loaded module.
#[derive(Debug)]
pub enum Function {
    /// A function of a module the driver loaded.
    Driver(CudaFunction),
    /// An entry point of a module the emulator built.
    Emulated(EmuFunction),
}

/// The entry points of one loaded module, in the order asked for.
pub struct Module {
    /// One per entry point.
    pub funcs: Vec<Function>,
    /// What the driver loaded (PTX or CUBIN); `None` under emulation.
    pub output: Option<Output>,
    _driver: Option<Arc<CudaModule>>,
}

/// One launch: its shape, the device pointers (outputs first, as the kernel declares
/// them) and the metadata, which every kernel takes by value as its last parameter.
#[derive(Clone, Copy, Debug)]
pub struct Launch<'a> {
    /// Blocks on x, y, z.
    pub grid: (u32, u32, u32),
    /// Threads per block on x, y, z.
    pub block: (u32, u32, u32),
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
    /// Device pointers, in parameter order.
    pub ptrs: &'a [u64],
    /// The metadata.
    pub meta: &'a Meta,
}

/// Why an allocation failed.
#[derive(Debug)]
pub struct AllocError {
    /// The device has no room (the pool trims its cache and tries again).
    pub out_of_memory: bool,
    /// What the device said.
    pub msg: String,
}

impl Gpu {
    /// The device tensors on this backend report.
    pub fn device(&self) -> Device {
        match self {
            Gpu::Driver(_) => Device::Cuda,
            Gpu::Emulated(_) => Device::CudaEmu,
        }
    }

    /// The backend's name in errors: `cuda` or `cuda-emu`.
    pub fn name(&self) -> &'static str {
        self.device().name()
    }

    /// Multiprocessors (the elementwise grids scale with them).
    pub fn sm_count(&self) -> u32 {
        match self {
            Gpu::Driver(rt) => rt.sm_count,
            Gpu::Emulated(_) => super::emulator::SM_COUNT,
        }
    }

    /// Device memory in bytes.
    pub fn total_mem(&self) -> usize {
        match self {
            Gpu::Driver(rt) => rt.total_mem,
            Gpu::Emulated(_) => super::emulator::TOTAL_MEM,
        }
    }

    /// One line about the device.
    pub fn describe(&self) -> String {
        match self {
            Gpu::Driver(rt) => rt.describe(),
            Gpu::Emulated(e) => e.describe(),
        }
    }

    fn err(&self, op: &'static str, msg: impl Into<String>) -> Error {
        Error::backend(self.name(), op, msg)
    }

    /// `len` (> 0) f32 of device memory, contents undefined.
    pub fn alloc(&self, len: usize) -> std::result::Result<Memory, AllocError> {
        match self {
            Gpu::Driver(rt) => {
                // SAFETY: the contents are undefined until a kernel or copy writes them;
                // every caller writes the buffer before reading it.
                unsafe { rt.stream.alloc::<f32>(len) }
                    .map(Memory::Driver)
                    .map_err(|e| AllocError {
                        out_of_memory: e.0 == dsys::CUresult::CUDA_ERROR_OUT_OF_MEMORY,
                        msg: e.to_string(),
                    })
            }
            Gpu::Emulated(e) => e.alloc(len).map(Memory::Host).ok_or(AllocError {
                out_of_memory: true,
                msg: "the host is out of memory".into(),
            }),
        }
    }

    /// The device address of `m`, as kernels receive it.
    pub fn ptr(&self, m: &Memory) -> u64 {
        match (self, m) {
            (Gpu::Driver(rt), Memory::Driver(s)) => s.device_ptr(&rt.stream).0,
            (_, Memory::Host(h)) => h.ptr(),
            // Memory of another device is never handed here (storages are checked).
            (Gpu::Emulated(_), Memory::Driver(_)) => 0,
        }
    }

    /// Fill the first `len` words of `m` with `bits`, in stream order.
    pub fn memset32(&self, m: &Memory, bits: u32, len: usize) -> Result<()> {
        match (self, m) {
            (Gpu::Driver(rt), Memory::Driver(_)) => {
                rt.ctx
                    .bind_to_thread()
                    .map_err(|e| self.err("full", format!("binding the context failed: {e}")))?;
                // SAFETY: the buffer holds at least `len` f32 values; the memset is queued
                // on the backend's stream like every other use of the buffer.
                unsafe {
                    dsys::cuMemsetD32Async(self.ptr(m), bits, len, rt.stream.cu_stream()).result()
                }
                .map_err(|e| self.err("full", format!("memset failed: {e}")))
            }
            (Gpu::Emulated(e), Memory::Host(h)) => {
                e.memset32(h, bits, len);
                Ok(())
            }
            _ => Err(self.err("full", "memory of another device")),
        }
    }

    /// Copy `src` to the start of `m`, in stream order.
    pub fn upload(&self, src: &[f32], m: &mut Memory) -> Result<()> {
        match (self, m) {
            (Gpu::Driver(rt), Memory::Driver(s)) => {
                // From pageable memory the driver stages `src` before returning, so the
                // copy needs no synchronisation.
                let mut dst = s.slice_mut(0..src.len());
                rt.stream
                    .memcpy_htod(src, &mut dst)
                    .map_err(|e| self.err("upload", format!("copy to the device failed: {e}")))
            }
            (Gpu::Emulated(e), Memory::Host(h)) => {
                e.upload(src, h);
                Ok(())
            }
            _ => Err(self.err("upload", "memory of another device")),
        }
    }

    /// Copy the start of `m` to `dst` once everything queued before has run.
    pub fn download(&self, m: &Memory, dst: &mut [f32]) -> Result<()> {
        match (self, m) {
            (Gpu::Driver(rt), Memory::Driver(s)) => {
                let view = s.slice(0..dst.len());
                rt.stream
                    .memcpy_dtoh(&view, dst)
                    .map_err(|e| self.err("download", format!("copy to the host failed: {e}")))?;
                self.synchronize()
            }
            (Gpu::Emulated(e), Memory::Host(h)) => {
                e.download(h, dst);
                Ok(())
            }
            _ => Err(self.err("download", "memory of another device")),
        }
    }

    /// Wait for everything queued (the emulation runs everything at once).
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Gpu::Driver(rt) => rt.stream.synchronize().map_err(|e| {
                self.err(
                    "synchronize",
                    format!("a queued kernel or copy failed: {e}"),
                )
            }),
            Gpu::Emulated(_) => Ok(()),
        }
    }

    /// Compile and load `program`, returning its `entries` in order: NVRTC and the driver,
    /// or the host compiler and `dlopen`.
    pub fn load(&self, program: &NvrtcSource, entries: &[String]) -> Result<Module> {
        match self {
            Gpu::Driver(rt) => {
                let (module, output) = rt.load_program(program)?;
                let funcs = entries
                    .iter()
                    .map(|name| {
                        module
                            .load_function(name)
                            .map(Function::Driver)
                            .map_err(|e| {
                                self.err(
                                    "load",
                                    format!("{}: entry point {name} not found: {e}", program.name),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Module {
                    funcs,
                    output: Some(output),
                    _driver: Some(module),
                })
            }
            Gpu::Emulated(e) => Ok(Module {
                funcs: e
                    .load(program, entries)?
                    .into_iter()
                    .map(Function::Emulated)
                    .collect(),
                output: None,
                _driver: None,
            }),
        }
    }

    /// Launch `f` as `l` describes (errors name `op`).
    ///
    /// # Safety
    /// `l.ptrs` and the metadata must match `f`'s parameters (float pointers, then `Meta`
    /// by value), every pointer must address a live buffer of this device, and the
    /// metadata must keep every access inside them (the layouts were checked against their
    /// storages and each output holds the result's element count).
    pub unsafe fn launch(&self, op: &'static str, f: &Function, l: &Launch) -> Result<()> {
        match (self, f) {
            (Gpu::Driver(rt), Function::Driver(func)) => {
                let mut b = rt.stream.launch_builder(func);
                for p in l.ptrs {
                    b.arg(p);
                }
                b.arg(l.meta);
                let cfg = LaunchConfig {
                    grid_dim: l.grid,
                    block_dim: l.block,
                    shared_mem_bytes: l.shared_bytes,
                };
                // SAFETY: the caller's contract.
                unsafe { b.launch(cfg) }
                    .map(|_| ())
                    .map_err(|e| self.err(op, format!("kernel launch failed: {e}")))
            }
            (Gpu::Emulated(e), Function::Emulated(func)) => {
                let mut ptrs: smallvec::SmallVec<[u64; 12]> = l.ptrs.iter().copied().collect();
                let mut meta = *l.meta;
                let mut args: smallvec::SmallVec<[*mut c_void; 13]> = ptrs
                    .iter_mut()
                    .map(|p| p as *mut u64 as *mut c_void)
                    .collect();
                args.push(&mut meta as *mut Meta as *mut c_void);
                let launch = EmuLaunch {
                    grid: [l.grid.0, l.grid.1, l.grid.2],
                    block: [l.block.0, l.block.1, l.block.2],
                    shared_bytes: l.shared_bytes,
                };
                // SAFETY: the caller's contract; `args` points at live copies of the
                // arguments for the duration of the call.
                unsafe { e.launch(func, &launch, &mut args) }
            }
            _ => Err(self.err(op, "a kernel of another device")),
        }
    }
}
