//! Tensor data layout (MiniTorch's `tensor_data.py`): shape, strides and offset, and the
//! index arithmetic every backend shares.
//!
//! A [`Layout`] says where element `index` of a tensor lives in its storage:
//! `offset + sum(index[i] * strides[i])`. Broadcast dimensions have stride 0, so a
//! broadcast input is read in place, never copied.

use smallvec::SmallVec;

use crate::error::{Error, Result};

/// A shape, strides or index: up to four dimensions inline, more on the heap. Tensors are
/// made and dropped per op, so their metadata must not cost an allocation each.
pub type Dims = SmallVec<[usize; 4]>;

/// Contiguous (row-major) strides for `shape`: the last dimension has stride 1.
/// Saturates instead of overflowing; shapes that pass [`checked_shape_size`] never do.
pub fn strides_from_shape(shape: &[usize]) -> Dims {
    let mut strides: Dims = smallvec::smallvec![0; shape.len()];
    let mut acc: usize = 1;
    for (s, d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc = acc.saturating_mul(*d);
    }
    strides
}

/// Number of elements of `shape` (1 for a 0-d shape). Saturates at `usize::MAX` instead
/// of wrapping; see [`checked_shape_size`] for the checked version.
pub fn shape_size(shape: &[usize]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
}

/// Most elements a tensor may have: its bytes must fit an `isize` (Rust's allocation
/// limit), whatever the device.
pub const MAX_ELEMENTS: usize = isize::MAX as usize / std::mem::size_of::<f32>();

/// The number of elements of `shape`, or an error naming `op` and the shape when the
/// product of its dimensions (zeros counted as 1, so that strides fit too) exceeds
/// [`MAX_ELEMENTS`].
pub fn checked_shape_size(op: &'static str, shape: &[usize]) -> Result<usize> {
    let mut nonzero: usize = 1;
    for &d in shape {
        nonzero = match nonzero.checked_mul(d.max(1)) {
            Some(n) if n <= MAX_ELEMENTS => n,
            _ => {
                return Err(Error::shape(
                    op,
                    &[shape],
                    format!("the shape has more than {MAX_ELEMENTS} elements (2^61, the most any device can address)"),
                ))
            }
        };
    }
    Ok(if shape.contains(&0) { 0 } else { nonzero })
}

/// The highest storage position `shape`, `strides` and `offset` address, plus one (0
/// when the shape is empty); None when that overflows.
pub fn checked_extent(shape: &[usize], strides: &[usize], offset: usize) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    let mut last = offset;
    for (&d, &s) in shape.iter().zip(strides) {
        last = last.checked_add((d - 1).checked_mul(s)?)?;
    }
    last.checked_add(1)
}

/// Storage position of `index` under `strides` (without offset).
#[inline]
pub fn index_to_position(index: &[usize], strides: &[usize]) -> usize {
    index.iter().zip(strides).map(|(i, s)| i * s).sum()
}

/// Fill `out_index` with the multi-index of `ordinal` in a contiguous enumeration of
/// `shape` (the last dimension moves fastest). Enumerating `0..size` visits every index
/// once.
#[inline]
pub fn to_index(mut ordinal: usize, shape: &[usize], out_index: &mut [usize]) {
    for (o, &d) in out_index.iter_mut().zip(shape).rev() {
        if d == 0 {
            *o = 0;
            continue;
        }
        *o = ordinal % d;
        ordinal /= d;
    }
}

/// Map `big_index` of the broadcast shape `big_shape` to the index of the smaller
/// `shape` it was broadcast from: dimensions of size 1 read index 0, and missing leading
/// dimensions are dropped.
#[inline]
pub fn broadcast_index(
    big_index: &[usize],
    big_shape: &[usize],
    shape: &[usize],
    out: &mut [usize],
) {
    let extra = big_shape.len() - shape.len();
    for (i, (o, &d)) in out.iter_mut().zip(shape).enumerate() {
        *o = if d == 1 { 0 } else { big_index[extra + i] };
    }
}

/// The shape both `a` and `b` broadcast to (NumPy rules: align the right ends; each pair
/// of dimensions must be equal or one of them 1).
pub fn shape_broadcast(a: &[usize], b: &[usize]) -> Result<Dims> {
    let n = a.len().max(b.len());
    let mut out: Dims = smallvec::smallvec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(
                "broadcast",
                &[a, b],
                format!("dimension {i} of the result: {da} vs {db}, neither is 1"),
            ));
        };
    }
    checked_shape_size("broadcast", &out)?;
    Ok(out)
}

