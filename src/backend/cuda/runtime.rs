//! The CUDA runtime of the backend: finding the driver and NVRTC libraries (cudarc loads
//! them at run time and panics when they are missing, so their presence is checked first),
//! the device context and its one stream, and compiling the kernel files with NVRTC and
//! loading them, once per process and per file, at first use.

use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use cudarc::driver::{
    result as dres, sys as dsys, CudaContext, CudaFunction, CudaModule, CudaStream,
};
use cudarc::nvrtc::{sys as nsys, Ptx};

use super::kernels::{Family, HEADERS};
use crate::error::{Error, Result};

/// How to get NVRTC, for error messages.
pub const NVRTC_HINT: &str = "install it with `scripts/install-nvrtc.sh` (which runs \
`python3 -m pip install \"nvidia-cuda-nvrtc>=13,<14\"` and prints the library's directory) \
and add that directory to LD_LIBRARY_PATH, or add the CUDA toolkit's lib64 directory \
(for example /usr/local/cuda/lib64) to LD_LIBRARY_PATH";

/// cudarc's candidate names for library `lib`, without repeats.
fn candidates(lib: &str) -> Vec<String> {
    let mut names = cudarc::get_lib_name_candidates(lib);
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn unavailable(msg: impl Into<String>) -> Error {
    Error::DeviceUnavailable {
        device: "cuda",
        msg: msg.into(),
    }
}

fn backend_err(op: &'static str, msg: impl Into<String>) -> Error {
    Error::backend("cuda", op, msg)
}

/// Where the dynamic loader looks for a library given by name, in words.
pub fn loader_search_path() -> String {
    let var = if cfg!(windows) {
        "PATH"
    } else {
        "LD_LIBRARY_PATH"
    };
    let value = std::env::var(var).unwrap_or_default();
    let value = if value.is_empty() {
        "(unset)".to_string()
    } else {
        value
    };
    if cfg!(windows) {
        format!("the DLL search path (PATH={value})")
    } else {
        format!("the dynamic loader's path: LD_LIBRARY_PATH={value}, then the ldconfig cache and the system library directories (/lib, /usr/lib, ...)")
    }
}

/// Run `f`, turning a panic (cudarc panics when a library or symbol is missing) into an
/// error.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".to_string());
        unavailable(format!("{what} failed inside cudarc: {msg}"))
    })
}

/// Ok when the NVIDIA driver library (libcuda) can be loaded.
pub fn driver_library_present() -> Result<()> {
    // SAFETY: only tries to dlopen the library by its candidate names.
    if guarded("probing libcuda", || unsafe { dsys::is_culib_present() })? {
        return Ok(());
    }
    Err(unavailable(format!(
        "the NVIDIA driver library was not found (looked for {:?} in {}); \
         this machine has no NVIDIA driver, or it is not on the library path",
        candidates("cuda"),
        loader_search_path()
    )))
}

/// Ok when the NVRTC library (libnvrtc) can be loaded.
pub fn nvrtc_library_present() -> Result<()> {
    // SAFETY: only tries to dlopen the library by its candidate names.
    if guarded("probing libnvrtc", || unsafe { nsys::is_culib_present() })? {
        return Ok(());
    }
    Err(unavailable(format!(
        "the NVRTC library (the CUDA runtime compiler) was not found (looked for {:?} in {}); {NVRTC_HINT}",
        candidates("nvrtc"),
        loader_search_path()
    )))
}

/// The NVRTC version `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    nvrtc_library_present()?;
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: the library is present; the pointers are valid for the call.
    let r = guarded("nvrtcVersion", || unsafe {
        nsys::nvrtcVersion(&mut major, &mut minor)
    })?;
    if r != nsys::nvrtcResult::NVRTC_SUCCESS {
        return Err(unavailable(format!("nvrtcVersion failed: {r:?}")));
    }
    Ok((major, minor))
}

