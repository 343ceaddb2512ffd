//! Host buffer pool: the CPU backend's outputs and matmul packing buffers are taken from a
//! per-thread pool of size classes and returned to it when dropped, so a training loop
//! that allocates the same sizes every step stops calling the allocator (and the kernel,
//! for buffers big enough to be mapped) after its first step.
//!
//! Size classes are the GPU pools' ([`pool_size_class`]), so a class wastes under a quarter
//! of its size. A pooled buffer keeps its old contents: every user overwrites all of it.
//! Each thread keeps at most [`POOL_MAX_BYTES`] of idle buffers; past that, a dropped buffer
//! is freed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

use crate::backend::pool_size_class;

/// Idle bytes one thread's pool keeps at most: enough for a convolution layer's columns
/// and those of its transposed convolution (batch 64, 32 -> 64 channels, 28x28: about
/// 180 MB), which would otherwise be unmapped and faulted in again every step.
pub const POOL_MAX_BYTES: usize = 512 << 20;
/// Smallest class, in values.
const MIN_CLASS: usize = 16;

#[derive(Default)]
struct Pool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

fn class(len: usize) -> usize {
    pool_size_class(len, MIN_CLASS, MIN_CLASS)
}

/// A host buffer of `len` f32 values whose memory goes back to the pool on drop.
pub struct HostBuf {
    /// Fully initialised, `len() == capacity()` when it came from the pool.
    vec: Vec<f32>,
    len: usize,
}

impl HostBuf {
    /// `len` values with unspecified contents (a reused buffer keeps its old values); the
    /// caller overwrites every one.
    pub fn take(len: usize) -> HostBuf {
        if len == 0 {
            return HostBuf::from(Vec::new());
        }
        let c = class(len);
        let reused = POOL
            .try_with(|p| {
                let mut p = p.borrow_mut();
                let v = p.free.get_mut(&c).and_then(|l| l.pop());
                if v.is_some() {
                    p.bytes -= c * 4;
                }
                v
            })
            .ok()
            .flatten();
        HostBuf {
            vec: reused.unwrap_or_else(|| vec![0.0; c]),
            len,
        }
    }

    /// `len` copies of `value`.
    pub fn full(len: usize, value: f32) -> HostBuf {
        let mut b = HostBuf::take(len);
        b.fill(value);
        b
    }

    /// A copy of `data`.
    pub fn copy_of(data: &[f32]) -> HostBuf {
        let mut b = HostBuf::take(data.len());
        b.copy_from_slice(data);
        b
    }
}

impl From<Vec<f32>> for HostBuf {
    /// Adopt a vector (no copy); its memory joins the pool on drop if its size is a class.
    fn from(vec: Vec<f32>) -> HostBuf {
        let len = vec.len();
        HostBuf { vec, len }
    }
}

impl Deref for HostBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.vec[..self.len]
    }
}

impl DerefMut for HostBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.vec[..self.len]
    }
}

impl Drop for HostBuf {
    fn drop(&mut self) {
        let cap = self.vec.capacity();
        // Only whole, initialised buffers of a class size can be handed out again.
        if cap == 0 || self.vec.len() != cap || class(cap) != cap {
            return;
        }
        let vec = std::mem::take(&mut self.vec);
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.bytes + cap * 4 <= POOL_MAX_BYTES {
                p.bytes += cap * 4;
                p.free.entry(cap).or_default().push(vec);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_class_and_sized_by_request() {
        let a = HostBuf::full(1000, 2.0);
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|&v| v == 2.0));
        let p = a.vec.as_ptr();
        drop(a);
        // Same class (1000 and 1010 round to the same size): the same memory comes back.
        let b = HostBuf::take(1010);
        assert_eq!(b.len(), 1010);
        assert_eq!(b.vec.as_ptr(), p);
        // A different class gets other memory.
        let c = HostBuf::take(5000);
        assert_ne!(c.vec.as_ptr(), p);
        assert_eq!(HostBuf::take(0).len(), 0);
        assert_eq!(&*HostBuf::copy_of(&[1.0, 2.0]), &[1.0, 2.0]);
    }

    #[test]
    fn adopted_vectors_of_odd_capacity_are_not_pooled() {
        let v = vec![1.0f32; 1001];
        let cap = v.capacity();
        drop(HostBuf::from(v));
        let got = POOL.with(|p| p.borrow().free.get(&cap).map_or(0, |l| l.len()));
        if class(cap) != cap {
            assert_eq!(got, 0);
        }
    }
}
