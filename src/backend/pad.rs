//! Zero padding with dilation: the one kernel family convolution adds
//! ([`Backend::pad`](super::Backend::pad)). Along every dimension, input element `i` lands at
//! output position `lo + i * step`; every other output element is 0. A negative `lo` crops
//! (the input's first elements fall before the output), so one kernel pads a convolution's
//! input, dilates a strided convolution's gradient and pads it for the transposed
//! convolution. Convolution itself is this kernel, a strided window view (MiniTorch's
//! strides idea: an `as_strided` layout read by `copy`) and matmul.
//!
//! The backward of a pad is a view: a slice of the gradient with strides `step` starting at
//! `lo` (`Tensor::pad` records it), so autodiff needs no second kernel.

use smallvec::SmallVec;

use crate::error::{Error, Result};
use crate::layout::{checked_shape_size, Dims, Layout};

/// Where a pad puts its input: per dimension, the output length, the position of input
/// element 0 (`lo`, negative to crop) and the distance between input elements (`step`,
/// 1 for plain padding).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PadSpec {
    /// The result's shape.
    pub out_shape: Dims,
    /// Output position of input element 0, per dimension.
    pub lo: SmallVec<[i64; 4]>,
    /// Output distance between consecutive input elements, per dimension (>= 1).
    pub step: Dims,
}

impl PadSpec {
    /// Plain padding by `before` / `after` elements per dimension of `shape`.
    pub fn padding(
        op: &'static str,
        shape: &[usize],
        before: &[usize],
        after: &[usize],
    ) -> Result<PadSpec> {
        let mut out_shape = Dims::new();
        for (d, &n) in shape.iter().enumerate() {
            let len = n
                .checked_add(before[d])
                .and_then(|v| v.checked_add(after[d]))
                .ok_or_else(|| Error::shape(op, &[shape], "padded size overflows"))?;
            out_shape.push(len);
        }
        Ok(PadSpec {
            out_shape,
            lo: before.iter().map(|&b| b as i64).collect(),
            step: shape.iter().map(|_| 1).collect(),
        })
    }

    /// Errors unless the spec fits an input of `shape`: one entry per dimension, steps of
    /// at least 1, positions and sizes that fit in 2^31 (the GPU kernels index in i32/u32).
    pub fn check(&self, op: &'static str, shape: &[usize]) -> Result<()> {
        let r = shape.len();
        if self.out_shape.len() != r || self.lo.len() != r || self.step.len() != r {
            return Err(Error::shape(
                op,
                &[shape, &self.out_shape],
                "pad needs an output length, a start and a step for every input dimension",
            ));
        }
        checked_shape_size(op, &self.out_shape)?;
        const LIMIT: i64 = 1 << 31;
        for d in 0..r {
            let (lo, step) = (self.lo[d], self.step[d]);
            if step == 0 || step as i64 >= LIMIT || lo.abs() >= LIMIT {
                return Err(Error::shape(
                    op,
                    &[shape, &self.out_shape],
                    format!("pad start {lo} / step {step} out of range in dimension {d}"),
                ));
            }
            if self.out_shape[d] as u64 >= LIMIT as u64 || shape[d] as u64 >= LIMIT as u64 {
                return Err(Error::shape(
                    op,
                    &[shape, &self.out_shape],
                    "pad dimensions must be below 2^31",
                ));
            }
        }
        Ok(())
    }

    /// The input index feeding output position `o` of dimension `d` (of length `n` in the
    /// input), or None where the output is 0: the reference every kernel matches.
    #[inline]
    pub fn source(&self, d: usize, o: usize, n: usize) -> Option<usize> {
        let rel = o as i64 - self.lo[d];
        let step = self.step[d] as i64;
        // No division without dilation (the common case, once per padded row).
        let i = match step {
            1 => rel,
            _ if rel % step != 0 => return None,
            _ => rel / step,
        };
        (rel >= 0 && i < n as i64).then_some(i as usize)
    }
}

/// The pad on the host (the CPU backend's kernel and the tests' reference): a contiguous
/// result of `spec.out_shape`.
pub fn pad_host(x: &[f32], l: &Layout, spec: &PadSpec) -> Vec<f32> {
    let size: usize = spec.out_shape.iter().product();
    let mut out = vec![0.0f32; size];
    pad_into(&mut out, x, l, spec);
    out
}

/// [`pad_host`] into `out` (of the output's size; every value is written, so it need not
/// be zeroed), row by row of the last dimension: the position of a row is found once, then
/// the row is a strided copy between zeros.
pub fn pad_into(out: &mut [f32], x: &[f32], l: &Layout, spec: &PadSpec) {
    pad_rows(out, 0, x, l, spec);
}