/// The virtual architectures NVRTC can compile for (`90` for sm_90), ascending.
pub fn nvrtc_supported_archs() -> Result<Vec<i32>> {
    nvrtc_library_present()?;
    guarded("nvrtcGetSupportedArchs", || {
        let mut n: c_int = 0;
        // SAFETY: the library is present; the buffer has the size NVRTC reported.
        unsafe {
            if nsys::nvrtcGetNumSupportedArchs(&mut n) != nsys::nvrtcResult::NVRTC_SUCCESS {
                return Vec::new();
            }
            let mut archs = vec![0 as c_int; n.max(0) as usize];
            if nsys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) != nsys::nvrtcResult::NVRTC_SUCCESS
            {
                return Vec::new();
            }
            archs.sort_unstable();
            archs
        }
    })
}

/// The CUDA version the driver supports, `(major, minor)` (13.0 for a 580-series driver).
pub fn driver_version() -> Result<(i32, i32)> {
    driver_library_present()?;
    let mut v: c_int = 0;
    // SAFETY: the library is present; cuDriverGetVersion needs no cuInit.
    let r = guarded("cuDriverGetVersion", || unsafe {
        dsys::cuDriverGetVersion(&mut v)
    })?;
    r.result()
        .map_err(|e| unavailable(format!("cuDriverGetVersion failed: {e}")))?;
    Ok((v / 1000, (v % 1000) / 10))
}

/// What NVRTC produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// PTX for a virtual architecture (`compute_90`), compiled to machine code by the
    /// driver when loaded; loads only on a driver at least as new as NVRTC.
    Ptx,
    /// Machine code for one GPU (`sm_90`); loads on older drivers of the same major version.
    Cubin,
}

impl Output {
    /// The `--gpu-architecture` value for architecture `arch` (90 for 9.0).
    pub fn arch_flag(self, arch: i32) -> String {
        match self {
            Output::Ptx => format!("compute_{arch}"),
            Output::Cubin => format!("sm_{arch}"),
        }
    }
}

/// One NVRTC compilation: a `.cu` file, the headers it includes (given to NVRTC in
/// memory) and directories to search for other includes.
#[derive(Clone, Copy, Debug)]
pub struct Program<'a> {
    /// File name, used by NVRTC in its log (`map.cu(12): error ...`).
    pub name: &'a str,
    /// The source text.
    pub source: &'a str,
    /// `(include name, text)` of headers resolved in memory.
    pub headers: &'a [(&'a str, &'a str)],
    /// Directories passed as `--include-path`.
    pub include_dirs: &'a [&'a Path],
}

