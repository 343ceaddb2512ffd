//! The NCCL engine (cudarc) on CUDA device buffers: one process per GPU, started by
//! `mpirun`; rank 0's NCCL unique id travels to the others over MPI.
//!
//! The bucket is packed on the GPU (one device-to-device copy per gradient into one flat
//! buffer), summed in place by one `ncclAllReduce` on the backend's stream, and unpacked
//! the same way: nothing goes through the host but the few tail scalars.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cudarc::driver::{result as dres, DevicePtr};
use cudarc::nccl::{Comm, Id, ReduceOp};

use super::mpi::{local_rank, MpiCommunicator};
use super::{Bucket, Communicator};
use crate::backend::cuda::CudaBackend;
use crate::backend::{Backend, Device};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::tensor::Tensor;

const INSTALL: &str =
    "install NCCL (pip install nvidia-nccl-cu12, or nvidia-nccl-cu13 for CUDA 13) \
    and make its libnccl.so.2 loadable as libnccl.so: `ln -s libnccl.so.2 libnccl.so` in \
    site-packages/nvidia/nccl/lib (or nvidia/cu13/lib), and add that directory to LD_LIBRARY_PATH";

fn nccl_err(op: &'static str) -> impl Fn(cudarc::nccl::result::NcclError) -> Error {
    // cudarc's NcclError implements Debug only.
    move |e| Error::backend("nccl", op, format!("{e:?}"))
}

