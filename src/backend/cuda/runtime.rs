//! The CUDA runtime of the backend on a real GPU: finding the driver library (cudarc loads
//! it at run time and panics when it is missing, so its presence is checked first) and the
//! NVRTC that matches the driver ([`super::nvrtc`]), the device context and its one stream,
//! and compiling CUDA C with NVRTC and loading it (the driver side of [`super::device`]).

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use cudarc::driver::{result as dres, sys as dsys, CudaContext, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;

pub use super::nvrtc::Output;
use super::nvrtc::{self, Candidate, Nvrtc};
use crate::error::{Error, Result};

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

/// Ok when the NVIDIA driver library (libcuda) can be loaded. The error's first line is
/// short; the names tried and the loader path follow on the next line.
pub fn driver_library_present() -> Result<()> {
    // SAFETY: only tries to dlopen the library by its candidate names.
    if guarded("probing libcuda", || unsafe { dsys::is_culib_present() })? {
        return Ok(());
    }
    let lib = if cfg!(windows) {
        "nvcuda.dll"
    } else {
        "libcuda.so.1"
    };
    Err(unavailable(format!(
        "no NVIDIA driver ({lib} not on the loader path)\n\
         looked for {:?} in {}; this machine has no NVIDIA driver, or it is not on the library path",
        candidates("cuda"),
        loader_search_path()
    )))
}

/// Load the NVRTC for a driver supporting CUDA `driver` (`None`: no driver, compiling
/// only): `MINITORCH_NVRTC` if set, else the first fitting one of
/// [`nvrtc::candidate_names`], chosen by [`nvrtc::choose`]. Returns it and whether only
/// CUBINs it makes will load (it is a later minor version than the driver).
pub fn load_nvrtc(driver: Option<(i32, i32)>) -> Result<(Nvrtc, bool)> {
    let overridden = std::env::var("MINITORCH_NVRTC")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let names = match &overridden {
        Some(path) => vec![path.trim().to_string()],
        None => nvrtc::candidate_names(driver.map(|d| d.0)),
    };
    let mut libs: Vec<Option<Nvrtc>> = Vec::with_capacity(names.len());
    let mut found = Vec::with_capacity(names.len());
    for name in &names {
        let opened = guarded("loading NVRTC", || Nvrtc::open(name))?;
        found.push(Candidate {
            name: name.clone(),
            version: opened.as_ref().map(|n| n.version()).map_err(|e| e.clone()),
        });
        libs.push(opened.ok());
    }
    let choice = nvrtc::choose(driver, &found, overridden.is_some())
        .map_err(|e| unavailable(format!("{e}\nthe loader searched {}", loader_search_path())))?;
    let lib = libs[choice.index]
        .take()
        .ok_or_else(|| unavailable("the chosen NVRTC vanished"))?;
    Ok((lib, choice.cubin_only))
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

/// One NVRTC compilation: a `.cu` file, the headers it includes (given to NVRTC in
/// memory) and directories to search for other includes.
#[derive(Clone, Copy, Debug)]
pub struct NvrtcSource<'a> {
    /// File name, used by NVRTC in its log (`map.cu(12): error ...`).
    pub name: &'a str,
    /// The source text.
    pub source: &'a str,
    /// `(include name, text)` of headers resolved in memory.
    pub headers: &'a [(&'a str, &'a str)],
    /// Directories passed as `--include-path`.
    pub include_dirs: &'a [&'a Path],
}