impl Program<'_> {
    /// Line `line` (1-based) of `file`, looked up in the source, the headers and the
    /// include directories.
    fn source_line(&self, file: &str, line: usize) -> Option<String> {
        let base = Path::new(file)
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or(file);
        let text = if base == self.name || file == self.name {
            Some(self.source.to_string())
        } else if let Some((_, t)) = self.headers.iter().find(|(n, _)| *n == base || *n == file) {
            Some(t.to_string())
        } else {
            self.include_dirs
                .iter()
                .find_map(|d| std::fs::read_to_string(d.join(base)).ok())
                .or_else(|| std::fs::read_to_string(file).ok())
        }?;
        text.lines()
            .nth(line.checked_sub(1)?)
            .map(|s| s.to_string())
    }

    /// The log with each `file(line): ...` message followed by that source line.
    pub fn annotate_log(&self, log: &str) -> String {
        let mut out = String::new();
        for l in log.lines() {
            out.push_str(l);
            out.push('\n');
            if let Some((file, line)) = parse_log_location(l) {
                if let Some(src) = self.source_line(file, line) {
                    out.push_str(&format!("    {file}:{line} | {}\n", src.trim_end()));
                }
            }
        }
        out
    }

    /// Compile for architecture `arch` (90 for sm_90). On failure the error holds the
    /// NVRTC log with the offending source lines.
    pub fn compile(&self, arch: i32, output: Output) -> Result<Vec<u8>> {
        nvrtc_library_present()?;
        let version = nvrtc_version()?;
        let arch_flag = output.arch_flag(arch);
        let cstr = |s: &str| {
            CString::new(s)
                .map_err(|_| backend_err("compile", format!("{}: NUL byte in {s:?}", self.name)))
        };
        let src = cstr(self.source)?;
        let name = cstr(self.name)?;
        let header_srcs = self
            .headers
            .iter()
            .map(|(_, t)| cstr(t))
            .collect::<Result<Vec<_>>>()?;
        let header_names = self
            .headers
            .iter()
            .map(|(n, _)| cstr(n))
            .collect::<Result<Vec<_>>>()?;
        let mut options = vec![
            format!("--gpu-architecture={arch_flag}"),
            "--std=c++17".to_string(),
        ];
        for d in self.include_dirs {
            options.push(format!("--include-path={}", d.display()));
        }
        let options = options
            .iter()
            .map(|o| cstr(o))
            .collect::<Result<Vec<_>>>()?;

        let result = guarded("NVRTC", || {
            let hs: Vec<*const c_char> = header_srcs.iter().map(|c| c.as_ptr()).collect();
            let hn: Vec<*const c_char> = header_names.iter().map(|c| c.as_ptr()).collect();
            let opts: Vec<*const c_char> = options.iter().map(|c| c.as_ptr()).collect();
            let mut prog: nsys::nvrtcProgram = std::ptr::null_mut();
            // SAFETY: every pointer refers to a live NUL-terminated string for the whole
            // use of the program, which is destroyed before this block ends.
            unsafe {
                let r = nsys::nvrtcCreateProgram(
                    &mut prog,
                    src.as_ptr(),
                    name.as_ptr(),
                    hs.len() as c_int,
                    if hs.is_empty() {
                        std::ptr::null()
                    } else {
                        hs.as_ptr()
                    },
                    if hn.is_empty() {
                        std::ptr::null()
                    } else {
                        hn.as_ptr()
                    },
                );
                if r != nsys::nvrtcResult::NVRTC_SUCCESS {
                    return Err(format!("nvrtcCreateProgram failed: {r:?}"));
                }
                let compiled = nsys::nvrtcCompileProgram(prog, opts.len() as c_int, opts.as_ptr());
                let mut log_size = 0usize;
                let mut log = String::new();
                if nsys::nvrtcGetProgramLogSize(prog, &mut log_size)
                    == nsys::nvrtcResult::NVRTC_SUCCESS
                    && log_size > 1
                {
                    let mut buf = vec![0 as c_char; log_size];
                    if nsys::nvrtcGetProgramLog(prog, buf.as_mut_ptr())
                        == nsys::nvrtcResult::NVRTC_SUCCESS
                    {
                        log = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
                    }
                }
                let out = if compiled != nsys::nvrtcResult::NVRTC_SUCCESS {
                    Err(format!("{compiled:?}\n{}", self.annotate_log(&log)))
                } else {
                    let mut size = 0usize;
                    let (r1, bytes) = match output {
                        Output::Ptx => {
                            let r = nsys::nvrtcGetPTXSize(prog, &mut size);
                            let mut buf = vec![0 as c_char; size];
                            (
                                r,
                                (r == nsys::nvrtcResult::NVRTC_SUCCESS)
                                    .then(|| (nsys::nvrtcGetPTX(prog, buf.as_mut_ptr()), buf)),
                            )
                        }
                        Output::Cubin => {
                            let r = nsys::nvrtcGetCUBINSize(prog, &mut size);
                            let mut buf = vec![0 as c_char; size];
                            (
                                r,
                                (r == nsys::nvrtcResult::NVRTC_SUCCESS)
                                    .then(|| (nsys::nvrtcGetCUBIN(prog, buf.as_mut_ptr()), buf)),
                            )
                        }
                    };
                    match bytes {
                        Some((nsys::nvrtcResult::NVRTC_SUCCESS, buf)) => {
                            Ok(buf.into_iter().map(|c| c as u8).collect::<Vec<u8>>())
                        }
                        Some((r2, _)) => Err(format!("reading the {output:?} failed: {r2:?}")),
                        None => Err(format!("reading the {output:?} size failed: {r1:?}")),
                    }
                };
                nsys::nvrtcDestroyProgram(&mut prog);
                out
            }
        })?;
        result.map_err(|msg| {
            backend_err(
                "compile",
                format!(
                    "NVRTC {}.{} could not compile {} for {arch_flag}: {msg}",
                    version.0, version.1, self.name
                ),
            )
        })
    }
}