fn driver_err(op: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error {
    move |e| Error::backend("nccl", op, e.to_string())
}

/// Ok when libnccl can be loaded (cudarc panics on its first call without it).
pub fn nccl_library_present() -> Result<()> {
    // SAFETY: only tries to dlopen the library by its candidate names.
    let found = catch_unwind(AssertUnwindSafe(|| unsafe {
        cudarc::nccl::sys::is_culib_present()
    }))
    .unwrap_or(false);
    if found {
        return Ok(());
    }
    Err(Error::DeviceUnavailable {
        device: "nccl",
        msg: format!(
            "the NCCL library (libnccl.so) is not on the loader path; {INSTALL}\nlooked in {}",
            crate::backend::cuda::runtime::loader_search_path()
        ),
    })
}

/// NCCL over the CUDA backend's GPU and stream, plus MPI for host buffers.
pub struct NcclCommunicator {
    comm: Comm,
    backend: Arc<CudaBackend>,
    // Dropped after the NCCL communicator: MPI_Finalize last.
    mpi: MpiCommunicator,
}

impl NcclCommunicator {
    /// Check libnccl, join the MPI job, take GPU `local rank` (unless
    /// `MINITORCH_CUDA_DEVICE` says otherwise) and build the NCCL communicator.
    pub fn init() -> Result<NcclCommunicator> {
        nccl_library_present()?;
        let mpi = MpiCommunicator::init()?;
        if std::env::var_os("MINITORCH_CUDA_DEVICE").is_none() {
            if let Some(local) = local_rank() {
                // One GPU per process: the launcher's local rank picks it.
                std::env::set_var("MINITORCH_CUDA_DEVICE", local.to_string());
            }
        }
        let backend = CudaBackend::global()?;
        let (rank, world) = (mpi.rank(), mpi.world_size());
        let mut bytes = [0u8; 128];
        if rank == 0 {
            let id = Id::new().map_err(nccl_err("ncclGetUniqueId"))?;
            for (b, c) in bytes.iter_mut().zip(id.internal()) {
                *b = *c as u8;
            }
        }
        mpi.broadcast_bytes(&mut bytes, 0)?;
        let id = Id::uninit(bytes.map(|b| b as core::ffi::c_char));
        let stream = backend.runtime()?.stream.clone();
        let comm = mpi
            .watched("ncclCommInitRank", || {
                Comm::from_rank(stream, rank, world, id)
            })
            .map_err(nccl_err("ncclCommInitRank"))?;
        Ok(NcclCommunicator { comm, backend, mpi })
    }

    /// Pack `bucket` into one device buffer (parts, then the tail).
    fn pack(&self, bucket: &Bucket) -> Result<cudarc::driver::CudaSlice<f32>> {
        let stream = &self.backend.runtime()?.stream;
        let mut flat = stream
            .alloc_zeros::<f32>(bucket.len().max(1))
            .map_err(driver_err("alloc"))?;
        let mut at = 0;
        {
            let (base, _sync) = flat.device_ptr(stream);
            for p in &bucket.parts {
                let n = p.len();
                if let Some(t) = &p.value {
                    let t = self.device_contiguous(t, &p.shape)?;
                    let src = self.backend.buffer(t.storage())?.ptr();
                    // SAFETY: both ranges lie inside live allocations on this stream.
                    unsafe {
                        dres::memcpy_dtod_async(
                            base + (at * 4) as u64,
                            src + (t.layout().offset() * 4) as u64,
                            n * 4,
                            stream.cu_stream(),
                        )
                    }
                    .map_err(driver_err("pack"))?;
                }
                at += n;
            }
        }
        if !bucket.tail.is_empty() {
            let mut dst = flat.slice_mut(at..at + bucket.tail.len());
            stream
                .memcpy_htod(&bucket.tail, &mut dst)
                .map_err(driver_err("pack"))?;
        }
        Ok(flat)
    }

    /// Copy `flat` back into `bucket`'s parts (new device tensors) and tail.
    fn unpack(&self, flat: &cudarc::driver::CudaSlice<f32>, bucket: &mut Bucket) -> Result<()> {
        let stream = &self.backend.runtime()?.stream;
        let mut at = 0;
        {
            let (base, _sync) = flat.device_ptr(stream);
            for p in &mut bucket.parts {
                let n = p.len();
                let storage = self.backend.full(n, 0.0)?;
                let dst = self.backend.buffer(&storage)?.ptr();
                if n > 0 {
                    // SAFETY: both ranges lie inside live allocations on this stream.
                    unsafe {
                        dres::memcpy_dtod_async(
                            dst,
                            base + (at * 4) as u64,
                            n * 4,
                            stream.cu_stream(),
                        )
                    }
                    .map_err(driver_err("unpack"))?;
                }
                let backend: Arc<dyn Backend> = self.backend.clone();
                p.value = Some(Tensor::from_storage(
                    storage,
                    Layout::contiguous(&p.shape),
                    backend,
                ));
                at += n;
            }
        }
        if !bucket.tail.is_empty() {
            let src = flat.slice(at..at + bucket.tail.len());
            stream
                .memcpy_dtoh(&src, &mut bucket.tail)
                .map_err(driver_err("unpack"))?;
            stream.synchronize().map_err(driver_err("unpack"))?;
        }
        Ok(())
    }

    fn device_contiguous(&self, t: &Tensor, shape: &[usize]) -> Result<Tensor> {
        if t.device() != Device::Cuda || t.shape() != shape {
            return Err(Error::invalid(
                "nccl",
                format!(
                    "a bucket part must be a CUDA tensor of shape {shape:?}, got {:?} on {}",
                    t.shape(),
                    t.device()
                ),
            ));
        }
        if t.is_contiguous() {
            Ok(t.clone())
        } else {
            t.contiguous()
        }
    }
}

impl Communicator for NcclCommunicator {
    fn name(&self) -> &'static str {
        "nccl"
    }
    fn rank(&self) -> usize {
        self.mpi.rank()
    }
    fn world_size(&self) -> usize {
        self.mpi.world_size()
    }
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        self.mpi.broadcast(buf, root)
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.mpi.all_reduce_sum(buf)
    }
    fn barrier(&self) -> Result<()> {
        self.mpi.barrier()
    }
    fn abort(&self, code: i32) -> ! {
        self.mpi.abort(code)
    }
    fn all_reduce_bucket(&self, bucket: &mut Bucket) -> Result<()> {
        let mut flat = self.pack(bucket)?;
        self.comm
            .all_reduce_in_place(&mut flat, &ReduceOp::Sum)
            .map_err(nccl_err("ncclAllReduce"))?;
        self.unpack(&flat, bucket)
    }
    fn broadcast_bucket(&self, bucket: &mut Bucket, root: usize) -> Result<()> {
        super::mpi::check_root(root, self.world_size())?;
        let mut flat = self.pack(bucket)?;
        self.comm
            .broadcast_in_place(&mut flat, root as i32)
            .map_err(nccl_err("ncclBroadcast"))?;
        self.unpack(&flat, bucket)
    }
}
