//! Device set-up, the pipeline cache and the command batch.
//!
//! One [`Runtime`] per process: the adapter is chosen once (a real GPU over a CPU one,
//! overridable through `WGPU_BACKEND` and `MINITORCH_WGPU_ADAPTER`), pipelines are compiled
//! once per (kernel, op, variant), and dispatches are recorded into one open compute pass
//! that is submitted at a sync point (a download, `synchronize`) or after
//! [`MAX_BATCH_DISPATCHES`] dispatches, never once per op.
//!
//! Set-up ([`Runtime::new_async`]) and readback ([`Runtime::download_async`]) are async,
//! because that is the only form a browser's WebGPU offers; natively the blocking forms
//! wait for them ([`crate::executor::block_on`]).

use std::collections::HashMap;

use crate::backend::gpu::sources;
use std::sync::{Arc, Mutex, MutexGuard};

use super::pool::{Kind, Pool, PooledBuffer};
use crate::error::{Error, Result};
use crate::executor::{block_on, oneshot};

/// Name used in errors.
pub const NAME: &str = "wgpu";

/// Dispatches recorded before the batch is submitted without waiting.
pub const MAX_BATCH_DISPATCHES: usize = 256;

/// Bytes released (and so not reusable) during a batch before it is submitted early, so a
/// long batch of large temporaries does not grow device memory without bound.
pub const MAX_DEFERRED_BYTES: u64 = 256 << 20;

/// Environment variable that filters adapters by a substring of their name.
pub const ADAPTER_ENV: &str = "MINITORCH_WGPU_ADAPTER";

/// Environment variable (wgpu's own) that selects the graphics API.
pub const BACKEND_ENV: &str = "WGPU_BACKEND";

/// The hand-written kernel families, one WGSL template each (the generated kernels are
/// `generated.rs`'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// shaders/reduce.wgsl
    Reduce,
    /// shaders/reduce.wgsl, one thread per output (`reduce_serial_<op>` entry points).
    ReduceSerial,
    /// shaders/matmul.wgsl
    Matmul,
    /// shaders/pad.wgsl (zero padding with dilation, for convolution)
    Pad,
    /// shaders/random.wgsl (the counter-based generator)
    Random,
}

impl Family {
    fn template(self) -> &'static str {
        match self {
            Family::Reduce | Family::ReduceSerial => sources::WGSL_REDUCE,
            Family::Matmul => sources::WGSL_MATMUL,
            Family::Pad => sources::WGSL_PAD,
            Family::Random => sources::WGSL_RANDOM,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Family::Reduce => "reduce",
            Family::ReduceSerial => "reduce_serial",
            Family::Matmul => "matmul",
            Family::Pad => "pad",
            Family::Random => "random",
        }
    }

    /// Number of bound input buffers (outputs and metadata come after them).
    fn inputs(self) -> usize {
        match self {
            Family::Reduce | Family::ReduceSerial | Family::Pad | Family::Random => 1,
            Family::Matmul => 2,
        }
    }

    /// The WGSL of this kernel for `op`: the indexing snippet, then the template with its
    /// `OPNAME` placeholder replaced (text specialisation: one pipeline per op).
    pub fn source(self, op: &str) -> String {
        sources::wgsl_family(self.template(), op)
    }

    /// The entry point for `op` (for matmul, `op` is the entry point: `matmul` or
    /// `matmul_fast`) and variant.
    pub fn entry_point(self, op: &str, contiguous: bool) -> String {
        match (self, contiguous) {
            (Family::Matmul, _) => op.to_string(),
            (_, false) => format!("{}_{op}", self.prefix()),
            (_, true) => format!("{}_{op}_contiguous", self.prefix()),
        }
    }
}

/// One launch of a hand-written kernel family: which entry point, on how many workgroups.
#[derive(Clone, Copy, Debug)]
pub struct Launch {
    /// The op, for errors.
    pub op: &'static str,
    /// The kernel family (selects the template and the bind group layout).
    pub kernel: Family,
    /// The op the template is specialised for (for matmul, the entry point).
    pub entry: &'static str,
    /// Whether it is the `_contiguous` entry point.
    pub contiguous: bool,
    /// Workgroups in x, y, z.
    pub groups: (u32, u32, u32),
}

