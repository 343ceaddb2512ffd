//! NVRTC (the CUDA runtime compiler), loaded from an explicit library name or path so that
//! its version can match the driver's.
//!
//! Code from an NVRTC newer than the driver does not load: PTX of a newer ISA is refused
//! (`CUDA_ERROR_UNSUPPORTED_PTX_VERSION`), and so is a CUBIN of a newer major version. A
//! CUBIN from a newer *minor* version of the driver's major version loads. So the backend
//! reads the driver version first and then picks a library with [`choose`], a pure
//! function of the driver version and of what each candidate library reported:
//!
//! 1. `MINITORCH_NVRTC=/path/to/libnvrtc.so.X` overrides the search;
//! 2. else `libnvrtc.so.<driver major>`, then the unversioned `libnvrtc.so` only if its
//!    version has the driver's major, then older majors (their PTX the driver compiles);
//! 3. never a newer major; a newer minor of the same major is used with CUBIN loading only.
//!
//! cudarc's own NVRTC loader is one process-wide library found by a fixed list of names
//! (newest first), so it is not used: [`Nvrtc`] holds its own function table.

use std::ffi::{c_char, c_int, CStr, CString};

use libloading::Library;

/// NVRTC's `nvrtcResult`: 0 is success.
type NvrtcResult = c_int;
/// NVRTC's opaque `nvrtcProgram`.
type NvrtcProgram = *mut std::ffi::c_void;

/// The NVRTC entry points the backend uses, read from the library once.
struct Api {
    version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult,
    get_error_string: unsafe extern "C" fn(NvrtcResult) -> *const c_char,
    num_supported_archs: unsafe extern "C" fn(*mut c_int) -> NvrtcResult,
    supported_archs: unsafe extern "C" fn(*mut c_int) -> NvrtcResult,
    create_program: unsafe extern "C" fn(
        *mut NvrtcProgram,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> NvrtcResult,
    compile_program: unsafe extern "C" fn(NvrtcProgram, c_int, *const *const c_char) -> NvrtcResult,
    destroy_program: unsafe extern "C" fn(*mut NvrtcProgram) -> NvrtcResult,
    log_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
    log: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
    ptx_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
    ptx: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
    cubin_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult,
    cubin: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult,
}

/// One loaded NVRTC library.
pub struct Nvrtc {
    api: Api,
    name: String,
    version: (i32, i32),
    // Keeps the function pointers of `api` valid; dropped last.
    _lib: Library,
}

impl std::fmt::Debug for Nvrtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Nvrtc({} = {}.{})",
            self.name, self.version.0, self.version.1
        )
    }
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

impl Nvrtc {
    /// Load NVRTC from `name` (a file name the dynamic loader searches for, or a path) and
    /// read its version. The error says why, in one line.
    pub fn open(name: &str) -> Result<Nvrtc, String> {
        // SAFETY: loading NVRTC runs only its (side-effect free) initialisers.
        let lib = unsafe { Library::new(name) }.map_err(|e| format!("{name}: {e}"))?;
        macro_rules! sym {
            ($s:literal) => {
                // SAFETY: the type is the C signature of this NVRTC function (nvrtc.h).
                *unsafe { lib.get($s) }
                    .map_err(|e| format!("{name} is not NVRTC (no {}): {e}", $s))?
            };
        }
        let api = Api {
            version: sym!("nvrtcVersion"),
            get_error_string: sym!("nvrtcGetErrorString"),
            num_supported_archs: sym!("nvrtcGetNumSupportedArchs"),
            supported_archs: sym!("nvrtcGetSupportedArchs"),
            create_program: sym!("nvrtcCreateProgram"),
            compile_program: sym!("nvrtcCompileProgram"),
            destroy_program: sym!("nvrtcDestroyProgram"),
            log_size: sym!("nvrtcGetProgramLogSize"),
            log: sym!("nvrtcGetProgramLog"),
            ptx_size: sym!("nvrtcGetPTXSize"),
            ptx: sym!("nvrtcGetPTX"),
            cubin_size: sym!("nvrtcGetCUBINSize"),
            cubin: sym!("nvrtcGetCUBIN"),
        };
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        // SAFETY: valid out-pointers for the call.
        let r = unsafe { (api.version)(&mut major, &mut minor) };
        if r != 0 {
            return Err(format!("{name}: nvrtcVersion failed ({r})"));
        }
        Ok(Nvrtc {
            api,
            name: name.to_string(),
            version: (major, minor),
            _lib: lib,
        })
    }

