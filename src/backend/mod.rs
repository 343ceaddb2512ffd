//! The one tensor-ops interface (MiniTorch's `tensor_ops.py`): the [`Backend`] trait that
//! every backend implements, the op enums its kernels are specialised on, device-resident
//! [`Storage`], and the runtime [`Device`] switch.
//!
//! Contract shared by every backend (checked by [`check`]):
//! - inputs are read in place through their [`Layout`] (shape, strides, offset), so
//!   permuted and broadcast (stride 0) inputs need no copy;
//! - every result is a fresh, contiguous storage of the result shape;
//! - `zip` gets two layouts of the same shape (the caller broadcasts them with
//!   [`Layout::broadcast_to`]: broadcasting lives in one place);
//! - `reduce` keeps the reduced dimension with size 1;
//! - `matmul` gets `[..batch, n, k]` and `[..batch, k, m]` with identical batch shapes
//!   (again broadcast by the caller) and returns `[..batch, n, m]`.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::executor::BoxFuture;
use crate::layout::Layout;
pub use matrix_view::MatrixView;

pub mod conv2d;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod fused;
pub mod gpu;
/// The GPU launch plan, [`gpu::plan`], under its earlier path.
pub use gpu::plan as gpu_plan;
pub mod host_memory;
pub mod matrix_view;
pub mod op_table;
pub mod pad;
pub mod pool2d;
pub mod random;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use op_table::{BinaryOp, ReduceOp, UnaryOp};

/// Which backend a tensor lives on. Chosen at run time, so one binary can take a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU, with rayon threads.
    Cpu,
    /// Any GPU through WebGPU (wgpu), with WGSL compute shaders; needs the `wgpu` feature.
    Wgpu,
    /// An NVIDIA GPU through CUDA (cudarc, NVRTC); needs the `cuda` feature.
    Cuda,
    /// The CUDA backend on an emulated device: the same host code and kernels, compiled
    /// for the host CPU by the system C++ compiler (slow; for tests without a GPU). Needs
    /// the `cuda` feature and a C++ compiler; never chosen by `auto`.
    CudaEmu,
}

impl Device {
    /// Every device, compiled in or not.
    pub const ALL: [Device; 4] = [Device::Cpu, Device::Wgpu, Device::Cuda, Device::CudaEmu];

