//! A pool of device buffers keyed by kind and size class, so a training loop reuses the
//! buffers of the previous step instead of allocating device memory every step.
//!
//! A released buffer may still be read by dispatches recorded into the open (not yet
//! submitted) command encoder, and `queue.write_buffer` runs at the start of the *next*
//! submission, before those dispatches. So released buffers wait in `deferred` and become
//! reusable only after the batch that may use them has been submitted
//! ([`Pool::recycle`], called by the runtime right after each submit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What a pooled buffer is used for (each kind has its own usage flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Tensor data: storage, copy source and destination.
    Data,
    /// Kernel metadata (read-only storage, written from the host).
    Meta,
    /// Staging for downloads (mappable for reading).
    Staging,
}

impl Kind {
    fn usage(self) -> wgpu::BufferUsages {
        use wgpu::BufferUsages as U;
        match self {
            Kind::Data => U::STORAGE | U::COPY_SRC | U::COPY_DST,
            Kind::Meta => U::STORAGE | U::COPY_DST,
            Kind::Staging => U::MAP_READ | U::COPY_DST,
        }
    }
}

/// Smallest buffer handed out (also what a zero-length tensor gets: bindings need bytes).
pub const MIN_CLASS: u64 = 256;

/// Free buffers kept beyond this many bytes are destroyed instead of cached (the default
/// cap; see [`Pool::set_cap`] and [`CAP_ENV`]).
pub const MAX_CACHED_BYTES: u64 = 1 << 30;

/// Free buffers kept beyond this many buffers are destroyed instead of cached (the
/// default; small buffers cost driver memory beyond their bytes).
pub const MAX_CACHED_BUFFERS: u64 = 4096;

/// Environment variable that sets the pool's byte cap at start-up (`0` caches nothing).
pub const CAP_ENV: &str = "MINITORCH_POOL_CAP_BYTES";

/// The byte cap from [`CAP_ENV`], or [`MAX_CACHED_BYTES`].
pub fn cap_from_env() -> u64 {
    std::env::var(CAP_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(MAX_CACHED_BYTES)
}

/// The size class of a request of `bytes`: at least [`MIN_CLASS`], steps no smaller than
/// it (see [`crate::backend::pool_size_class`]).
pub fn size_class(bytes: u64) -> u64 {
    let min = MIN_CLASS as usize;
    crate::backend::pool_size_class(bytes as usize, min, min) as u64
}

/// Counters, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Requests served by a cached buffer.
    pub reused: u64,
    /// Requests that created a buffer.
    pub created: u64,
    /// Bytes in buffers currently cached (free or waiting for a submit).
    pub cached_bytes: u64,
    /// Free buffers currently cached.
    pub cached_buffers: u64,
}

#[derive(Default)]
struct State {
    free: HashMap<(Kind, u64), Vec<wgpu::Buffer>>,
    deferred: Vec<(Kind, u64, wgpu::Buffer)>,
    free_bytes: u64,
    free_count: u64,
    deferred_bytes: u64,
    stats: PoolStats,
}

/// The pool. Buffers come out as [`PooledBuffer`]s that go back on drop.
pub struct Pool {
    device: wgpu::Device,
    state: Mutex<State>,
    cap_bytes: AtomicU64,
    cap_buffers: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({:?})", self.stats())
    }
}

impl Pool {
    /// An empty pool on `device`.
    pub fn new(device: wgpu::Device) -> Arc<Pool> {
        Arc::new(Pool {
            device,
            state: Mutex::new(State::default()),
            cap_bytes: AtomicU64::new(cap_from_env()),
            cap_buffers: AtomicU64::new(MAX_CACHED_BUFFERS),
        })
    }

    /// Keep at most `bytes` bytes and `buffers` buffers of free memory cached; freed
    /// buffers beyond the caps go back to the driver. Trims the cache to the new caps.
    pub fn set_cap(&self, bytes: u64, buffers: u64) {
        self.cap_bytes.store(bytes, Ordering::Relaxed);
        self.cap_buffers.store(buffers, Ordering::Relaxed);
        let mut st = self.lock();
        let st = &mut *st;
        for (&(_, class), list) in st.free.iter_mut() {
            while st.free_bytes > bytes || st.free_count > buffers {
                let Some(buf) = list.pop() else { break };
                buf.destroy();
                st.free_bytes -= class;
                st.free_count -= 1;
            }
        }
        st.free.retain(|_, v| !v.is_empty());
    }

