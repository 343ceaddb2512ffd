//! Host memory budgets for sizes that come from users (layer widths, point counts, epoch
//! counts): the byte count is computed without overflow and compared with the machine's
//! memory before anything is allocated, so an impossible request is an error naming the
//! parameter, never an abort. Tensors use the same limit ([`crate::backend::check`]).

use crate::error::{Error, Result};

/// The machine's physical memory in bytes, if known (Linux: `MemTotal` of /proc/meminfo).
pub fn physical_memory() -> Option<u64> {
    crate::backend::check::physical_memory()
}

/// `bytes` in binary units, rounded to a whole number when large: `4 TiB`, `24 GiB`,
/// `1.5 KiB`, `12 B`.
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 10.0 || v.fract() == 0.0 {
        format!("{} {}", v.round(), UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Errors when `bytes` are more than this machine's memory (or more than any allocation
/// may be, `isize::MAX`): `{op}: {param} needs {bytes} for {purpose}; this machine has {mem}`.
pub fn need(op: &'static str, param: &str, purpose: &str, bytes: u128) -> Result<()> {
    let limit = physical_memory().map_or(isize::MAX as u128, |m| m as u128);
    if bytes > limit.min(isize::MAX as u128) {
        let has = match physical_memory() {
            Some(m) => format!("this machine has {}", human_bytes(m as u128)),
            None => "no allocation can be that large".to_string(),
        };
        return Err(Error::invalid(
            op,
            format!("{param} needs {} for {purpose}; {has}", human_bytes(bytes)),
        ));
    }
    Ok(())
}

/// An empty vector with room for `len` values of `T`, after [`need`] accepted its bytes;
/// an allocation failure is an error too.
pub fn try_vec<T>(op: &'static str, param: &str, purpose: &str, len: usize) -> Result<Vec<T>> {
    let bytes = len as u128 * std::mem::size_of::<T>() as u128;
    need(op, param, purpose, bytes)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|e| {
        Error::invalid(
            op,
            format!(
                "{param}: {} for {purpose} cannot be allocated: {e}",
                human_bytes(bytes)
            ),
        )
    })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(4 << 40), "4 TiB");
        assert_eq!(human_bytes(24 << 30), "24 GiB");
    }

    #[test]
    fn need_names_the_parameter() {
        let e = need("train", "hidden 1048576", "layer2.weights", 4 << 40).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("train: hidden 1048576 needs 4 TiB for layer2.weights; "),
            "{s}"
        );
        assert!(need("train", "hidden 1", "layer2.weights", 4).is_ok());
    }
}