    /// Lower-case name: `cpu`, `wgpu`, `cuda`, `cuda-emu`.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Wgpu => "wgpu",
            Device::Cuda => "cuda",
            Device::CudaEmu => "cuda-emu",
        }
    }

    /// Parse `cpu`, `wgpu`, `cuda` or `cuda-emu`.
    pub fn parse(s: &str) -> Result<Device> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "wgpu" | "webgpu" => Ok(Device::Wgpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            "cuda-emu" | "cuda_emu" => Ok(Device::CudaEmu),
            other => Err(Error::invalid(
                "device",
                format!("unknown device {other:?}; expected cpu, wgpu, cuda or cuda-emu"),
            )),
        }
    }

    /// The cargo feature that compiles the device in (`None` for the CPU).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Device::Cpu => None,
            Device::Wgpu => Some("wgpu"),
            Device::Cuda | Device::CudaEmu => Some("cuda"),
        }
    }

    /// Whether this binary was built with support for the device (it may still have no
    /// hardware: see [`Device::backend`]).
    pub fn is_compiled(self) -> bool {
        match self {
            Device::Cpu => true,
            Device::Wgpu => cfg!(feature = "wgpu"),
            Device::Cuda | Device::CudaEmu => cfg!(feature = "cuda"),
        }
    }

    /// [`Device::backend`], set up asynchronously: in a browser the WebGPU device can only
    /// be requested this way, and must be before the first `backend()` (or tensor) on it.
    pub async fn backend_async(self) -> Result<Arc<dyn Backend>> {
        match self {
            #[cfg(feature = "wgpu")]
            Device::Wgpu => wgpu::WgpuBackend::global_async()
                .await
                .map(|b| b as Arc<dyn Backend>),
            _ => self.backend(),
        }
    }

    /// The backend of this device, created once per process and shared. Errors say which
    /// feature to enable, or why the hardware or driver is missing and how to get it.
    pub fn backend(self) -> Result<Arc<dyn Backend>> {
        match self {
            Device::Cpu => Ok(cpu::CpuBackend::global()),
            #[cfg(feature = "wgpu")]
            Device::Wgpu => wgpu::WgpuBackend::global().map(|b| b as Arc<dyn Backend>),
            #[cfg(not(feature = "wgpu"))]
            Device::Wgpu => Err(Error::FeatureNotCompiled {
                device: "wgpu",
                feature: "wgpu",
            }),
            #[cfg(feature = "cuda")]
            Device::Cuda => cuda::CudaBackend::global().map(|b| b as Arc<dyn Backend>),
            #[cfg(feature = "cuda")]
            Device::CudaEmu => cuda::CudaBackend::emulated().map(|b| b as Arc<dyn Backend>),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda | Device::CudaEmu => Err(Error::FeatureNotCompiled {
                device: self.name(),
                feature: "cuda",
            }),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The size class a device buffer pool serves a request of `n` units (elements or bytes)
/// from: at least `min`, then steps of an eighth of the enclosing power of two (no
/// smaller than `min_step`), so a class wastes under a quarter of its size. Shared by the
/// wgpu and CUDA pools.
pub fn pool_size_class(n: usize, min: usize, min_step: usize) -> usize {
    if n <= min {
        return min;
    }
    let step = (n.next_power_of_two() / 8).max(min_step).max(1);
    n.div_ceil(step) * step
}

/// The storages a fused program returns, one per output (up to two inline: a step runs
/// many small programs, and their result lists should not cost an allocation each).
pub type Outputs = smallvec::SmallVec<[Storage; 2]>;

/// Device-resident memory of `len` f32 values, owned by one backend. The buffer type is
/// the backend's own (a `Vec<f32>`, a wgpu buffer, a CUDA slice); a backend gets it back
/// with [`Storage::downcast`]. Cloning shares the buffer.
#[derive(Clone)]
pub struct Storage {
    buf: Arc<dyn Any + Send + Sync>,
    len: usize,
    device: Device,
}

impl Storage {
    /// Wrap a backend's buffer of `len` elements.
    pub fn new<T: Any + Send + Sync>(buf: T, len: usize, device: Device) -> Self {
        Storage {
            buf: Arc::new(buf),
            len,
            device,
        }
    }

    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the storage holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device the buffer lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The backend's buffer, or an error when the storage belongs to another backend.
    pub fn downcast<T: Any>(&self, backend: &'static str) -> Result<&T> {
        self.buf.downcast_ref::<T>().ok_or_else(|| {
            Error::backend(
                backend,
                "storage",
                format!("storage belongs to the {} backend", self.device),
            )
        })
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Storage({} x f32 on {})", self.len, self.device)
    }
}

/// The tensor-ops interface. Every method reads its inputs through their layouts and
/// returns a fresh contiguous storage; see the module docs for the exact contract.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Which device this backend drives.
    fn device(&self) -> Device;
    /// A one-line description of the hardware (CPU model and threads, GPU adapter).
    fn describe(&self) -> String;
    /// True when the device is a software emulation of a GPU (lavapipe, llvmpipe): it
    /// works, but its timings are not GPU timings: `train` says so on its first line and
    /// the reports list it apart from GPU results.
    fn is_emulated(&self) -> bool {
        false
    }
    /// A storage of `len` copies of `value`.
    fn full(&self, len: usize, value: f32) -> Result<Storage>;
    /// Copy host data to the device.
    fn upload(&self, data: &[f32]) -> Result<Storage>;
    /// Copy a whole storage back to the host (waits for pending work).
    fn download(&self, x: &Storage) -> Result<Vec<f32>>;
    /// [`Backend::download`] as a future: a GPU backend implements its readback here (a
    /// browser delivers it asynchronously) and its `download` waits for this one
    /// ([`crate::executor::block_on`]). Backends whose readback is immediate keep this
    /// default.
    fn download_async<'a>(&'a self, x: &'a Storage) -> BoxFuture<'a, Result<Vec<f32>>> {
        Box::pin(std::future::ready(self.download(x)))
    }
    /// `op` on every element of `x`: contiguous result of `layout.shape()`.
    fn map(&self, op: UnaryOp, x: &Storage, layout: &Layout) -> Result<Storage>;
    /// `op` on element pairs of `a` and `b`, whose layouts have the same shape.
    fn zip(
        &self,
        op: BinaryOp,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
    ) -> Result<Storage>;
    /// Reduce dimension `dim` of `x` with `op`; the result keeps `dim` with size 1.
    fn reduce(&self, op: ReduceOp, x: &Storage, layout: &Layout, dim: usize) -> Result<Storage>;
    /// Batched matrix product `[..batch, n, k] @ [..batch, k, m]` (same batch shapes).
    fn matmul(&self, a: &Storage, al: &Layout, b: &Storage, bl: &Layout) -> Result<Storage>;
    /// A contiguous copy of the elements `layout` addresses.
    fn copy(&self, x: &Storage, layout: &Layout) -> Result<Storage>;
    /// Wait until all submitted work has finished (for timing; downloads wait anyway).
    fn synchronize(&self) -> Result<()>;
    /// Give the memory of cached free buffers back to the driver (GPU pools keep freed
    /// buffers for reuse, up to a cap); call it after dropping a large graph. Buffers in
    /// use are not touched. Nothing to do for backends without a pool.
    fn trim_pool(&self) {}
    /// Run the elementwise `program` as one kernel: `inputs` are read through layouts of
    /// one shape (broadcast by the caller, as for `zip`), `params` are kernel parameters;
    /// one contiguous storage of that shape per program output.
    fn fused(
        &self,
        program: &fused::Program,
        inputs: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<Outputs>;
    /// `matmul(a, b)` with the elementwise `epilogue` applied to every result element
    /// before it is stored, as one kernel: epilogue input 0 is the product, inputs 1.. are
    /// `extra`, read through layouts of the result's shape; the epilogue has one output.
    #[allow(clippy::too_many_arguments)]
    fn matmul_fused(
        &self,
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
        epilogue: &fused::Program,
        extra: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<Storage>;
    /// `a @ b` then `epilogue` (as [`Backend::matmul_fused`], one matrix, no batch), where
    /// each operand is a matrix read through a view of any rank ([`MatrixView`]): a
    /// convolution's window view is its im2col columns. The default copies each operand
    /// that is not a plain strided matrix into a contiguous one and runs `matmul_fused`
    /// (one copy kernel per such operand); the CPU packs its matmul panels straight from
    /// the view, so the columns are never written.
    #[allow(clippy::too_many_arguments)]
    fn matmul_view(
        &self,
        a: &Storage,
        av: &MatrixView,
        b: &Storage,
        bv: &MatrixView,
        epilogue: &fused::Program,
        extra: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<Storage> {
        check::matmul_view(a, av, b, bv)?;
        let (a, al) = check::plain_matrix(self, a, av)?;
        let (b, bl) = check::plain_matrix(self, b, bv)?;
        if epilogue.is_identity() && extra.is_empty() {
            return self.matmul(&a, &al, &b, &bl);
        }
        self.matmul_fused(&a, &al, &b, &bl, epilogue, extra, params)
    }
    /// The forward of a 2-D convolution of geometry `g`, then `epilogue`: `x` is the
    /// input read channel-major as `[Cin, B, H, W]` through `xl`, `w` the weight,
    /// contiguous `[Cout, Cin*KH*KW]`, and the epilogue's inputs 1.. are `extra`, each
    /// read as `[Cout, B*OH*OW]` (a bias broadcast along rows). Returns the result
    /// `[Cout, B, OH, OW]`, contiguous, and where `keep` the input's columns (for the
    /// weight gradient). The default is the columns and one matmul
    /// ([`conv2d::forward`]); the CPU runs a direct convolution where it applies, padding
    /// each image's copy for the columns as it reads the image.
    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        &self,
        x: &Storage,
        xl: &Layout,
        w: &Storage,
        g: &conv2d::ConvGeometry,
        epilogue: &fused::Program,
        extra: &[(&Storage, &Layout)],
        params: &[f32],
        keep: bool,
    ) -> Result<(Storage, Option<conv2d::Columns>)> {
        conv2d::check_forward(x, xl, w, g)?;
        conv2d::forward(self, x, xl, w, g, epilogue, extra, params, keep)
    }
    /// The input gradient of a 2-D convolution of geometry `g`: `go` is the output's
    /// gradient, contiguous channel-major `[Cout, B, OH, OW]`, `w` the weight, contiguous
    /// `[Cout, Cin*KH*KW]`; returns the gradient's storage and its layout, of shape
    /// `[B, Cin, H, W]`. The default is the transposed convolution composed from the
    /// primitives ([`conv2d::input_grad`]); the CPU computes `W^T @ go` and adds each
    /// finished tile row straight into the gradient (col2im), padding and gathering
    /// nothing.
    fn conv2d_input_grad(
        &self,
        go: &Storage,
        w: &Storage,
        g: &conv2d::ConvGeometry,
    ) -> Result<(Storage, Layout)> {
        conv2d::input_grad(self, go, w, g)
    }
    /// 2-D max pooling with kernel = stride ([`pool2d::Windows`]) of `x` (`[B, C, H, W]`
    /// through `layout`): each window's maximum and the position in it (`0..kh*kw`, row
    /// by row, as f32) of its first maximum, both contiguous `[B, C, H/kh, W/kw]`; the NaN
    /// rule of `max` (a window holding a NaN gives NaN and its first NaN). The default
    /// composes the primitives ([`pool2d::max_pool2d`]); the CPU makes one pass.
    fn max_pool2d(
        &self,
        x: &Storage,
        layout: &Layout,
        windows: &pool2d::Windows,
    ) -> Result<(Storage, Storage)> {
        pool2d::max_pool2d(self, x, layout, windows)
    }
    /// 2-D average pooling with kernel = stride: each window's mean, contiguous
    /// `[B, C, H/kh, W/kw]` (the sum times `1/(kh*kw)`). The default composes the
    /// primitives ([`pool2d::avg_pool2d`]); the CPU makes one pass.
    fn avg_pool2d(
        &self,
        x: &Storage,
        layout: &Layout,
        windows: &pool2d::Windows,
    ) -> Result<Storage> {
        pool2d::avg_pool2d(self, x, layout, windows)
    }
    /// The gradient of [`Backend::avg_pool2d`]: each window's gradient (of the output's
    /// shape, through `gl`) times `1/(kh*kw)` at each of its positions, contiguous in the
    /// input's shape. The default is one fused program
    /// ([`pool2d::avg_pool2d_backward`]); the CPU writes it row by row.
    fn avg_pool2d_backward(
        &self,
        grad: &Storage,
        gl: &Layout,
        windows: &pool2d::Windows,
    ) -> Result<Storage> {
        pool2d::avg_pool2d_backward(self, grad, gl, windows)
    }
    /// The gradient of [`Backend::max_pool2d`]: `grad` (of the output's shape, through
    /// `gl`) at each window's first maximum (`first`, as `max_pool2d` returned it), zero
    /// elsewhere; contiguous in the input's shape. The default is one fused program
    /// ([`pool2d::max_pool2d_backward`]).
    fn max_pool2d_backward(
        &self,
        grad: &Storage,
        gl: &Layout,
        first: &Storage,
        windows: &pool2d::Windows,
    ) -> Result<Storage> {
        pool2d::max_pool2d_backward(self, grad, gl, first, windows)
    }
    /// Zero padding with dilation (the convolution family, [`pad::PadSpec`]): a
    /// contiguous result of `spec.out_shape` holding input element `i` at `lo + i * step`
    /// along every dimension and 0 elsewhere.
    fn pad(&self, x: &Storage, layout: &Layout, spec: &pad::PadSpec) -> Result<Storage>;
    /// `len` values uniform in `[0, 1)` of the counter-based generator's draw `key`
    /// ([`random`]): element `i` is `random::uniform(key, i)` on every backend. The default
    /// computes them on the host and uploads them.
    fn uniform(&self, len: usize, key: [u32; 2]) -> Result<Storage> {
        let mut v = check::host_vec("uniform", len, 0.0)?;
        random::uniform_host(key, &mut v);
        self.upload(&v)
    }
}

/// Contract checks every backend runs before launching work, so a misuse of the trait is
/// an error, not an out-of-bounds read on a device.
pub mod check {
    use super::*;

    /// The highest storage position a layout addresses, plus one (0 when empty;
    /// `usize::MAX` when it overflows, which no storage fits).
    pub fn extent(l: &Layout) -> usize {
        crate::layout::checked_extent(l.shape(), l.strides(), l.offset()).unwrap_or(usize::MAX)
    }

    pub use super::host_memory::{host_alloc, host_vec, physical_memory};

    /// `layout` addresses only positions inside `x`.
    pub fn fits(op: &'static str, x: &Storage, l: &Layout) -> Result<()> {
        if extent(l) > x.len() {
            return Err(Error::shape(
                op,
                &[l.shape()],
                format!(
                    "layout (strides {:?}, offset {}) reaches past the storage of {} elements",
                    l.strides(),
                    l.offset(),
                    x.len()
                ),
            ));
        }
        Ok(())
    }

    /// Inputs of `zip`.
    pub fn zip(a: &Storage, al: &Layout, b: &Storage, bl: &Layout) -> Result<()> {
        if al.shape() != bl.shape() {
            return Err(Error::shape(
                "zip",
                &[al.shape(), bl.shape()],
                "backend zip needs layouts of one shape; broadcast them first",
            ));
        }
        fits("zip", a, al)?;
        fits("zip", b, bl)
    }

    /// Inputs of `reduce`.
    pub fn reduce(x: &Storage, l: &Layout, dim: usize) -> Result<()> {
        if dim >= l.dims() {
            return Err(Error::shape(
                "reduce",
                &[l.shape()],
                format!("dimension {dim} out of range for {} dimensions", l.dims()),
            ));
        }
        fits("reduce", x, l)
    }

    /// Inputs of `matmul`; returns `(batch, n, k, m)`.
    pub fn matmul(
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
    ) -> Result<(usize, usize, usize, usize)> {
        let (sa, sb) = (al.shape(), bl.shape());
        let err = |msg: &str| Error::shape("matmul", &[sa, sb], msg.to_string());
        if sa.len() < 2 || sa.len() != sb.len() {
            return Err(err("backend matmul needs two layouts of equal rank >= 2"));
        }
        let r = sa.len();
        if sa[..r - 2] != sb[..r - 2] {
            return Err(err("batch dimensions differ; broadcast them first"));
        }
        if sa[r - 1] != sb[r - 2] {
            return Err(err("inner dimensions differ"));
        }
        fits("matmul", a, al)?;
        fits("matmul", b, bl)?;
        let mut out: crate::layout::Dims = sa[..r - 1].into();
        out.push(sb[r - 1]);
        crate::layout::checked_shape_size("matmul", &out)?;
        let batch = sa[..r - 2].iter().product();
        Ok((batch, sa[r - 2], sa[r - 1], sb[r - 1]))
    }

    /// Inputs of `matmul_view`: `a`'s columns are `b`'s rows, both views lie inside their
    /// storage, and the result's size is representable; returns `(n, k, m)`.
    pub fn matmul_view(
        a: &Storage,
        av: &MatrixView,
        b: &Storage,
        bv: &MatrixView,
    ) -> Result<(usize, usize, usize)> {
        let (sa, sb) = (av.layout().shape(), bv.layout().shape());
        if av.cols() != bv.rows() {
            return Err(Error::shape(
                "matmul_view",
                &[sa, sb],
                format!(
                    "a [{} x {}] matrix times a [{} x {}] one",
                    av.rows(),
                    av.cols(),
                    bv.rows(),
                    bv.cols()
                ),
            ));
        }
        fits("matmul_view", a, av.layout())?;
        fits("matmul_view", b, bv.layout())?;
        crate::layout::checked_shape_size("matmul_view", &[av.rows(), bv.cols()])?;
        Ok((av.rows(), av.cols(), bv.cols()))
    }

    /// `x` read through `v` as a plain `[rows, cols]` matrix: in place where the view's
    /// groups merge, else copied into a contiguous one by `backend`.
    pub fn plain_matrix<B: Backend + ?Sized>(
        backend: &B,
        x: &Storage,
        v: &MatrixView,
    ) -> Result<(Storage, Layout)> {
        Ok(match v.as_matrix() {
            Some(l) => (x.clone(), l),
            None => (
                backend.copy(x, v.layout())?,
                Layout::contiguous(&[v.rows(), v.cols()]),
            ),
        })
    }

    /// Inputs of `pad`: the spec fits the layout, which lies inside its storage.
    pub fn pad(x: &Storage, l: &Layout, spec: &super::pad::PadSpec) -> Result<()> {
        spec.check("pad", l.shape())?;
        fits("pad", x, l)
    }

    /// Inputs of `fused`: the program's counts, one shape, every layout inside its storage.
    pub fn fused(
        program: &fused::Program,
        inputs: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<()> {
        program.check("fused", inputs.len(), params.len())?;
        fused::note(program, false);
        let Some((_, first)) = inputs.first() else {
            return Err(Error::invalid(
                "fused",
                "a fused kernel needs at least one input",
            ));
        };
        shaped_like(
            "fused",
            first.shape(),
            inputs,
            "fused inputs need layouts of one shape; broadcast them first",
        )
    }

    /// Every input's layout has `shape` and lies inside its storage; else an error naming
    /// `op`, both shapes and `hint`.
    fn shaped_like(
        op: &'static str,
        shape: &[usize],
        inputs: &[(&Storage, &Layout)],
        hint: &str,
    ) -> Result<()> {
        for (x, l) in inputs {
            if l.shape() != shape {
                return Err(Error::shape(op, &[shape, l.shape()], hint));
            }
            fits(op, x, l)?;
        }
        Ok(())
    }

    /// A matmul's `(batch, n, k, m)`.
    pub type MatmulDims = (usize, usize, usize, usize);

    /// Inputs of `matmul_fused`; returns the matmul's `(batch, n, k, m)` and the result's
    /// shape.
    pub fn matmul_fused(
        a: &Storage,
        al: &Layout,
        b: &Storage,
        bl: &Layout,
        epilogue: &fused::Program,
        extra: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<(MatmulDims, crate::layout::Dims)> {
        let dims = matmul(a, al, b, bl)?;
        let r = al.dims();
        let mut shape: crate::layout::Dims = al.shape()[..r - 2].into();
        shape.extend([dims.1, dims.3]);
        matmul_epilogue("matmul_fused", &shape, epilogue, extra, params)?;
        Ok((dims, shape))
    }

    /// A matmul epilogue's program, extra inputs (of the result's `shape`) and parameters.
    pub fn matmul_epilogue(
        op: &'static str,
        shape: &[usize],
        epilogue: &fused::Program,
        extra: &[(&Storage, &Layout)],
        params: &[f32],
    ) -> Result<()> {
        epilogue.check(op, extra.len() + 1, params.len())?;
        fused::note(epilogue, true);
        if epilogue.outputs().len() != 1 {
            return Err(Error::invalid(
                op,
                "a matmul epilogue has exactly one output",
            ));
        }
        shaped_like(
            op,
            shape,
            extra,
            "epilogue inputs need layouts of the result's shape; broadcast them first",
        )
    }
}
