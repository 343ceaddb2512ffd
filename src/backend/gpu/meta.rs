//! The metadata of every GPU kernel, written once for wgpu and CUDA: the u32 words that
//! carry shapes, strides, offsets and scalar parameters to a kernel. Both languages read
//! the same words (WGSL from a storage buffer `md`, CUDA from the by-value `Meta`), and
//! this file is where their layouts are documented:
//!
//! | kernel | words |
//! | --- | --- |
//! | generated elementwise ([`elementwise_meta`]) | `[size, rank, shape[rank], offsets[inputs], strides[inputs][rank], params]` |
//! | generated matmul + epilogue ([`matmul_meta`]) | the matmul operands (below), then the elementwise words of the epilogue's inputs 1.. over the result's shape |
//! | tiled matmul, `matmul` / `matmul_fast` ([`tiled_matmul_meta`]) | `[batch]`, then the matmul operands |
//! | matmul operands ([`matmul_operands`]) | `[n, k, m, batch_rank, a_offset, b_offset, a_row_stride, a_col_stride, b_row_stride, b_col_stride, batch_shape[batch_rank], a_batch_strides[batch_rank], b_batch_strides[batch_rank]]` |
//! | reduce ([`reduce_meta`]) | `[out_size, rank, x_offset, reduce_dim, reduce_len, reduce_stride, out_shape[rank] (reduce_dim set to 1), x_strides[rank]]` |
//! | pad ([`pad_meta`]) | `[size, rank, x_offset, out_shape[rank], in_shape[rank], x_strides[rank], lo[rank] (i32 bits), step[rank]]` |
//! | random ([`random_meta`]) | `[size_lo, size_hi, k0, k1]` |
//!
//! Shapes and strides are trimmed before they are written: dimensions of size 1 are
//! dropped or get stride 0 (an index there is always 0, and the stride may be anything),
//! and neighbouring dimensions every operand steps through as one are merged
//! ([`merge_dims`]), so a kernel divides as little as possible per element. Each backend
//! collects the words in a [`MetaWords`] (its u32 range check and, on CUDA, the by-value
//! word limit) and uploads or passes them.

use smallvec::SmallVec;

use super::plan::{reduce_plan, MatmulSizes, ReducePlan};
use crate::error::{Error, Result};
use crate::layout::Layout;

/// The words of one launch, checked as they are written: every value fits in u32 and the
/// launch holds at most `capacity` words (CUDA's by-value `Meta`; unbounded on wgpu). The
/// one builder of kernel metadata on both backends.
#[derive(Clone, Debug)]
pub struct MetaWords {
    backend: &'static str,
    op: &'static str,
    capacity: usize,
    words: SmallVec<[u32; 64]>,
}

impl MetaWords {
    /// An empty launch of `op` on `backend` (both named in errors), of at most `capacity`
    /// words.
    pub fn new(backend: &'static str, op: &'static str, capacity: usize) -> Self {
        MetaWords {
            backend,
            op,
            capacity,
            words: SmallVec::new(),
        }
    }

    /// Append `v` (a `what`: "stride", "offset", ..., named in the error when it does not
    /// fit).
    pub fn push(&mut self, what: &str, v: usize) -> Result<()> {
        let (backend, op) = (self.backend, self.op);
        let v = u32::try_from(v).map_err(|_| {
            Error::backend(
                backend,
                op,
                format!("{what} {v} exceeds the u32 range of the {backend} kernels"),
            )
        })?;
        if self.words.len() == self.capacity {
            return Err(Error::backend(
                backend,
                op,
                format!(
                    "the kernel's metadata (shapes, strides and parameters) exceeds {} words; use fewer inputs or dimensions",
                    self.capacity
                ),
            ));
        }
        self.words.push(v);
        Ok(())
    }

    /// The words written so far.
    pub fn words(&self) -> &[u32] {
        &self.words
    }
}

