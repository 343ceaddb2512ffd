//! The CUDA kernels (the `.cu` files in `cuda/`, embedded in the binary) and the host-side
//! arithmetic that drives them: entry-point names, the u32 metadata each launch takes, and
//! launch shapes. Everything here is pure, so it is tested without a GPU.
//!
//! Metadata layouts (all u32, identical to the WGSL kernels in `shaders/`):
//! - map:    `[size, rank, x_offset, shape[rank], x_strides[rank]]`
//! - zip:    `[size, rank, a_offset, b_offset, shape[rank], a_strides[rank], b_strides[rank]]`
//! - reduce: `[out_size, rank, x_offset, reduce_dim, reduce_len, reduce_stride,
//!   out_shape[rank] (reduce_dim set to 1), x_strides[rank]]`
//! - matmul: `[batch, n, k, m, batch_rank, a_offset, b_offset, a_row_stride, a_col_stride,
//!   b_row_stride, b_col_stride, batch_shape[batch_rank], a_batch_strides[batch_rank],
//!   b_batch_strides[batch_rank]]`
//!
//! On CUDA the metadata is a kernel parameter passed by value ([`Meta`], `__grid_constant__`
//! in the kernels), so a launch uploads nothing. The contiguous fast path is a separate
//! entry point (`map_neg_contiguous`, ...) chosen once per launch.

use crate::backend::gpu_plan::{matmul_fast_applies, reduce_plan, ReducePlan, MATMUL_FAST_TILE};
use crate::backend::{BinaryOp, ReduceOp, UnaryOp};
use crate::error::{Error, Result};
use crate::layout::Layout;

/// Most dimensions a kernel layout may have (`MAX_DIMS` in `cuda/indexing.cuh`).
pub const MAX_DIMS: usize = 16;
/// Words of metadata per launch (`META_WORDS` in `cuda/indexing.cuh`).
pub const META_WORDS: usize = 64;
/// Threads per block of the map, zip and reduce kernels (`BLOCK` in `cuda/indexing.cuh`).
pub const BLOCK: u32 = 256;
/// Output tile edge of the matmul kernel (`TILE` in `cuda/matmul.cu`).
pub const MATMUL_TILE: u32 = 64;
/// Threads per block of the matmul kernel (`THREADS` in `cuda/matmul.cu`).
pub const MATMUL_THREADS: u32 = 256;
/// Largest grid extent on the y and z axes (CUDA's limit).
pub const GRID_YZ_MAX: u32 = 65_535;
/// Largest grid extent on the x axis that the reduce kernel uses (blocks loop beyond it).
pub const REDUCE_GRID_MAX: u32 = 65_535;

/// The shared header every kernel file includes, as `(include name, source)`.
pub const HEADERS: [(&str, &str); 2] = [
    ("indexing.cuh", include_str!("../../../cuda/indexing.cuh")),
    ("math.cuh", include_str!("../../../cuda/math.cuh")),
];