/// `("map.cu", 12)` from a log line `map.cu(12): error: ...`.
pub fn parse_log_location(line: &str) -> Option<(&str, usize)> {
    let open = line.find('(')?;
    let close = open + line[open..].find(')')?;
    if !line[close..].starts_with("):") {
        return None;
    }
    let n = line[open + 1..close].parse().ok()?;
    let file = line[..open].trim();
    (!file.is_empty()).then_some((file, n))
}

/// The functions of one loaded kernel file, in [`Family::entry_points`] order.
pub struct Kernels {
    /// One per entry point.
    pub funcs: Vec<CudaFunction>,
    /// Whether the module was loaded from PTX or CUBIN.
    pub output: Output,
    _module: Arc<CudaModule>,
}

/// The device context, its one stream, what is known about the device, driver and NVRTC,
/// and the kernel files compiled so far.
pub struct Runtime {
    /// The device's primary context (event tracking off: everything runs on `stream`).
    pub ctx: Arc<CudaContext>,
    /// The one stream every transfer and launch goes to, in order.
    pub stream: Arc<CudaStream>,
    /// The device's name.
    pub device_name: String,
    /// Device ordinal.
    pub ordinal: usize,
    /// Compute capability `(major, minor)`.
    pub compute_capability: (i32, i32),
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Device memory in bytes.
    pub total_mem: usize,
    /// CUDA version the driver supports.
    pub driver_version: (i32, i32),
    /// NVRTC version.
    pub nvrtc_version: (i32, i32),
    /// Architecture the kernels are compiled for (the device's, or the newest NVRTC knows
    /// below it).
    pub arch: i32,
    /// NVRTC knows the device's own architecture: load machine code (CUBIN) first, PTX
    /// second.
    pub native_arch: bool,
    kernels: [OnceLock<Result<Kernels>>; 4],
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("device", &self.device_name)
            .field("compute_capability", &self.compute_capability)
            .field("driver_version", &self.driver_version)
            .field("nvrtc_version", &self.nvrtc_version)
            .finish()
    }
}

fn driver_err(what: &str) -> impl Fn(dres::DriverError) -> Error + '_ {
    move |e| unavailable(format!("{what} failed: {e}"))
}

