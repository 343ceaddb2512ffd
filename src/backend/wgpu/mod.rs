//! The WebGPU backend (feature `wgpu`): WGSL compute shaders through wgpu, on any GPU wgpu
//! supports (Vulkan, Metal, DX12, GL), including software Vulkan (lavapipe) on machines
//! without a GPU.
//!
//! - [`runtime`]: adapter choice, device, pipeline cache, the batch of recorded dispatches;
//! - [`pool`]: device buffers reused by size class;
//! - [`reduce`], [`matmul`], [`pad`], [`random`]: metadata and launch of the hand-written
//!   kernel families (the shaders are `shaders/*.wgsl`, specialised per op by text at
//!   pipeline build);
//! - [`generated`]: the generated kernels (fused programs, and `map` / `zip` as one-op
//!   programs from the op table), compiled once per program and cached.
//!
//! Kernel metadata and launch plans are the CUDA backend's too ([`crate::backend::gpu`]):
//! all `u32`, sizes and positions beyond `u32` are rejected with an error.

use std::sync::{Arc, OnceLock};

use super::gpu::{self, meta::MetaWords};
use super::{fused as fusion, Backend, BinaryOp, Device, Outputs, ReduceOp, Storage, UnaryOp};
use crate::error::Result;
use crate::executor::BoxFuture;
use crate::layout::Layout;

pub mod generated;
pub mod matmul;
pub mod pad;
pub mod pool;
pub mod random;
pub mod reduce;
pub mod runtime;

use pool::PooledBuffer;
use runtime::{Runtime, NAME};

/// The WebGPU backend: a [`Storage`] holds a [`PooledBuffer`] that returns to the pool on
/// drop.
#[derive(Debug)]
pub struct WgpuBackend {
    rt: Runtime,
}

/// The process-wide backend, once set up.
static GLOBAL: OnceLock<Result<Arc<WgpuBackend>>> = OnceLock::new();

impl WgpuBackend {
    /// The process-wide backend, created on first use. Fails with
    /// [`Error::DeviceUnavailable`](crate::error::Error::DeviceUnavailable) (saying how to get an adapter) when wgpu finds none.
    /// In a browser the device can only be set up asynchronously: call
    /// [`WgpuBackend::global_async`] (or `Device::Wgpu.backend_async()`) once first.
    pub fn global() -> Result<Arc<WgpuBackend>> {
        if let Some(b) = GLOBAL.get() {
            return b.clone();
        }
        #[cfg(target_arch = "wasm32")]
        return Err(crate::error::Error::DeviceUnavailable {
            device: NAME,
            msg: "in a browser the WebGPU device is set up asynchronously: await \
                  `Device::Wgpu.backend_async()` (or `WgpuBackend::global_async()`) once \
                  before using the device"
                .into(),
        });
        #[cfg(not(target_arch = "wasm32"))]
        GLOBAL
            .get_or_init(|| Runtime::new().map(Self::from_runtime))
            .clone()
    }

    /// The process-wide backend, set up asynchronously on first use (the only way in a
    /// browser; natively the same as [`WgpuBackend::global`]).
    pub async fn global_async() -> Result<Arc<WgpuBackend>> {
        if let Some(b) = GLOBAL.get() {
            return b.clone();
        }
        let made = Runtime::new_async().await.map(Self::from_runtime);
        // Two callers racing both set one up; the first one stored wins.
        GLOBAL.get_or_init(|| made).clone()
    }

    fn from_runtime(rt: Runtime) -> Arc<WgpuBackend> {
        Arc::new(WgpuBackend { rt })
    }

    /// The runtime (device, queue, pool, counters).
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn wrap(buf: PooledBuffer, len: usize) -> Storage {
        Storage::new(buf, len, Device::Wgpu)
    }
}

