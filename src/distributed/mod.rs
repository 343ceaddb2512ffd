//! Data-parallel training on an existing collective engine: MPI on host buffers (feature
//! `mpi`) and NCCL on CUDA buffers (feature `nccl`), above the [`Backend`](crate::Backend)
//! trait (kernels and autodiff are unchanged).
//!
//! Every rank (one process each, started by `mpirun`) holds a replica of the model. Rank
//! 0's initial parameters are broadcast. Each step every rank runs forward and backward on
//! its [`Shard`] of the global batch, the gradients travel as one flat [`Bucket`] that is
//! summed over the ranks, and the same optimiser step runs everywhere
//! ([`DataParallel::step`]).
//!
//! The sum of the shards' gradients equals the single-process gradient on the whole global
//! batch when each rank's loss is its shard's per-example losses divided by the *global*
//! batch size ([`Shard::scale`]), equivalently its mean loss weighted by its share of the
//! batch ([`Shard::share`]): this holds also when the global batch does not divide evenly.

mod data_parallel;
#[cfg(all(feature = "mpi", not(target_arch = "wasm32")))]
pub mod mpi;
#[cfg(all(feature = "nccl", not(target_arch = "wasm32")))]
pub mod nccl;
mod trainer;

use std::ops::Range;

pub use data_parallel::{CommStats, DataParallel};
pub use trainer::{DistributedTrainer, FailureMode, InjectedFailure};

use crate::backend::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Which collective engine to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// MPI (rsmpi) on host buffers: the CPU backend, and wgpu through its readback.
    Mpi,
    /// NCCL (cudarc) on CUDA device buffers, bootstrapped over MPI.
    Nccl,
}

impl Engine {
    /// `mpi` or `nccl` (any case).
    pub fn parse(s: &str) -> Result<Engine> {
        match s.to_ascii_lowercase().as_str() {
            "mpi" => Ok(Engine::Mpi),
            "nccl" => Ok(Engine::Nccl),
            _ => Err(Error::invalid(
                "distributed",
                format!("unknown engine {s:?}; expected mpi or nccl"),
            )),
        }
    }

    /// The engine's name.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Mpi => "mpi",
            Engine::Nccl => "nccl",
        }
    }

    /// The device its buffers live on: any for MPI (`requested`), CUDA for NCCL.
    pub fn device(self, requested: Device) -> Device {
        match self {
            Engine::Mpi => requested,
            Engine::Nccl => Device::Cuda,
        }
    }
}

/// Join the job this process was started in, on `engine`: an error that says what to
/// install or how to launch when the engine is not compiled in, its library is missing or
/// no MPI launcher started the process.
pub fn connect(engine: Engine) -> Result<Box<dyn Communicator>> {
    match engine {
        #[cfg(all(feature = "mpi", not(target_arch = "wasm32")))]
        Engine::Mpi => Ok(Box::new(mpi::MpiCommunicator::init()?)),
        #[cfg(all(feature = "nccl", not(target_arch = "wasm32")))]
        Engine::Nccl => Ok(Box::new(nccl::NcclCommunicator::init()?)),
        #[allow(unreachable_patterns)]
        _ => Err(Error::invalid(
            "distributed",
            format!(
                "the {} engine is not compiled in: rebuild with --features {} (needs an MPI \
                 library: apt-get install openmpi-bin libopenmpi-dev libclang-dev)",
                engine.name(),
                match engine {
                    Engine::Mpi => "mpi",
                    Engine::Nccl => "cuda,nccl",
                }
            ),
        )),
    }
}

/// A collective engine joining `world_size` processes. The flat-buffer operations work on
/// host memory; the bucket operations default to them (one readback, one upload) and an
/// engine on device buffers overrides them.
pub trait Communicator {
    /// The engine's name (`mpi`, `nccl`).
    fn name(&self) -> &'static str;
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world_size(&self) -> usize;
    /// Copy `root`'s `buf` into every rank's `buf` (same length everywhere).
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()>;
    /// Replace `buf` on every rank with its element-wise sum over the ranks.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// Wait until every rank arrives.
    fn barrier(&self) -> Result<()>;
    /// Stop every rank of the job at once (after an error on this one), so none waits
    /// forever in a collective for this one.
    fn abort(&self, code: i32) -> !;

    /// Sum `bucket` over the ranks as one flat buffer.
    fn all_reduce_bucket(&self, bucket: &mut Bucket) -> Result<()> {
        let mut flat = bucket.to_host()?;
        self.all_reduce_sum(&mut flat)?;
        bucket.set_from_host(&flat)
    }
    /// Copy `root`'s `bucket` to every rank as one flat buffer.
    fn broadcast_bucket(&self, bucket: &mut Bucket, root: usize) -> Result<()> {
        let mut flat = bucket.to_host()?;
        self.broadcast(&mut flat, root)?;
        bucket.set_from_host(&flat)
    }
}

/// One rank's part of a global batch: a contiguous range of its positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Positions in the global batch.
    pub range: Range<usize>,
    /// Size of the global batch.
    pub global: usize,
}

impl Shard {
    /// Rank `rank`'s shard of a batch of `global` items over `world` ranks: sizes differ by
    /// at most one, the first `global % world` ranks take one more (a rank may get none).
    pub fn of(global: usize, rank: usize, world: usize) -> Shard {
        let world = world.max(1);
        let (base, extra) = (global / world, global % world);
        let start = rank * base + rank.min(extra);
        let len = base + usize::from(rank < extra);
        Shard {
            range: start..start + len,
            global,
        }
    }

