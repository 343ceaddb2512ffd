//! The metadata of the generated kernels, written once for wgpu and CUDA: the u32 words
//! that carry shapes, strides, offsets and scalar parameters to a kernel (the layout is
//! documented on [`elementwise_meta`] and [`matmul_meta`]). Each backend supplies `push`,
//! which checks the u32 range (and, on CUDA, the by-value word limit).

use smallvec::SmallVec;

use crate::error::Result;

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

/// The metadata the generated kernels read (u32 words; parameters as f32 bits), shared by
/// WGSL and CUDA:
/// - elementwise: `[size, rank, shape[rank], offsets[inputs], strides[inputs][rank],
///   params]`;
/// - matmul: `[n, k, m, batch_rank, a_offset, b_offset, a_row_stride, a_col_stride,
///   b_row_stride, b_col_stride, batch_shape[batch_rank], a_batch_strides[batch_rank],
///   b_batch_strides[batch_rank]]`, then the elementwise words of the epilogue's inputs
///   1.. (over the result's shape).
///
/// The elementwise shape and strides are [`merge_dims`]'s: dimensions of size 1 dropped
/// and neighbours every input steps through as one merged, so a kernel divides as little
/// as possible per element.
pub fn elementwise_meta(
    shape: &[usize],
    layouts: &[&crate::layout::Layout],
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

/// The words of a `Variant::Matmul` kernel (the second layout above) for `a @ b` with
/// `(n, k, m)`, then the epilogue's `extra` inputs (inputs 1..) over the result's `shape`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_meta(
    al: &crate::layout::Layout,
    bl: &crate::layout::Layout,
    (n, k, m): (usize, usize, usize),
    shape: &[usize],
    extra: &[&crate::layout::Layout],
    params: &[f32],
    mut push: impl FnMut(&str, usize) -> Result<()>,
) -> Result<()> {
    let r = al.dims();
    let (sa, sb) = (al.strides(), bl.strides());
    for v in [n, k, m, r - 2, al.offset(), bl.offset()] {
        push("size", v)?;
    }
    for v in [sa[r - 2], sa[r - 1], sb[r - 2], sb[r - 1]] {
        push("stride", v)?;
    }
    let batch_dims = &al.shape()[..r - 2];
    for &v in batch_dims {
        push("dimension", v)?;
    }
    for l in [al, bl] {
        for (&d, &s) in batch_dims.iter().zip(l.strides()) {
            push("stride", if d == 1 { 0 } else { s })?;
        }
    }
    elementwise_meta(shape, extra, params, push)
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
