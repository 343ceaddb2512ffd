//! The CUDA kernel files (the `.cu` files in `cuda/`, embedded in the binary) and what is
//! CUDA's own in driving them: entry-point names and slots, the by-value [`Meta`], and
//! grid-stride launch shapes. The metadata words and the kernel choice by shape are shared
//! with wgpu (`gpu::meta`, `gpu::plan`). Everything here is pure, so it is tested without
//! a GPU.
//!
//! On CUDA the metadata is a kernel parameter passed by value ([`Meta`], `__grid_constant__`
//! in the kernels), so a launch uploads nothing. The contiguous fast path is a separate
//! entry point (`reduce_sum_contiguous`, ...) chosen once per launch.

use crate::backend::gpu::meta::MetaWords;
use crate::backend::gpu::plan::ReducePlan;
use crate::backend::ReduceOp;

/// Words of metadata per launch (`META_WORDS` in `cuda/indexing.cuh`).
pub const META_WORDS: usize = 64;
/// Threads per block of the map, zip and reduce kernels (`BLOCK` in `cuda/indexing.cuh`).
pub const BLOCK: u32 = 256;
/// Threads per block of the matmul kernel (`THREADS` in `cuda/matmul.cu`).
pub const MATMUL_THREADS: u32 = 256;
/// Largest grid extent on the x axis (CUDA's limit).
pub const GRID_X_MAX: u32 = (1 << 31) - 1;
/// Largest grid extent on the y and z axes (CUDA's limit).
pub const GRID_YZ_MAX: u32 = 65_535;
/// Largest grid extent on the x axis that the reduce kernel uses (blocks loop beyond it).
pub const REDUCE_GRID_MAX: u32 = 65_535;

/// The shared header every kernel file includes, as `(include name, source)`.
pub const HEADERS: [(&str, &str); 2] = crate::backend::gpu::sources::CUDA_HEADERS;

/// One kernel file of `cuda/`: a family of entry points compiled together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `cuda/reduce.cu`: `reduce_<op>` and `reduce_<op>_contiguous`.
    Reduce,
    /// `cuda/matmul.cu`: `matmul` (any layout) and `matmul_fast` (whole aligned tiles).
    Matmul,
    /// `cuda/pad.cu`: `pad_any` (zero padding with dilation, for convolution).
    Pad,
    /// `cuda/random.cu`: `random_uniform` (the counter-based generator).
    Random,
}

impl Family {
    /// Every kernel file.
    pub const ALL: [Family; 4] = [Family::Reduce, Family::Matmul, Family::Pad, Family::Random];

    /// File name inside `cuda/` (also the NVRTC program name, so logs say `map.cu(12)`).
    pub fn file_name(self) -> &'static str {
        match self {
            Family::Reduce => "reduce.cu",
            Family::Matmul => "matmul.cu",
            Family::Pad => "pad.cu",
            Family::Random => "random.cu",
        }
    }

    /// The source, embedded at build time (a binary needs no source tree to run).
    pub fn source(self) -> &'static str {
        match self {
            Family::Reduce => crate::backend::gpu::sources::CUDA_REDUCE,
            Family::Matmul => crate::backend::gpu::sources::CUDA_MATMUL,
            Family::Pad => crate::backend::gpu::sources::CUDA_PAD,
            Family::Random => crate::backend::gpu::sources::CUDA_RANDOM,
        }
    }

    /// Index into [`Family::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Every entry point of the file, in the order [`reduce_slot`] indexes them.
    pub fn entry_points(self) -> Vec<String> {
        match self {
            Family::Reduce => ReduceOp::ALL
                .iter()
                .flat_map(|o| {
                    let n = o.name();
                    [
                        format!("reduce_{n}"),
                        format!("reduce_{n}_contiguous"),
                        format!("reduce_serial_{n}"),
                        format!("reduce_serial_{n}_contiguous"),
                    ]
                })
                .collect(),
            Family::Matmul => vec!["matmul".to_string(), "matmul_fast".to_string()],
            Family::Pad => vec!["pad_any".to_string()],
            Family::Random => vec!["random_uniform".to_string()],
        }
    }
}

fn position<T: PartialEq>(all: &[T], x: T) -> usize {
    all.iter().position(|y| *y == x).unwrap_or(0)
}

/// Slot of `reduce_<op>[_contiguous]` (the block tree) in [`Family::entry_points`].
pub fn reduce_slot(op: ReduceOp, contig: bool) -> usize {
    4 * position(&ReduceOp::ALL, op) + contig as usize
}

/// Slot of the entry point of `op` for `plan` in [`Family::entry_points`]: the tree
/// (`reduce_<op>[_contiguous]`) or one thread per output (`reduce_serial_<op>[_contiguous]`).
pub fn reduce_plan_slot(op: ReduceOp, contig: bool, plan: ReducePlan) -> usize {
    reduce_slot(op, contig) + if plan == ReducePlan::Serial { 2 } else { 0 }
}