/// Shape, strides and offset of a tensor's view into its storage.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    shape: Dims,
    strides: Dims,
    offset: usize,
}

impl Layout {
    /// A contiguous layout of `shape` at offset 0.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            strides: strides_from_shape(shape),
            shape: shape.into(),
            offset: 0,
        }
    }

    /// A layout from its parts; checked that strides match the shape's rank, that the
    /// shape's size is addressable and that no position it reaches overflows.
    pub fn new(shape: impl Into<Dims>, strides: impl Into<Dims>, offset: usize) -> Result<Self> {
        let (shape, strides): (Dims, Dims) = (shape.into(), strides.into());
        if shape.len() != strides.len() {
            return Err(Error::shape(
                "layout",
                &[&shape, &strides],
                "shape and strides have different lengths",
            ));
        }
        checked_shape_size("layout", &shape)?;
        if checked_extent(&shape, &strides, offset).is_none_or(|e| e > MAX_ELEMENTS) {
            return Err(Error::shape(
                "layout",
                &[&shape, &strides],
                format!("strides and offset {offset} reach past the largest addressable position"),
            ));
        }
        Ok(Layout {
            shape,
            strides,
            offset,
        })
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The stride of each dimension, in elements.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    /// Position of element `(0, ..., 0)` in the storage.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// Number of dimensions.
    pub fn dims(&self) -> usize {
        self.shape.len()
    }
    /// Number of elements.
    pub fn size(&self) -> usize {
        shape_size(&self.shape)
    }

    /// True when the elements lie in row-major order with no gaps, so that ordinal `i`
    /// lives at `offset + i`. Dimensions of size 1 may have any stride.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// Storage position of `index` (unchecked; see [`Layout::checked_position`]).
    #[inline]
    pub fn position(&self, index: &[usize]) -> usize {
        self.offset + index_to_position(index, &self.strides)
    }

    /// Storage position of `index`, with errors for a wrong number of indices, a negative
    /// index or one out of range.
    pub fn checked_position(&self, index: &[isize]) -> Result<usize> {
        let err = |msg: String| Error::Index {
            op: "index",
            index: index.to_vec(),
            shape: crate::error::Shapes(vec![self.shape.to_vec()]),
            msg,
        };
        if index.len() != self.shape.len() {
            return Err(err(format!(
                "expected {} indices, got {}",
                self.shape.len(),
                index.len()
            )));
        }
        let mut pos = self.offset;
        for (k, (&i, (&d, &s))) in index
            .iter()
            .zip(self.shape.iter().zip(&self.strides))
            .enumerate()
        {
            if i < 0 {
                return Err(err(format!(
                    "negative index {i} in dimension {k} is not supported"
                )));
            }
            if i as usize >= d {
                return Err(err(format!(
                    "index {i} out of range for dimension {k} of size {d}"
                )));
            }
            pos = (i as usize)
                .checked_mul(s)
                .and_then(|p| p.checked_add(pos))
                .ok_or_else(|| err("the position overflows".to_string()))?;
        }
        Ok(pos)
    }

    /// The layout with dimensions reordered: dimension `i` of the result is dimension
    /// `order[i]` of `self`. `order` must be a permutation of `0..dims`.
    pub fn permute(&self, order: &[usize]) -> Result<Layout> {
        let n = self.dims();
        let mut seen: SmallVec<[bool; 8]> = smallvec::smallvec![false; n];
        let valid = order.len() == n
            && order
                .iter()
                .all(|&o| o < n && !std::mem::replace(&mut seen[o], true));
        if !valid {
            return Err(Error::shape(
                "permute",
                &[&self.shape, order],
                format!("order must be a permutation of 0..{n}"),
            ));
        }
        Ok(Layout {
            shape: order.iter().map(|&o| self.shape[o]).collect(),
            strides: order.iter().map(|&o| self.strides[o]).collect(),
            offset: self.offset,
        })
    }

    /// The same elements seen with another shape of the same size. Like MiniTorch, only
    /// contiguous layouts can be viewed; call `contiguous()` first otherwise.
    pub fn view(&self, shape: &[usize]) -> Result<Layout> {
        if checked_shape_size("view", shape)? != self.size() {
            return Err(Error::shape(
                "view",
                &[&self.shape, shape],
                format!(
                    "element counts differ ({} vs {})",
                    self.size(),
                    shape_size(shape)
                ),
            ));
        }
        if !self.is_contiguous() {
            return Err(Error::shape(
                "view",
                &[&self.shape, shape],
                "the tensor is not contiguous; call contiguous() first",
            ));
        }
        Ok(Layout {
            shape: shape.into(),
            strides: strides_from_shape(shape),
            offset: self.offset,
        })
    }

    /// The layout that reads `self` as if it had the (larger) shape `shape`: new leading
    /// dimensions and dimensions of size 1 get stride 0. This is how broadcast inputs are
    /// handed to kernels, so no kernel needs its own broadcasting logic.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Layout> {
        let err = || {
            Error::shape(
                "broadcast",
                &[&self.shape, shape],
                "cannot broadcast the first shape to the second",
            )
        };
        if shape.len() < self.dims() {
            return Err(err());
        }
        checked_shape_size("broadcast", shape)?;
        let extra = shape.len() - self.dims();
        let mut strides: Dims = smallvec::smallvec![0; shape.len()];
        for (i, &d) in shape.iter().enumerate() {
            if i < extra {
                continue;
            }
            let own = self.shape[i - extra];
            if own == d {
                strides[i] = self.strides[i - extra];
            } else if own != 1 {
                return Err(err());
            }
        }
        Ok(Layout {
            shape: shape.into(),
            strides,
            offset: self.offset,
        })
    }

    /// The layout with dimension `dim` removed from iteration: same shape except
    /// `dim` set to 1 (the shape of a reduction's result).
    pub fn reduced_shape(&self, dim: usize) -> Dims {
        let mut s = self.shape.clone();
        if dim < s.len() {
            s[dim] = 1;
        }
        s
    }
}