/// One kernel file of `cuda/`: a family of entry points compiled together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `cuda/map.cu`: `map_<op>` and `map_<op>_contiguous`.
    Map,
    /// `cuda/zip.cu`: `zip_<op>` and `zip_<op>_contiguous`.
    Zip,
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
    pub const ALL: [Family; 6] = [
        Family::Map,
        Family::Zip,
        Family::Reduce,
        Family::Matmul,
        Family::Pad,
        Family::Random,
    ];

    /// File name inside `cuda/` (also the NVRTC program name, so logs say `map.cu(12)`).
    pub fn file_name(self) -> &'static str {
        match self {
            Family::Map => "map.cu",
            Family::Zip => "zip.cu",
            Family::Reduce => "reduce.cu",
            Family::Matmul => "matmul.cu",
            Family::Pad => "pad.cu",
            Family::Random => "random.cu",
        }
    }

    /// The source, embedded at build time (a binary needs no source tree to run).
    pub fn source(self) -> &'static str {
        match self {
            Family::Map => include_str!("../../../cuda/map.cu"),
            Family::Zip => include_str!("../../../cuda/zip.cu"),
            Family::Reduce => include_str!("../../../cuda/reduce.cu"),
            Family::Matmul => include_str!("../../../cuda/matmul.cu"),
            Family::Pad => include_str!("../../../cuda/pad.cu"),
            Family::Random => include_str!("../../../cuda/random.cu"),
        }
    }

    /// Index into [`Family::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Every entry point of the file, in the order [`map_slot`], [`zip_slot`],
    /// [`reduce_slot`] index them.
    pub fn entry_points(self) -> Vec<String> {
        fn pairs(prefix: &str, names: impl Iterator<Item = &'static str>) -> Vec<String> {
            names
                .flat_map(|n| [format!("{prefix}_{n}"), format!("{prefix}_{n}_contiguous")])
                .collect()
        }
        match self {
            Family::Map => pairs("map", UnaryOp::ALL.iter().map(|o| o.name())),
            Family::Zip => pairs("zip", BinaryOp::ALL.iter().map(|o| o.name())),
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

/// Slot of `map_<op>[_contiguous]` in [`Family::entry_points`].
pub fn map_slot(op: UnaryOp, contig: bool) -> usize {
    2 * position(&UnaryOp::ALL, op) + contig as usize
}

/// Slot of `zip_<op>[_contiguous]` in [`Family::entry_points`].
pub fn zip_slot(op: BinaryOp, contig: bool) -> usize {
    2 * position(&BinaryOp::ALL, op) + contig as usize
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
}

/// Builds a [`Meta`] word by word, checking that every value fits in u32.
struct MetaBuilder {
    op: &'static str,
    words: [u32; META_WORDS],
    len: usize,
}

impl MetaBuilder {
    fn new(op: &'static str) -> Self {
        MetaBuilder {
            op,
            words: [0; META_WORDS],
            len: 0,
        }
    }

    fn push(&mut self, what: &str, v: usize) -> Result<()> {
        let v = to_u32(self.op, what, v)?;
        if self.len == META_WORDS {
            return Err(Error::backend(
                "cuda",
                self.op,
                format!("kernel metadata longer than {META_WORDS} words"),
            ));
        }
        self.words[self.len] = v;
        self.len += 1;
        Ok(())
    }

    fn extend(&mut self, what: &str, vs: &[usize]) -> Result<()> {
        vs.iter().try_for_each(|&v| self.push(what, v))
    }

    fn finish(self) -> Meta {
        Meta(self.words)
    }
}

/// `v` as u32, or an error naming the op and the value.
pub fn to_u32(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::invalid(
            op,
            format!("{what} {v} exceeds the u32 range of the cuda kernels"),
        )
    })
}

/// Every position `l` addresses must fit in u32 (the kernels index with u32).
fn check_positions(op: &'static str, l: &Layout) -> Result<()> {
    let extent = crate::backend::check::extent(l);
    if extent > u32::MAX as usize + 1 {
        return Err(Error::shape(
            op,
            &[l.shape()],
            format!(
                "the layout reaches storage position {}, beyond the u32 range of the cuda kernels",
                extent - 1
            ),
        ));
    }
    Ok(())
}

fn check_rank(op: &'static str, shapes: &[&[usize]], rank: usize) -> Result<()> {
    if rank > MAX_DIMS {
        return Err(Error::shape(
            op,
            shapes,
            format!(
                "{rank} dimensions (after merging) exceed the {MAX_DIMS} the cuda kernels take"
            ),
        ));
    }
    Ok(())
}

/// Shape and per-operand strides of an elementwise op with size-1 dimensions dropped and
/// neighbouring dimensions merged where every operand steps through them as one (so a
/// permuted or broadcast input needs as few divisions per element as possible). The
/// row-major enumeration of the result is unchanged.
pub fn merge_dims(shape: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::with_capacity(shape.len()); strides.len()];
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let mergeable = match out_shape.last() {
            Some(_) => strides
                .iter()
                .zip(&out_strides)
                .all(|(s, o)| *o.last().unwrap_or(&0) == s[d] * n),
            None => false,
        };
        if mergeable {
            let last = out_shape.len() - 1;
            out_shape[last] *= n;
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o[last] = s[d];
            }
        } else {
            out_shape.push(n);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[d]);
            }
        }
    }
    (out_shape, out_strides)
}