/// Dispatches recorded but not yet submitted.
#[derive(Default)]
struct Batch {
    // Declared before the encoder: the pass must end before the encoder is used again.
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    dispatches: usize,
}

/// Counters of the runtime, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Dispatches recorded.
    pub dispatches: u64,
    /// Command buffers submitted.
    pub submits: u64,
    /// Pipelines compiled.
    pub pipelines: u64,
}

/// The staging buffer of a readback. It unmaps on drop when it is mapped or a map is
/// pending: a readback abandoned before its map completed (a blocking call in a browser
/// gives up after one poll) cancels the map, so the buffer goes back to the pool usable.
struct Staging {
    buf: PooledBuffer,
    mapping: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.mapping {
            self.buf.raw().unmap();
        }
    }
}

/// The device, queue, pipeline cache, buffer pool and open batch.
pub struct Runtime {
    /// The wgpu device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter the device was made from.
    pub info: wgpu::AdapterInfo,
    /// The device's limits (the adapter's best).
    pub limits: wgpu::Limits,
    /// Buffers reused across ops.
    pub pool: Arc<Pool>,
    layouts: [wgpu::BindGroupLayout; 2],
    pipeline_layouts: [wgpu::PipelineLayout; 2],
    pipelines: Mutex<HashMap<(Family, &'static str, bool), wgpu::ComputePipeline>>,
    batch: Mutex<Batch>,
    errors: Arc<Mutex<Vec<String>>>,
    stats: Mutex<RuntimeStats>,
    serial: Option<Mutex<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Runtime({} on {:?})", self.info.name, self.info.backend)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The graphics APIs to look at: `WGPU_BACKEND` (vulkan, gl, metal, dx12, comma
/// separated), or None when it is not set.
pub fn backends_from_env() -> Result<Option<wgpu::Backends>> {
    let Ok(list) = std::env::var(BACKEND_ENV) else {
        return Ok(None);
    };
    let mut out = wgpu::Backends::empty();
    for name in list.split(',').map(|s| s.trim().to_ascii_lowercase()) {
        out |= match name.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "" => continue,
            other => {
                return Err(Error::DeviceUnavailable {
                    device: NAME,
                    msg: format!(
                        "{BACKEND_ENV}={list:?}: unknown graphics API {other:?}; use vulkan, gl, metal or dx12"
                    ),
                })
            }
        };
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Preference of an adapter: a real GPU over a virtual or CPU one, then the native APIs
/// over GL. Higher is better.
pub fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 1,
        wgpu::DeviceType::Cpu => 0,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 1,
        _ => 0,
    };
    (kind, api)
}

pub(super) fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Runtime {
    /// Pick an adapter and open a device on it (natively; a browser needs
    /// [`Runtime::new_async`]).
    pub fn new() -> Result<Runtime> {
        block_on("wgpu set-up", "Runtime::new_async", Self::new_async())
    }

    /// Pick an adapter and open a device on it. In a browser the adapter is the one
    /// `navigator.gpu.requestAdapter()` gives.
    pub async fn new_async() -> Result<Runtime> {
        let asked = backends_from_env()?;
        let enumerate = |backends: wgpu::Backends| {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = backends;
            // Driver validation layers only when asked for (WGPU_VALIDATION=1): they are slow.
            desc.flags = wgpu::InstanceFlags::empty().with_env();
            let instance = wgpu::Instance::new(desc);
            instance.enumerate_adapters(backends)
        };
        // Unless told otherwise, GL is only a fallback: the native APIs are preferred, and
        // probing GL on a headless machine prints EGL noise. (PRIMARY includes the
        // browser's WebGPU.)
        let (backends, mut adapters) = match asked {
            Some(b) => (b, enumerate(b).await),
            None => (
                wgpu::Backends::all(),
                enumerate(wgpu::Backends::PRIMARY).await,
            ),
        };
        if adapters.is_empty() && asked.is_none() && !cfg!(target_arch = "wasm32") {
            adapters = enumerate(wgpu::Backends::GL).await;
        }
        let filter = std::env::var(ADAPTER_ENV).ok().filter(|f| !f.is_empty());
        let seen: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect();
        let chosen = adapters
            .into_iter()
            .filter(|a| match &filter {
                Some(f) => a.get_info().name.to_lowercase().contains(&f.to_lowercase()),
                None => true,
            })
            .max_by_key(|a| preference(&a.get_info()));
        let Some(adapter) = chosen else {
            let msg = if seen.is_empty() && cfg!(target_arch = "wasm32") {
                "this browser gives no WebGPU adapter (navigator.gpu.requestAdapter() failed); \
                 use a browser with WebGPU (Chrome or Edge 113+, Firefox 141+ on Windows, \
                 Safari 26) or chrome://flags/#enable-unsafe-webgpu, or the CPU backend"
                    .to_string()
            } else if seen.is_empty() {
                format!(
                    "no WebGPU adapter found for {backends:?}; install a GPU driver, or \
                     mesa-vulkan-drivers for a software Vulkan driver (lavapipe) \
                     (`apt-get install mesa-vulkan-drivers`); {BACKEND_ENV} picks the API \
                     (vulkan, gl, metal, dx12)"
                )
            } else {
                format!(
                    "no adapter name contains {ADAPTER_ENV}={:?}; adapters found: {}",
                    filter.unwrap_or_default(),
                    seen.join(", ")
                )
            };
            return Err(Error::DeviceUnavailable { device: NAME, msg });
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("minitorch"),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::DeviceUnavailable {
                device: NAME,
                msg: format!("cannot open a device on {}: {e}", info.name),
            })?;
        // Validation errors are collected and returned as Err at the next sync point
        // instead of wgpu's default panic.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).push(e.to_string());
        }));
        let layout = |inputs: u32| {
            let mut entries: Vec<_> = (0..inputs).map(|i| storage_entry(i, true)).collect();
            entries.push(storage_entry(inputs, false));
            entries.push(storage_entry(inputs + 1, true));
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("minitorch"),
                entries: &entries,
            })
        };
        let layouts = [layout(1), layout(2)];
        let pipeline_layouts = [0, 1].map(|i| {
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("minitorch"),
                bind_group_layouts: &[Some(&layouts[i])],
                immediate_size: 0,
            })
        });
        Ok(Runtime {
            pool: Pool::new(device.clone()),
            device,
            queue,
            limits,
            layouts,
            pipeline_layouts,
            pipelines: Mutex::new(HashMap::new()),
            batch: Mutex::new(Batch::default()),
            errors,
            stats: Mutex::new(RuntimeStats::default()),
            // wgpu's GL backend shares one context behind a lock that panics after a
            // timeout; a long wait in one thread must not make another thread's call panic.
            serial: (info.backend == wgpu::Backend::Gl).then(|| Mutex::new(())),
            info,
        })
    }

    /// On GL, a guard that serialises backend calls (None elsewhere: other APIs are
    /// used from several threads at once).
    pub fn serial(&self) -> Option<MutexGuard<'_, ()>> {
        self.serial.as_ref().map(lock)
    }

    /// Counters so far.
    pub fn stats(&self) -> RuntimeStats {
        *lock(&self.stats)
    }

    /// Errors wgpu reported since the last check, as one Err.
    fn take_errors(&self, op: &'static str) -> Result<()> {
        let errs = std::mem::take(&mut *lock(&self.errors));
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::backend(NAME, op, errs.join("; ")))
        }
    }

    /// The largest tensor, in bytes, a kernel can bind.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// A data buffer for `len` f32, or an error naming the device limit it exceeds.
    pub fn alloc(&self, op: &'static str, len: usize) -> Result<PooledBuffer> {
        self.check_len(op, len)?;
        Ok(self.pool.acquire(Kind::Data, len as u64 * 4))
    }

    /// An error naming the device limit when `len` f32 do not fit one buffer.
    pub fn check_len(&self, op: &'static str, len: usize) -> Result<()> {
        let bytes = (len as u64).saturating_mul(4);
        let max = self.max_binding_bytes();
        if bytes > max || len > u32::MAX as usize {
            return Err(Error::backend(
                NAME,
                op,
                format!(
                    "a tensor of {len} elements ({bytes} bytes) exceeds this device's \
                     max_storage_buffer_binding_size of {max} bytes ({} elements)",
                    max / 4
                ),
            ));
        }
        Ok(())
    }

    /// The cached pipeline of `kernel` for `op`, compiled on first use.
    pub fn pipeline(
        &self,
        kernel: Family,
        op: &'static str,
        contiguous: bool,
    ) -> Result<wgpu::ComputePipeline> {
        let key = (kernel, op, contiguous);
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let entry = kernel.entry_point(op, contiguous);
        let layout = &self.pipeline_layouts[kernel.inputs() - 1];
        let pipeline = self.compile_pipeline("pipeline", &entry, kernel.source(op), layout)?;
        lock(&self.stats).pipelines += 1;
        lock(&self.pipelines).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Compile `source` and build the compute pipeline of its `entry` point: the one
    /// shader-compile path of the backend (the kernel families and the generated fused
    /// kernels). Natively a compile error is caught here and named after `op`; a browser
    /// reports it only asynchronously, so there it reaches the uncaptured-error handler
    /// and comes back as an Err at the next readback.
    pub fn compile_pipeline(
        &self,
        op: &'static str,
        entry: &str,
        source: String,
        layout: &wgpu::PipelineLayout,
    ) -> Result<wgpu::ComputePipeline> {
        #[cfg(target_arch = "wasm32")]
        let _ = op; // only named in the native error
        #[cfg(not(target_arch = "wasm32"))]
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(entry),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::backend(NAME, op, format!("compiling {entry}: {e}")));
        }
        Ok(pipeline)
    }

    /// Workgroups for `threads` threads in groups of 256, folded into two dimensions past
    /// the per-dimension limit.
    pub fn groups_1d(&self, op: &'static str, groups: usize) -> Result<(u32, u32, u32)> {
        let max = self.limits.max_compute_workgroups_per_dimension as usize;
        if groups <= max {
            return Ok((groups as u32, 1, 1));
        }
        let y = groups.div_ceil(max);
        if y > max {
            return Err(Error::backend(
                NAME,
                op,
                format!("{groups} workgroups exceed {max} x {max}"),
            ));
        }
        Ok((max as u32, y as u32, 1))
    }

    /// Record one dispatch of `launch` (its pipeline compiled on first use) on `inputs`,
    /// writing `output`, with `meta` as its metadata buffer. Submits the batch when full.
    pub fn dispatch(
        &self,
        launch: &Launch,
        inputs: &[&wgpu::Buffer],
        output: &wgpu::Buffer,
        meta: &[u32],
    ) -> Result<()> {
        let Launch {
            op,
            kernel,
            entry,
            contiguous,
            groups,
        } = *launch;
        let pipeline = self.pipeline(kernel, entry, contiguous)?;
        let layout = &self.layouts[kernel.inputs() - 1];
        self.dispatch_bound(op, &pipeline, layout, groups, inputs, &[output], meta)
    }

    /// Record one dispatch of `pipeline` whose bind group `layout` binds `inputs`, then
    /// `outputs`, then the metadata buffer holding `meta`, in binding order (the general
    /// form of [`Runtime::dispatch`], for generated kernels). Submits the batch when full.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_bound(
        &self,
        op: &'static str,
        pipeline: &wgpu::ComputePipeline,
        layout: &wgpu::BindGroupLayout,
        groups: (u32, u32, u32),
        inputs: &[&wgpu::Buffer],
        outputs: &[&wgpu::Buffer],
        meta: &[u32],
    ) -> Result<()> {
        if outputs.iter().any(|o| inputs.contains(o)) {
            // Never happens with fresh outputs; checked because aliasing is undefined.
            return Err(Error::backend(
                NAME,
                op,
                "a buffer bound as input and output",
            ));
        }
        let meta_buf = self.pool.acquire(Kind::Meta, (meta.len() * 4) as u64);
        self.queue
            .write_buffer(meta_buf.raw(), 0, bytemuck::cast_slice(meta));
        let entries: Vec<wgpu::BindGroupEntry> = inputs
            .iter()
            .chain(outputs)
            .chain([&meta_buf.raw()])
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout,
            entries: &entries,
        });
        let full = {
            let mut batch = lock(&self.batch);
            if batch.pass.is_none() {
                let encoder = batch.encoder.get_or_insert_with(|| {
                    self.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
                });
                let pass = encoder
                    .begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: None,
                    })
                    .forget_lifetime();
                batch.pass = Some(pass);
            }
            let pass = batch.pass.as_mut().expect("pass just opened");
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
            batch.dispatches += 1;
            let full = batch.dispatches >= MAX_BATCH_DISPATCHES
                || self.pool.deferred_bytes() >= MAX_DEFERRED_BYTES;
            if full {
                self.submit_locked(&mut batch, None);
            }
            full
        };
        lock(&self.stats).dispatches += 1;
        // The metadata buffer goes back to the pool here, outside the batch lock.
        drop(meta_buf);
        if full {
            self.take_errors(op)?;
        }
        Ok(())
    }

    /// End the open pass, add `extra` commands, submit everything recorded, and recycle
    /// the buffers released before now. Called with the batch lock held.
    fn submit_locked(&self, batch: &mut Batch, extra: Option<&dyn Fn(&mut wgpu::CommandEncoder)>) {
        drop(batch.pass.take());
        if batch.encoder.is_none() && extra.is_none() {
            self.pool.recycle();
            return;
        }
        let mut encoder = batch.encoder.take().unwrap_or_else(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        if let Some(f) = extra {
            f(&mut encoder);
        }
        self.queue.submit([encoder.finish()]);
        batch.dispatches = 0;
        lock(&self.stats).submits += 1;
        self.pool.recycle();
    }

    /// Submit what is recorded and wait for the device to finish it.
    pub fn synchronize(&self) -> Result<()> {
        {
            let mut batch = lock(&self.batch);
            self.submit_locked(&mut batch, None);
        }
        self.wait("synchronize")?;
        self.take_errors("synchronize")
    }

    fn wait(&self, op: &'static str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::backend(NAME, op, format!("waiting for the device: {e}")))
    }

    /// Copy `len` f32 from `src` to the host (natively; a browser needs
    /// [`Runtime::download_async`]).
    pub fn download(&self, src: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        block_on(
            "download",
            "Tensor::to_vec_async",
            self.download_async(src, len),
        )
    }

    /// Copy `len` f32 from `src` to the host: one copy into a staging buffer, submitted
    /// with everything recorded before it, then `map_async`, whose callback completes the
    /// returned future. Natively the device is polled until then; in a browser the
    /// callback runs when the browser's promise resolves.
    pub async fn download_async(&self, src: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = len as u64 * 4;
        let (mut staging, rx) = {
            let _serial = self.serial();
            let staging = Staging {
                buf: self.pool.acquire(Kind::Staging, bytes),
                mapping: false,
            };
            {
                let mut batch = lock(&self.batch);
                let copy = |enc: &mut wgpu::CommandEncoder| {
                    enc.copy_buffer_to_buffer(src, 0, staging.buf.raw(), 0, bytes);
                };
                self.submit_locked(&mut batch, Some(&copy));
            }
            let (tx, rx) = oneshot();
            staging
                .buf
                .raw()
                .map_async(wgpu::MapMode::Read, 0..bytes, move |r| tx.send(r));
            let mut staging = staging;
            staging.mapping = true;
            // Returns at once in a browser, which polls its devices itself.
            self.wait("download")?;
            (staging, rx)
        };
        let mapped = rx.await;
        let _serial = self.serial();
        if let Some(Err(_)) = mapped {
            staging.mapping = false; // a failed map leaves the buffer unmapped
        }
        self.take_errors("download")?;
        mapped
            .ok_or_else(|| Error::backend(NAME, "download", "map_async callback never ran"))?
            .map_err(|e| Error::backend(NAME, "download", format!("mapping: {e}")))?;
        let view = staging
            .buf
            .raw()
            .get_mapped_range(0..bytes)
            .map_err(|e| Error::backend(NAME, "download", format!("mapped range: {e:?}")))?;
        Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&view))
        // `staging` unmaps on drop, after the view.
    }

    /// Copy host data into a fresh buffer (written before the next submitted batch, which
    /// is the first that can use it).
    pub fn upload(&self, op: &'static str, data: &[f32]) -> Result<PooledBuffer> {
        let buf = self.alloc(op, data.len())?;
        if !data.is_empty() {
            self.queue
                .write_buffer(buf.raw(), 0, bytemuck::cast_slice(data));
        }
        Ok(buf)
    }
}
