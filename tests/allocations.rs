//! Heap allocations per training step of the course loop on the CPU (batch 10, hidden 100),
//! counted by a global allocator that wraps the system's (issue #13: the allocator took a
//! quarter of this epoch, 583 allocations per step; now 80). Alone in its test binary, so
//! no other test's allocations are counted.
//!
//! Counts, not times: the bound holds on every machine, and a change that brings back a
//! per-op or per-element allocation fails here. The allocator's share of the epoch's time
//! is measured with `scripts/alloc_share.sh` (perf).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use minitorch::train::{TrainConfig, Trainer};
use minitorch::Device;

/// The system allocator, counting calls and bytes while [`COUNTING`] is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn count(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(bytes, Ordering::Relaxed);
        LARGEST.fetch_max(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new);
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Steps per epoch: 50 points in batches of 10.
const STEPS_PER_EPOCH: usize = 5;

#[test]
fn a_cpu_training_step_makes_few_small_allocations() {
    let mut t = Trainer::new(TrainConfig {
        hidden: 100,
        batch: 10,
        points: 50,
        device: Device::Cpu,
        ..TrainConfig::default()
    })
    .unwrap();
    // The first epochs fill the host buffer pool and the program caches.
    for _ in 0..3 {
        t.epoch().unwrap();
    }
    let epochs = 10;
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..epochs {
        t.epoch().unwrap();
    }
    COUNTING.store(false, Ordering::Relaxed);
    let steps = (epochs * STEPS_PER_EPOCH) as f64;
    let calls = CALLS.load(Ordering::Relaxed) as f64 / steps;
    let bytes = BYTES.load(Ordering::Relaxed) as f64 / steps;
    let largest = LARGEST.load(Ordering::Relaxed);
    println!(
        "per training step: {calls:.1} allocations, {bytes:.0} bytes; largest {largest} bytes"
    );
    // Tensor handles and storages (two small allocations per tensor, ~35 tensors), the
    // functions a step records, the batch's inputs: about 80. The bound leaves room for
    // small changes, not for a per-op list or layout allocation (583 before).
    assert!(
        calls <= 100.0,
        "{calls:.1} allocations per step (at most 100)"
    );
    // No tensor data: outputs, gradients and matmul packing come from the host pool, so a
    // step allocates only metadata (the largest is backward's gradient map, ~2 KiB), all
    // smaller than the smallest activation (10x100 values, 4,000 bytes).
    assert!(largest < 4000, "an allocation of {largest} bytes in a step");
}