/// Every storage position `l` addresses must fit in u32 (the kernels index with u32).
pub fn check_positions(op: &'static str, l: &Layout) -> Result<()> {
    let extent = crate::backend::check::extent(l);
    if extent as u64 > u64::from(u32::MAX) + 1 {
        return Err(Error::shape(
            op,
            &[l.shape()],
            format!(
                "the layout reaches storage position {}, beyond the u32 range of the GPU kernels",
                extent - 1
            ),
        ));
    }
    Ok(())
}

/// The generated elementwise kernels' words (first row of the table above) for `layouts`
/// over `shape`, then `params` as f32 bits.
pub fn elementwise_meta(
    shape: &[usize],
    layouts: &[&Layout],
    params: &[f32],
    mut push: impl FnMut(&str, usize) -> Result<()>,
) -> Result<()> {
    let strides: SmallVec<[&[usize]; 4]> = layouts.iter().map(|l| l.strides()).collect();
    let (merged, merged_strides) = merge_dims(shape, &strides);
    push("size", shape.iter().product())?;
    push("rank", merged.len())?;
    for &d in &merged {
        push("dimension", d)?;
    }
    for l in layouts {
        push("offset", l.offset())?;
    }
    for st in &merged_strides {
        for &s in st {
            push("stride", s)?;
        }
    }
    for &p in params {
        push("parameter", p.to_bits() as usize)?;
    }
    Ok(())
}

/// The words of `a @ b` with `(n, k, m)` that the tiled and the generated matmul share
/// (the matmul operands of the table above): batch dimensions of size 1 dropped and
/// merged where both operands allow, strides of size-1 matrix dimensions written as 0.
pub fn matmul_operands(
    al: &Layout,
    bl: &Layout,
    (n, k, m): (usize, usize, usize),
    mut push: impl FnMut(&str, usize) -> Result<()>,
) -> Result<()> {
    let r = al.dims();
    let (sa, sb) = (al.strides(), bl.strides());
    let (batch_shape, batch_strides) =
        merge_dims(&al.shape()[..r - 2], &[&sa[..r - 2], &sb[..r - 2]]);
    let st = |len: usize, s: usize| if len <= 1 { 0 } else { s };
    for (what, v) in [
        ("rows", n),
        ("inner dimension", k),
        ("columns", m),
        ("batch rank", batch_shape.len()),
        ("offset", al.offset()),
        ("offset", bl.offset()),
        ("stride", st(n, sa[r - 2])),
        ("stride", st(k, sa[r - 1])),
        ("stride", st(k, sb[r - 2])),
        ("stride", st(m, sb[r - 1])),
    ] {
        push(what, v)?;
    }
    for &v in &batch_shape {
        push("dimension", v)?;
    }
    for st in &batch_strides {
        for &s in st {
            push("stride", s)?;
        }
    }
    Ok(())
}

/// The generated matmul kernel's words (`Variant::Matmul`): [`matmul_operands`] of `a @ b`
/// with `(n, k, m)`, then the elementwise words of the epilogue's `extra` inputs (inputs
/// 1..) over the result's `shape`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_meta(
    al: &Layout,
    bl: &Layout,
    (n, k, m): (usize, usize, usize),
    shape: &[usize],
    extra: &[&Layout],
    params: &[f32],
    mut push: impl FnMut(&str, usize) -> Result<()>,
) -> Result<()> {
    matmul_operands(al, bl, (n, k, m), &mut push)?;
    elementwise_meta(shape, extra, params, push)
}