    /// The caps: (bytes, buffers).
    pub fn cap(&self) -> (u64, u64) {
        (
            self.cap_bytes.load(Ordering::Relaxed),
            self.cap_buffers.load(Ordering::Relaxed),
        )
    }

    /// Give every cached free buffer back to the driver (buffers still in use, or
    /// waiting for a submit, are not touched). After a large graph is dropped this
    /// returns its memory.
    pub fn trim(&self) {
        let mut st = self.lock();
        for (_, list) in st.free.drain() {
            list.into_iter().for_each(|b| b.destroy());
        }
        st.free_bytes = 0;
        st.free_count = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere must not make the pool unusable: the state stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer of at least `bytes` bytes (the caller checked the device limits).
    pub fn acquire(self: &Arc<Self>, kind: Kind, bytes: u64) -> PooledBuffer {
        let class = size_class(bytes);
        let cached = {
            let mut st = self.lock();
            let hit = st.free.get_mut(&(kind, class)).and_then(|v| v.pop());
            if hit.is_some() {
                st.free_bytes -= class;
                st.free_count -= 1;
                st.stats.reused += 1;
            } else {
                st.stats.created += 1;
            }
            hit
        };
        let buf = cached.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("minitorch"),
                size: class,
                usage: kind.usage(),
                mapped_at_creation: false,
            })
        });
        PooledBuffer {
            buf: Some(buf),
            kind,
            class,
            pool: self.clone(),
        }
    }

    fn release(&self, kind: Kind, class: u64, buf: wgpu::Buffer) {
        let mut st = self.lock();
        st.deferred_bytes += class;
        st.deferred.push((kind, class, buf));
    }

    /// Bytes released since the last submit (the runtime submits early when this grows).
    pub fn deferred_bytes(&self) -> u64 {
        self.lock().deferred_bytes
    }

    /// Make the buffers released before a submit reusable (call right after the submit).
    pub fn recycle(&self) {
        let mut st = self.lock();
        let deferred = std::mem::take(&mut st.deferred);
        st.deferred_bytes = 0;
        let (cap_bytes, cap_buffers) = self.cap();
        for (kind, class, buf) in deferred {
            if st.free_bytes + class > cap_bytes || st.free_count >= cap_buffers {
                buf.destroy();
                continue;
            }
            st.free_bytes += class;
            st.free_count += 1;
            st.free.entry((kind, class)).or_default().push(buf);
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> PoolStats {
        let st = self.lock();
        PoolStats {
            cached_bytes: st.free_bytes + st.deferred_bytes,
            cached_buffers: st.free_count,
            ..st.stats
        }
    }
}

/// A buffer from the pool; dropping it hands it back.
pub struct PooledBuffer {
    buf: Option<wgpu::Buffer>,
    kind: Kind,
    class: u64,
    pool: Arc<Pool>,
}

impl PooledBuffer {
    /// The wgpu buffer.
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("buffer present until drop")
    }

    /// Its size in bytes (the size class, at least what was asked for).
    pub fn capacity(&self) -> u64 {
        self.class
    }
}

impl std::fmt::Debug for PooledBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PooledBuffer({:?}, {} bytes)", self.kind, self.class)
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.release(self.kind, self.class, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_requests_with_little_waste() {
        assert_eq!(size_class(0), 256);
        assert_eq!(size_class(256), 256);
        assert_eq!(size_class(257), 512);
        for bytes in [
            1000u64,
            4096,
            4097,
            1 << 20,
            (1 << 20) + 4,
            3_000_000,
            123_456_788,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes, "{bytes} -> {c}");
            assert!(c - bytes < bytes / 4 + 256, "{bytes} -> {c}");
            assert_eq!(c % 4, 0);
        }
    }
}