    /// Items in this shard.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// True when this rank has nothing to do this step.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// `1 / global`: the factor on each per-example loss so that the ranks' losses add up
    /// to the global batch's mean loss.
    pub fn scale(&self) -> f32 {
        1.0 / self.global.max(1) as f32
    }

    /// `len / global`: the weight of this shard's mean loss.
    pub fn share(&self) -> f32 {
        self.len() as f32 / self.global.max(1) as f32
    }
}

/// One part of a [`Bucket`]: a tensor of a known shape, or zeros (a rank with no gradient
/// for it).
#[derive(Clone, Debug)]
pub struct BucketPart {
    /// The shape.
    pub shape: Vec<usize>,
    /// The device it lives on.
    pub device: Device,
    /// The value (`None`: zeros).
    pub value: Option<Tensor>,
}

impl BucketPart {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a part with no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What travels in one collective call: tensors laid end to end, then a few host scalars
/// (flags, counts).
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    /// The tensors, in order.
    pub parts: Vec<BucketPart>,
    /// Host scalars after them.
    pub tail: Vec<f32>,
}

impl Bucket {
    /// Elements in the flat buffer.
    pub fn len(&self) -> usize {
        self.parts.iter().map(BucketPart::len).sum::<usize>() + self.tail.len()
    }

    /// True when the bucket holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes in the flat buffer (f32).
    pub fn bytes(&self) -> usize {
        self.len() * 4
    }

    /// The flat buffer on the host (one readback per part).
    pub fn to_host(&self) -> Result<Vec<f32>> {
        let mut flat = Vec::with_capacity(self.len());
        for p in &self.parts {
            match &p.value {
                Some(t) => {
                    if t.shape() != p.shape.as_slice() {
                        return Err(Error::shape(
                            "bucket",
                            &[&p.shape, t.shape()],
                            "a bucket part's tensor must have the part's shape",
                        ));
                    }
                    flat.extend(t.to_vec()?)
                }
                None => flat.resize(flat.len() + p.len(), 0.0),
            }
        }
        flat.extend_from_slice(&self.tail);
        Ok(flat)
    }

    /// Replace every part and the tail with the values in `flat` (one upload per part).
    pub fn set_from_host(&mut self, flat: &[f32]) -> Result<()> {
        if flat.len() != self.len() {
            return Err(Error::shape(
                "bucket",
                &[&[self.len()], &[flat.len()]],
                "the flat buffer must have the bucket's length",
            ));
        }
        let mut at = 0;
        for p in &mut self.parts {
            let n = p.len();
            p.value = Some(Tensor::from_vec(
                flat[at..at + n].to_vec(),
                &p.shape,
                p.device,
            )?);
            at += n;
        }
        self.tail.copy_from_slice(&flat[at..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_once_and_differ_by_at_most_one() {
        for global in 0..23 {
            for world in 1..6 {
                let shards: Vec<Shard> = (0..world).map(|r| Shard::of(global, r, world)).collect();
                let mut next = 0;
                for s in &shards {
                    assert_eq!(s.range.start, next);
                    next = s.range.end;
                }
                assert_eq!(next, global);
                let (lo, hi) = (
                    shards.iter().map(Shard::len).min().unwrap(),
                    shards.iter().map(Shard::len).max().unwrap(),
                );
                assert!(hi - lo <= 1, "{global} over {world}: {shards:?}");
                let shares: f32 = shards.iter().map(Shard::share).sum();
                if global > 0 {
                    assert!((shares - 1.0).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn bucket_round_trips_through_the_host_with_zeros_for_missing_parts() {
        let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], Device::Cpu).unwrap();
        let mut b = Bucket {
            parts: vec![
                BucketPart {
                    shape: vec![3, 2],
                    device: Device::Cpu,
                    // A transposed (non-contiguous) view travels in its logical order.
                    value: Some(t.permute(&[1, 0]).unwrap()),
                },
                BucketPart {
                    shape: vec![2],
                    device: Device::Cpu,
                    value: None,
                },
            ],
            tail: vec![7.0],
        };
        let flat = b.to_host().unwrap();
        assert_eq!(flat, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0, 0.0, 0.0, 7.0]);
        assert_eq!(b.bytes(), 36);
        let doubled: Vec<f32> = flat.iter().map(|x| x * 2.0).collect();
        b.set_from_host(&doubled).unwrap();
        assert_eq!(
            b.parts[1].value.as_ref().unwrap().to_vec().unwrap(),
            [0.0, 0.0]
        );
        assert_eq!(b.tail, [14.0]);
        let err = b.set_from_host(&[1.0]).unwrap_err().to_string();
        assert!(err.contains("bucket"), "{err}");
    }

    #[test]
    fn unknown_engine_and_missing_feature_are_errors() {
        assert!(Engine::parse("gloo").is_err());
        assert_eq!(Engine::parse("MPI").unwrap(), Engine::Mpi);
        if !cfg!(feature = "mpi") {
            let err = connect(Engine::Mpi).err().unwrap().to_string();
            assert!(err.contains("--features mpi"), "{err}");
        }
    }
}