/// Kernel metadata, passed by value as the last kernel parameter (`struct Meta` in
/// `cuda/indexing.cuh`). Unused words are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta(pub [u32; META_WORDS]);

impl Meta {
    /// The words in use, for tests and error messages.
    pub fn words(&self, len: usize) -> &[u32] {
        &self.0[..len]
    }

    /// The words of `m` (at most [`META_WORDS`]: the builder of [`meta_words`] checks),
    /// the rest 0.
    pub fn from_words(m: &MetaWords) -> Meta {
        let mut w = [0u32; META_WORDS];
        w[..m.words().len()].copy_from_slice(m.words());
        Meta(w)
    }
}

/// An empty metadata builder for a launch of `op`, limited to the [`META_WORDS`] of a
/// [`Meta`].
pub fn meta_words(op: &'static str) -> MetaWords {
    MetaWords::new("cuda", op, META_WORDS)
}

/// Grid of a grid-stride elementwise launch over `size` elements: enough blocks to fill
/// the device a few times over, never more than the elements need.
pub fn elementwise_grid(size: usize, sm_count: u32) -> u32 {
    let needed = size.div_ceil(BLOCK as usize).max(1);
    let cap = (sm_count.max(1) as usize) * 16;
    needed.min(cap) as u32
}

/// Grid of a reduce launch: one block per output, looping beyond [`REDUCE_GRID_MAX`].
pub fn reduce_grid(out_size: usize) -> u32 {
    out_size.clamp(1, REDUCE_GRID_MAX as usize) as u32
}

/// Slot of `matmul_fast` in [`Family::entry_points`].
pub const MATMUL_FAST_SLOT: usize = 1;

/// Static shared memory of each kernel in bytes (the kernels declare it; kept here to
/// check it against the device limit of 48 KiB for static shared memory).
pub fn shared_bytes(f: Family) -> usize {
    match f {
        Family::Pad | Family::Random => 0,
        Family::Reduce => BLOCK as usize * 4,
        // matmul: As and Bs, 2 buffers x BK (16) x (TILE + PAD (4)) floats each;
        // matmul_fast (less): 2 x 8 x (128 + 4) + 2 x 8 x 128 floats.
        Family::Matmul => (2 * 2 * 16 * (crate::backend::gpu::plan::MATMUL_TILE as usize + 4) * 4)
            .max((2 * 8 * (128 + 4) + 2 * 8 * 128) * 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_follow_op_names() {
        let red = Family::Reduce.entry_points();
        assert_eq!(
            red[reduce_slot(ReduceOp::Max, true)],
            "reduce_max_contiguous"
        );
        assert_eq!(
            red[reduce_plan_slot(ReduceOp::Prod, false, ReducePlan::Serial)],
            "reduce_serial_prod"
        );
        assert_eq!(
            red[reduce_plan_slot(ReduceOp::Sum, true, ReducePlan::Serial)],
            "reduce_serial_sum_contiguous"
        );
        assert_eq!(
            red[reduce_plan_slot(ReduceOp::Sum, true, ReducePlan::Tree)],
            "reduce_sum_contiguous"
        );
        assert_eq!(
            Family::Matmul.entry_points()[MATMUL_FAST_SLOT],
            "matmul_fast"
        );
    }

    #[test]
    fn sources_name_their_entry_points() {
        // Every reduction of the op table has an instantiation line in its file.
        for op in ReduceOp::ALL {
            assert!(Family::Reduce
                .source()
                .contains(&format!("REDUCE_ENTRY({},", op.name())));
        }
        assert!(Family::Matmul.source().contains("matmul("));
        assert!(HEADERS[0]
            .1
            .contains(&format!("#define META_WORDS {META_WORDS}")));
        assert!(HEADERS[0].1.contains(&format!("#define BLOCK {BLOCK}")));
    }

    #[test]
    fn launch_shapes_respect_limits() {
        assert_eq!(elementwise_grid(0, 132), 1);
        assert_eq!(elementwise_grid(1000, 132), 4);
        assert_eq!(elementwise_grid(1 << 30, 132), 132 * 16);
        assert_eq!(reduce_grid(10), 10);
        assert_eq!(reduce_grid(1 << 28), REDUCE_GRID_MAX);
        for f in Family::ALL {
            assert!(shared_bytes(f) <= 48 * 1024);
        }
    }

    #[test]
    fn metadata_fits_a_meta_or_is_an_error() {
        let mut m = meta_words("reduce");
        for i in 0..META_WORDS {
            m.push("stride", i).unwrap();
        }
        assert_eq!(Meta::from_words(&m).words(META_WORDS)[63], 63);
        assert!(m.push("stride", 1).is_err());
        assert!(meta_words("map").push("size", 1 << 32).is_err());
    }
}