/// The sizes of `[..batch, n, k] @ [..batch, k, m]` (batch shapes already checked equal by
/// `check::matmul`), with the checks every GPU matmul makes: the result's element count
/// and every position either operand addresses fit in u32.
pub fn matmul_sizes(op: &'static str, al: &Layout, bl: &Layout) -> Result<MatmulSizes> {
    let (sa, sb) = (al.shape(), bl.shape());
    let r = sa.len();
    let d = MatmulSizes {
        batch: sa[..r - 2].iter().product(),
        n: sa[r - 2],
        k: sa[r - 1],
        m: sb[r - 1],
    };
    let out = d
        .batch
        .checked_mul(d.n)
        .and_then(|x| x.checked_mul(d.m))
        .unwrap_or(usize::MAX);
    if u32::try_from(out).is_err() {
        return Err(Error::shape(
            op,
            &[sa, sb],
            format!("a product of {out} elements exceeds the u32 range of the GPU kernels"),
        ));
    }
    check_positions(op, al)?;
    check_positions(op, bl)?;
    Ok(d)
}

/// The tiled matmul's words (`matmul`, `matmul_fast`): the batch count, then
/// [`matmul_operands`]. Returns the sizes ([`matmul_sizes`]).
pub fn tiled_matmul_meta(
    op: &'static str,
    al: &Layout,
    bl: &Layout,
    mut push: impl FnMut(&str, usize) -> Result<()>,
) -> Result<MatmulSizes> {
    let d = matmul_sizes(op, al, bl)?;
    push("batch", d.batch)?;
    matmul_operands(al, bl, (d.n, d.k, d.m), push)?;
    Ok(d)
}

/// What a reduce launch needs besides its words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReduceLaunch {
    /// Number of outputs.
    pub out_size: usize,
    /// Whether the `_contiguous` entry point applies (the input is contiguous; the
    /// reduce stride word is then the inner block size).
    pub contiguous: bool,
    /// The kernel shape ([`reduce_plan`]).
    pub plan: ReducePlan,
}

/// The reduce kernels' words for dimension `dim` of `l` (see the table above), and how to
/// launch them.
pub fn reduce_meta(
    op: &'static str,
    l: &Layout,
    dim: usize,
    mut push: impl FnMut(&str, usize) -> Result<()>,
) -> Result<ReduceLaunch> {
    check_positions(op, l)?;
    let shape = l.shape();
    let len = shape[dim];
    let out_shape = l.reduced_shape(dim);
    let out_size: usize = out_shape.iter().product();
    let contiguous = l.is_contiguous();
    // A size-1 dimension is never stepped through: its stride may be anything, so send 0.
    let st = |d: usize| if shape[d] <= 1 { 0 } else { l.strides()[d] };
    // The contiguous kernels take the inner block size as the reduce stride.
    let reduce_stride = if contiguous {
        shape[dim + 1..].iter().product::<usize>().max(1)
    } else {
        st(dim)
    };
    for (what, v) in [
        ("output count", out_size),
        ("rank", shape.len()),
        ("offset", l.offset()),
        ("dimension", dim),
        ("reduced length", len),
        ("stride", reduce_stride),
    ] {
        push(what, v)?;
    }
    for &d in &out_shape {
        push("dimension", d)?;
    }
    for d in 0..shape.len() {
        push("stride", st(d))?;
    }
    Ok(ReduceLaunch {
        out_size,
        contiguous,
        plan: reduce_plan(out_size, len, l.strides()[dim] == 1),
    })
}

/// The pad kernel's words (see the table above) for `x` read through `l`, padded as
/// `spec` says (checked by `check::pad`: every length, start and step below 2^31).
pub fn pad_meta(
    l: &Layout,
    spec: &crate::backend::pad::PadSpec,
    mut push: impl FnMut(&str, usize) -> Result<()>,
) -> Result<()> {
    push("size", spec.out_shape.iter().product())?;
    push("rank", l.dims())?;
    push("offset", l.offset())?;
    for &n in &spec.out_shape {
        push("length", n)?;
    }
    for &n in l.shape() {
        push("length", n)?;
    }
    for &s in l.strides() {
        push("stride", s)?;
    }
    for &lo in &spec.lo {
        push("start", lo as i32 as u32 as usize)?;
    }
    for &s in &spec.step {
        push("step", s)?;
    }
    Ok(())
}