impl Runtime {
    /// Open device `ordinal`: checks the libraries, the driver and the device, and creates
    /// the context and stream. Compiles nothing yet.
    pub fn new(ordinal: usize) -> Result<Runtime> {
        driver_library_present()?;
        nvrtc_library_present()?;
        let driver_version = driver_version()?;
        let nvrtc_version = nvrtc_version()?;
        let dv = format!("{}.{}", driver_version.0, driver_version.1);
        guarded("cuInit", dres::init)?.map_err(|e| {
            unavailable(format!(
                "the NVIDIA driver (CUDA {dv}) is installed but cuInit failed: {e}; \
                 no usable GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
            ))
        })?;
        let count = guarded("cuDeviceGetCount", CudaContext::device_count)?
            .map_err(driver_err("cuDeviceGetCount"))?;
        if count <= 0 {
            return Err(unavailable(format!(
                "the NVIDIA driver (CUDA {dv}) found no GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
            )));
        }
        if ordinal >= count as usize {
            return Err(unavailable(format!(
                "device {ordinal} asked for (MINITORCH_CUDA_DEVICE) but only {count} GPU(s) are visible"
            )));
        }
        let (ctx, stream) = guarded("creating the CUDA context", || -> Result<_> {
            let ctx = CudaContext::new(ordinal).map_err(driver_err("creating the CUDA context"))?;
            // SAFETY: every allocation, copy and launch of this backend goes to the one
            // stream created below, so stream order alone keeps uses of a buffer in order
            // and cudarc's per-buffer events are not needed.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream().map_err(driver_err("creating a stream"))?;
            Ok((ctx, stream))
        })??;
        let attr = |a: dsys::CUdevice_attribute| {
            guarded("cuDeviceGetAttribute", || ctx.attribute(a))
                .and_then(|r| r.map_err(driver_err("cuDeviceGetAttribute")))
        };
        use dsys::CUdevice_attribute::*;
        let cc = (
            attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        );
        let sm_count = attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as u32;
        let device_name = guarded("cuDeviceGetName", || ctx.name())?
            .unwrap_or_else(|_| "unknown NVIDIA GPU".to_string());
        let total_mem = guarded("cuDeviceTotalMem", || ctx.total_mem())?.unwrap_or(0);

        let device_arch = cc.0 * 10 + cc.1;
        let archs = nvrtc_supported_archs()?;
        let native_arch = archs.contains(&device_arch);
        let arch = if native_arch {
            device_arch
        } else {
            // PTX of the newest architecture below the device's is compiled by the driver.
            archs
                .iter()
                .copied()
                .filter(|&a| a <= device_arch)
                .max()
                .ok_or_else(|| {
                    unavailable(format!(
                    "{device_name} has compute capability {}.{}, older than every architecture \
                     NVRTC {}.{} compiles for ({archs:?}); use an older NVRTC",
                    cc.0, cc.1, nvrtc_version.0, nvrtc_version.1
                ))
                })?
        };
        let rt = Runtime {
            ctx,
            stream,
            device_name,
            ordinal,
            compute_capability: cc,
            sm_count,
            total_mem,
            driver_version,
            nvrtc_version,
            arch,
            native_arch,
            kernels: Default::default(),
        };
        rt.keep_pool_memory();
        Ok(rt)
    }

    /// Keep memory freed to the driver's stream-ordered pool instead of returning it to
    /// the system at each synchronisation (best effort: the backend's own cache does most
    /// of the reuse).
    fn keep_pool_memory(&self) {
        let _ = guarded("cuMemPoolSetAttribute", || {
            // SAFETY: plain driver calls on this context's device; the value outlives them.
            unsafe {
                if self.ctx.bind_to_thread().is_err() {
                    return;
                }
                let mut pool: dsys::CUmemoryPool = std::ptr::null_mut();
                if dsys::cuDeviceGetDefaultMemPool(&mut pool, self.ctx.cu_device())
                    != dsys::CUresult::CUDA_SUCCESS
                {
                    return;
                }
                let mut threshold: u64 = u64::MAX;
                let _ = dsys::cuMemPoolSetAttribute(
                    pool,
                    dsys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                    &mut threshold as *mut u64 as *mut std::ffi::c_void,
                );
            }
        });
    }

    /// The kernels of `family`, compiled and loaded on first use (once per process; a
    /// failure is remembered and returned again).
    pub fn kernels(&self, family: Family) -> Result<&Kernels> {
        self.kernels[family.index()]
            .get_or_init(|| self.build(family))
            .as_ref()
            .map_err(|e| e.clone())
    }

    fn versions(&self) -> String {
        format!(
            "driver supports CUDA {}.{}, NVRTC is {}.{}",
            self.driver_version.0,
            self.driver_version.1,
            self.nvrtc_version.0,
            self.nvrtc_version.1
        )
    }

