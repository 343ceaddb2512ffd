//! Reuse of device memory: a cache of freed buffers by size class, so a training step
//! allocates nothing from the driver after the first.
//!
//! Reuse is safe without synchronisation because every launch and copy goes to one stream:
//! a buffer dropped on the host while kernels that read it are still queued is handed to a
//! later kernel, which the stream runs after them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::CudaSlice;

use super::device::{AllocError, Gpu, Memory};

use crate::error::{Error, Result};

/// Buffers smaller than this many f32 share one class.
const MIN_CLASS: usize = 64;

/// The size class (in f32 elements) a request of `len` elements is served from (see
/// [`crate::backend::pool_size_class`]).
pub fn size_class(len: usize) -> usize {
    crate::backend::pool_size_class(len, MIN_CLASS, 1)
}

/// The cache of free device buffers.
#[derive(Debug)]
pub struct Pool {
    gpu: Arc<Gpu>,
    free: Mutex<Free>,
    /// Most bytes kept in the cache; buffers beyond it go back to the driver.
    limit_bytes: AtomicUsize,
}

#[derive(Debug, Default)]
struct Free {
    by_class: HashMap<usize, Vec<Memory>>,
    bytes: usize,
}

impl Pool {
    /// A pool allocating on `gpu`, caching at most `limit_bytes`.
    pub fn new(gpu: Arc<Gpu>, limit_bytes: usize) -> Arc<Pool> {
        Arc::new(Pool {
            gpu,
            free: Mutex::new(Free::default()),
            limit_bytes: AtomicUsize::new(limit_bytes),
        })
    }

    /// Keep at most `bytes` bytes of free buffers cached (freed buffers beyond it go back
    /// to the driver); trims the cache when it holds more.
    pub fn set_cap(&self, bytes: usize) {
        self.limit_bytes.store(bytes, Ordering::Relaxed);
        if self.cached_bytes() > bytes {
            self.trim();
        }
    }

    /// The byte cap.
    pub fn cap(&self) -> usize {
        self.limit_bytes.load(Ordering::Relaxed)
    }

    /// A buffer of at least `len` elements (contents undefined). `len` 0 allocates nothing.
    pub fn alloc(self: &Arc<Self>, len: usize) -> Result<CudaBuffer> {
        if len == 0 {
            return Ok(CudaBuffer {
                mem: None,
                ptr: 0,
                len: 0,
                pool: self.clone(),
            });
        }
        let class = size_class(len);
        let cached = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            let s = free.by_class.get_mut(&class).and_then(|v| v.pop());
            if s.is_some() {
                free.bytes -= class * 4;
            }
            s
        };
        let mem = match cached {
            Some(s) => s,
            None => self.alloc_new(class)?,
        };
        Ok(CudaBuffer {
            ptr: self.gpu.ptr(&mem),
            mem: Some(mem),
            len,
            pool: self.clone(),
        })
    }

    fn alloc_new(&self, class: usize) -> Result<Memory> {
        match self.gpu.alloc(class) {
            Ok(s) => Ok(s),
            Err(e) if e.out_of_memory => {
                // Give the cache back to the device and try once more.
                self.trim();
                self.gpu.alloc(class).map_err(|e| self.oom(class, e))
            }
            Err(e) => Err(self.oom(class, e)),
        }
    }

    fn oom(&self, class: usize, e: AllocError) -> Error {
        Error::backend(
            self.gpu.name(),
            "alloc",
            format!(
                "allocating {} bytes of device memory failed: {}",
                class * 4,
                e.msg
            ),
        )
    }

    /// The device the pool allocates on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    fn give_back(&self, slice: Memory) {
        let class = slice.len();
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.bytes + class * 4 <= self.cap() {
            free.bytes += class * 4;
            free.by_class.entry(class).or_default().push(slice);
        }
        // Otherwise `slice` drops here: freed in stream order.
    }

    /// Give every cached free buffer back to the driver.
    pub fn trim(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.by_class.clear();
        free.bytes = 0;
    }

    /// Bytes currently cached.
    pub fn cached_bytes(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

/// A device buffer of `len` f32 values (the cuda backend's [`crate::backend::Storage`]
/// payload). Dropping it returns the memory to the pool.
#[derive(Debug)]
pub struct CudaBuffer {
    mem: Option<Memory>,
    ptr: u64,
    len: usize,
    pool: Arc<Pool>,
}

impl CudaBuffer {
    /// Elements in use (the allocation may be larger: see [`size_class`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address (0 for an empty buffer), passed to kernels.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// The underlying allocation (`None` when empty), for copies. It may be longer than
    /// [`CudaBuffer::len`].
    pub fn memory(&self) -> Option<&Memory> {
        self.mem.as_ref()
    }

    /// Mutable access to the allocation, for copies into it.
    pub fn memory_mut(&mut self) -> Option<&mut Memory> {
        self.mem.as_mut()
    }

    /// The GPU allocation, for other CUDA libraries (cuBLAS in the benchmark, NCCL);
    /// `None` when empty or on the emulated device.
    pub fn slice(&self) -> Option<&CudaSlice<f32>> {
        match &self.mem {
            Some(Memory::Driver(s)) => Some(s),
            _ => None,
        }
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        if let Some(s) = self.mem.take() {
            self.pool.give_back(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_bound_the_waste() {
        assert_eq!(size_class(1), 64);
        assert_eq!(size_class(64), 64);
        assert_eq!(size_class(65), 80);
        assert_eq!(size_class(128), 128);
        assert_eq!(size_class(129), 160);
        assert_eq!(size_class(1000), 1024);
        for len in [
            65usize,
            100,
            1000,
            4097,
            1 << 20,
            (1 << 20) + 1,
            123_456_789,
        ] {
            let c = size_class(len);
            assert!(c >= len && c * 4 <= len * 5 + 4 * MIN_CLASS, "{len} -> {c}");
            assert_eq!(size_class(c), c, "classes are fixed points");
        }
    }
}