/// The wgpu buffer of a storage, or an error when it belongs to another backend.
fn buffer(x: &Storage) -> Result<&wgpu::Buffer> {
    Ok(x.downcast::<PooledBuffer>(NAME)?.raw())
}

/// An empty metadata buffer of a launch of `op` (wgpu binds any number of words).
fn meta_words(op: &'static str) -> MetaWords {
    MetaWords::new(NAME, op, usize::MAX)
}

impl Backend for WgpuBackend {
    fn device(&self) -> Device {
        Device::Wgpu
    }

    fn describe(&self) -> String {
        let i = &self.rt.info;
        let driver = format!("{} {}", i.driver, i.driver_info);
        // Browsers do not give wgpu the adapter's name.
        let name = if i.name.is_empty() {
            "unnamed adapter"
        } else {
            &i.name
        };
        format!(
            "{} ({:?}, {:?}, driver {})",
            name,
            i.device_type,
            i.backend,
            driver.trim()
        )
    }

    fn is_emulated(&self) -> bool {
        // lavapipe / llvmpipe / WARP report themselves as CPU adapters.
        self.rt.info.device_type == wgpu::DeviceType::Cpu
    }

    fn full(&self, len: usize, value: f32) -> Result<Storage> {
        let _serial = self.rt.serial();
        // The device limit first: a tensor too large for the device is an error before
        // any host memory is allocated for it.
        self.rt.check_len("full", len)?;
        let host = super::check::host_vec("full", len, value)?;
        let buf = self.rt.upload("full", &host)?;
        Ok(Self::wrap(buf, len))
    }

    fn upload(&self, data: &[f32]) -> Result<Storage> {
        let _serial = self.rt.serial();
        let buf = self.rt.upload("upload", data)?;
        Ok(Self::wrap(buf, data.len()))
    }

    fn download(&self, x: &Storage) -> Result<Vec<f32>> {
        self.rt.download(buffer(x)?, x.len())
    }

    fn download_async<'a>(&'a self, x: &'a Storage) -> BoxFuture<'a, Result<Vec<f32>>> {
        Box::pin(async move { self.rt.download_async(buffer(x)?, x.len()).await })
    }

    fn map(&self, op: UnaryOp, x: &Storage, layout: &Layout) -> Result<Storage> {
        let _serial = self.rt.serial();
        gpu::generated::map(&self.rt, "map", op, x, layout)
    }

    fn zip(
        &self,
        op: BinaryOp,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
    ) -> Result<Storage> {
        let _serial = self.rt.serial();
        gpu::generated::zip(&self.rt, op, a, al, b, bl)
    }

    fn reduce(&self, op: ReduceOp, x: &Storage, layout: &Layout, dim: usize) -> Result<Storage> {
        let _serial = self.rt.serial();
        reduce::reduce(&self.rt, op, x, layout, dim)
    }

    fn matmul(&self, a: &Storage, al: &Layout, b: &Storage, bl: &Layout) -> Result<Storage> {
        let _serial = self.rt.serial();
        matmul::matmul(&self.rt, a, al, b, bl)
    }

    fn copy(&self, x: &Storage, layout: &Layout) -> Result<Storage> {
        let _serial = self.rt.serial();
        gpu::generated::map(&self.rt, "copy", UnaryOp::Id, x, layout)
    }

    fn pad(&self, x: &Storage, layout: &Layout, spec: &super::pad::PadSpec) -> Result<Storage> {
        let _serial = self.rt.serial();
        pad::pad(&self.rt, x, layout, spec)
    }

    fn uniform(&self, len: usize, key: [u32; 2]) -> Result<Storage> {
        let _serial = self.rt.serial();
        random::uniform(&self.rt, len, key)
    }

    fn synchronize(&self) -> Result<()> {
        let _serial = self.rt.serial();
        self.rt.synchronize()
    }

    fn trim_pool(&self) {
        self.rt.pool.trim();
    }