/// Walks the storage positions of a layout in row-major order without recomputing the
/// whole position per element (an odometer over the index). No allocation per element.
#[derive(Clone, Debug)]
pub struct StridedCursor<'a> {
    shape: &'a [usize],
    strides: &'a [usize],
    /// Inline up to 8 dimensions: the window views of convolution and pooling have 6, and
    /// a cursor is made per block of a strided loop (a heap index would cost an allocation
    /// each time and an indirection per step).
    index: smallvec::SmallVec<[usize; 8]>,
    pos: usize,
}

impl<'a> StridedCursor<'a> {
    /// A cursor at row-major ordinal `start` of `layout`.
    pub fn new(layout: &'a Layout, start: usize) -> Self {
        let mut index: smallvec::SmallVec<[usize; 8]> = smallvec::smallvec![0; layout.dims()];
        to_index(start, layout.shape(), &mut index);
        let pos = layout.position(&index);
        StridedCursor {
            shape: layout.shape(),
            strides: layout.strides(),
            index,
            pos,
        }
    }

    /// The storage position of the current element.
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Move to the next element in row-major order.
    #[inline]
    pub fn advance(&mut self) {
        for d in (0..self.index.len()).rev() {
            self.index[d] += 1;
            self.pos += self.strides[d];
            if self.index[d] < self.shape[d] {
                return;
            }
            self.pos -= self.strides[d] * self.index[d];
            self.index[d] = 0;
        }
    }

    /// Elements left in the current innermost row, this one included (1 for a
    /// zero-dimensional layout).
    #[inline]
    pub fn row_left(&self) -> usize {
        match self.index.len() {
            0 => 1,
            r => self.shape[r - 1] - self.index[r - 1],
        }
    }

    /// The stride of the innermost dimension (0 for a zero-dimensional layout).
    #[inline]
    pub fn inner_stride(&self) -> usize {
        self.strides.last().copied().unwrap_or(0)
    }

    /// Move `n` elements forward within the current innermost row (`n <= row_left()`):
    /// strided loops walk a row with plain index arithmetic, then call this once, so the
    /// odometer runs once per row instead of once per element.
    #[inline]
    pub fn advance_in_row(&mut self, n: usize) {
        let Some(last) = self.index.len().checked_sub(1) else {
            return;
        };
        if n < self.shape[last] - self.index[last] {
            self.index[last] += n;
            self.pos += n * self.strides[last];
            return;
        }
        // The row is done: back to its start, then one step of the outer dimensions.
        self.pos -= self.strides[last] * self.index[last];
        self.index[last] = 0;
        for d in (0..last).rev() {
            self.index[d] += 1;
            self.pos += self.strides[d];
            if self.index[d] < self.shape[d] {
                return;
            }
            self.pos -= self.strides[d] * self.index[d];
            self.index[d] = 0;
        }
    }
}
