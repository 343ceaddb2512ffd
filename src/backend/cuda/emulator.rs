//! The emulated CUDA device (`cuda-emu`): the other side of the [`super::device`] seam.
//! The CUDA backend's host code (metadata, grids, the buffer pool, the kernel caches, the
//! argument lists) runs unchanged; only allocation, copies, module loading and the launch
//! call land here instead of in the driver.
//!
//! - Memory is host memory (256-byte aligned, like `cuMemAlloc`); a device pointer is its
//!   address.
//! - A module is the same CUDA C that NVRTC gets (a kernel file of `cuda/` or a generated
//!   program, with its headers), compiled for the host by the system C++ compiler with
//!   `emulator/cuda_host.hpp` in front (the CUDA built-ins: `threadIdx`, `__syncthreads`,
//!   `__shared__`, the intrinsics) into a shared library, loaded with `dlopen`. Libraries
//!   are cached on disk by a hash of their text and flags, so a second run compiles nothing.
//! - A launch passes the grid, block and one pointer per argument (as `cuLaunchKernel`'s
//!   `kernelParams`) to the module's entry point, which runs every block, each block's
//!   threads as fibers switching at `__syncthreads`. Launches run synchronously, one at a
//!   time (the stream).
//! - Floating point: built with `-ffp-contract=fast`, plus `-mfma` where the CPU has FMA, so
//!   multiply-adds contract as NVRTC's default `--fmad=true` makes them on a GPU.
//!
//! Needs a C++17 compiler (`MINITORCH_CXX`, else `c++`, `g++` or `clang++`) and a Unix host
//! (`ucontext`). Speed is not a goal: use small shapes. Unlike a GPU, nothing guards the
//! buffers from each other: a kernel that reads or writes out of bounds corrupts host
//! memory or crashes the process (the host code's layout checks are what prevent it).

use std::ffi::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use libloading::Library;

use super::runtime::NvrtcSource;
use crate::error::{Error, Result};

/// The host emulation of the CUDA built-ins, put in front of every module.
pub const CUDA_HOST_HPP: &str = include_str!("emulator/cuda_host.hpp");

/// "Multiprocessors" the emulated device reports: grids stay small, so grid-stride loops
/// take several turns at modest sizes.
pub const SM_COUNT: u32 = 1;

/// Bytes of "device memory" the emulated device reports (the pool caches half).
pub const TOTAL_MEM: usize = 1 << 30;

fn unavailable(msg: impl Into<String>) -> Error {
    Error::DeviceUnavailable {
        device: "cuda-emu",
        msg: msg.into(),
    }
}

fn emu_err(op: &'static str, msg: impl Into<String>) -> Error {
    Error::backend("cuda-emu", op, msg)
}

/// The launch description an entry point receives (`emu::Launch` in `cuda_host.hpp`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EmuLaunch {
    /// Blocks on x, y, z.
    pub grid: [u32; 3],
    /// Threads per block on x, y, z.
    pub block: [u32; 3],
    /// Dynamic shared memory (the kernels declare theirs statically: must be 0).
    pub shared_bytes: u32,
}

type EntryFn = unsafe extern "C" fn(*const EmuLaunch, *mut *mut c_void) -> c_int;

/// One kernel of a loaded module.
pub struct EmuFunction {
    name: String,
    entry: EntryFn,
    _lib: Arc<Library>,
}

impl std::fmt::Debug for EmuFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EmuFunction({})", self.name)
    }
}

/// Host memory standing in for a device allocation of `len` f32.
#[derive(Debug)]
pub struct HostMemory {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the memory is owned by this value alone; kernels reach it only through launches,
// which the emulator runs one at a time, and copies, which the backend orders.
unsafe impl Send for HostMemory {}
// SAFETY: as above; shared references only read the address and length.
unsafe impl Sync for HostMemory {}

const ALIGN: usize = 256;

impl HostMemory {
    fn layout(len: usize) -> Option<std::alloc::Layout> {
        std::alloc::Layout::from_size_align(len.checked_mul(4)?, ALIGN).ok()
    }

    /// `len` (> 0) f32 of uninitialised memory, or None when the host has none.
    fn new(len: usize) -> Option<HostMemory> {
        let layout = Self::layout(len.max(1))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) } as *mut f32;
        (!ptr.is_null()).then_some(HostMemory { ptr, len })
    }

    /// Elements allocated.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty allocation.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The "device pointer": the address.
    pub fn ptr(&self) -> u64 {
        self.ptr as u64
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        if let Some(layout) = Self::layout(self.len.max(1)) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.ptr as *mut u8, layout) };
        }
    }
}

/// The emulated device: a C++ compiler, a cache directory of built modules and the lock
/// that makes launches run one at a time.
#[derive(Debug)]
pub struct Emulator {
    compiler: String,
    version: String,
    flags: Vec<String>,
    dir: PathBuf,
    stream: Mutex<()>,
}