/// Rows `first..` of [`pad_into`]'s output (rows of its last dimension) into `out`, which
/// holds whole rows: the CPU fills disjoint runs of rows on several threads.
pub fn pad_rows(out: &mut [f32], first: usize, x: &[f32], l: &Layout, spec: &PadSpec) {
    let r = l.dims();
    if out.is_empty() {
        return;
    }
    if r == 0 {
        out[0] = x[l.offset()];
        return;
    }
    let (shape, strides) = (l.shape(), l.strides());
    let row = spec.out_shape[r - 1];
    if row == 0 {
        return;
    }
    let rows = out.len() / row;
    let lead = r - 1;
    let mut index: Dims = smallvec::smallvec![0; lead];
    crate::layout::to_index(first, &spec.out_shape[..lead], &mut index);
    // Where the dimensions above the rows' own (all but the last two) put a row: the same
    // for a whole plane, so found again only when the index moves past one.
    let outer_of = |index: &[usize]| {
        (0..lead.saturating_sub(1)).try_fold(l.offset(), |b, d| {
            spec.source(d, index[d], shape[d])
                .map(|i| b + i * strides[d])
        })
    };
    let mut outer = outer_of(&index);
    for dst in out.chunks_mut(row).take(rows) {
        let base = match lead {
            0 => outer,
            _ => {
                let d = lead - 1;
                outer
                    .zip(spec.source(d, index[d], shape[d]))
                    .map(|(b, i)| b + i * strides[d])
            }
        };
        if let Some(b) = base {
            let (n, lo, step, stride) = (
                shape[r - 1],
                spec.lo[r - 1],
                spec.step[r - 1],
                strides[r - 1],
            );
            if step == 1 && stride == 1 {
                // Plain padding of a contiguous row: one slice copy of the part inside.
                let first = (-lo).max(0) as usize;
                let start = (lo.max(0) as usize).min(row);
                let len = n.saturating_sub(first).min(row - start);
                dst[..start].fill(0.0);
                dst[start..start + len].copy_from_slice(&x[b + first..b + first + len]);
                dst[start + len..].fill(0.0);
            } else {
                for (o, v) in dst.iter_mut().enumerate() {
                    *v = match spec.source(r - 1, o, n) {
                        Some(i) => x[b + i * stride],
                        None => 0.0,
                    };
                }
            }
        } else {
            dst.fill(0.0);
        }
        // Next row index (odometer over the leading dimensions); a new plane moves the
        // outer position.
        let mut new_plane = false;
        for d in (0..lead).rev() {
            index[d] += 1;
            if index[d] < spec.out_shape[d] {
                break;
            }
            index[d] = 0;
            new_plane = true;
        }
        if new_plane {
            outer = outer_of(&index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_dimensions_in_runs_match_placing_each_input() {
        // A convolution's pad ([C, B, H, W], zeros before and after, a crop, a dilation)
        // against the spec's definition read forwards: input element i lands at
        // lo + i * step along each dimension. Runs of rows that start and end inside a
        // plane, and planes of several images and channels.
        let shape = [3usize, 2, 5, 4];
        let x: Vec<f32> = (0..120).map(|i| i as f32 + 1.0).collect();
        let l = Layout::contiguous(&[2, 3, 5, 4])
            .permute(&[1, 0, 2, 3])
            .unwrap();
        let spec = PadSpec {
            out_shape: smallvec::smallvec![3, 2, 8, 9],
            lo: smallvec::smallvec![0, 0, 2, -1],
            step: smallvec::smallvec![1, 1, 1, 2],
        };
        spec.check("test", l.shape()).unwrap();
        let o = &spec.out_shape;
        let mut want = vec![0.0f32; o.iter().product()];
        for a in 0..shape[0] {
            for b in 0..shape[1] {
                for h in 0..shape[2] {
                    for w in 0..shape[3] {
                        let (p, q) = (2 + h as i64, -1 + 2 * w as i64);
                        if (0..o[2] as i64).contains(&p) && (0..o[3] as i64).contains(&q) {
                            let at = ((a * o[1] + b) * o[2] + p as usize) * o[3] + q as usize;
                            want[at] = x[l.position(&[a, b, h, w])];
                        }
                    }
                }
            }
        }
        for per in [1, 3, 8, 11, 48] {
            let mut runs = vec![f32::NAN; want.len()];
            for (i, c) in runs.chunks_mut(per * o[3]).enumerate() {
                pad_rows(c, i * per, &x, &l, &spec);
            }
            assert_eq!(runs, want, "runs of {per} rows");
        }
    }

    #[test]
    fn rows_in_runs_match_the_whole_pad() {
        // Padding, cropping and dilation on a permuted input; every split into runs of
        // whole rows (as the CPU's threads take them) gives the same output, and every
        // value is written (the output starts as NaN).
        let x: Vec<f32> = (0..3 * 4 * 5).map(|i| i as f32 + 1.0).collect();
        let l = Layout::contiguous(&[4, 3, 5]).permute(&[1, 0, 2]).unwrap();
        let spec = PadSpec {
            out_shape: smallvec::smallvec![4, 6, 9],
            lo: smallvec::smallvec![0, -1, 1],
            step: smallvec::smallvec![1, 2, 2],
        };
        spec.check("test", l.shape()).unwrap();
        let size = crate::layout::shape_size(&spec.out_shape);
        let mut whole = vec![f32::NAN; size];
        pad_into(&mut whole, &x, &l, &spec);
        assert!(whole.iter().all(|v| !v.is_nan()));
        // Element (i, j, k) of the output against its source by the spec's arithmetic.
        for (o, &v) in whole.iter().enumerate() {
            let (i, j, k) = (o / 54, o / 9 % 6, o % 9);
            let want = match (
                spec.source(0, i, 3),
                spec.source(1, j, 4),
                spec.source(2, k, 5),
            ) {
                (Some(a), Some(b), Some(c)) => x[l.position(&[a, b, c])],
                _ => 0.0,
            };
            assert_eq!(v, want, "element {o}");
        }
        for per in [1, 2, 5, 7] {
            let mut runs = vec![f32::NAN; size];
            for (i, c) in runs.chunks_mut(per * 9).enumerate() {
                pad_rows(c, i * per, &x, &l, &spec);
            }
            assert_eq!(runs, whole, "runs of {per} rows");
        }
    }
}