    /// The name or path it was loaded from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its version `(major, minor)`.
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    fn error_string(&self, r: NvrtcResult) -> String {
        // SAFETY: NVRTC returns a static string (or null) for any code.
        let p = unsafe { (self.api.get_error_string)(r) };
        if p.is_null() {
            format!("NVRTC error {r}")
        } else {
            // SAFETY: non-null, NUL-terminated, static.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    }

    /// The real architectures it compiles for (`90` for sm_90), ascending.
    pub fn supported_archs(&self) -> Vec<i32> {
        let mut n: c_int = 0;
        // SAFETY: the buffer has the size NVRTC reported.
        unsafe {
            if (self.api.num_supported_archs)(&mut n) != 0 {
                return Vec::new();
            }
            let mut archs = vec![0 as c_int; n.max(0) as usize];
            if (self.api.supported_archs)(archs.as_mut_ptr()) != 0 {
                return Vec::new();
            }
            archs.sort_unstable();
            archs
        }
    }

    /// Compile `source` (program name `name`, in-memory headers `(name, text)`) with
    /// `options` to `output`. On failure: the result name and the compile log.
    pub fn compile(
        &self,
        name: &str,
        source: &str,
        headers: &[(&str, &str)],
        options: &[String],
        output: Output,
    ) -> Result<Vec<u8>, (String, String)> {
        let cstr =
            |s: &str| CString::new(s).map_err(|_| (format!("NUL byte in {s:?}"), String::new()));
        let src = cstr(source)?;
        let prog_name = cstr(name)?;
        let header_srcs = headers
            .iter()
            .map(|(_, t)| cstr(t))
            .collect::<Result<Vec<_>, _>>()?;
        let header_names = headers
            .iter()
            .map(|(n, _)| cstr(n))
            .collect::<Result<Vec<_>, _>>()?;
        let options = options
            .iter()
            .map(|o| cstr(o))
            .collect::<Result<Vec<_>, _>>()?;
        let hs: Vec<*const c_char> = header_srcs.iter().map(|c| c.as_ptr()).collect();
        let hn: Vec<*const c_char> = header_names.iter().map(|c| c.as_ptr()).collect();
        let opts: Vec<*const c_char> = options.iter().map(|c| c.as_ptr()).collect();
        let nullable = |v: &Vec<*const c_char>| {
            if v.is_empty() {
                std::ptr::null()
            } else {
                v.as_ptr()
            }
        };
        let api = &self.api;
        let mut prog: NvrtcProgram = std::ptr::null_mut();
        // SAFETY: every pointer refers to a live NUL-terminated string for the whole use of
        // the program, which is destroyed before this block ends; buffers have the sizes
        // NVRTC reported.
        unsafe {
            let r = (api.create_program)(
                &mut prog,
                src.as_ptr(),
                prog_name.as_ptr(),
                hs.len() as c_int,
                nullable(&hs),
                nullable(&hn),
            );
            if r != 0 {
                return Err((
                    format!("nvrtcCreateProgram: {}", self.error_string(r)),
                    String::new(),
                ));
            }
            let compiled = (api.compile_program)(prog, opts.len() as c_int, opts.as_ptr());
            let mut log_size = 0usize;
            let mut log = String::new();
            if (api.log_size)(prog, &mut log_size) == 0 && log_size > 1 {
                let mut buf = vec![0 as c_char; log_size];
                if (api.log)(prog, buf.as_mut_ptr()) == 0 {
                    log = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
                }
            }
            let out = if compiled != 0 {
                Err((self.error_string(compiled), log))
            } else {
                let (size_fn, get_fn) = match output {
                    Output::Ptx => (api.ptx_size, api.ptx),
                    Output::Cubin => (api.cubin_size, api.cubin),
                };
                let mut size = 0usize;
                let r = size_fn(prog, &mut size);
                if r != 0 {
                    Err((
                        format!("reading the {output:?} size: {}", self.error_string(r)),
                        log,
                    ))
                } else {
                    let mut buf = vec![0 as c_char; size];
                    let r = get_fn(prog, buf.as_mut_ptr());
                    if r != 0 {
                        Err((
                            format!("reading the {output:?}: {}", self.error_string(r)),
                            log,
                        ))
                    } else {
                        Ok(buf.into_iter().map(|c| c as u8).collect())
                    }
                }
            };
            (api.destroy_program)(&mut prog);
            out
        }
    }
}

/// The PyPI package of NVRTC for CUDA major version `major`.
pub fn package_for(major: i32) -> String {
    match major {
        ..=12 => format!("nvidia-cuda-nvrtc-cu{major}"),
        _ => format!("nvidia-cuda-nvrtc>={major},<{}", major + 1),
    }
}

/// How to install the NVRTC for CUDA major version `major`, in one sentence.
pub fn install_hint(major: i32) -> String {
    format!(
        "install NVRTC {major}.x with `bash scripts/install-nvrtc.sh {major}` (runs `python3 -m pip \
         install \"{}\"` and prints the library's directory) and add that directory to \
         LD_LIBRARY_PATH, or point MINITORCH_NVRTC at a libnvrtc.so.{major} (the CUDA {major} \
         toolkit has one in /usr/local/cuda/lib64)",
        package_for(major)
    )
}

/// Library names to try for a driver of CUDA major version `major` (with no driver, the
/// newest known major first), in order of preference.
pub fn candidate_names(driver_major: Option<i32>) -> Vec<String> {
    let majors: Vec<i32> = match driver_major {
        Some(m) => (11..=m).rev().collect(),
        None => vec![13, 12, 11],
    };
    let versioned = |m: i32| {
        if cfg!(windows) {
            format!("nvrtc64_{m}0_0.dll")
        } else {
            format!("libnvrtc.so.{m}")
        }
    };
    let mut names = vec![versioned(majors[0])];
    names.push(if cfg!(windows) {
        "nvrtc.dll".to_string()
    } else {
        "libnvrtc.so".to_string()
    });
    if !cfg!(windows) {
        // The CUDA toolkit, when its lib64 is not on the loader path.
        names.push(format!("/usr/local/cuda/lib64/libnvrtc.so.{}", majors[0]));
    }
    names.extend(majors[1..].iter().map(|&m| versioned(m)));
    names
}

/// A candidate library and what opening it gave: its version, or why it did not load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Name or path.
    pub name: String,
    /// Its version, or the reason it could not be used.
    pub version: std::result::Result<(i32, i32), String>,
}

/// The library chosen among the candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Index into the candidates.
    pub index: usize,
    /// The library is newer than the driver (a later minor of its major): its PTX does not
    /// load, only CUBINs (machine code for the device's own architecture) do.
    pub cubin_only: bool,
}