/// 64-bit FNV-1a of `parts` from `seed` (a stable name for a cached library).
fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = seed;
    for p in parts {
        for b in p.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// Whether this CPU executes FMA instructions (then the emulation uses them, as a GPU does).
fn host_has_fma() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        false
    }
}

impl Emulator {
    /// Find the C++ compiler. Without one (or off Unix) this is
    /// [`Error::DeviceUnavailable`] saying how to get it.
    pub fn new() -> Result<Emulator> {
        if !cfg!(unix) {
            return Err(unavailable(
                "the emulated CUDA device runs on Linux and other Unix hosts only (it needs ucontext)",
            ));
        }
        let candidates: Vec<String> = match std::env::var("MINITORCH_CXX") {
            Ok(c) if !c.trim().is_empty() => vec![c.trim().to_string()],
            _ => ["c++", "g++", "clang++"].map(String::from).to_vec(),
        };
        let found = candidates.iter().find_map(|c| {
            let out = Command::new(c).arg("--version").output().ok()?;
            out.status.success().then(|| {
                let v = String::from_utf8_lossy(&out.stdout);
                (
                    c.clone(),
                    v.lines().next().unwrap_or_default().trim().to_string(),
                )
            })
        });
        let Some((compiler, version)) = found else {
            return Err(unavailable(format!(
                "no C++ compiler: tried {} (install one: `apt-get install g++`, or set MINITORCH_CXX)",
                candidates.join(", ")
            )));
        };
        let mut flags: Vec<String> = [
            "-std=c++17",
            "-O1",
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            "-ffp-contract=fast",
            "-fno-math-errno",
            // The fibers switch stacks with _longjmp, which fortified builds refuse.
            "-U_FORTIFY_SOURCE",
            "-D_FORTIFY_SOURCE=0",
            "-w",
        ]
        .map(String::from)
        .to_vec();
        if host_has_fma() && cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
            flags.push("-mfma".into());
        }
        let dir = match std::env::var_os("MINITORCH_CUDA_EMU_CACHE") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => std::env::temp_dir().join("minitorch-cuda-emu"),
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            unavailable(format!(
                "cannot create the module cache {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Emulator {
            compiler,
            version,
            flags,
            dir,
            stream: Mutex::new(()),
        })
    }

    /// One line: the compiler and the flags that matter for numerics.
    pub fn describe(&self) -> String {
        format!(
            "emulated CUDA device on the host CPU ({}; {} with -ffp-contract=fast{}; modules cached in {})",
            crate::backend::cpu::cpu_model(),
            self.version,
            if self.flags.iter().any(|f| f == "-mfma") {
                " -mfma"
            } else {
                ", no FMA on this CPU"
            },
            self.dir.display()
        )
    }

    /// Build (or find in the cache) and load `program`, returning its `entries` in order.
    pub fn load(&self, program: &NvrtcSource, entries: &[String]) -> Result<Vec<EmuFunction>> {
        let mut unit = String::with_capacity(program.source.len() + 4096);
        // Threads that never wait at a barrier run as plain calls, not fibers.
        let barriers = program.source.contains("__syncthreads")
            || program
                .headers
                .iter()
                .any(|(_, t)| t.contains("__syncthreads"));
        unit.push_str(&format!("#define EMU_BARRIERS {}\n", barriers as u8));
        unit.push_str("#include \"cuda_host.hpp\"\n");
        unit.push_str(&format!("#include \"{}\"\n", program.name));
        for e in entries {
            unit.push_str(&format!("EMU_ENTRY({e})\n"));
        }
        let mut parts: Vec<&[u8]> = vec![
            self.compiler.as_bytes(),
            self.version.as_bytes(),
            CUDA_HOST_HPP.as_bytes(),
            program.name.as_bytes(),
            program.source.as_bytes(),
            unit.as_bytes(),
        ];
        for (n, t) in program.headers {
            parts.push(n.as_bytes());
            parts.push(t.as_bytes());
        }
        let flags = self.flags.join(" ");
        parts.push(flags.as_bytes());
        let key = format!(
            "{:016x}{:016x}",
            fnv(0xcbf2_9ce4_8422_2325, &parts),
            fnv(0x8422_2325_cbf2_9ce4, &parts)
        );
        let lib_path = self.dir.join(format!("{key}.so"));
        if !lib_path.exists() {
            self.build(program, &unit, &key, &lib_path)?;
        }
        // SAFETY: the library is one this emulator built from kernel sources; loading it
        // runs no initialiser beyond the C++ runtime's.
        let lib = unsafe { Library::new(&lib_path) }
            .map_err(|e| emu_err("load", format!("loading {}: {e}", lib_path.display())))?;
        let lib = Arc::new(lib);
        entries
            .iter()
            .map(|e| {
                let symbol = format!("minitorch_emu_{e}\0");
                // SAFETY: every `minitorch_emu_*` symbol is an EMU_ENTRY with this signature.
                let f: EntryFn = unsafe { lib.get::<EntryFn>(symbol.as_bytes()) }
                    .map(|s| *s)
                    .map_err(|err| {
                        emu_err(
                            "load",
                            format!("{}: entry point {e} not found: {err}", program.name),
                        )
                    })?;
                Ok(EmuFunction {
                    name: e.clone(),
                    entry: f,
                    _lib: lib.clone(),
                })
            })
            .collect()
    }

    /// Compile `unit` (with the program and headers beside it) into `lib_path`.
    fn build(&self, program: &NvrtcSource, unit: &str, key: &str, lib_path: &Path) -> Result<()> {
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work = self
            .dir
            .join(format!("build-{key}-{}-{n}", std::process::id()));
        let write = |name: &str, text: &str| {
            std::fs::write(work.join(name), text)
                .map_err(|e| emu_err("compile", format!("writing {name}: {e}")))
        };
        std::fs::create_dir_all(&work)
            .map_err(|e| emu_err("compile", format!("creating {}: {e}", work.display())))?;
        let result = (|| {
            write("cuda_host.hpp", CUDA_HOST_HPP)?;
            for (n, t) in program.headers {
                write(n, t)?;
            }
            write(program.name, program.source)?;
            write("unit.cpp", unit)?;
            let tmp = work.join("module.so");
            let mut cmd = Command::new(&self.compiler);
            cmd.args(&self.flags).arg("-I").arg(&work);
            for d in program.include_dirs {
                cmd.arg("-I").arg(d);
            }
            let out = cmd
                .arg(work.join("unit.cpp"))
                .arg("-o")
                .arg(&tmp)
                .output()
                .map_err(|e| emu_err("compile", format!("running {}: {e}", self.compiler)))?;
            if !out.status.success() {
                return Err(emu_err(
                    "compile",
                    format!(
                        "{} could not compile {} for the emulated device:\n{}",
                        self.compiler,
                        program.name,
                        String::from_utf8_lossy(&out.stderr)
                    ),
                ));
            }
            // Atomic: a process that finds the library finds it whole.
            std::fs::rename(&tmp, lib_path)
                .map_err(|e| emu_err("compile", format!("storing {}: {e}", lib_path.display())))
        })();
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    /// Host memory for `len` f32 (contents undefined).
    pub fn alloc(&self, len: usize) -> Option<HostMemory> {
        HostMemory::new(len)
    }

    /// Run `f` over the grid of `launch` with `args` (one pointer per kernel argument, each
    /// pointing at the argument's value), to completion.
    ///
    /// # Safety
    /// `args` must match `f`'s parameters in number and type, and every device pointer
    /// among them must address live [`HostMemory`] large enough for what the kernel touches.
    pub unsafe fn launch(
        &self,
        f: &EmuFunction,
        launch: &EmuLaunch,
        args: &mut [*mut c_void],
    ) -> Result<()> {
        if launch.shared_bytes != 0 {
            return Err(emu_err(
                "launch",
                format!("{}: dynamic shared memory is not emulated", f.name),
            ));
        }
        let _stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the caller's contract; the entry point only reads `launch` and `args`.
        let status = unsafe { (f.entry)(launch, args.as_mut_ptr()) };
        match status {
            0 => Ok(()),
            1 => Err(emu_err(
                "launch",
                format!(
                    "{}: invalid launch shape grid {:?} block {:?}",
                    f.name, launch.grid, launch.block
                ),
            )),
            2 => Err(emu_err(
                "launch",
                format!("{}: out of host memory for fiber stacks", f.name),
            )),
            s => Err(emu_err(
                "launch",
                format!("{}: the fiber scheduler failed ({s})", f.name),
            )),
        }
    }

    /// Fill `len` words of `m` with `bits`.
    pub fn memset32(&self, m: &HostMemory, bits: u32, len: usize) {
        let _stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let n = len.min(m.len);
        // SAFETY: `m` holds at least `n` f32, owned by it.
        let words = unsafe { std::slice::from_raw_parts_mut(m.ptr as *mut u32, n) };
        words.fill(bits);
    }

    /// Copy `src` to the start of `m`.
    pub fn upload(&self, src: &[f32], m: &HostMemory) {
        let _stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let n = src.len().min(m.len);
        // SAFETY: `m` holds at least `n` f32 and does not overlap `src` (host memory the
        // caller owns).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), m.ptr, n) };
    }

    /// Copy the start of `m` to `dst`.
    pub fn download(&self, m: &HostMemory, dst: &mut [f32]) {
        let _stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let n = dst.len().min(m.len);
        // SAFETY: as in `upload`.
        unsafe { std::ptr::copy_nonoverlapping(m.ptr, dst.as_mut_ptr(), n) };
    }
}