    fn build(&self, family: Family) -> Result<Kernels> {
        let program = Program {
            name: family.file_name(),
            source: family.source(),
            headers: &HEADERS,
            include_dirs: &[],
        };
        let order: &[Output] = if self.native_arch {
            &[Output::Cubin, Output::Ptx]
        } else {
            &[Output::Ptx]
        };
        let mut failures = Vec::new();
        for &output in order {
            let image = program.compile(self.arch, output)?;
            let module = match output {
                Output::Ptx => Ptx::from_src(
                    String::from_utf8_lossy(&image)
                        .trim_end_matches('\0')
                        .to_string(),
                ),
                Output::Cubin => Ptx::from_binary(image),
            };
            let loaded = guarded("cuModuleLoadData", || self.ctx.load_module(module))?;
            match loaded {
                Ok(module) => {
                    let funcs = family
                        .entry_points()
                        .iter()
                        .map(|name| {
                            module.load_function(name).map_err(|e| {
                                backend_err(
                                    "load",
                                    format!(
                                        "{}: entry point {name} not found: {e}",
                                        family.file_name()
                                    ),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    return Ok(Kernels {
                        funcs,
                        output,
                        _module: module,
                    });
                }
                Err(e) => failures.push((output, e)),
            }
        }
        let ptx_too_new = failures
            .iter()
            .any(|(_, e)| e.0 == dsys::CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION);
        let tried = failures
            .iter()
            .map(|(o, e)| format!("{o:?} for {}: {e}", o.arch_flag(self.arch)))
            .collect::<Vec<_>>()
            .join("; ");
        let advice = if ptx_too_new || self.nvrtc_version > self.driver_version {
            format!(
                "code from an NVRTC newer than the driver does not load \
                 (CUDA_ERROR_UNSUPPORTED_PTX_VERSION): the {}; use an NVRTC no newer than \
                 the driver (for example `python3 -m pip install \"nvidia-cuda-nvrtc=={}.{}.*\"`) \
                 or update the NVIDIA driver",
                self.versions(),
                self.driver_version.0,
                self.driver_version.1
            )
        } else {
            format!("the {}", self.versions())
        };
        Err(backend_err(
            "load",
            format!(
                "the driver could not load the kernels of {} ({tried}); {advice}",
                family.file_name()
            ),
        ))
    }

    /// One line about the device, driver and compiler.
    pub fn describe(&self) -> String {
        format!(
            "{} (GPU {}, compute capability {}.{}, {} SMs, {:.1} GiB; {}; kernels for {})",
            self.device_name,
            self.ordinal,
            self.compute_capability.0,
            self.compute_capability.1,
            self.sm_count,
            self.total_mem as f64 / (1u64 << 30) as f64,
            self.versions(),
            if self.native_arch {
                format!("sm_{}", self.arch)
            } else {
                format!("compute_{} (PTX, compiled by the driver)", self.arch)
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_locations() {
        assert_eq!(
            parse_log_location("map.cu(12): error: identifier \"x\" is undefined"),
            Some(("map.cu", 12))
        );
        assert_eq!(
            parse_log_location("1 error detected in the compilation of \"map.cu\"."),
            None
        );
        assert_eq!(parse_log_location("f(x) is bad"), None);
    }

    #[test]
    fn annotation_quotes_the_source_line() {
        let p = Program {
            name: "t.cu",
            source: "line one\nline two\n",
            headers: &[("h.cuh", "header one\n")],
            include_dirs: &[],
        };
        let log = p.annotate_log("t.cu(2): error: bad\nh.cuh(1): warning: meh\n");
        assert!(log.contains("t.cu:2 | line two"), "{log}");
        assert!(log.contains("h.cuh:1 | header one"), "{log}");
    }

    #[test]
    fn arch_flags() {
        assert_eq!(Output::Ptx.arch_flag(90), "compute_90");
        assert_eq!(Output::Cubin.arch_flag(86), "sm_86");
    }
}