    fn fused(
        &self,
        program: &fusion::Program,
        inputs: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<Outputs> {
        let _serial = self.rt.serial();
        gpu::generated::fused(&self.rt, program, inputs, params)
    }

    fn matmul_fused(
        &self,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
        epilogue: &fusion::Program,
        extra: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<Storage> {
        let _serial = self.rt.serial();
        gpu::generated::matmul_fused(&self.rt, a, al, b, bl, epilogue, extra, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The backend, or None (printed as skipped) on a machine without an adapter; a
    /// failure when `MINITORCH_REQUIRE_BACKENDS` lists wgpu.
    fn backend() -> Option<Arc<WgpuBackend>> {
        match WgpuBackend::global() {
            Ok(b) => Some(b),
            Err(e) => {
                let required = std::env::var("MINITORCH_REQUIRE_BACKENDS").is_ok_and(|v| {
                    v.split(',')
                        .any(|d| Device::parse(d.trim()).is_ok_and(|d| d == Device::Wgpu))
                });
                assert!(!required, "MINITORCH_REQUIRE_BACKENDS requires wgpu: {e}");
                let _ = writeln!(std::io::stderr(), "SKIPPED: backend wgpu not present ({e})");
                None
            }
        }
    }

    #[test]
    fn training_like_loop_reuses_pooled_buffers() {
        let Some(b) = backend() else { return };
        let l = Layout::contiguous(&[257, 33]);
        let x = b.upload(&vec![0.5; 257 * 33]).unwrap();
        let step = || {
            let y = b.map(UnaryOp::Exp, &x, &l).unwrap();
            let z = b.zip(BinaryOp::Mul, &y, &l, &x, &l).unwrap();
            let s = b.reduce(ReduceOp::Sum, &z, &l, 1).unwrap();
            b.download(&s).unwrap()
        };
        for _ in 0..3 {
            step();
        }
        let before = b.runtime().pool.stats().created;
        for _ in 0..20 {
            step();
        }
        // Other tests share the pool, so allow a little; a leak would create 80+.
        let created = b.runtime().pool.stats().created - before;
        assert!(created < 10, "20 steps created {created} buffers");
    }

    #[test]
    fn ops_are_batched_until_a_download() {
        let Some(b) = backend() else { return };
        let l = Layout::contiguous(&[64]);
        let mut x = b.upload(&[1.0; 64]).unwrap();
        let first = b.runtime().stats();
        for _ in 0..10 {
            x = b.map(UnaryOp::Neg, &x, &l).unwrap();
        }
        let recorded = b.runtime().stats();
        assert_eq!(b.download(&x).unwrap(), vec![1.0; 64]);
        let after = b.runtime().stats();
        // Other tests may submit meanwhile; this thread's 10 ops need at most one submit
        // of their own (the download), not ten.
        assert!(recorded.dispatches - first.dispatches >= 10);
        assert!(after.submits > first.submits);
    }

    #[test]
    fn oversized_tensors_name_the_limit() {
        let Some(b) = backend() else { return };
        let max = b.runtime().max_binding_bytes() as usize / 4;
        let err = b.runtime().alloc("map", max + 1).unwrap_err().to_string();
        assert!(err.contains("max_storage_buffer_binding_size"), "{err}");
    }

    #[test]
    fn launches_past_65535_workgroups_fold_into_two_dimensions() {
        let Some(b) = backend() else { return };
        let n: usize = 65_535 * 256 + 1000;
        if (n * 4) as u64 > b.runtime().max_binding_bytes() {
            return;
        }
        assert_eq!(b.runtime().groups_1d("map", n.div_ceil(256)).unwrap().1, 2);
        let data: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
        let x = b.upload(&data).unwrap();
        let y = b.map(UnaryOp::Neg, &x, &Layout::contiguous(&[n])).unwrap();
        let got = b.download(&y).unwrap();
        assert!(got.iter().zip(&data).all(|(g, d)| *g == -*d));
    }
}
