//! Host memory: the machine's physical memory, and host buffers allocated with an error
//! (not an abort) when a size is impossible. The contract checks re-export these
//! (`check::host_vec`, `check::host_alloc`).

use crate::error::{Error, Result};

/// The machine's physical memory in bytes (Linux: `MemTotal` of /proc/meminfo), if
/// known. No single host buffer may be larger: with overcommit a larger allocation
/// can succeed and then kill the process when it is written.
pub fn physical_memory() -> Option<u64> {
    static MEM: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *MEM.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    })
}

/// A host vector with room for `len` f32, or an error (not an abort) when it is
/// larger than the machine's memory or the allocation fails.
fn host_reserve(op: &'static str, len: usize) -> Result<Vec<f32>> {
    let bytes = (len as u64).saturating_mul(4);
    let err = |why: String| {
        Error::backend(
            "host",
            op,
            format!("a buffer of {len} f32 values ({bytes} bytes) cannot be allocated: {why}"),
        )
    };
    if let Some(mem) = physical_memory() {
        if bytes > mem {
            return Err(err(format!("the machine has {mem} bytes of memory")));
        }
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|e| err(e.to_string()))?;
    Ok(v)
}

/// A host vector of `len` copies of `value`, or an error (not an abort) when it
/// cannot be allocated.
pub fn host_vec(op: &'static str, len: usize, value: f32) -> Result<Vec<f32>> {
    let mut v = host_reserve(op, len)?;
    v.resize(len, value);
    Ok(v)
}

/// Errors when a host result of `len` f32 values cannot be allocated, so that an
/// impossible size is an error rather than an abort inside the op. Requests from
/// 2^24 elements are tried (and freed); smaller ones cannot fail in practice.
pub fn host_alloc(op: &'static str, len: usize) -> Result<()> {
    if len >= 1 << 24 {
        host_reserve(op, len)?;
    }
    Ok(())
}