impl NvrtcSource<'_> {
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

    /// Compile with `nvrtc` for architecture `arch` (90 for sm_90). On failure the error
    /// holds the NVRTC log with the offending source lines.
    pub fn compile(&self, nvrtc: &Nvrtc, arch: i32, output: Output) -> Result<Vec<u8>> {
        let arch_flag = output.arch_flag(arch);
        let mut options = vec![
            format!("--gpu-architecture={arch_flag}"),
            "--std=c++17".to_string(),
        ];
        for d in self.include_dirs {
            options.push(format!("--include-path={}", d.display()));
        }
        let version = nvrtc.version();
        guarded("NVRTC", || {
            nvrtc.compile(self.name, self.source, self.headers, &options, output)
        })?
        .map_err(|(what, log)| {
            backend_err(
                "compile",
                format!(
                    "NVRTC {}.{} could not compile {} for {arch_flag}: {what}\n{}",
                    version.0,
                    version.1,
                    self.name,
                    self.annotate_log(&log)
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
    /// NVRTC is a later minor version than the driver: only its CUBINs load.
    pub cubin_only: bool,
    /// The NVRTC library, chosen to match the driver.
    pub nvrtc: Nvrtc,
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
        let driver_version = driver_version()?;
        let (nvrtc, cubin_only) = load_nvrtc(Some(driver_version))?;
        let nvrtc_version = nvrtc.version();
        let dv = format!("{}.{}", driver_version.0, driver_version.1);
        guarded("cuInit", dres::init)?.map_err(|e| {
            unavailable(format!(
                "no usable GPU: cuInit failed: {e}\n\
                 the NVIDIA driver (CUDA {dv}) is installed but no usable GPU is visible \
                 (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
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
        let (arch, native_arch) = nvrtc::choose_arch(
            device_arch,
            &nvrtc.supported_archs(),
            nvrtc_version,
            cubin_only,
        )
        .map_err(|e| unavailable(format!("{device_name}: {e}")))?;
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
            cubin_only,
            nvrtc,
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

    fn versions(&self) -> String {
        format!(
            "driver supports CUDA {}.{}, NVRTC is {}.{} ({})",
            self.driver_version.0,
            self.driver_version.1,
            self.nvrtc_version.0,
            self.nvrtc_version.1,
            self.nvrtc.name()
        )
    }

    /// Compile `program` with the chosen NVRTC and load it: a CUBIN for the device first
    /// (only a CUBIN when the NVRTC is a newer minor than the driver, whose PTX the
    /// driver could not load), else PTX. The one compile-and-load path of the backend: the
    /// kernel files and the generated fused kernels both come through here.
    pub fn load_program(&self, program: &NvrtcSource) -> Result<(Arc<CudaModule>, Output)> {
        let order: &[Output] = if self.native_arch && self.cubin_only {
            &[Output::Cubin]
        } else if self.native_arch {
            &[Output::Cubin, Output::Ptx]
        } else {
            &[Output::Ptx]
        };
        let mut failures = Vec::new();
        for &output in order {
            let image = program.compile(&self.nvrtc, self.arch, output)?;
            let module = match output {
                Output::Ptx => Ptx::from_src(
                    String::from_utf8_lossy(&image)
                        .trim_end_matches('\0')
                        .to_string(),
                ),
                Output::Cubin => Ptx::from_binary(image),
            };
            match guarded("cuModuleLoadData", || self.ctx.load_module(module))? {
                Ok(module) => return Ok((module, output)),
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
                 (CUDA_ERROR_UNSUPPORTED_PTX_VERSION): the {}; {}, or update the NVIDIA driver",
                self.versions(),
                nvrtc::install_hint(self.driver_version.0)
            )
        } else {
            format!("the {}", self.versions())
        };
        Err(backend_err(
            "load",
            format!(
                "the driver could not load the kernels of {} ({tried}); {advice}",
                program.name
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
        let p = NvrtcSource {
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
    fn driver_error_first_line_is_short() {
        // Only meaningful where there is no driver (CI); elsewhere it is Ok.
        if let Err(e) = driver_library_present() {
            let text = e.to_string();
            let first = text.lines().next().unwrap();
            assert!(first.len() <= 300, "{first}");
            assert!(first.contains("no NVIDIA driver"), "{first}");
            assert!(
                text.lines()
                    .nth(1)
                    .is_some_and(|l| l.contains("looked for")),
                "{text}"
            );
        }
    }

    #[test]
    fn arch_flags() {
        assert_eq!(Output::Ptx.arch_flag(90), "compute_90");
        assert_eq!(Output::Cubin.arch_flag(86), "sm_86");
    }
}