/// Metadata of `map` over `layout`, and whether the contiguous entry point applies.
/// The caller launches nothing for an empty layout.
pub fn map_meta(layout: &Layout) -> Result<(Meta, bool)> {
    const OP: &str = "map";
    to_u32(OP, "element count", layout.size())?;
    check_positions(OP, layout)?;
    let contig = layout.is_contiguous();
    let (shape, strides) = merge_dims(layout.shape(), &[layout.strides()]);
    check_rank(OP, &[layout.shape()], shape.len())?;
    let mut m = MetaBuilder::new(OP);
    m.push("element count", layout.size())?;
    m.push("rank", shape.len())?;
    m.push("offset", layout.offset())?;
    m.extend("dimension", &shape)?;
    m.extend("stride", &strides[0])?;
    Ok((m.finish(), contig))
}

/// Metadata of `zip` over two layouts of one shape, and whether both are contiguous.
pub fn zip_meta(al: &Layout, bl: &Layout) -> Result<(Meta, bool)> {
    const OP: &str = "zip";
    to_u32(OP, "element count", al.size())?;
    check_positions(OP, al)?;
    check_positions(OP, bl)?;
    let contig = al.is_contiguous() && bl.is_contiguous();
    let (shape, strides) = merge_dims(al.shape(), &[al.strides(), bl.strides()]);
    check_rank(OP, &[al.shape(), bl.shape()], shape.len())?;
    let mut m = MetaBuilder::new(OP);
    m.push("element count", al.size())?;
    m.push("rank", shape.len())?;
    m.push("offset", al.offset())?;
    m.push("offset", bl.offset())?;
    m.extend("dimension", &shape)?;
    m.extend("stride", &strides[0])?;
    m.extend("stride", &strides[1])?;
    Ok((m.finish(), contig))
}

/// The kernel shape for reducing dimension `dim` of `layout` ([`reduce_plan`]).
pub fn reduce_plan_for(layout: &Layout, dim: usize) -> ReducePlan {
    let shape = layout.shape();
    let out_size: usize = shape
        .iter()
        .enumerate()
        .filter(|&(d, _)| d != dim)
        .map(|(_, &n)| n)
        .product();
    reduce_plan(out_size, shape[dim], layout.strides()[dim] == 1)
}

/// Metadata of `reduce` of dimension `dim`, whether the contiguous entry point applies,
/// and the number of outputs.
pub fn reduce_meta(layout: &Layout, dim: usize) -> Result<(Meta, bool, usize)> {
    const OP: &str = "reduce";
    let shape = layout.shape();
    check_rank(OP, &[shape], shape.len())?;
    let len = shape[dim];
    let mut out_shape = shape.to_vec();
    out_shape[dim] = 1;
    let out_size: usize = out_shape.iter().product();
    to_u32(OP, "output count", out_size)?;
    check_positions(OP, layout)?;
    let contig = layout.is_contiguous();
    // A size-1 dimension is never stepped through: its stride may be anything, so send 0.
    let strides: Vec<usize> = shape
        .iter()
        .zip(layout.strides())
        .map(|(&n, &s)| if n <= 1 { 0 } else { s })
        .collect();
    // The contiguous kernel takes the inner block size as the reduce stride.
    let reduce_stride = if contig {
        shape[dim + 1..].iter().product::<usize>().max(1)
    } else {
        strides[dim]
    };
    let mut m = MetaBuilder::new(OP);
    m.push("output count", out_size)?;
    m.push("rank", shape.len())?;
    m.push("offset", layout.offset())?;
    m.push("dimension", dim)?;
    m.push("reduced length", len)?;
    m.push("stride", reduce_stride)?;
    m.extend("dimension", &out_shape)?;
    m.extend("stride", &strides)?;
    Ok((m.finish(), contig, out_size))
}

/// Sizes of one matmul launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulDims {
    /// Number of matrix products.
    pub batch: usize,
    /// Rows of A and of the result.
    pub n: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// Columns of B and of the result.
    pub m: usize,
}

impl MatmulDims {
    /// Elements of the result.
    pub fn out_size(&self) -> usize {
        self.batch * self.n * self.m
    }
}