/// Pick the NVRTC for a driver supporting CUDA `driver` (`None`: no driver, compiling
/// only) among `found` (in order of preference, as [`candidate_names`] lists them).
/// `overridden`: the candidates are the one MINITORCH_NVRTC names. The error is the text
/// shown to the user: its first line says what is wrong, later lines the details and how
/// to fix it.
pub fn choose(
    driver: Option<(i32, i32)>,
    found: &[Candidate],
    overridden: bool,
) -> std::result::Result<Choice, String> {
    let loaded = || {
        found
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.version.as_ref().ok().map(|&v| (i, v)))
    };
    let describe = || {
        found
            .iter()
            .map(|c| match &c.version {
                Ok((a, b)) => format!("{} is NVRTC {a}.{b}", c.name),
                Err(e) => e.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let Some(drv) = driver else {
        // Compiling only: the newest library found.
        return loaded()
            .max_by_key(|&(i, v)| (v, std::cmp::Reverse(i)))
            .map(|(index, _)| Choice {
                index,
                cubin_only: false,
            })
            .ok_or_else(|| {
                format!(
                    "no NVRTC library found\ntried: {}\n{}",
                    describe(),
                    install_hint(13)
                )
            });
    };
    let fits = |v: (i32, i32)| v.0 <= drv.0;
    let pick = if overridden {
        loaded().next()
    } else {
        // The driver's major first, in list order; else the newest older major.
        loaded().find(|&(_, v)| v.0 == drv.0).or_else(|| {
            loaded()
                .filter(|&(_, v)| v.0 < drv.0)
                .max_by_key(|&(i, v)| (v, std::cmp::Reverse(i)))
        })
    };
    match pick {
        Some((index, v)) if fits(v) => Ok(Choice {
            index,
            cubin_only: v > drv,
        }),
        Some((_, v)) => Err(format!(
            "MINITORCH_NVRTC is NVRTC {}.{}, newer than the driver (CUDA {}.{}): its code does not load\n{}; {}",
            v.0,
            v.1,
            drv.0,
            drv.1,
            describe(),
            install_hint(drv.0)
        )),
        None => {
            let what = if overridden {
                "the NVRTC named by MINITORCH_NVRTC could not be loaded".to_string()
            } else {
                format!(
                    "no NVRTC {}.x for the driver (CUDA {}.{}) found",
                    drv.0, drv.0, drv.1
                )
            };
            Err(format!(
                "{what}\ntried: {}\n{}; an NVRTC newer than the driver is never used (its code does not load)",
                describe(),
                install_hint(drv.0)
            ))
        }
    }
}

/// The architecture to compile for on a device of architecture `device` (86 for 8.6) with
/// an NVRTC of `version` supporting `archs`, and whether it is the device's own (CUBIN
/// first) or an older one (PTX, compiled by the driver). `cubin_only`: the NVRTC is newer
/// than the driver, so PTX does not load.
pub fn choose_arch(
    device: i32,
    archs: &[i32],
    version: (i32, i32),
    cubin_only: bool,
) -> std::result::Result<(i32, bool), String> {
    let cc = format!("{}.{}", device / 10, device % 10);
    if archs.contains(&device) {
        return Ok((device, true));
    }
    let Some(&older) = archs.iter().filter(|&&a| a <= device).max() else {
        let lowest = archs.first().copied().unwrap_or(0);
        let hint = if device < 75 && version.0 >= 13 {
            format!(
                "; NVRTC 13 and later start at sm_75: use NVRTC 12 ({}) with a CUDA 12 or newer driver",
                package_for(12)
            )
        } else {
            String::new()
        };
        return Err(format!(
            "compute capability {cc} is older than every architecture NVRTC {}.{} compiles for (sm_{lowest} and up){hint}",
            version.0, version.1
        ));
    };
    if cubin_only {
        return Err(format!(
            "NVRTC {}.{} has no sm_{device} machine code and is newer than the driver, so its PTX (for compute_{older}) would not load; use an NVRTC no newer than the driver",
            version.0, version.1
        ));
    }
    Ok((older, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, v: (i32, i32)) -> Candidate {
        Candidate {
            name: name.into(),
            version: Ok(v),
        }
    }
    fn missing(name: &str) -> Candidate {
        Candidate {
            name: name.into(),
            version: Err(format!("{name}: cannot open shared object file")),
        }
    }

    #[test]
    fn driver_12_4_with_12_and_13_present_takes_12() {
        // Unversioned libnvrtc.so is 13.0 (listed before .so.11 but after .so.12).
        let found = [
            c("libnvrtc.so.12", (12, 9)),
            c("libnvrtc.so", (13, 0)),
            missing("/usr/local/cuda/lib64/libnvrtc.so.12"),
            missing("libnvrtc.so.11"),
        ];
        let ch = choose(Some((12, 4)), &found, false).unwrap();
        assert_eq!(ch.index, 0);
        // 12.9 is newer than the 12.4 driver: CUBIN only.
        assert!(ch.cubin_only);
        // Order does not matter: 13 is never taken for a 12 driver.
        let found = [c("libnvrtc.so", (13, 0)), c("libnvrtc.so.12", (12, 4))];
        let ch = choose(Some((12, 4)), &found, false).unwrap();
        assert_eq!(
            ch,
            Choice {
                index: 1,
                cubin_only: false
            }
        );
    }

    #[test]
    fn driver_13_0_with_nvrtc_13_5_takes_it_with_cubin_loading() {
        let found = [
            c("libnvrtc.so.13", (13, 5)),
            missing("libnvrtc.so"),
            c("libnvrtc.so.12", (12, 9)),
        ];
        let ch = choose(Some((13, 0)), &found, false).unwrap();
        assert_eq!(
            ch,
            Choice {
                index: 0,
                cubin_only: true
            }
        );
    }

    #[test]
    fn no_match_names_the_package_for_the_driver() {
        let found = [
            missing("libnvrtc.so.12"),
            c("libnvrtc.so", (13, 0)),
            missing("libnvrtc.so.11"),
        ];
        let e = choose(Some((12, 4)), &found, false).unwrap_err();
        let first = e.lines().next().unwrap();
        assert!(first.contains("no NVRTC 12.x"), "{e}");
        assert!(first.len() <= 300, "{first}");
        assert!(e.contains("nvidia-cuda-nvrtc-cu12"), "{e}");
        assert!(e.contains("libnvrtc.so is NVRTC 13.0"), "{e}");
        let e = choose(Some((13, 1)), &[missing("libnvrtc.so.13")], false).unwrap_err();
        assert!(e.contains("\"nvidia-cuda-nvrtc>=13,<14\""), "{e}");
        assert!(!e.contains("-cu13"), "{e}");
    }

    #[test]
    fn older_major_is_a_fallback_and_override_wins() {
        let found = [missing("libnvrtc.so.13"), c("libnvrtc.so.12", (12, 9))];
        assert_eq!(choose(Some((13, 0)), &found, false).unwrap().index, 1);
        // MINITORCH_NVRTC: taken as is when it fits...
        let ch = choose(Some((12, 2)), &[c("/opt/x/libnvrtc.so.12", (12, 8))], true).unwrap();
        assert!(ch.cubin_only);
        // ...and refused, with the reason, when it cannot work.
        let e = choose(Some((12, 2)), &[c("/opt/x/libnvrtc.so.13", (13, 0))], true).unwrap_err();
        assert!(e.starts_with("MINITORCH_NVRTC is NVRTC 13.0, newer"), "{e}");
        let e = choose(Some((12, 2)), &[missing("/nope/libnvrtc.so")], true).unwrap_err();
        assert!(e.contains("MINITORCH_NVRTC could not be loaded"), "{e}");
        // Compiling only (no driver): the newest.
        let found = [c("libnvrtc.so.12", (12, 9)), c("libnvrtc.so.13", (13, 0))];
        assert_eq!(choose(None, &found, false).unwrap().index, 1);
    }

    #[test]
    fn candidate_names_start_with_the_driver_major() {
        if cfg!(windows) {
            return;
        }
        let n = candidate_names(Some(12));
        assert_eq!(n[0], "libnvrtc.so.12");
        assert_eq!(n[1], "libnvrtc.so");
        assert!(!n.iter().any(|s| s.contains(".so.13")));
        assert_eq!(n.last().unwrap(), "libnvrtc.so.11");
        assert_eq!(package_for(12), "nvidia-cuda-nvrtc-cu12");
    }

    #[test]
    fn architecture_choice() {
        let nvrtc13: Vec<i32> = vec![75, 80, 86, 87, 89, 90, 100, 120];
        assert_eq!(choose_arch(86, &nvrtc13, (13, 0), false), Ok((86, true)));
        // A device newer than NVRTC knows: PTX of the newest older architecture...
        assert_eq!(choose_arch(121, &nvrtc13, (13, 0), false), Ok((120, false)));
        // ...which does not load when NVRTC is newer than the driver.
        assert!(choose_arch(121, &nvrtc13, (13, 0), true).is_err());
        // A P100 (6.0) with only NVRTC 13: says to use NVRTC 12.
        let e = choose_arch(60, &nvrtc13, (13, 0), false).unwrap_err();
        assert!(
            e.contains("sm_75") && e.contains("nvidia-cuda-nvrtc-cu12"),
            "{e}"
        );
        assert_eq!(
            choose_arch(60, &[50, 60, 70, 75], (12, 4), false),
            Ok((60, true))
        );
    }
}