/// The random kernel's words: `len` in two halves (WGSL extents stay below 2^32, so its
/// kernel reads only the low one), then the draw's key.
pub fn random_meta(
    len: usize,
    key: [u32; 2],
    mut push: impl FnMut(&str, usize) -> Result<()>,
) -> Result<()> {
    let len = len as u64;
    push("size", (len & 0xffff_ffff) as usize)?;
    push("size", (len >> 32) as usize)?;
    push("key", key[0] as usize)?;
    push("key", key[1] as usize)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    fn words(shape: &[usize], ls: &[&Layout], params: &[f32]) -> Vec<usize> {
        let mut w = Vec::new();
        elementwise_meta(shape, ls, params, |_, v| {
            w.push(v);
            Ok(())
        })
        .unwrap();
        w
    }

    fn collect<R>(
        write: impl FnOnce(&mut dyn FnMut(&str, usize) -> Result<()>) -> R,
    ) -> (Vec<u32>, R) {
        let mut m = MetaWords::new("test", "test", usize::MAX);
        let r = write(&mut |what, v| m.push(what, v));
        (m.words().to_vec(), r)
    }

    #[test]
    fn reduce_words() {
        let l = Layout::contiguous(&[2, 3, 4]);
        let (w, r) = collect(|p| reduce_meta("reduce", &l, 1, p).unwrap());
        assert!(r.contiguous);
        assert_eq!(r.out_size, 8);
        assert_eq!(w, vec![8, 3, 0, 1, 3, 4, 2, 1, 4, 12, 4, 1]);
        // Permuted input: strided kernel, reduce stride is the dim's own stride.
        let p = Layout::new(vec![3, 2], vec![1, 3], 0).unwrap();
        let (w, r) = collect(|push| reduce_meta("reduce", &p, 0, push).unwrap());
        assert!(!r.contiguous);
        assert_eq!(r.out_size, 2);
        assert_eq!(r.plan, ReducePlan::Serial);
        assert_eq!(w, vec![2, 2, 0, 0, 3, 1, 1, 2, 1, 3]);
        // Empty reduced dim: out count stays, length 0.
        let e = Layout::contiguous(&[2, 0]);
        let (w, r) = collect(|p| reduce_meta("reduce", &e, 1, p).unwrap());
        assert_eq!(r.out_size, 2);
        assert_eq!(w[4], 0);
        // A size-1 dimension with an odd stride sends stride 0.
        let one = Layout::new(vec![1, 5], vec![1 << 40, 1], 0).unwrap();
        let (w, _) = collect(|p| reduce_meta("reduce", &one, 1, p).unwrap());
        assert_eq!(&w[8..], &[0, 1]);
    }

    #[test]
    fn tiled_matmul_words() {
        // a: [2, 3, 4] contiguous; b: [2, 4, 5] broadcast over batch (stride 0).
        let a = Layout::contiguous(&[2, 3, 4]);
        let b = Layout::new(vec![2, 4, 5], vec![0, 5, 1], 0).unwrap();
        let (w, d) = collect(|p| tiled_matmul_meta("matmul", &a, &b, p).unwrap());
        assert_eq!(
            d,
            MatmulSizes {
                batch: 2,
                n: 3,
                k: 4,
                m: 5
            }
        );
        assert_eq!(w, vec![2, 3, 4, 5, 1, 0, 0, 4, 1, 5, 1, 2, 12, 0]);
        assert!(!super::super::plan::matmul_fast_applies(&w));
        // Batch dims [2, 3] merge into one of 6; a size-1 batch dim is dropped.
        let a = Layout::contiguous(&[2, 1, 3, 4, 4]);
        let b = Layout::contiguous(&[2, 1, 3, 4, 4]);
        let (w, _) = collect(|p| tiled_matmul_meta("matmul", &a, &b, p).unwrap());
        assert_eq!(&w[4..5], &[1]);
        assert_eq!(&w[11..], &[6, 16, 16]);
    }

    #[test]
    fn matmul_fast_only_for_whole_aligned_tiles() {
        let fast = |a: &Layout, b: &Layout| {
            let (w, _) = collect(|p| tiled_matmul_meta("matmul", a, b, p).unwrap());
            super::super::plan::matmul_fast_applies(&w)
        };
        let a = Layout::contiguous(&[2, 256, 64]);
        let b = Layout::contiguous(&[2, 64, 128]);
        assert!(fast(&a, &b));
        // Broadcast B over the batch (stride 0) is still aligned.
        let bb = Layout::new(vec![2, 64, 128], vec![0, 128, 1], 4).unwrap();
        assert!(fast(&a, &bb));
        // An offset that breaks float4 alignment.
        let bo = Layout::new(vec![2, 64, 128], vec![0, 128, 1], 2).unwrap();
        assert!(!fast(&a, &bo));
        // Transposed A, a ragged edge, a k off the step.
        let at = Layout::new(vec![2, 256, 64], vec![256 * 64, 1, 256], 0).unwrap();
        assert!(!fast(&at, &b));
        assert!(!fast(
            &Layout::contiguous(&[200, 64]),
            &Layout::contiguous(&[64, 128])
        ));
        assert!(!fast(
            &Layout::contiguous(&[128, 12]),
            &Layout::contiguous(&[12, 128])
        ));
    }

    #[test]
    fn pad_and_random_words() {
        use crate::backend::pad::PadSpec;
        let l = Layout::new(vec![2, 3], vec![1, 2], 5).unwrap();
        let spec = PadSpec {
            out_shape: smallvec::smallvec![4, 7],
            lo: smallvec::smallvec![-1, 2],
            step: smallvec::smallvec![1, 2],
        };
        let (w, _) = collect(|p| pad_meta(&l, &spec, p).unwrap());
        let neg1 = (-1i32) as u32;
        assert_eq!(w, vec![28, 2, 5, 4, 7, 2, 3, 1, 2, neg1, 2, 1, 2]);
        let (w, _) = collect(|p| random_meta((1 << 33) + 5, [7, 9], p).unwrap());
        assert_eq!(w, vec![5, 2, 7, 9]);
    }

    #[test]
    fn merge_dims_keeps_order() {
        let (s, st) = merge_dims(&[2, 1, 3, 4], &[&[12, 99, 4, 1], &[0, 5, 4, 1]]);
        assert_eq!(s, vec![2, 12]);
        assert_eq!(st, vec![vec![12, 1], vec![0, 1]]);
        let (s, st) = merge_dims(&[1, 1], &[&[7, 7]]);
        assert!(s.is_empty() && st[0].is_empty());
    }

    #[test]
    fn elementwise_words_merge_dimensions() {
        // Contiguous dims merge into one: [size, rank, shape, offset, stride].
        let l = Layout::contiguous(&[2, 3]);
        assert_eq!(words(&[2, 3], &[&l], &[]), vec![6, 1, 6, 0, 1]);
        // Transposed: [3, 2] with strides [1, 3], offset 1.
        let t = Layout::new(vec![3, 2], vec![1, 3], 1).unwrap();
        assert_eq!(words(&[3, 2], &[&t], &[]), vec![6, 2, 3, 2, 1, 1, 3]);
        // A contiguous input and a broadcast row at offset 2, then a parameter's bits.
        let a = Layout::contiguous(&[4, 3]);
        let b = Layout::new(vec![4, 3], vec![0, 1], 2).unwrap();
        assert_eq!(
            words(&[4, 3], &[&a, &b], &[1.5]),
            vec![12, 2, 4, 3, 0, 2, 3, 1, 0, 1, 1.5f32.to_bits() as usize]
        );
        // 17 broadcast dimensions merge into one.
        let deep = Layout::new(vec![2; 17], vec![0; 17], 0).unwrap();
        assert_eq!(
            words(&[2; 17], &[&deep], &[]),
            vec![1 << 17, 1, 1 << 17, 0, 0]
        );
    }
}