/// Metadata of `matmul` for `[..batch, n, k] @ [..batch, k, m]` (same batch shapes,
/// already checked by `check::matmul`).
pub fn matmul_meta(al: &Layout, bl: &Layout) -> Result<(Meta, MatmulDims)> {
    const OP: &str = "matmul";
    let (sa, sb) = (al.shape(), bl.shape());
    let r = sa.len();
    let dims = MatmulDims {
        batch: sa[..r - 2].iter().product(),
        n: sa[r - 2],
        k: sa[r - 1],
        m: sb[r - 1],
    };
    let out = dims
        .batch
        .checked_mul(dims.n)
        .and_then(|x| x.checked_mul(dims.m))
        .unwrap_or(usize::MAX);
    to_u32(OP, "output count", out)?;
    check_positions(OP, al)?;
    check_positions(OP, bl)?;
    // Batch dimensions of size 1 select nothing; merge the rest where both inputs allow.
    let (batch_shape, batch_strides) = merge_dims(
        &sa[..r - 2],
        &[&al.strides()[..r - 2], &bl.strides()[..r - 2]],
    );
    check_rank(OP, &[sa, sb], batch_shape.len())?;
    let (a_st, b_st) = (al.strides(), bl.strides());
    // Strides of size-1 matrix dimensions are never used; keep them in u32 range.
    let st = |n: usize, s: usize| if n <= 1 { 0 } else { s };
    let mut m = MetaBuilder::new(OP);
    m.push("batch", dims.batch)?;
    m.push("rows", dims.n)?;
    m.push("inner dimension", dims.k)?;
    m.push("columns", dims.m)?;
    m.push("batch rank", batch_shape.len())?;
    m.push("offset", al.offset())?;
    m.push("offset", bl.offset())?;
    m.push("stride", st(dims.n, a_st[r - 2]))?;
    m.push("stride", st(dims.k, a_st[r - 1]))?;
    m.push("stride", st(dims.k, b_st[r - 2]))?;
    m.push("stride", st(dims.m, b_st[r - 1]))?;
    m.extend("dimension", &batch_shape)?;
    m.extend("stride", &batch_strides[0])?;
    m.extend("stride", &batch_strides[1])?;
    Ok((m.finish(), dims))
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

/// Whether `matmul_fast` applies to a launch with metadata `meta` ([`matmul_fast_applies`]).
pub fn matmul_fast(meta: &Meta) -> bool {
    matmul_fast_applies(&meta.0)
}

/// Grid `(x, y, z)` of a `matmul_fast` launch: 128-tiles, y and z capped as in
/// [`matmul_grid`].
pub fn matmul_fast_grid(d: &MatmulDims) -> (u32, u32, u32) {
    let t = MATMUL_FAST_TILE as usize;
    let x = (d.m / t).max(1);
    let y = (d.n / t).clamp(1, GRID_YZ_MAX as usize);
    let z = d.batch.clamp(1, GRID_YZ_MAX as usize);
    (x as u32, y as u32, z as u32)
}

/// Grid `(x, y, z)` of a matmul launch: column tiles on x, row tiles on y and batches on
/// z; y and z are capped at [`GRID_YZ_MAX`] and the kernel loops over the rest.
pub fn matmul_grid(d: &MatmulDims) -> (u32, u32, u32) {
    let t = MATMUL_TILE as usize;
    let x = d.m.div_ceil(t).max(1);
    let y = d.n.div_ceil(t).clamp(1, GRID_YZ_MAX as usize);
    let z = d.batch.clamp(1, GRID_YZ_MAX as usize);
    // m < 2^32 (checked), so x < 2^26: within the x limit of 2^31 - 1.
    (x as u32, y as u32, z as u32)
}

/// Static shared memory of each kernel in bytes (the kernels declare it; kept here to
/// check it against the device limit of 48 KiB for static shared memory).
pub fn shared_bytes(f: Family) -> usize {
    match f {
        Family::Map | Family::Zip | Family::Pad | Family::Random => 0,
        Family::Reduce => BLOCK as usize * 4,
        // matmul: As and Bs, 2 buffers x BK (16) x (TILE + PAD (4)) floats each;
        // matmul_fast (less): 2 x 8 x (128 + 4) + 2 x 8 x 128 floats.
        Family::Matmul => {
            (2 * 2 * 16 * (MATMUL_TILE as usize + 4) * 4).max((2 * 8 * (128 + 4) + 2 * 8 * 128) * 4)
        }
    }
}

#[cfg(test)]
#[path = "kernels_tests.rs"]
mod tests;
